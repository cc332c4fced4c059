"""MLflow tracking stores: every live run's logged metrics.

The file store (``mlruns/``) is read with the standard library; it keeps
``<mlruns>/<experiment id>/<run id>/metrics/<key>``, one line per logged
value: ``<timestamp> <value> <step>`` (a key with ``/`` in it is a
sub-folder). One experiment's folder, or one run's, is read as well. The
SQLite store (``mlflow.db``, MLflow 3's default) is read through MLflow itself
(the database opened read-only). A run is named ``<experiment name>/<run
name>`` (``mlflow.runName``; the run id when it has none, or when two runs of
an experiment share a name). The epoch of a value is its step, unless the run
logs an ``epoch`` metric (Lightning's ``MLFlowLogger`` logs against batch
steps): then the epoch logged at or before the step. A metric logged several
times without a step (every value at step 0) is read in the order logged, with
a warning. Deleted runs and experiments (``mlflow.delete_run``: marked deleted,
or moved to ``.trash``) are not read.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from earlystop_core.errors import FormatError
from earlystop_core.formats.sqlite_tables import sqlite_tables
from earlystop_core.formats.steps import by_epoch

__all__ = ["is_mlflow_store", "load_mlflow"]

Series = dict[str, list[tuple[int, float]]]
_TABLES = {"experiments", "runs", "metrics"}


def is_mlflow_store(path: Path) -> bool:
    """Whether ``path`` is an MLflow store: a file store (experiment folders with a ``meta.yaml``, runs with
    ``metrics/``), one experiment's or run's folder of it, or an SQLite file holding MLflow's tables.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "0" / "abc" / "metrics").mkdir(parents=True)
        >>> _ = (root / "0" / "meta.yaml").write_text("name: Default\\n")
        >>> _ = (root / "0" / "abc" / "meta.yaml").write_text("run_id: abc\\n")
        >>> is_mlflow_store(root), is_mlflow_store(root / "0"), is_mlflow_store(root / "0" / "abc")
        (True, True, True)
        >>> is_mlflow_store(root / "0" / "abc" / "metrics")
        False
    """
    if path.is_file():
        return sqlite_tables(path) >= _TABLES
    return path.is_dir() and (_is_run(path) or _is_experiment(path) or any(map(_is_experiment, _folders(path))))


def load_mlflow(path: str | os.PathLike[str]) -> dict[str, dict[str, list[float | None]]]:
    """Read every live run of an MLflow store into ``{run: {metric: values by epoch}}``.

    Raises:
        FormatError: Not a store, a malformed metric line, no run with a
            metric, or an SQLite store without MLflow installed (the message
            says what to install).

    Warns:
        UserWarning: A metric was logged several times without a step.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> run = root / "1" / "7f3a"
        >>> (run / "metrics").mkdir(parents=True); (run / "tags").mkdir()
        >>> _ = (root / "1" / "meta.yaml").write_text("experiment_id: '1'\\nname: digits\\n")
        >>> _ = (run / "meta.yaml").write_text("run_id: 7f3a\\nlifecycle_stage: active\\n")
        >>> _ = (run / "tags" / "mlflow.runName").write_text("baseline")
        >>> _ = (run / "metrics" / "val_loss").write_text("1700000000000 0.9 0\\n1700000000001 0.7 1\\n")
        >>> load_mlflow(root)
        {'digits/baseline': {'val_loss': [0.9, 0.7]}}
        >>> load_mlflow(root / "1" / "7f3a") == load_mlflow(root / "1") == load_mlflow(root)
        True
    """
    root = Path(path)
    if not is_mlflow_store(root):
        raise FormatError(
            root, None, None, "not an MLflow store: no <experiment>/meta.yaml with runs under it, nor MLflow's SQLite"
        )
    runs = _sqlite_runs(root) if root.is_file() else _file_runs(root)
    curves: dict[str, dict[str, list[float | None]]] = {}
    for label, series in runs:
        if series:
            curves[label] = by_epoch(root, label, _stepless(root, label, series))
    if not curves:
        raise FormatError(root, None, None, "no live run of this MLflow store logged a metric")
    return curves


def _file_runs(root: Path) -> list[tuple[str, Series]]:
    """Each live run of a file store (or of one experiment or run folder of it): its name and metrics."""
    if _is_run(root):
        experiments, only = [root.parent], root
    else:
        experiments, only = ([root] if _is_experiment(root) else [e for e in _folders(root) if _is_experiment(e)]), None
    runs = []
    for experiment in experiments:
        meta = _meta(experiment / "meta.yaml") if (experiment / "meta.yaml").is_file() else {}
        if meta.get("lifecycle_stage") == "deleted" and only is None:
            continue
        name = meta.get("name", experiment.name)
        folders = [run for run in _folders(experiment) if (run / "metrics").is_dir() and _live(run)]
        names = [_run_name(run) for run in folders]
        for run, run_name in zip(folders, names, strict=True):
            if only is None or run == only:
                runs.append(
                    (f"{name}/{run_name if names.count(run_name) == 1 else run.name}", _metrics(run / "metrics"))
                )
    return runs


def _sqlite_runs(path: Path) -> list[tuple[str, Series]]:
    """Each live run of an SQLite store, read through MLflow's client on the database opened read-only."""
    try:
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise FormatError(
            path, None, None, "an MLflow SQLite store is read with MLflow: pip install mlflow-skinny sqlalchemy"
        ) from None
    client = MlflowClient(tracking_uri=f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    runs = []
    try:
        for experiment in client.search_experiments(view_type=ViewType.ACTIVE_ONLY):
            found = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY,
                                       order_by=["attributes.start_time ASC"])  # fmt: skip
            names = [run.info.run_name or run.info.run_id for run in found]
            for run, run_name in zip(found, names, strict=True):
                series = {
                    key: [(point.step, point.value) for point in client.get_metric_history(run.info.run_id, key)]
                    for key in sorted(run.data.metrics)
                }
                label = f"{experiment.name}/{run_name if names.count(run_name) == 1 else run.info.run_id}"
                runs.append((label, series))
    except Exception as error:  # MLflow's store errors have no common base: each is named in the message
        raise FormatError(path, None, None, f"not a readable MLflow store ({type(error).__name__}: {error})") from None
    return runs


