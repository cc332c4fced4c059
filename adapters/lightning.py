"""PyTorch Lightning binding: ``EarlyStopping``, Lightning's own callback deciding with a Monitor.

A subclass of Lightning's ``EarlyStopping``, so the Trainer treats it as its
early-stopping callback (``trainer.early_stopping_callback``, checked after
the LightningModule's own hooks), with Lightning's arguments, attributes and
checkpoint ``state_key``. Every decision is the Monitor's; the PyTorch
[`EarlyStopper`][adapters.torch.EarlyStopper] keeps the best weights
and restores them when training ends. The class follows the Lightning
installed: ``lightning.pytorch`` when importable (or already imported), else
``pytorch_lightning``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import torch

from earlystop_core import Monitor, StopReason

from . import _optimizer as optim
from .torch import EarlyStopper

__all__ = ["EarlyStopping", "flavour"]


def _lightning() -> Any:
    """The Lightning in use: the one already imported, else ``lightning.pytorch``, else ``pytorch_lightning``."""
    for name in ("lightning.pytorch", "pytorch_lightning"):
        if name in sys.modules:
            return sys.modules[name]
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        return importlib.import_module("pytorch_lightning")


#: The mixin's base, typed Any: the methods below run on a subclass of Lightning's EarlyStopping (see flavour()).
_LightningEarlyStopping: Any = object


class _Deciding(_LightningEarlyStopping):  # type: ignore[misc]
    """Lightning's ``EarlyStopping``, deciding with a [`Monitor`][earlystop_core.Monitor].

    Lightning's arguments mean what they mean there (the same stop epoch);
    ``monitor`` may also be a ready Monitor. Ours besides: ``restore_best_weights``
    (load the best weights back when training ends, however it ends),
    ``snapshot`` (``"device"``, ``"cpu"`` or ``"disk"`` with ``path``) and any
    other Monitor argument (``policy=``, ``rule=``, ``keep_best_by=``,
    ``best_from_epoch=``, ``smoothing=``...). Patience counts validation checks,
    as Lightning's does. The Monitor is `core`; Lightning's
    ``wait_count``, ``best_score``, ``stopped_epoch`` and ``stopping_reason``
    follow it (a stop by a rule or a time budget reads ``PATIENCE_EXHAUSTED``
    there; `core` has the exact reason).
    """

    _reasons: Any  # the flavour's EarlyStoppingReason
    _package: str  # the flavour's package name

    def __init__(
        self,
        monitor: str | Monitor,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        *,
        restore_best_weights: bool = False,
        snapshot: str = "device",
        path: str | None = None,
        **options: Any,
    ) -> None:
        given = monitor
        if isinstance(given, Monitor):
            monitor, mode = str(given.config.name), given.mode
        super().__init__(
            monitor, min_delta, patience, verbose, mode, strict, check_finite, stopping_threshold,
            divergence_threshold, check_on_train_epoch_end, log_rank_zero_only,
        )  # fmt: skip  # first: Lightning's own checks (an unknown mode) and messages
        core = given if isinstance(given, Monitor) else Monitor(
            str(monitor),
            mode=mode,
            patience=patience,
            min_delta=min_delta,
            check_finite=check_finite,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            restore_best_weights=restore_best_weights,
            **options,
        )  # fmt: skip
        self._core = _Held(core)
        self._stopper_options: dict[str, Any] = {"snapshot": snapshot, "path": path, "sync": "local"}
        self._stopper: EarlyStopper | None = None
        self._pending: dict[str, Any] | None = None  # a checkpoint's state loaded before the fit's setup
        self._logs: Any = None  # the Trainer's metrics during a check (a rule may read more than the monitored one)
        self._optimizer: Any = None  # the Trainer's first optimizer during a check

    @property
    def core(self) -> Monitor:
        """The Monitor making the decisions."""
        return self._core.monitor

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        if self._stopper is not None:
            self._stopper.close()
        self._stopper = EarlyStopper(pl_module, self.core, **self._stopper_options)
        self._stopper.reset()  # a new fit starts afresh; a checkpoint's state is loaded after this
        self._books()
        if self._pending is not None:
            self._stopper.load_state_dict(self._pending)
            self._pending = None
            self._books()

    def _run_early_stopping_check(self, trainer: Any) -> None:
        self._logs = trainer.callback_metrics  # Lightning's check reads and squeezes the metric, then asks below
        self._optimizer = trainer.optimizers[0] if trainer.optimizers else None  # its rate, for a learned policy
        try:
            super()._run_early_stopping_check(trainer)
        finally:
            self._logs = self._optimizer = None

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        """The Monitor's decision on this check, in Lightning's terms: whether to stop, and why (or the news)."""
        logs = self._logs or {}
        metrics = {name: float(logs[name].squeeze()) for name in self.core.metrics if name in logs}
        metrics[self.monitor] = float(current)  # as Lightning read and squeezed it
        rule = self.core.rule
        for name in getattr(rule, "optional", ()):  # a learned policy's lr: logged by the module, or the optimizer's
            if name in logs:
                metrics[name] = float(logs[name].squeeze())
        metrics.update(optim.rates(rule, metrics, self._optimizer))
        stopper = self._stopper
        decision = self.core.update(metrics) if stopper is None else stopper.step(metrics)
        self._books()
        if decision.should_stop:
            reason = decision.reason.name
            self.stopping_reason = (
                self._reasons[reason] if reason in self._reasons.__members__ else self._reasons.PATIENCE_EXHAUSTED
            )
        return decision.should_stop, _message(self, decision, float(current))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._stopper is not None:
            try:
                self._stopper.finish()  # restores the best weights (restore_best_weights) unless a stop did
            finally:
                self._stopper.close()

    def state_dict(self) -> dict[str, Any]:
        """Lightning's fields, and the Monitor's state with the best weights under ``"earlystop"``."""
        ours = self.core.state_dict() if self._stopper is None else self._stopper.state_dict()
        return {**super().state_dict(), "earlystop": ours}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from `state_dict` (a checkpoint of Lightning's own callback loads its fields only)."""
        ours = state_dict.get("earlystop")
        if ours is not None:
            if self._stopper is not None:
                self._stopper.load_state_dict(ours)  # checked before anything changes
            elif "format" in ours and "best" in ours:
                self._pending = ours
            else:
                self.core.load_state_dict(ours)
        super().load_state_dict(state_dict)
        if ours is not None and self._stopper is not None:
            self._books()

    def _books(self) -> None:
        """Lightning's attributes, from the Monitor."""
        core = self.core
        self.wait_count = core.wait
        if core.best is not None:
            self.best_score = torch.tensor(core.best)
        elif core.best_epoch is None:
            self.best_score = torch.tensor(torch.inf if self.monitor_op == torch.lt else -torch.inf)
        if core.stop_reason is StopReason.NOT_STOPPED:
            self.stopping_reason = self._reasons.NOT_STOPPED

    def __reduce__(self) -> tuple[Any, ...]:
        # By its flavour's package: two classes are both named EarlyStopping (Lightning's state_key reads the name).
        return _rebuild, (self._package,), self.__dict__


