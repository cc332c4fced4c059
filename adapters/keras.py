"""Keras 3 binding: ``EarlyStoppingCallback``, a drop-in for ``keras.callbacks.EarlyStopping``.

All decisions are the Monitor's; this callback only reads the logs, keeps the
best weights, sets ``model.stop_training``, applies learning-rate changes and
restores weights at the end of training. It works on any Keras 3 backend.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from earlystop_core import Monitor, StateError, infer_mode

from ._checks import checked_lr

log = logging.getLogger(__name__)


class EarlyStoppingCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop training when a monitored metric stops improving, as Keras's ``EarlyStopping`` does.

    Pass a :class:`~earlystop_core.Monitor`, or exactly the keyword arguments
    of ``keras.callbacks.EarlyStopping`` (the same epochs run and the same
    restored weights), plus any other Monitor option (``stopping_threshold``,
    ``rule``, ``plateau``...). Best weights come back at the end of training
    however it ends: an early stop, the last epoch, or another callback.
    Differences from Keras: a NaN or infinite metric stops training
    (``check_finite=False`` for Keras's rule), and ``mode="auto"`` also
    understands names such as ``val_f1`` or ``val_auc``.

    Examples:
        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> callback = EarlyStoppingCallback(monitor="loss", patience=1, restore_best_weights=True)
        >>> history = model.fit(np.ones((4, 1)), np.ones((4, 1)), epochs=3, callbacks=[callback], verbose=0)
        >>> callback.monitor.best_epoch is not None
        True
    """

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
        self.best_weights: list[Any] | None = None
        self._stop_asked_restore = False
        self._resume_from: dict[str, Any] | None = None
        if isinstance(monitor, Monitor):
            given = {"min_delta": min_delta, "patience": patience, "mode": mode, "baseline": baseline}
            given.update(restore_best_weights=restore_best_weights, start_from_epoch=start_from_epoch, **options)
            defaults = {"min_delta": 0, "patience": 0, "mode": "auto", "baseline": None}
            defaults.update(restore_best_weights=False, start_from_epoch=0)
            extra = sorted(name for name, value in given.items() if defaults.get(name, object()) != value)
            if extra:
                raise TypeError(f"pass the settings to the Monitor, not beside it: {', '.join(extra)}")
            self._monitor: Monitor | None = monitor
            self._arguments: dict[str, Any] = {}
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
        self._monitor = None if mode == "auto" and not _nameable(monitor) else Monitor(**self._arguments)

    @property
    def monitor(self) -> Monitor:
        """The Monitor making the decisions (built at train begin when the mode comes from the model)."""
        if self._monitor is None:
            raise RuntimeError("the Monitor is built when training begins (mode='auto' asks the model's metrics)")
        return self._monitor

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._monitor is None:
            self._monitor = Monitor(**{**self._arguments, "mode": self._mode_from_model()})
        resume = self._resume_from
        if resume is not None:  # a state loaded for this fit: checked again (the model may be new), then applied
            _check_monitor_state(self._monitor, resume["monitor"])
            _check_weights(resume["best_weights"], self.model.get_weights())
        self._monitor.reset()
        self.best_weights = None
        self._stop_asked_restore = False
        if resume is not None:
            self._monitor.load_state_dict(resume["monitor"])
            self.best_weights = resume["best_weights"]
            self._resume_from = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        monitor = self.monitor
        logs = logs or {}
        lr = None
        if monitor.plateau is not None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["learning_rate"] = lr  # as Keras's ReduceLROnPlateau logs it, for the History
        # All or nothing: if the weights cannot be copied (out of memory) or the rate set, the Monitor
        # goes back to before this epoch, so it never names a best epoch whose weights were not kept.
        undo = monitor.state_dict() if monitor.restore_best_weights or monitor.plateau is not None else None
        decision = monitor.update(logs, epoch=epoch, lr=lr)
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

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        final = self.monitor.finish()
        stopped = self.monitor.stopped_epoch
        if stopped is not None:
            self._say(f"Epoch {stopped + 1}: early stopping")
        if (self._stop_asked_restore or final.restore) and self.best_weights is not None:
            self._say(f"Restoring model weights from the end of the best epoch: {(final.best_epoch or 0) + 1}.")
            self.model.set_weights(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state (strict JSON) and the kept best weights (numpy arrays), for checkpoints.

        Resume with :meth:`load_state_dict` before ``model.fit(..., initial_epoch=N)``.
        """
        return {"monitor": self.monitor.state_dict(), "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` in the next ``fit`` (applied right after its reset).

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

    # Keras's attribute names, for code that reads them (0 before any, as in Keras).
    @property
    def best(self) -> float | None:
        return self.monitor.best

    @property
    def best_epoch(self) -> int:
        return self.monitor.best_epoch or 0

    @property
    def wait(self) -> int:
        return self.monitor.wait

    @property
    def stopped_epoch(self) -> int:
        return self.monitor.stopped_epoch or 0

    def _say(self, line: str) -> None:
        log.info(line)
        if self.verbose > 0:
            print(line)  # what Keras's io_utils.print_msg does outside interactive logging

    def _mode_from_model(self) -> str:
        """Keras's own way for names we cannot read: ask the compiled metrics for their direction."""
        name = str(self._arguments["monitor"]).removeprefix("val_")
        for metric in _flat_metrics(getattr(self.model, "metrics", [])):
            if getattr(metric, "name", None) == name and hasattr(metric, "_direction"):
                return "max" if metric._direction == "up" else "min"
        Monitor(**self._arguments)  # raises the Monitor's own message, naming both fixes
        raise AssertionError("unreachable")  # pragma: no cover


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
