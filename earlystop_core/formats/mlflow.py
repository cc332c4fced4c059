"""MLflow tracking folders (``mlruns/``, the file store): every run's logged metrics, read with the standard library.

The file store keeps ``<mlruns>/<experiment id>/<run id>/metrics/<key>``, one
line per logged value: ``<timestamp> <value> <step>`` (a key with ``/`` in
it is a sub-folder). A run is named ``<experiment name>/<run name>``
(``mlflow.runName``; the run id when it has none, or when two runs of an
experiment share a name). The epoch of a value is its step, unless the run
logs an ``epoch`` metric (Lightning's ``MLFlowLogger`` logs against batch
steps): then the epoch logged at or before the step. Runs in ``.trash`` are
deleted runs and are not read.
"""

from __future__ import annotations

import os
from pathlib import Path

from earlystop_core.errors import FormatError
from earlystop_core.formats.steps import by_epoch

__all__ = ["is_mlflow_store", "load_mlflow"]


def is_mlflow_store(path: Path) -> bool:
    """Whether ``path`` is an MLflow file store: experiment folders with a ``meta.yaml``, runs with ``metrics/``.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "0" / "abc" / "metrics").mkdir(parents=True)
        >>> _ = (root / "0" / "meta.yaml").write_text("name: Default\\n")
        >>> is_mlflow_store(root), is_mlflow_store(root / "0")
        (True, False)
    """
    if not path.is_dir():
        return False
    return any(
        (experiment / "meta.yaml").is_file() and any((run / "metrics").is_dir() for run in _folders(experiment))
        for experiment in _folders(path)
    )


def load_mlflow(path: str | os.PathLike[str]) -> dict[str, dict[str, list[float | None]]]:
    """Read every run of an MLflow file store into ``{run: {metric: values by epoch}}``.

    Raises:
        FormatError: Not a file store, a malformed metric line, or no run with a metric.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> run = root / "1" / "7f3a"
        >>> (run / "metrics").mkdir(parents=True); (run / "tags").mkdir()
        >>> _ = (root / "1" / "meta.yaml").write_text("experiment_id: '1'\\nname: digits\\n")
        >>> _ = (run / "tags" / "mlflow.runName").write_text("baseline")
        >>> _ = (run / "metrics" / "val_loss").write_text("1700000000000 0.9 0\\n1700000000001 0.7 1\\n")
        >>> load_mlflow(root)
        {'digits/baseline': {'val_loss': [0.9, 0.7]}}
    """
    root = Path(path)
    if not is_mlflow_store(root):
        raise FormatError(root, None, None, "not an MLflow file store: no <experiment>/meta.yaml with runs under it")
    curves: dict[str, dict[str, list[float | None]]] = {}
    for experiment in _folders(root):
        if not (experiment / "meta.yaml").is_file():
            continue
        name = _meta(experiment / "meta.yaml").get("name", experiment.name)
        runs = [run for run in _folders(experiment) if (run / "metrics").is_dir()]
        names = [_run_name(run) for run in runs]
        for run, run_name in zip(runs, names, strict=True):
            label = f"{name}/{run_name if names.count(run_name) == 1 else run.name}"
            series = _metrics(run / "metrics")
            if series:
                curves[label] = by_epoch(run, label, series)
    if not curves:
        raise FormatError(root, None, None, "no run of this MLflow store logged a metric")
    return curves


def _folders(path: Path) -> list[Path]:
    """The sub-folders, sorted, leaving out hidden ones (``.trash``: deleted runs and experiments)."""
    return sorted(entry for entry in path.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _meta(path: Path) -> dict[str, str]:
    """The top-level ``key: value`` lines of an MLflow ``meta.yaml`` (quotes dropped): all the reader needs."""
    meta = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, colon, value = line.partition(":")
        if colon and not line.startswith((" ", "\t", "-")):
            meta[key.strip()] = value.strip().strip("'\"")
    return meta


def _run_name(run: Path) -> str:
    """The run's name (its ``mlflow.runName`` tag, else its ``meta.yaml``'s ``run_name``), else its id."""
    tag = run / "tags" / "mlflow.runName"
    if tag.is_file() and tag.read_text(encoding="utf-8").strip():
        return tag.read_text(encoding="utf-8").strip()
    meta = _meta(run / "meta.yaml") if (run / "meta.yaml").is_file() else {}
    return meta.get("run_name") or run.name


def _metrics(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Each metric file under ``folder`` (keys with ``/`` are sub-folders) as ``(step, value)`` points in order."""
    series: dict[str, list[tuple[int, float]]] = {}
    for file in sorted(folder.rglob("*")):
        if not file.is_file():
            continue
        key = file.relative_to(folder).as_posix()
        points = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                _, value, step = fields[0], float(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                raise FormatError(file, number, None, f"expected '<timestamp> <value> <step>', got {line!r}") from None
            points.append((step, value))
        series[key] = points
    return series
