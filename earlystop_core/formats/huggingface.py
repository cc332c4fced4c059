"""Hugging Face ``Trainer`` logs: the ``trainer_state.json`` a run writes into each checkpoint.

Its ``log_history`` interleaves training logs (``loss``, ``learning_rate``,
``grad_norm``, every ``logging_steps``) and evaluations (``eval_loss``,
``eval_<metric>``, every ``eval_steps`` or epoch), each with the ``step``
and the fractional ``epoch`` it was logged at. A replay decides once per
evaluation, as ``EarlyStoppingCallback`` does, so each evaluation is one
epoch of the curve: its metrics, with the training metrics last logged at or
before its step (``learning_rate`` as ``lr``). The names stay the Trainer's
(``eval_loss``, not ``val_loss``). Reading needs nothing but the standard library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from earlystop_core.errors import FormatError

__all__ = ["TRAINER_STATE", "is_trainer_state", "load_trainer_state", "trainer_state_curve", "trainer_state_from_text"]

#: The file a Trainer writes its state into.
TRAINER_STATE = "trainer_state.json"
# Timing figures the Trainer logs beside the metrics: not learning curves.
_TIMING = ("_runtime", "_per_second", "_flos")
# The summary the Trainer logs when training ends (train_runtime, train_loss over the whole run): not an epoch.
_SUMMARY = "train_runtime"
_RENAMED = {"learning_rate": "lr"}


def is_trainer_state(data: Any) -> bool:
    """Whether parsed JSON is a ``trainer_state.json`` (an object with a ``log_history`` list).

    Examples:
        >>> is_trainer_state({"log_history": [], "global_step": 0}), is_trainer_state([{"epoch": 0}])
        (True, False)
    """
    return isinstance(data, dict) and isinstance(data.get("log_history"), list)


def load_trainer_state(
    path: str | os.PathLike[str], run: str | None = None
) -> dict[str, dict[str, list[float | None]]]:
    """Read a ``trainer_state.json`` into one run: ``{run: {metric: values by evaluation}}``.

    The run is named ``run``, else after its output folder (the one holding
    ``checkpoint-N/``, or the file's own folder).

    Raises:
        FormatError: Not a trainer state, or no evaluation in it.

    Examples:
        >>> import json, pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "out" / "checkpoint-20"
        >>> folder.mkdir(parents=True)
        >>> history = [{"loss": 0.9, "learning_rate": 1e-3, "epoch": 0.5, "step": 5},
        ...            {"eval_loss": 0.8, "eval_accuracy": 0.6, "eval_runtime": 0.1, "epoch": 1.0, "step": 10},
        ...            {"loss": 0.7, "learning_rate": 5e-4, "epoch": 1.5, "step": 15},
        ...            {"eval_loss": 0.75, "eval_accuracy": 0.7, "eval_runtime": 0.1, "epoch": 2.0, "step": 20},
        ...            {"train_runtime": 3.0, "train_loss": 0.8, "epoch": 2.0, "step": 20}]
        >>> _ = (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}, indent=2))
        >>> load_trainer_state(folder / "trainer_state.json")
        {'out': {'eval_loss': [0.8, 0.75], 'eval_accuracy': [0.6, 0.7], 'loss': [0.9, 0.7], 'lr': [0.001, 0.0005]}}
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise FormatError(path, None, None, "not UTF-8 text") from None
    return {run if run is not None else run_name(path): trainer_state_from_text(path, text)}


def trainer_state_from_text(path: Path, text: str) -> dict[str, list[float | None]]:
    """The curve of a ``trainer_state.json``'s text (`trainer_state_curve` of it, once parsed).

    Raises:
        FormatError: The text is not JSON, or not a trainer state with evaluations.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FormatError(path, error.lineno, error.colno, f"not JSON: {error.msg}") from None
    return trainer_state_curve(path, data)


def run_name(path: Path) -> str:
    """A Trainer run's name: its output folder (above ``checkpoint-N/``), or the file's folder.

    Examples:
        >>> run_name(Path("runs/bert/checkpoint-500/trainer_state.json")), run_name(Path("bert/trainer_state.json"))
        ('bert', 'bert')
    """
    folder = path.resolve().parent if not path.parent.name else path.parent
    if folder.name.startswith("checkpoint-") and folder.parent.name:
        folder = folder.parent
    return folder.name or "run"


def trainer_state_curve(path: Path, data: Any) -> dict[str, list[float | None]]:
    """The curve of a parsed ``trainer_state.json``: one epoch per evaluation step.

    Raises:
        FormatError: ``data`` is no trainer state, an entry is malformed, or nothing was evaluated.
    """
    if not is_trainer_state(data):
        raise FormatError(path, None, None, "not a Hugging Face trainer_state.json: no 'log_history' list")
    training: dict[str, float] = {}  # the training metrics last logged
    evaluations: list[tuple[int, dict[str, float]]] = []  # (step, metrics), merged per step
    names: dict[str, None] = {}
    for index, entry in enumerate(data["log_history"]):
        if not isinstance(entry, dict):
            raise FormatError(path, None, None, f"log_history[{index}] is not an object: {entry!r}")
        if _SUMMARY in entry:
            continue
        step = entry.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise FormatError(path, None, None, f"log_history[{index}] has no integer 'step': {entry!r}")
        metrics: dict[str, float] = {
            _RENAMED.get(str(name), str(name)): _number(path, index, name, value)
            for name, value in entry.items()
            if name not in ("step", "epoch") and not name.endswith(_TIMING)
        }
        if any(name.startswith("eval_") for name in metrics):
            if evaluations and evaluations[-1][0] == step:
                evaluations[-1][1].update(metrics)  # several evaluation sets at one step
            else:
                evaluations.append((step, {**metrics}))
            evaluations[-1][1].update({name: value for name, value in training.items() if name not in metrics})
        else:
            training.update(metrics)
        names.update(dict.fromkeys(name for name in metrics if name.startswith("eval_")))
    if not evaluations:
        raise FormatError(
            path, None, None, "log_history holds no evaluation (eval_* metrics): train with an eval_strategy"
        )
    names.update(dict.fromkeys(name for _, logged in evaluations for name in logged))
    return {name: [logged.get(name) for _, logged in evaluations] for name in names}


def _number(path: Path, index: int, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(path, None, None, f"log_history[{index}]: {name!r} is not a number: {value!r}")
    return float(value)
