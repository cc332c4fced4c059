"""``Monitor``: one dict of metrics per epoch in, one decision out.

The patience rule is Keras 3's ``EarlyStopping`` step for step, and the
guards (non-finite values, stopping and divergence thresholds) are Lightning's,
checked in Lightning's order. Values are compared as the peers compare them,
in float32 (see ``_float32``). Internally every value is multiplied by a sign
(+1 to minimise, -1 to maximise) so there is one code path: lower is better.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar, overload

from earlystop_core._float32 import less32
from earlystop_core._values import coerce_metric
from earlystop_core.config import MonitorConfig
from earlystop_core.decision import Decision, StopReason
from earlystop_core.errors import MissingMetricError
from earlystop_core.state import MonitorState, dump_state, load_state

T = TypeVar("T")
_new_tuple = tuple.__new__
_NOT_STOPPED = StopReason.NOT_STOPPED
_PATIENCE = StopReason.PATIENCE_EXHAUSTED
_THRESHOLD = StopReason.STOPPING_THRESHOLD
_DIVERGENCE = StopReason.DIVERGENCE_THRESHOLD
_NON_FINITE = StopReason.NON_FINITE_METRIC


class _Setting(Generic[T]):
    """A read-only view of one field of the monitor's configuration."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, monitor: None, owner: type) -> _Setting[T]: ...
    @overload
    def __get__(self, monitor: Monitor, owner: type) -> T: ...
    def __get__(self, monitor: Monitor | None, owner: type) -> T | _Setting[T]:
        if monitor is None:
            return self
        value: T = getattr(monitor.config, self.name)
        return value

    def __set__(self, monitor: Monitor, value: object) -> None:
        raise AttributeError(
            f"{self.name!r} is fixed when the Monitor is built; build a new Monitor with {self.name}={value!r} instead"
        )