def _stepless(root: Path, run: str, series: Series) -> Series:
    """A metric logged several times without a step (all at step 0) in the order it was logged, said once."""
    stepless = [key for key, points in series.items() if len(points) > 1 and all(step == 0 for step, _ in points)]
    if not stepless:
        return series
    warnings.warn(
        f"{root}: run {run!r} logged {', '.join(map(repr, stepless))} several times without a step (all at step 0): "
        "read one epoch per value, in the order logged (log_metric(..., step=epoch) says which epoch)",
        stacklevel=3,
    )
    return {key: list(enumerate(v for _, v in points)) if key in stepless else points for key, points in series.items()}


def _is_run(path: Path) -> bool:
    """A run's folder: its ``metrics/`` and a ``meta.yaml`` naming a run."""
    return (path / "metrics").is_dir() and (path / "meta.yaml").is_file() and "run_id" in _meta(path / "meta.yaml")


def _is_experiment(path: Path) -> bool:
    """An experiment's folder: its ``meta.yaml`` and runs (folders with ``metrics/``) under it."""
    return (path / "meta.yaml").is_file() and any((run / "metrics").is_dir() for run in _folders(path))


def _live(run: Path) -> bool:
    """Whether a run is not deleted (``mlflow.delete_run`` marks its ``meta.yaml``)."""
    return not (run / "meta.yaml").is_file() or _meta(run / "meta.yaml").get("lifecycle_stage") != "deleted"


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


def _metrics(folder: Path) -> Series:
    """Each metric file under ``folder`` (keys with ``/`` are sub-folders) as ``(step, value)`` points in order."""
    series: Series = {}
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
