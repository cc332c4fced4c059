"""Optuna binding: ``MonitorPruner``, an Optuna pruner that decides with a Monitor.

The pruner keeps no state of its own: at each ``trial.should_prune()`` it
replays the trial's reported values (``intermediate_values``, read from the
study's storage) through a fresh Monitor, so it is correct with shared
storage and any number of worker processes.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna

from earlystop_core import Monitor

__all__ = ["MonitorPruner"]

#: The name the reported values go by in the Monitor's logs (unless a Monitor of yours names its own).
VALUE = "value"


class MonitorPruner(optuna.pruners.BasePruner):
    """Prune a trial when a [`Monitor`][earlystop_core.Monitor] fed its reported values says stop.

    Args:
        monitor: A ready Monitor (copied for each replay; its metric name and mode are used), or None to
            build one from ``options``.
        wrapped: Another pruner: the trial is pruned if either says so.
        **options: The Monitor's arguments (``patience=10``, ``min_delta``, ``policy=``, ``rule=``...).
            ``mode`` follows the study's direction unless given.

    Patience counts reports, whatever their steps. A reported NaN or infinity prunes the trial
    (``check_finite``; Optuna's ``WilcoxonPruner`` fails on NaN), and `finish` gives the
    trial its best reported value instead of its last.

    Examples:
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(pruner=MonitorPruner(patience=2))
        >>> def objective(trial):
        ...     for step, loss in enumerate([1.0, 0.8, 0.9, 0.95, 0.7]):
        ...         trial.report(loss, step)
        ...         if trial.should_prune():
        ...             raise optuna.TrialPruned()
        ...     return loss
        >>> study.optimize(objective, n_trials=1)
        >>> study.trials[0].state.name, study.trials[0].last_step
        ('PRUNED', 3)
    """

    def __init__(self, monitor: Monitor | None = None, *, wrapped: Any = None, **options: Any) -> None:
        if monitor is not None and not isinstance(monitor, Monitor):
            raise TypeError(f"'monitor' must be a Monitor or None (give its arguments as keywords), got {monitor!r}")
        if monitor is not None and not isinstance(monitor.config.monitor, str):
            raise TypeError("a trial reports one value: give a Monitor of one metric, not a weighted score")
        if monitor is not None and options:
            raise TypeError(f"pass the settings to the Monitor, not beside it: {', '.join(sorted(options))}")
        if wrapped is not None and not isinstance(wrapped, optuna.pruners.BasePruner):
            raise TypeError(f"'wrapped' must be an Optuna pruner, got {type(wrapped).__name__}")
        if monitor is None:
            Monitor(VALUE, **{"mode": "min", **options})  # every argument checked now
        self._monitor, self._options, self._wrapped = monitor, options, wrapped

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if self.replay(study, trial).stopped_epoch is not None:
            return True
        return bool(self._wrapped is not None and self._wrapped.prune(study, trial))

    def replay(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> Monitor:
        """A fresh Monitor fed the trial's reported values in step order, up to its stop if it stops."""
        monitor = self._fresh(study)
        key = str(monitor.config.monitor)
        values = trial.intermediate_values
        for step in sorted(values):
            if monitor.update({key: values[step]}).should_stop:
                break
        return monitor

    def finish(self, trial: optuna.trial.Trial, complete: bool = False) -> float:
        """End a trial the pruner stopped, keeping its best reported value, not its last.

        Records the best value and its step as the trial's user attributes ``earlystop_best_value``
        and ``earlystop_best_step``. With ``complete=True`` it returns the best value: return it from
        the objective, and the trial completes with it (samplers then see a finished trial at its
        best); otherwise it raises ``optuna.TrialPruned`` (samplers see a pruned trial).

        Raises:
            optuna.TrialPruned: Without ``complete``.
            ValueError: Nothing was reported, or no reported value was finite.
        """
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        monitor = self.replay(trial.study, frozen)
        if monitor.best is None or monitor.best_epoch is None:
            raise ValueError(f"trial {trial.number} reported no finite value: there is no best to keep")
        steps = sorted(frozen.intermediate_values)
        trial.set_user_attr("earlystop_best_value", monitor.best)
        trial.set_user_attr("earlystop_best_step", steps[monitor.best_epoch])
        if not complete:
            raise optuna.TrialPruned(f"stopped by earlystop: {monitor.stop_reason.name}")
        return float(monitor.best)

    def _fresh(self, study: optuna.study.Study) -> Monitor:
        if self._monitor is not None:
            monitor = copy.deepcopy(self._monitor)
            monitor.reset()
            return monitor
        if len(study.directions) != 1:
            raise ValueError("MonitorPruner prunes single-objective studies (Optuna prunes no multi-objective trial)")
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        return Monitor(VALUE, **{"mode": "max" if maximize else "min", **self._options})