class Monitor:
    """An early-stopping state machine: call :meth:`update` once per epoch.

    Arguments are those of ``keras.callbacks.EarlyStopping`` plus Lightning's
    guards, so moving over is a change of import. Stop and best epochs are
    identical to Keras 3's ``EarlyStopping`` on finite values, and the guards
    stop at the epoch Lightning's ``EarlyStopping`` stops.

    Args:
        monitor: Name of the metric to watch in each epoch's logs.
        mode: ``"min"``, ``"max"``, or ``"auto"`` to infer it from the name.
        patience: Epochs without improvement before stopping (0 acts as 1,
            as in Keras).
        min_delta: Smallest change that counts as an improvement (its sign is
            ignored, as in Keras).
        baseline: A value to beat: until it is beaten, improvements do not
            reset the patience count.
        start_from_epoch: Epochs before this one are not monitored at all.
        restore_best_weights: Ask (through ``Decision.restore``) for the best
            weights back when training ends, by a stop or otherwise.
        stopping_threshold: Stop as soon as the metric is better than this.
        divergence_threshold: Stop as soon as the metric is worse than this.
        check_finite: Stop on a NaN or infinite value. ``False`` applies
            Keras's rule instead: such a value never improves (and a NaN
            first value becomes the best, after which nothing improves).
        on_missing: ``"raise"`` (a :class:`MissingMetricError`) or ``"skip"``
            when the metric is absent from the logs; a skipped epoch still
            advances the epoch counter.

    Example:
        >>> m = Monitor(monitor="val_loss", patience=2, restore_best_weights=True)
        >>> for loss in [0.9, 0.7, 0.8, 0.75]:
        ...     decision = m.update({"val_loss": loss})
        >>> decision.should_stop, decision.restore, m.best_epoch, m.best
        (True, True, 1, 0.7)
    """

    __slots__ = (
        "_baseline",
        "_best",
        "_best_epoch",
        "_best_signed",
        "_check_finite",
        "_delta",
        "_divergence",
        "_goal",
        "_key",
        "_next_epoch",
        "_patience",
        "_restore",
        "_restore_requested",
        "_sign",
        "_start",
        "_stop_reason",
        "_stopped_epoch",
        "_wait",
        "config",
    )

    monitor: _Setting[str] = _Setting()
    mode: _Setting[str] = _Setting()
    patience: _Setting[int] = _Setting()
    min_delta: _Setting[float] = _Setting()
    baseline: _Setting[float | None] = _Setting()
    start_from_epoch: _Setting[int] = _Setting()
    restore_best_weights: _Setting[bool] = _Setting()
    stopping_threshold: _Setting[float | None] = _Setting()
    divergence_threshold: _Setting[float | None] = _Setting()
    check_finite: _Setting[bool] = _Setting()
    on_missing: _Setting[str] = _Setting()

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        restore_best_weights: bool = False,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_finite: bool = True,
        on_missing: str = "raise",
    ) -> None:
        self.config = MonitorConfig.build(
            monitor=monitor,
            mode=mode,
            patience=patience,
            min_delta=min_delta,
            baseline=baseline,
            start_from_epoch=start_from_epoch,
            restore_best_weights=restore_best_weights,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_finite=check_finite,
            on_missing=on_missing,
        )
        config = self.config
        # The hot path reads plain slots, not the frozen config.
        sign = 1.0 if config.mode == "min" else -1.0
        self._sign = sign
        self._key = config.monitor
        self._patience = config.patience
        self._delta = config.min_delta
        self._start = config.start_from_epoch
        self._restore = config.restore_best_weights
        self._check_finite = config.check_finite
        self._baseline = _signed(config.baseline, sign)
        self._goal = _signed(config.stopping_threshold, sign)
        self._divergence = _signed(config.divergence_threshold, sign)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far, as at construction (reuse across runs).

        Example:
            >>> m = Monitor(patience=0)
            >>> _ = m.update({"val_loss": 1.0}); _ = m.update({"val_loss": 2.0})
            >>> m.reset(); m.best is None and m.wait == 0
            True
        """
        self._next_epoch = 0
        self._best: float | None = None
        self._best_signed: float | None = None
        self._best_epoch: int | None = None
        self._wait = 0
        self._stopped_epoch: int | None = None
        self._stop_reason = _NOT_STOPPED
        self._restore_requested = False

    def update(self, logs: Mapping[str, Any], epoch: int | None = None) -> Decision:
        """Take one epoch's metrics and decide: continue, snapshot, stop, restore.

        Args:
            logs: The metrics of this epoch, by name.
            epoch: The epoch's 0-based index; by default one more than the
                last (0 at first), so pass it only when resuming or when the
                loop starts at ``initial_epoch``.

        Returns:
            The :class:`Decision` for this epoch.

        Raises:
            MissingMetricError: The metric is absent and ``on_missing="raise"``.
            TypeError: ``logs`` is not a mapping, or the value is not a number.

        Example:
            >>> m = Monitor(monitor="val_accuracy", patience=1)
            >>> m.update({"val_accuracy": 0.8}, epoch=10).improved
            True
            >>> m.update({"val_accuracy": 0.8}).epoch
            11
        """
        if epoch is None:
            epoch = self._next_epoch
        elif type(epoch) is not int:
            epoch = _check_epoch(epoch)
        elif epoch < 0:
            _check_epoch(epoch)
        self._next_epoch = epoch + 1
        key = self._key
        try:
            raw = logs[key]
        except KeyError:
            return self._missing(logs, epoch)
        except TypeError:
            if isinstance(logs, Mapping):
                raise
            raise TypeError(
                f"logs must be a mapping of metric names to values, got {type(logs).__name__}; "
                f"pass e.g. {{{key!r}: value}}"
            ) from None
        x = raw if type(raw) is float else coerce_metric(key, raw)
        s = x * self._sign
        self._restore_requested = False

        if s - s != 0.0 and self._check_finite:  # NaN and +-inf: x - x is NaN
            return self._stop(epoch, x, _NON_FINITE, False, None)
        goal = self._goal
        reached = goal is not None and less32(s, goal)
        if not reached:
            limit = self._divergence
            if limit is not None and less32(limit, s):
                return self._stop(epoch, x, _DIVERGENCE, False, self.config.divergence_threshold)

        improved = False
        if epoch >= self._start:
            self._wait += 1
            best = self._best_signed
            shifted = s + self._delta
            # The float64 test first: most epochs do not improve, and a call costs.
            if best is None or (shifted < best and less32(shifted, best)):
                self._best = x
                self._best_signed = s
                self._best_epoch = epoch
                improved = True
                baseline = self._baseline
                if baseline is None or less32(shifted, baseline):
                    self._wait = 0
            elif not reached and self._wait >= self._patience and epoch > 0:
                return self._stop(epoch, x, _PATIENCE, False, self._patience)
        if reached:
            return self._stop(epoch, x, _THRESHOLD, improved, self.config.stopping_threshold)
        # tuple.__new__ skips NamedTuple's Python-level __new__: a third of the cost.
        return _new_tuple(
            Decision,
            (
                False,
                improved,
                False,
                _NOT_STOPPED,
                epoch,
                x,
                self._best,
                self._best_epoch,
                self._wait,
                key,
                None,
                False,
            ),
        )

    def finish(self) -> Decision:
        """Say that training has ended; the decision says whether to restore.

        ``restore`` is set when ``restore_best_weights`` is on, a best epoch
        exists and no stop decision has already asked for the restore; so it
        also covers training that ran to its last epoch or was stopped by
        something else.

        Example:
            >>> m = Monitor(patience=5, restore_best_weights=True)
            >>> for loss in [0.5, 0.4, 0.45]:
            ...     _ = m.update({"val_loss": loss})
            >>> d = m.finish()
            >>> d.restore, d.best_epoch
            (True, 1)
        """
        restore = self._restore and self._best_epoch is not None and not self._restore_requested
        self._restore_requested = True
        return Decision(
            False,
            False,
            restore,
            _NOT_STOPPED,
            self._next_epoch - 1,
            None,
            self._best,
            self._best_epoch,
            self._wait,
            self._key,
            None,
            True,
        )

    def _stop(self, epoch: int, value: float, reason: StopReason, improved: bool, limit: float | None) -> Decision:
        self._stopped_epoch = epoch
        self._stop_reason = reason
        restore = self._restore and self._best_epoch is not None
        self._restore_requested = restore
        return Decision(
            True, improved, restore, reason, epoch, value, self._best, self._best_epoch, self._wait, self._key, limit
        )

    def _missing(self, logs: Mapping[str, Any], epoch: int) -> Decision:
        if self.config.on_missing == "raise":
            raise MissingMetricError(self._key, logs.keys())
        return Decision(
            False, False, False, _NOT_STOPPED, epoch, None, self._best, self._best_epoch, self._wait, self._key
        )

    # -- read-only state ---------------------------------------------------

    @property
    def best(self) -> float | None:
        """The best value seen (None before the first monitored epoch)."""
        return self._best

    @property
    def best_epoch(self) -> int | None:
        """The epoch of :attr:`best` (None before the first monitored epoch)."""
        return self._best_epoch

    @property
    def wait(self) -> int:
        """Epochs counted since the last reset of the patience count."""
        return self._wait

    @property
    def stopped_epoch(self) -> int | None:
        """The epoch of the last stop decision, or None."""
        return self._stopped_epoch

    @property
    def stop_reason(self) -> StopReason:
        """Why the last stop happened (``NOT_STOPPED`` if none did)."""
        return self._stop_reason

    @property
    def epoch(self) -> int:
        """The epoch the next :meth:`update` will be about, unless told otherwise."""
        return self._next_epoch

    # -- saving and resuming -----------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The whole state as strict JSON (no NaN or Infinity tokens), versioned.

        Example:
            >>> import json
            >>> m = Monitor(patience=3)
            >>> _ = m.update({"val_loss": 0.5})
            >>> resumed = Monitor(patience=3)
            >>> resumed.load_state_dict(json.loads(json.dumps(m.state_dict())))
            >>> resumed.best, resumed.epoch
            (0.5, 1)
        """
        state = MonitorState(
            next_epoch=self._next_epoch,
            best=self._best,
            best_epoch=self._best_epoch,
            wait=self._wait,
            stopped_epoch=self._stopped_epoch,
            stop_reason=self._stop_reason,
            restore_requested=self._restore_requested,
        )
        return dump_state(self.config, state)

    def load_state_dict(self, state: Mapping[str, Any] | str) -> None:
        """Continue from a :meth:`state_dict` of an identically configured monitor.

        Raises:
            StateError: The state is corrupt, of another format or version, or
                was saved by a monitor configured differently.
        """
        loaded = load_state(self.config, state)
        self._next_epoch = loaded.next_epoch
        self._best = loaded.best
        self._best_signed = _signed(loaded.best, self._sign)
        self._best_epoch = loaded.best_epoch
        self._wait = loaded.wait
        self._stopped_epoch = loaded.stopped_epoch
        self._stop_reason = loaded.stop_reason
        self._restore_requested = loaded.restore_requested

    def __repr__(self) -> str:
        c = self.config
        best = "none" if self._best_epoch is None else f"{self._best:.6g}@{self._best_epoch}"
        return (
            f"Monitor(monitor={c.monitor!r}, mode={c.mode!r}, patience={c.patience}, "
            f"min_delta={c.min_delta:g}; epoch={self._next_epoch}, best={best}, wait={self._wait}, "
            f"stop_reason={self._stop_reason.name})"
        )


def _signed(value: float | None, sign: float) -> float | None:
    return None if value is None else value * sign


def _check_epoch(epoch: Any) -> int:
    if isinstance(epoch, bool) or not hasattr(epoch, "__index__"):
        raise TypeError(f"'epoch' must be an int, got {type(epoch).__name__} ({epoch!r})")
    value = int(epoch.__index__())
    if value < 0:
        raise ValueError(f"'epoch' must be >= 0, got {value}")
    return value
