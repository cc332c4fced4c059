"""Metric names across frameworks: Hugging Face's ``eval_loss`` and Lightning's ``val_acc`` read as Keras's names.

The recommended policy and the built-in comparison speak Keras's names
(``loss``, ``val_loss``, ``val_accuracy``). `recognise` finds the usual
Hugging Face, Lightning and fastai spellings of those in a log that lacks
them; `rename` applies a mapping to every run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

__all__ = ["SPELLINGS", "parse_names", "recognise", "rename"]

Curves = Mapping[str, Mapping[str, Sequence[float | None]]]

#: The name the library uses, and how frameworks spell it, in order of preference.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "val_loss": ("eval_loss", "val/loss", "val_loss_epoch", "valid_loss", "validation_loss", "loss_val"),
    "val_accuracy": (
        "eval_accuracy", "val_acc", "val/acc", "val/accuracy", "val_acc_epoch", "val_accuracy_epoch",
        "valid_accuracy", "eval_acc", "acc_val", "accuracy_val",
    ),
    "loss": ("train_loss_epoch", "train_loss", "train/loss", "loss_train"),
}  # fmt: skip


def recognise(metrics: Iterable[str], keep: Collection[str] = ()) -> dict[str, str]:
    """``{logged name: library name}`` for each library name the logs lack but spell another way.

    Names in ``keep`` (say, the ones a user asked for by name) are not renamed.

    Examples:
        >>> recognise(["loss", "eval_loss", "eval_accuracy", "eval_runtime"])
        {'eval_loss': 'val_loss', 'eval_accuracy': 'val_accuracy'}
        >>> recognise(["train_loss_step", "train_loss_epoch", "val_loss", "val_acc"])
        {'val_acc': 'val_accuracy', 'train_loss_epoch': 'loss'}
        >>> recognise(["eval_loss"], keep={"eval_loss"})
        {}
    """
    logged = list(metrics)
    found: dict[str, str] = {}
    for name, spellings in SPELLINGS.items():
        if name in logged:
            continue
        spelled = next((other for other in spellings if other in logged and other not in keep), None)
        if spelled is not None:
            found[spelled] = name
    return found


def parse_names(text: str) -> dict[str, str]:
    """``--names`` as a mapping: ``"eval_loss=val_loss,val_acc=val_accuracy"``; ``"none"``: an empty one.

    Raises:
        ValueError: An item is not ``logged=name``, or a name is given twice.

    Examples:
        >>> parse_names("eval_loss=val_loss, my_acc=val_accuracy")
        {'eval_loss': 'val_loss', 'my_acc': 'val_accuracy'}
    """
    if text.strip() == "none":
        return {}
    mapping: dict[str, str] = {}
    for item in text.split(","):
        source, equals, target = (part.strip() for part in item.partition("="))
        if not equals or not source or not target or "=" in target:
            raise ValueError(f"--names {text!r}: {item.strip()!r} is not LOGGED=NAME (e.g. eval_loss=val_loss)")
        if source in mapping or target in mapping.values():
            raise ValueError(f"--names {text!r}: {source!r} or {target!r} appears twice")
        mapping[source] = target
    return mapping


def rename(curves: Curves, mapping: Mapping[str, str]) -> dict[str, dict[str, Sequence[float | None]]]:
    """Every run with its metrics renamed by ``mapping`` (logged name -> new name).

    Raises:
        ValueError: A new name is one a run logs already (the two would be confused).

    Examples:
        >>> rename({"a": {"eval_loss": [0.5], "loss": [0.9]}}, {"eval_loss": "val_loss"})
        {'a': {'val_loss': [0.5], 'loss': [0.9]}}
    """
    renamed = {}
    for run, curve in curves.items():
        clash = [target for source, target in mapping.items() if source in curve and target in curve]
        if clash:
            raise ValueError(f"run {run!r} logs {clash[0]!r} already: it cannot also be the name of another metric")
        renamed[run] = {mapping.get(name, name): values for name, values in curve.items()}
    return renamed
