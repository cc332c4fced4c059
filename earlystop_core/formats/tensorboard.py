"""TensorBoard event files (``events.out.tfevents.*``), read with TensorBoard's own event reader.

Needs the ``tensorboard`` package (``pip install 'earlystop[tensorboard]'``),
imported only when such a file is read. Every scalar series becomes a metric
of its run:

* a folder holding event files is a run (a ``SummaryWriter``'s ``log_dir``,
  Lightning's ``version_N``), together with the sub-folders
  ``add_scalars`` writes into it (``<log_dir>/acc_train``: metric
  ``acc_train``);
* Keras's ``TensorBoard`` callback writes ``train/`` and ``validation/``
  beside each other: ``validation/epoch_loss`` is ``val_loss`` and
  ``train/epoch_accuracy`` is ``accuracy``, the names its ``CSVLogger`` uses;
* the epoch of a value is its ``step``, unless the run logs an ``epoch``
  scalar (Lightning does, against batch steps): then it is the epoch logged
  at or before that step. Several values in one epoch: the last one counts;
* in Keras's sub-folders only the ``epoch_*`` tags are read (its
  ``batch_*`` and ``evaluation_*_vs_iterations`` tags count iterations);
* a Hugging Face ``Trainer``'s logs (``report_to="tensorboard"``: ``train/*``
  and ``eval/*`` tags, with ``train/epoch``) are read as its
  ``trainer_state.json`` is: one epoch per evaluation, the Trainer's names
  (``eval_loss``; `earlystop_core.formats.huggingface`).

Scalars written as tensors (TensorFlow 2's ``tf.summary.scalar``) are read too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from earlystop_core.errors import FormatError
from earlystop_core.formats.huggingface import trainer_state_curve
from earlystop_core.formats.steps import by_epoch

__all__ = ["EVENTS", "is_event_file", "load_tensorboard"]

#: How TensorBoard event files are named.
EVENTS = "events.out.tfevents."
_KERAS = {"train": "", "validation": "val_"}  # Keras's sub-folders, and the prefix its CSVLogger gives them
_TRAINER = {"train": "", "eval": "eval_"}  # a Hugging Face Trainer's tag groups, and its trainer_state.json's prefix


def is_event_file(path: Path) -> bool:
    """Whether ``path`` is named as a TensorBoard event file.

    Examples:
        >>> is_event_file(Path("runs/a/events.out.tfevents.1700000000.host.1.0")), is_event_file(Path("a.csv"))
        (True, False)
    """
    return path.name.startswith(EVENTS)


def load_tensorboard(path: str | os.PathLike[str]) -> dict[str, dict[str, list[float | None]]]:
    """Read the event files at ``path`` (one file, or every one under a folder) into ``{run: {metric: values}}``.

    Raises:
        FormatError: No event file, no scalar in them, or an epoch absurdly far off.
        ImportError: TensorBoard is not installed (the message says how to install it).
    """
    accumulator = _accumulator_class()
    root = Path(path)
    runs = {_name(root.parent, root.parent.parent): {"": [root]}} if root.is_file() else _runs(root)
    if not runs:
        raise FormatError(root, None, None, f"no TensorBoard event files ({EVENTS}*) under it")
    curves = {}
    for run, parts in runs.items():
        series: dict[str, list[tuple[int, float]]] = {}
        for prefix, files in parts.items():
            for file in files:
                for tag, points in _scalars(accumulator, file):
                    if prefix not in _KERAS or tag.startswith("epoch_"):
                        series.setdefault(_metric(prefix, tag), []).extend(points)
        if not series:
            raise FormatError(root, None, None, f"run {run!r}: its event files hold no scalars")
        history = _trainer_history(series) if set(parts) == {""} else None
        curves[run] = by_epoch(root, run, series) if history is None else trainer_state_curve(root, history)
    return curves


def _trainer_history(series: dict[str, list[tuple[int, float]]]) -> dict[str, Any] | None:
    """A Hugging Face Trainer's scalars as the ``trainer_state.json`` it keeps beside them (``train/loss`` is its
    ``loss``, ``eval/loss`` its ``eval_loss``), or None for other logs. The summary it logs at the end
    (``train/train_runtime``, ``train/train_loss`` over the run) is no epoch, and is left out."""
    if "train/epoch" not in series or not any(tag.startswith("eval/") for tag in series):
        return None
    steps: dict[int, dict[str, dict[str, float]]] = {}
    for tag, points in series.items():
        group, _, name = tag.partition("/")
        if group not in _TRAINER or name == "epoch" or (group == "train" and name.startswith(("train_", "total_"))):
            continue
        for step, value in points:
            steps.setdefault(step, {}).setdefault(group, {})[_TRAINER[group] + name] = value
    # At a step with both, the Trainer logs training first: an evaluation takes the training metrics before it.
    history = [{**logged[group], "step": step} for step, logged in sorted(steps.items()) for group in _TRAINER
               if group in logged]  # fmt: skip
    return {"log_history": history}


def _accumulator_class() -> Any:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise ImportError(
            "reading TensorBoard event files needs the tensorboard package: pip install 'earlystop[tensorboard]'"
        ) from None
    return EventAccumulator


def _runs(root: Path) -> dict[str, dict[str, list[Path]]]:
    """``{run: {metric prefix: event files}}`` for the event files under ``root``."""
    folders: dict[Path, list[Path]] = {}
    for walked, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        events = sorted(Path(walked) / name for name in names if name.startswith(EVENTS))
        if events:
            folders[Path(walked)] = events
    runs: dict[str, dict[str, list[Path]]] = {}
    for folder, files in folders.items():
        parent = folder.parent
        if folder.name in _KERAS and folder != root:  # Keras: <log_dir>/train, <log_dir>/validation
            run_folder, prefix = parent, folder.name
        elif parent in folders and folder != root:  # add_scalars: <log_dir>/<main tag>_<key>
            run_folder, prefix = parent, f"/{folder.name}"
        else:
            run_folder, prefix = folder, ""
        runs.setdefault(_name(run_folder, root), {}).setdefault(prefix, []).extend(files)
    return runs


def _name(folder: Path, root: Path) -> str:
    """A run's id: its folder under ``root`` (``root``'s own name for ``root`` itself)."""
    try:
        relative = folder.relative_to(root)
    except ValueError:
        relative = Path(folder.name)
    return relative.as_posix() if relative != Path(".") else (root.resolve().name or "run")


def _metric(prefix: str, tag: str) -> str:
    """The metric name of a tag in a part of a run (see the module docstring)."""
    if prefix.startswith("/"):  # an add_scalars sub-folder is named after the series
        return prefix[1:]
    if prefix in _KERAS:
        return _KERAS[prefix] + tag.removeprefix("epoch_")
    return tag


def _scalars(accumulator: Any, file: Path) -> Iterator[tuple[str, list[tuple[int, float]]]]:
    """Each scalar tag of one event file, with its ``(step, value)`` points in the order written."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS
    from tensorboard.util import tensor_util

    events = accumulator(str(file), size_guidance={SCALARS: 0, TENSORS: 0})
    try:
        events.Reload()
    except Exception as error:  # a truncated or foreign file: TensorBoard raises its own errors
        raise FormatError(file, None, None, f"not a readable event file ({type(error).__name__}: {error})") from None
    tags = events.Tags()
    for tag in tags.get("scalars", []):
        yield tag, [(point.step, float(point.value)) for point in events.Scalars(tag)]
    for tag in tags.get("tensors", []):  # TensorFlow 2 writes scalars as rank-0 tensors
        points = []
        for point in events.Tensors(tag):
            array = tensor_util.make_ndarray(point.tensor_proto)
            if array.shape != ():
                break
            points.append((point.step, float(array)))
        else:
            yield tag, points
