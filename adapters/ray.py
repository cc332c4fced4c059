"""Ray Tune binding: ``MonitorStopper``, a Tune stopper keeping one Monitor per trial.

Ray Tune calls the stopper, in its driver, with each result every trial
reports; each trial gets its own Monitor (keyed by trial id) and stops when it
says stop. The stopper is plain data (its Monitors and the values they read),
so Tune saves it with the experiment and ``Tuner.restore`` brings it back.
"""

from __future__ import annotations

import copy
from typing import Any

from ray import tune

from earlystop_core import Monitor
from earlystop_core._validate import check_choice

__all__ = ["MonitorStopper"]


class MonitorStopper(tune.Stopper):
    """Stop each Ray Tune trial when its own [`Monitor`][earlystop_core.Monitor] says stop.

    Args:
        metric: The reported metric to watch (or pass a ready ``Monitor`` as ``monitor``).
        monitor: A Monitor to copy for each trial, instead of ``metric`` and ``options``.
        stop_all: ``"never"`` (the default: only trials stop) or ``"all_stopped"`` (end the
            experiment once every trial seen has been stopped by its Monitor).
        **options: The Monitor's arguments (``mode``, ``patience``, ``min_delta``, ``policy=``...).

    Patience counts reported results. A result without the metric is skipped, as
    Keras skips an epoch without it (``on_missing="skip"`` unless given). A NaN
    stops the trial (``check_finite``).

    A trial restored from a checkpoint (after a failure, or by ``Tuner.restore``)
    reports again from the iteration after it; its ``training_iteration`` says
    so, and its Monitor is rebuilt from the values reported up to there, so no
    result counts twice. The stopper keeps, per trial, the values its Monitor
    reads (a few numbers per result) for that.

    Examples:
        >>> stopper = MonitorStopper("val_loss", mode="min", patience=1)
        >>> [stopper("trial_1", {"val_loss": loss}) for loss in (1.0, 0.8, 0.9)]
        [False, False, True]
        >>> stopper.monitor_of("trial_1").best_epoch
        1
    """

    def __init__(
        self,
        metric: str | None = None,
        *,
        monitor: Monitor | None = None,
        stop_all: str = "never",
        **options: Any,
    ) -> None:
        if (metric is None) == (monitor is None):
            raise TypeError("give the metric to watch, or a Monitor as monitor=, one of them")
        if monitor is not None and options:
            raise TypeError(f"pass the settings to the Monitor, not beside it: {', '.join(sorted(options))}")
        check_choice("stop_all", stop_all, ("never", "all_stopped"))
        template = monitor if monitor is not None else Monitor(str(metric), **{"on_missing": "skip", **options})
        self._template = copy.deepcopy(template)
        self._template.reset()
        self._monitors: dict[str, Monitor] = {}
        self._reported: dict[str, list[dict[str, Any]]] = {}  # per trial, what its Monitor read of each result
        self._stop_all = stop_all

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        reported = self._reported.get(trial_id, [])
        monitor = self._monitors.get(trial_id)
        iteration = result.get("training_iteration")
        if isinstance(iteration, int) and 1 <= iteration <= len(reported):
            # Restored from the checkpoint of report `iteration - 1`: what came after it never happened.
            reported = reported[: iteration - 1]
            monitor = self._replayed(reported)
        elif monitor is None:
            monitor = copy.deepcopy(self._template)
        if monitor.stopped_epoch is None:
            should_stop = monitor.update(result).should_stop  # a value the Monitor refuses raises: nothing kept
            reported.append({name: result[name] for name in monitor.metrics if name in result})
        else:
            should_stop = True  # a result that arrived after the stop: the trial is stopping
        self._monitors[trial_id], self._reported[trial_id] = monitor, reported
        return bool(should_stop)

    def stop_all(self) -> bool:
        if self._stop_all == "never" or not self._monitors:
            return False
        return all(monitor.stopped_epoch is not None for monitor in self._monitors.values())

    def _replayed(self, reported: list[dict[str, Any]]) -> Monitor:
        monitor = copy.deepcopy(self._template)
        for logs in reported:
            monitor.update(logs)
        return monitor

    def monitor_of(self, trial_id: str) -> Monitor:
        """The Monitor of a trial (its best epoch, stop reason...); ``KeyError`` for a trial not seen."""
        return self._monitors[trial_id]
