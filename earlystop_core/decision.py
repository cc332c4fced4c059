"""What a monitor says after each epoch: a small immutable value.

The human-readable message is built only when someone reads it, so that
``Monitor.update`` stays a few hundred nanoseconds of work.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class StopReason(enum.Enum):
    """Why training was (or was not) told to stop.

    The first five members are named as Lightning's ``EarlyStoppingReason``
    members (Lightning's values are ints; ours are the lower-case names).
    """

    NOT_STOPPED = "not_stopped"
    PATIENCE_EXHAUSTED = "patience_exhausted"
    STOPPING_THRESHOLD = "stopping_threshold"
    DIVERGENCE_THRESHOLD = "divergence_threshold"
    NON_FINITE_METRIC = "non_finite_metric"
    #: A stopping rule other than patience (Prechelt's GL/PQ/UP, a trend test...).
    CRITERION_MET = "criterion_met"
    #: The training time allowed is spent ([`TimeBudget`][earlystop_core.TimeBudget]).
    TIME_BUDGET = "time_budget"


class Decision(NamedTuple):
    """The outcome of one ``Monitor.update`` (or of ``Monitor.finish``).

    Attributes:
        should_stop: Stop training after this epoch.
        improved: This epoch is the new best: snapshot the weights now.
        restore: Load the best snapshot into the model now.
        reason: Why training stops (``StopReason.NOT_STOPPED`` otherwise).
        epoch: The epoch this decision is about (0-based, as Keras passes it).
        value: The monitored value seen this epoch (None when it was skipped).
        best: The best value so far (None before the first monitored epoch).
        best_epoch: The epoch of ``best`` (None before the first).
        wait: Epochs counted without improvement, as Keras counts them.
        monitor: The name of the monitored metric.
        limit: The patience or threshold that ended training, when it did.
        final: This is the decision of ``Monitor.finish``, at the end of training.
        detail: What the stopping rule that fired says about it, when a rule stopped training.
        lr: The learning rate to use from the next epoch on, when the monitor
            coordinates a learning-rate schedule (None otherwise).
        kept_by: With ``keep_best_by``, the metric that picks the kept epoch:
            ``improved``, ``best`` and ``best_epoch`` then describe the epoch
            kept by it (``best`` is the monitored value there), while ``wait``
            counts from the monitored metric's own best.

    Examples:
        >>> from earlystop_core import Monitor
        >>> m = Monitor(monitor="val_loss", patience=1)
        >>> m.update({"val_loss": 0.5}).improved
        True
        >>> d = m.update({"val_loss": 0.6})
        >>> d.should_stop, d.reason.name
        (True, 'PATIENCE_EXHAUSTED')
        >>> d.message
        'epoch 1: val_loss did not improve for 1 epoch(s) (patience 1); best 0.5 at epoch 0'
    """

    should_stop: bool
    improved: bool
    restore: bool
    reason: StopReason
    epoch: int
    value: float | None
    best: float | None
    best_epoch: int | None
    wait: int
    monitor: str
    limit: float | None = None
    final: bool = False
    detail: str | None = None
    lr: float | None = None
    kept_by: str | None = None

    @property
    def message(self) -> str:
        """A sentence saying what happened this epoch, built on demand."""
        return _explain(self)

    def __str__(self) -> str:
        return self.message

    def __bool__(self) -> bool:
        # A tuple is always true: `if monitor.update(logs): break` would stop at once.
        raise TypeError(
            "a Decision has no truth value; test decision.should_stop (stop training), "
            "decision.improved (snapshot the weights) or decision.restore (load the best weights)"
        )


_THRESHOLDS = {
    StopReason.STOPPING_THRESHOLD: ("stopping_threshold", "goal reached, stopping"),
    StopReason.DIVERGENCE_THRESHOLD: ("divergence_threshold", "diverging, stopping"),
}


def _explain(d: Decision) -> str:
    head = f"epoch {d.epoch}: "
    if d.best_epoch is None:
        best = "no best yet"
    elif d.kept_by is None:
        best = f"best {d.best:.6g} at epoch {d.best_epoch}"
    else:
        best = f"kept epoch {d.best_epoch}, the best by {d.kept_by} ({d.monitor}={d.best:.6g})"
    restore = f"; restoring the weights of epoch {d.best_epoch}" if d.restore else ""
    if d.reason is StopReason.NON_FINITE_METRIC:
        return f"{head}{d.monitor} is {d.value}, not finite; stopping ({best}){restore}"
    if d.reason in _THRESHOLDS:
        setting, outcome = _THRESHOLDS[d.reason]
        side = "<" if d.value is not None and d.limit is not None and d.value < d.limit else ">"
        return f"{head}{d.monitor}={d.value:.6g} {side} {setting} {d.limit:g}; {outcome} ({best}){restore}"
    if d.detail is not None and d.should_stop:
        return f"{head}{d.monitor} stops: {d.detail}; {best}{restore}"
    note = "" if d.detail is None else f"; {d.detail}"
    if d.reason is StopReason.PATIENCE_EXHAUSTED:
        return f"{head}{d.monitor} did not improve for {d.wait} epoch(s) (patience {d.limit:g}); {best}{restore}"
    if d.final:
        return f"training ended after epoch {d.epoch}; {best}{restore}"
    if d.value is None:
        return f"{head}{d.monitor} not logged this epoch, skipped ({best}){restore}"
    if d.improved and d.kept_by is not None:
        return f"{head}the best epoch by {d.kept_by} so far, kept ({d.monitor}={d.value:.6g}){note}"
    if d.improved:
        return f"{head}{d.monitor}={d.value:.6g} is the new best{note}"
    return f"{head}{d.monitor}={d.value:.6g}, no improvement for {d.wait} epoch(s); {best}{note}"
