"""Keras 3 binding: ``EarlyStoppingCallback``, a drop-in for ``keras.callbacks.EarlyStopping``.

All decisions are the Monitor's; this callback only reads the logs, keeps the
best weights, sets ``model.stop_training``, applies learning-rate changes and
restores weights at the end of training. It works on any Keras 3 backend.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import operator
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from earlystop_core import Monitor, StateError, infer_mode
from earlystop_core._json import float_to_json

from ._checks import checked_lr, missing_rates

__all__ = ["EarlyStoppingCallback"]

log = logging.getLogger(__name__)


class _Attribute:
    """One of Keras's public attributes on the callback, by its own name (read by `read`)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, callback: EarlyStoppingCallback | None, owner: type | None = None) -> Any:
        return self if callback is None else self.read(callback)

    def read(self, callback: EarlyStoppingCallback) -> Any:
        raise NotImplementedError

    def own(self, callback: EarlyStoppingCallback) -> Any:
        """The Monitor's value of the attribute (None while the Monitor waits for the model's metrics)."""
        return None if callback._monitor is None else getattr(callback._monitor, self.name)


class _Setting(_Attribute):
    """A Keras setting (``cb.patience``...): read from the callback's Monitor arguments; assigning one rebuilds
    the Monitor with it (validated, its progress carried over), so it takes effect from the next epoch."""

    def read(self, callback: EarlyStoppingCallback) -> Any:
        return callback._arguments[self.name]

    def __set__(self, callback: EarlyStoppingCallback, value: Any) -> None:
        callback._reconfigure(**{self.name: value})


class _Progress(_Attribute):
    """Keras's ``best`` and ``wait``: the Monitor's, or the value assigned since its last epoch, which the next
    ``on_epoch_end`` hands to the Monitor before deciding (a new fit forgets it, as Keras's reset does)."""

    def read(self, callback: EarlyStoppingCallback) -> Any:
        if self.name in callback._pending:
            return callback._pending[self.name]
        if callback._monitor is None:  # Keras's values before any epoch
            return None if self.name == "best" else 0
        return self.own(callback)

    def __set__(self, callback: EarlyStoppingCallback, value: Any) -> None:
        callback._pending[self.name] = value


class _Report(_Attribute):
    """Keras's ``best_epoch`` and ``stopped_epoch`` (0 when none): the Monitor's, or the value assigned while
    the Monitor's own has not changed since. Keras only reports them; so does an assigned one."""

    def read(self, callback: EarlyStoppingCallback) -> Any:
        own = self.own(callback)
        assigned = callback._reports.get(self.name)
        if assigned is not None and assigned[1] == own:
            return assigned[0]
        return own or 0

    def __set__(self, callback: EarlyStoppingCallback, value: Any) -> None:
        callback._reports[self.name] = (value, self.own(callback))


class EarlyStoppingCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop training when a monitored metric stops improving, as Keras's ``EarlyStopping`` does.

    Pass a [`Monitor`][earlystop_core.Monitor], or exactly the keyword arguments
    of ``keras.callbacks.EarlyStopping`` (the same epochs run and the same
    restored weights), plus any other Monitor option (``stopping_threshold``,
    ``rule``, ``plateau``...). Best weights come back at the end of training
    however it ends: an early stop, the last epoch, or another callback.
    Differences from Keras: a NaN or infinite metric stops training
    (``check_finite=False`` for Keras's rule), an unknown ``mode`` is an error
    (Keras warns and uses ``"auto"``), and ``mode="auto"`` also understands
    names such as ``val_f1`` or ``val_auc``.

    Keras's attributes are here with Keras's meaning: ``monitor`` (the metric
    name), ``mode``, ``min_delta``, ``patience``, ``baseline``,
    ``restore_best_weights``, ``start_from_epoch``, ``verbose``, ``monitor_op``,
    ``best``, ``wait``, ``best_epoch``, ``stopped_epoch`` and ``best_weights``.
    Assigning a setting rebuilds the Monitor with it (checked at once; during
    training the progress carries over), so it takes effect from the next
    epoch; an assigned ``best`` or ``wait`` reaches the Monitor at the next
    epoch end. The Monitor making the decisions is `core`.

    Examples:
        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> callback = EarlyStoppingCallback(monitor="loss", patience=1, restore_best_weights=True)
        >>> history = model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=3, callbacks=[callback], verbose=0)
        >>> callback.monitor, callback.core.best_epoch is not None
        ('loss', True)
    """

    monitor = _Setting()
    min_delta = _Setting()
    patience = _Setting()
    mode = _Setting()
    baseline = _Setting()
    restore_best_weights = _Setting()
    start_from_epoch = _Setting()
    best = _Progress()
    wait = _Progress()
    best_epoch = _Report()
    stopped_epoch = _Report()

    def __init__(
        self,
        monitor: str | Monitor = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        **options: Any,
    ) -> None:
        super().__init__()
        self.verbose = verbose
        self.best_weights: Any = None
        self._stop_asked_restore = False
        self._resume_from: dict[str, Any] | None = None
        self._pending: dict[str, Any] = {}
        self._reports: dict[str, tuple[Any, Any]] = {}
        self._resolved_mode: str | None = None  # the direction the model's metrics gave for an unknown name
        self._training = False  # between on_train_begin and on_train_end
        if isinstance(monitor, Monitor):
            given = {"min_delta": min_delta, "patience": patience, "mode": mode, "baseline": baseline}
            given.update(restore_best_weights=restore_best_weights, start_from_epoch=start_from_epoch, **options)
            defaults = {"min_delta": 0, "patience": 0, "mode": "auto", "baseline": None}
            defaults.update(restore_best_weights=False, start_from_epoch=0)
            extra = sorted(name for name, value in given.items() if defaults.get(name, object()) != value)
            if extra:
                raise TypeError(f"pass the settings to the Monitor, not beside it: {', '.join(extra)}")
            self._monitor: Monitor | None = monitor
            self._arguments: dict[str, Any] = _arguments_of(monitor)
            return
        # Keras warns and skips an epoch without the metric; so does the drop-in.
        options.setdefault("on_missing", "skip")
        self._arguments = dict(
            monitor=monitor,
            min_delta=min_delta,
            patience=patience,
            mode=mode,
            baseline=baseline,
            restore_best_weights=restore_best_weights,
            start_from_epoch=start_from_epoch,
            **options,
        )
        self._monitor = self._build(self._arguments)

    @property
    def core(self) -> Monitor:
        """The Monitor making the decisions (built at train begin when the mode comes from the model)."""
        if self._monitor is None:
            raise RuntimeError("the Monitor is built when training begins (mode='auto' asks the model's metrics)")
        return self._monitor

    @property
    def monitor_op(self) -> Any:
        """``keras.ops.less`` or ``keras.ops.greater``, as in Keras (None while the direction is not known yet)."""
        if self._monitor is None:
            return None
        return keras.ops.less if self._monitor.mode == "min" else keras.ops.greater

    @monitor_op.setter
    def monitor_op(self, op: Any) -> None:
        mode = next((mode for mode, ops in _COMPARISONS.items() if any(op is known for known in ops)), None)
        if mode is None:
            raise TypeError(
                f"monitor_op can be keras.ops.less (mode='min') or keras.ops.greater (mode='max'), got {op!r}; "
                "another comparison is a rule: Monitor(rule=...)"
            )
        self._reconfigure(mode=mode)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._monitor is None:
            self._resolved_mode = self._mode_from_model(self._arguments)
            self._monitor = Monitor(**{**self._arguments, "mode": self._resolved_mode})
        resume = self._resume_from
        if resume is not None:  # a state loaded for this fit: checked again (the model may be new), then applied
            _check_monitor_state(self._monitor, resume["monitor"])
            _check_weights(resume["best_weights"], self.model.get_weights())
        self._monitor.reset()
        self.best_weights = None
        self._stop_asked_restore = False
        self._pending.clear()
        self._reports.clear()
        self._training = True
        if resume is not None:
            self._monitor.load_state_dict(resume["monitor"])
            self.best_weights = resume["best_weights"]
            self._resume_from = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        monitor = self.core
        if self._pending:
            self._apply_pending(monitor)
        logs = logs or {}
        lr = None
        if monitor.plateau is not None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["learning_rate"] = lr  # as Keras's ReduceLROnPlateau logs it, for the History
        # All or nothing: if the weights cannot be copied (out of memory) or the rate set, the Monitor
        # goes back to before this epoch, so it never names a best epoch whose weights were not kept.
        undo = monitor.state_dict() if monitor.restore_best_weights or monitor.plateau is not None else None
        rates = self._rates(monitor, logs)
        decision = monitor.update({**logs, **rates} if rates else logs, epoch=epoch, lr=lr)
        try:
            best = self.model.get_weights() if decision.improved and monitor.restore_best_weights else None
            if decision.lr is not None and decision.lr != lr:
                self.model.optimizer.learning_rate = checked_lr(decision.lr)
                self._say(f"Epoch {epoch + 1}: learning rate set to {decision.lr:g}.")
        except BaseException:
            if undo is not None:
                monitor.load_state_dict(undo)
            raise
        if best is not None:
            self.best_weights = best
        if decision.value is None and not decision.should_stop:
            warnings.warn(f"{decision.monitor} is not in the logs; available: {', '.join(logs)}", stacklevel=2)
        if decision.should_stop:
            self.model.stop_training = True
            self._stop_asked_restore = decision.restore
            log.info("early stopping: %s", decision.message)

    def _rates(self, monitor: Monitor, logs: Mapping[str, Any]) -> dict[str, float]:
        """The optimizer's learning rate under each name the rule reads as one and the logs lack (a learned
        policy's ``lr``), so that the policy sees the schedule: the rate of the epoch that just ended, as a
        scheduler callback set it or a ``LearningRateSchedule`` gives it. The logs themselves are left alone."""
        return missing_rates(
            monitor.rule, logs, lambda: float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._training = False
        final = self.core.finish()
        if self.core.stopped_epoch is not None or self.stopped_epoch:
            self._say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if (self._stop_asked_restore or final.restore) and self.best_weights is not None:
            self._say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state (strict JSON) and the kept best weights (numpy arrays), for checkpoints.

        Resume with `load_state_dict` before ``model.fit(..., initial_epoch=N)``.
        """
        return {"monitor": self.core.state_dict(), "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict` in the next ``fit`` (applied right after its reset).

        The state is checked now: the monitor's part against this callback's
        Monitor (loaded into a copy of it), the best weights against the
        model's (their number, shapes and dtypes) when the callback has a
        model. What cannot be checked yet (a Monitor built when training
        begins, a model not set) is checked when ``fit`` begins, before
        anything changes.

        Raises:
            StateError: The state is not this callback's, or does not fit its Monitor or model.
        """
        if not isinstance(state, Mapping) or set(state) != {"monitor", "best_weights"}:
            raise StateError("a saved EarlyStoppingCallback state is the dict from state_dict()")
        best = state["best_weights"]
        if best is not None and (
            not isinstance(best, (list, tuple)) or not all(isinstance(w, np.ndarray) for w in best)
        ):
            raise StateError(f"'best_weights' must be None or a list of numpy arrays, got {type(best).__name__}")
        if self._monitor is not None:
            _check_monitor_state(self._monitor, state["monitor"])
        if self.model is not None:
            _check_weights(best, self.model.get_weights())
        self._resume_from = {"monitor": state["monitor"], "best_weights": None if best is None else list(best)}

    def _reconfigure(self, **changes: Any) -> None:
        """Rebuild the Monitor with changed arguments, carrying its progress over; nothing changes if it raises."""
        arguments = {**self._arguments, **changes}
        if "monitor" in changes or "mode" in changes:
            self._resolved_mode = None
        names = ", ".join(sorted(changes))
        if self._training and arguments["restore_best_weights"] and not self._arguments["restore_best_weights"]:
            raise ValueError(
                "cannot set restore_best_weights during training: the best epoch's weights were not kept; "
                "set it before or between fits"
            )
        rebuilt = self._build(arguments)
        current = self._monitor
        if rebuilt is not None and current is not None and current.epoch:  # the progress so far carries over
            progress = current.state_dict()
            progress["config"] = rebuilt.config.to_json()
            del progress["checksum"]  # edited here: the fields themselves are checked as the state loads
            try:
                rebuilt.load_state_dict(progress)
            except StateError as error:
                if self._training:  # between fits, the next one starts afresh anyway
                    raise ValueError(
                        f"cannot set {names} during training, after epoch {current.epoch - 1}: {error}"
                    ) from None
        elif rebuilt is None and self._training:
            raise ValueError(
                f"cannot set {names} during training: the direction of {arguments['monitor']!r} is unknown; "
                "give mode='min' or mode='max'"
            )
        self._arguments, self._monitor = arguments, rebuilt

    def _build(self, arguments: dict[str, Any]) -> Monitor | None:
        """The Monitor of these arguments; None while ``mode="auto"`` waits for the model's metrics."""
        if arguments["mode"] == "auto" and not _nameable(arguments["monitor"]):
            if self._resolved_mode is not None:
                return Monitor(**{**arguments, "mode": self._resolved_mode})
            Monitor(**{**arguments, "mode": "min"})  # every other argument is checked now
            return None
        return Monitor(**arguments)

    def _apply_pending(self, monitor: Monitor) -> None:
        """Hand an assigned ``best`` or ``wait`` to the Monitor (as its loaded state is checked), then forget it."""
        pending, self._pending = self._pending, {}
        state = monitor.state_dict()
        fields = state["state"]
        if "wait" in pending:
            fields["wait"] = pending["wait"]
        if "best" in pending:
            best = pending["best"]
            if best is None:  # Keras's meaning: the next value is an improvement
                fields.update(best=None, best_epoch=None, tracked=None, smoothed=None, kept_by=None)
            elif fields["best_epoch"] is None:
                raise ValueError(
                    f"cb.best = {best!r} was assigned before any epoch was monitored: there is no best epoch to "
                    "give it; pass baseline= to set a value to beat"
                )
            else:
                fields.update(best=float_to_json(float(best)), tracked=float_to_json(float(best)))
        del state["checksum"]  # edited here: the fields themselves are checked as the state loads
        try:
            monitor.load_state_dict(state)
        except StateError as error:
            raise ValueError(f"cannot apply the assigned {' and '.join(sorted(pending))}: {error}") from None

    def _say(self, line: str) -> None:
        log.info(line)
        if self.verbose > 0:
            print(line)  # what Keras's io_utils.print_msg does outside interactive logging

    def _mode_from_model(self, arguments: dict[str, Any]) -> str:
        """Keras's own way for names we cannot read: ask the compiled metrics for their direction."""
        name = str(arguments["monitor"]).removeprefix("val_")
        for metric in _flat_metrics(getattr(self.model, "metrics", [])):
            if getattr(metric, "name", None) == name and hasattr(metric, "_direction"):
                return "max" if metric._direction == "up" else "min"
        Monitor(**arguments)  # raises the Monitor's own message, naming both fixes
        raise AssertionError("unreachable")  # pragma: no cover


#: The comparisons Keras's ``monitor_op`` may be set to, by the mode each means.
_COMPARISONS = {"min": (keras.ops.less, np.less, operator.lt), "max": (keras.ops.greater, np.greater, operator.gt)}


def _arguments_of(monitor: Monitor) -> dict[str, Any]:
    """The keyword arguments that build a Monitor configured as ``monitor``."""
    config = monitor.config
    arguments = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    modes = arguments.pop("metric_modes")
    if modes is not None:  # a weighted monitor: its metrics' directions
        arguments["mode"] = dict(modes)
    if arguments["keep_best_mode"] is None:
        arguments["keep_best_mode"] = "auto"
    return arguments


def _check_monitor_state(monitor: Monitor, state: Any) -> None:
    """Raise ``StateError`` unless ``state`` loads into ``monitor`` (tried on a copy: ``monitor`` is untouched)."""
    copy.deepcopy(monitor).load_state_dict(state)


def _check_weights(best: Sequence[Any] | None, live: list[Any]) -> None:
    """Raise ``StateError`` unless ``best`` is None or has the number, shapes and dtypes of the ``live`` weights."""
    if best is None:
        return
    if len(best) != len(live):
        raise StateError(f"the saved best weights are {len(best)} arrays; this model has {len(live)}")
    for index, (saved, own) in enumerate(zip(best, live, strict=True)):
        if saved.shape != own.shape or saved.dtype != own.dtype:
            raise StateError(
                f"the saved best weights do not fit this model: array {index} is {saved.dtype} of shape "
                f"{saved.shape} there, {own.dtype} of shape {own.shape} here"
            )


def _nameable(monitor: Any) -> bool:
    try:
        infer_mode(monitor)
    except (ValueError, AttributeError):
        return not isinstance(monitor, str)  # not a name: let the Monitor raise its TypeError now
    return True


def _flat_metrics(metrics: list[Any]) -> list[Any]:
    flat = []
    for metric in metrics:
        inner = getattr(metric, "metrics", None)
        flat.extend(_flat_metrics(inner) if isinstance(inner, list) and inner is not metrics else [metric])
    return flat
