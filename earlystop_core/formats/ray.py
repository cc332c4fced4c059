"""Ray Tune results folders: each trial's ``result.json`` (or ``progress.csv``), one entry per reported result.

A trial folder holds ``params.json`` (its configuration) and the results Tune
logged: ``result.json`` (one JSON object per line) and ``progress.csv``; an
experiment folder holds trial folders, and Tune's storage folder
(``~/ray_results``) experiment folders. Each trial is a run, named by its
folder (``<experiment>/<trial>`` when the storage folder is read); its
epochs are its reports (``training_iteration`` 1, 2, 3, ...), its metrics
every numeric value but Tune's own bookkeeping (times, ids, host) and the
configuration. ``result.json`` is read when there is one: Tune's CSV keeps
only the columns of a trial's first result, so a metric first reported later
(a validation every other epoch, say) is missing from ``progress.csv``.

A trial restored from a checkpoint (after a failure, or by ``Tuner.restore``)
reports again from the iteration after its checkpoint, and both files keep
the reports it went back over: a report whose ``training_iteration`` is not
past the last one replaces the reports from that iteration on, as the
restored trial did. Read with the standard library.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from earlystop_core.errors import FormatError
from earlystop_core.formats.json_lines import json_lines
from earlystop_core.formats.long_csv import MISSING

__all__ = ["is_ray_results", "load_ray"]

PROGRESS, RESULTS, PARAMS = "progress.csv", "result.json", "params.json"
#: Values Tune writes about a result rather than as one (never metrics).
BOOKKEEPING = frozenset({
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
    "time_total_s", "pid", "hostname", "node_ip", "time_since_restore", "iterations_since_restore",
    "timesteps_total", "episodes_total", "timesteps_since_restore", "should_checkpoint", "experiment_id",
    "experiment_tag", "warmup_time", "logdir",
})  # fmt: skip
#: A report's values: a number, or ``None`` where it was not reported.
Report = dict[str, float | None]


def _is_trial(path: Path) -> bool:
    return (path / PARAMS).is_file() and ((path / RESULTS).is_file() or (path / PROGRESS).is_file())


def is_ray_results(path: Path) -> bool:
    """Whether ``path`` is a Ray Tune trial folder, an experiment folder of them, or Tune's storage folder of those
    (``~/ray_results``).

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
    return _is_trial(path) or _is_experiment(path) or any(_is_experiment(child) for child in _folders(path))


def _is_experiment(path: Path) -> bool:
    return any(_is_trial(child) for child in _folders(path))


def _folders(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))


def load_ray(path: str | os.PathLike[str]) -> dict[str, dict[str, list[float | None]]]:
    """Read every trial of a Ray Tune results folder into ``{trial folder: {metric: values by report}}``.

    Raises:
        FormatError: A result without ``training_iteration``, one that skips iterations, or a line of
            ``result.json`` that is not a JSON object.

    Examples:
        A trial restored from its checkpoint after report 2 reports 3 again; the reports it went back over are
        replaced, and a metric missing from a report is ``None`` (not validated then):

        >>> import json, tempfile
        >>> trial = Path(tempfile.mkdtemp())
        >>> _ = (trial / "params.json").write_text("{}")
        >>> lines = [{"training_iteration": 1, "loss": 0.9}, {"training_iteration": 2, "loss": 0.8, "val_loss": 1.0},
        ...          {"training_iteration": 3, "loss": 0.7}, {"training_iteration": 3, "loss": 0.6}]
        >>> _ = (trial / "result.json").write_text("".join(json.dumps(line) + "\\n" for line in lines))
        >>> load_ray(trial)[trial.name]
        {'loss': [0.9, 0.8, 0.6], 'val_loss': [None, 1.0, None]}
    """
    root = Path(path)
    if _is_trial(root):
        return {root.name: _trial(root)}
    if _is_experiment(root):
        return {trial.name: _trial(trial) for trial in _folders(root) if _is_trial(trial)}
    # Tune's storage folder (~/ray_results): each experiment's trials, named <experiment>/<trial>
    return {f"{experiment.name}/{trial.name}": _trial(trial) for experiment in _folders(root)
            for trial in _folders(experiment) if _is_trial(trial)}  # fmt: skip


def _trial(folder: Path) -> dict[str, list[float | None]]:
    source = folder / RESULTS if (folder / RESULTS).is_file() else folder / PROGRESS
    reports: list[Report] = []
    text: set[str] = set()  # names with a text value somewhere (a status, a path): not metrics
    rows = _json_rows(source, text) if source.name == RESULTS else _csv_rows(source, text)
    for line, iteration, report in rows:
        if not 1 <= iteration <= len(reports) + 1:
            raise FormatError(
                source, line, None, f"report {iteration} follows report {len(reports)}: reports are missing"
            )
        del reports[iteration - 1 :]  # a trial restored from a checkpoint reports again from there
        reports.append(report)
    names = [name for name in dict.fromkeys(name for report in reports for name in report) if name not in text]
    return {name: [report.get(name) for report in reports] for name in names}


def _iteration(source: Path, line: int, value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not number.is_integer():
        raise FormatError(source, line, None, f"training_iteration {value!r} is not a report number 1, 2, 3, ...")
    return int(number)


def _csv_rows(source: Path, text: set[str]) -> Iterator[tuple[int, int, Report]]:
    with open(source, encoding="utf-8-sig", newline="") as stream:
        reader = csv.DictReader(stream)
        for line, row in enumerate(reader, start=2):
            if "training_iteration" not in row:
                raise FormatError(source, 1, None, "no 'training_iteration' column: not a Ray Tune progress.csv")
            columns = len(reader.fieldnames or ())
            values = columns + len(row[None]) if None in row else columns - list(row.values()).count(None)
            if values != columns:
                raise FormatError(
                    source,
                    line,
                    None,
                    f"{values} values under {columns} columns (Tune writes such rows after"
                    f" restoring a trial): read its {RESULTS} instead",
                )
            report: Report = {}
            for name, cell in row.items():
                if name in BOOKKEEPING or name.startswith("config/"):
                    continue
                if cell in MISSING:
                    report[name] = None
                    continue
                try:
                    report[name] = float(cell)
                except ValueError:
                    text.add(name)
            yield line, _iteration(source, line, row["training_iteration"]), report


def _json_rows(source: Path, text: set[str]) -> Iterator[tuple[int, int, Report]]:
    with open(source, encoding="utf-8-sig") as stream:
        for line, _, result in json_lines(source, stream):
            if not isinstance(result, dict) or "training_iteration" not in result:
                raise FormatError(source, line, None, "not a Tune result: a JSON object with 'training_iteration'")
            report: Report = {}
            _flatten(result, "", report, text)
            yield line, _iteration(source, line, result["training_iteration"]), report


def _flatten(values: dict[str, Any], prefix: str, report: Report, text: set[str]) -> None:
    """Nested results as Tune's CSV spells them (``a/b``); the configuration and bookkeeping left out."""
    for name, value in values.items():
        key = prefix + str(name)
        if not prefix and (name in BOOKKEEPING or name == "config"):
            continue
        if isinstance(value, dict):
            _flatten(value, key + "/", report, text)
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            report[key] = None if value is None else float(value)
        else:
            text.add(key)  # text, a list, a flag: not a metric