_CLASSES: dict[str, type] = {}


def flavour(package: Any) -> type:
    """The ``EarlyStopping`` class for a Lightning package (``lightning.pytorch`` or ``pytorch_lightning``).

    ``EarlyStopping`` is the one for the Lightning imported first (else installed); with both in
    use, give the other's Trainer ``flavour(pytorch_lightning)(...)``: Lightning's two
    packages are distinct class hierarchies, and a Trainer takes only its own callbacks.
    """
    name = package.__name__
    if name not in _CLASSES:
        reasons = importlib.import_module(f"{name}.callbacks.early_stopping").EarlyStoppingReason
        namespace = {"_reasons": reasons, "_package": name, "__module__": __name__, "__doc__": _Deciding.__doc__}
        _CLASSES[name] = type("EarlyStopping", (_Deciding, package.callbacks.EarlyStopping), namespace)
    return _CLASSES[name]


def _rebuild(package: str) -> Any:
    cls: Any = flavour(importlib.import_module(package))
    return cls.__new__(cls)


EarlyStopping = flavour(_lightning())


class _Held:
    """The Monitor, held so that two callbacks compare equal when their Monitors are in the same state (Lightning
    compares pickled callbacks' ``vars``)."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Held) and self.monitor.state_dict() == other.monitor.state_dict()

    __hash__ = None  # type: ignore[assignment]


def _message(callback: Any, decision: Any, value: float) -> str | None:
    """A decision told as Lightning tells it (its wording, which users and tests look for)."""
    name, best, order = callback.monitor, decision.best, callback.order_dict[callback.mode]
    reason = decision.reason
    stop = "Signaling Trainer to stop."
    if reason is StopReason.NON_FINITE_METRIC:
        previous = "none" if best is None else f"{best:.3f}"
        return f"Monitored metric {name} = {value} is not finite. Previous best value was {previous}. {stop}"
    if reason is StopReason.STOPPING_THRESHOLD:
        return f"Stopping threshold reached: {name} = {value} {order} {callback.stopping_threshold}. {stop}"
    if reason is StopReason.DIVERGENCE_THRESHOLD:
        return f"Divergence threshold reached: {name} = {value} {order} {callback.divergence_threshold}. {stop}"
    if reason is StopReason.PATIENCE_EXHAUSTED:
        return (
            f"Monitored metric {name} did not improve in the last {decision.wait} records. Best score: "
            f"{best:.3f}. {stop}"
        )
    if decision.should_stop:
        return str(decision.message)
    if decision.improved:
        return f"Metric {name} improved. New best score: {value:.3f}"
    return None
