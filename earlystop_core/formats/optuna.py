"""Optuna storages (an SQLite file): every trial's reported values, read through Optuna itself (the ``optuna`` extra).

A trial's reports (``trial.report(value, step)``) become one curve, the metric
``value``, one epoch per report in step order; its steps need not be evenly
spaced. A trial is named ``<study name>/<trial number>`` (its number alone
when the storage holds one study). Only complete trials are read: a pruned,
failed or running one's reports end where it was cut, so replaying a stopping
rule on them would count as saved epochs that were never there to save; they
are left out with a warning. Trials without any report are left out too.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path

from earlystop_core.errors import FormatError
from earlystop_core.formats.sqlite_tables import sqlite_tables

__all__ = ["VALUE", "is_optuna_storage", "load_optuna"]

#: The metric a trial's reported values are read as.
VALUE = "value"


def is_optuna_storage(path: Path) -> bool:
    """Whether ``path`` is an SQLite file holding Optuna's tables (checked with the standard library).

    Examples:
        >>> import tempfile
        >>> is_optuna_storage(Path(tempfile.mkdtemp()) / "none.db")
        False
    """
    return {"studies", "trials", "trial_intermediate_values"} <= sqlite_tables(path)


def load_optuna(path: str | os.PathLike[str]) -> dict[str, dict[str, list[float | None]]]:
    """Read every trial's reported values from an Optuna SQLite storage into ``{trial: {"value": values}}``.

    Raises:
        FormatError: Optuna is not installed (the message names the extra),
            the storage cannot be read, or no complete trial reported a value.

    Warns:
        UserWarning: Trials with reports were left out as not complete.
    """
    path = Path(path)
    try:
        import optuna
    except ImportError:
        raise FormatError(
            path, None, None, "an Optuna storage is read with Optuna: pip install 'earlystop[optuna]'"
        ) from None
    storage = f"sqlite:///{path}"
    try:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        curves: dict[str, dict[str, list[float | None]]] = {}
        cut: Counter[str] = Counter()  # trials with reports left out, by state
        for summary in summaries:
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            for trial in study.get_trials(deepcopy=False):
                reports = trial.intermediate_values
                if not reports:
                    continue
                if trial.state != optuna.trial.TrialState.COMPLETE:
                    cut["failed" if trial.state.name == "FAIL" else trial.state.name.lower()] += 1
                    continue
                values: list[float | None] = [float(reports[step]) for step in sorted(reports)]
                name = str(trial.number) if len(summaries) == 1 else f"{summary.study_name}/{trial.number}"
                curves[name] = {VALUE: values}
    except Exception as error:  # Optuna's storage errors have no common base: each is named in the message
        reason = f"not a readable Optuna storage ({type(error).__name__}: {error})"
        raise FormatError(path, None, None, reason) from None
    left = ", ".join(f"{count} {state}" for state, count in sorted(cut.items()))
    if not curves:
        reason = f"no complete trial reported a value (trial.report(value, step)){f'; left out: {left}' if cut else ''}"
        raise FormatError(path, None, None, reason)
    if cut:
        warnings.warn(
            f"{path}: {sum(cut.values())} trial(s) left out as not complete ({left}): their reports end where they "
            "were cut, with no epochs left to save (to learn a stopping rule, record a sweep run without pruning: "
            "optuna.pruners.NopPruner())",
            stacklevel=2,
        )
    return curves
