"""Ray Tune results folders: each trial's ``progress.csv``, one row per reported result, read with the standard library.

A trial folder holds ``params.json`` (its configuration) and ``progress.csv``;
an experiment folder holds trial folders. Each trial is a run, named by its
folder; its epochs are its reports (``training_iteration`` 1, 2, 3, ...), its
metrics every numeric column but Tune's own bookkeeping (times, ids, host)
and the ``config/`` columns.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from earlystop_core.errors import FormatError
from earlystop_core.formats.long_csv import MISSING

__all__ = ["is_ray_results", "load_ray"]

PROGRESS, PARAMS = "progress.csv", "params.json"
#: Columns Tune writes about a result rather than as one (never metrics).
BOOKKEEPING = frozenset({
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
    "time_total_s", "pid", "hostname", "node_ip", "time_since_restore", "iterations_since_restore",
    "timesteps_total", "episodes_total", "timesteps_since_restore", "should_checkpoint", "experiment_id",
    "experiment_tag", "warmup_time", "logdir",
})  # fmt: skip


def _is_trial(path: Path) -> bool:
    return (path / PROGRESS).is_file() and (path / PARAMS).is_file()


def is_ray_results(path: Path) -> bool:
    """Whether ``path`` is a Ray Tune trial folder, or an experiment folder of them.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "trial_1").mkdir()
        >>> _ = (root / "trial_1" / "params.json").write_text("{}")
        >>> _ = (root / "trial_1" / "progress.csv").write_text("val_loss,training_iteration\\n0.5,1\\n")
        >>> is_ray_results(root), load_ray(root)
        (True, {'trial_1': {'val_loss': [0.5]}})
    """
    if not path.is_dir():
        return False
    return _is_trial(path) or any(child.is_dir() and _is_trial(child) for child in path.iterdir())


def load_ray(path: str | os.PathLike[str]) -> dict[str, dict[str, list[float | None]]]:
    """Read every trial of a Ray Tune results folder into ``{trial folder: {metric: values by report}}``.

    Raises:
        FormatError: A ``progress.csv`` without ``training_iteration``, or whose reports are not 1, 2, 3, ...
    """
    root = Path(path)
    trials = (
        [root] if _is_trial(root) else sorted(child for child in root.iterdir() if child.is_dir() and _is_trial(child))
    )
    return {trial.name: _trial(trial / PROGRESS) for trial in trials}


def _trial(path: Path) -> dict[str, list[float | None]]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    if rows and "training_iteration" not in rows[0]:
        raise FormatError(path, 1, None, "no 'training_iteration' column: not a Ray Tune progress.csv")
    columns = [name for name in (rows[0] if rows else {}) if name not in BOOKKEEPING and not name.startswith("config/")]
    values: dict[str, list[float | None]] = {name: [] for name in columns}
    numeric = set(columns)
    for line, row in enumerate(rows, start=2):
        if row["training_iteration"] != str(line - 1):
            raise FormatError(
                path, line, None, f"report {row['training_iteration']!r} out of order: expected {line - 1}"
            )
        for name in columns:
            cell = row[name]
            if cell in MISSING:
                values[name].append(None)
                continue
            try:
                values[name].append(float(cell))
            except ValueError:
                numeric.discard(name)  # a text column (a status, a path) is not a metric
    return {name: series for name, series in values.items() if name in numeric}
