"""PyTorch Lightning binding: ``EarlyStopping``, Lightning's own callback deciding with a Monitor.

A subclass of Lightning's ``EarlyStopping``, so the Trainer treats it as its
early-stopping callback (``trainer.early_stopping_callback``, checked after
the LightningModule's own hooks), with Lightning's arguments, attributes and
checkpoint ``state_key``. Every decision is the Monitor's; the PyTorch
:class:`~earlystop_core.adapters.torch.EarlyStopper` keeps the best weights
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

from .torch import EarlyStopper

__all__ = ["EarlyStopping"]


def _lightning() -> Any:
    """The Lightning in use: the one already imported, else ``lightning.pytorch``, else ``pytorch_lightning``."""
    for name in ("lightning.pytorch", "pytorch_lightning"):
        if name in sys.modules:
            return sys.modules[name]
    try:
        return importlib.import_module("lightning.pytorch")
    except ImportError:
        return importlib.import_module("pytorch_lightning")


_pl = _lightning()
_Base = _pl.callbacks.EarlyStopping
_Reason = importlib.import_module(f"{_pl.__name__}.callbacks.early_stopping").EarlyStoppingReason


class EarlyStopping(_Base):  # type: ignore[misc,valid-type]
    """Lightning's ``EarlyStopping``, deciding with a :class:`~earlystop_core.Monitor`.

    Lightning's arguments mean what they mean there (the same stop epoch);
    ``monitor`` may also be a ready Monitor. Ours besides: ``restore_best_weights``
    (load the best weights back when training ends, however it ends),
    ``snapshot`` (``"device"``, ``"cpu"`` or ``"disk"`` with ``path``) and any
    other Monitor argument (``policy=``, ``rule=``, ``keep_best_by=``,
    ``best_from_epoch=``, ``smoothing=``...). Patience counts validation checks,
    as Lightning's does. The Monitor is :attr:`core`; Lightning's
    ``wait_count``, ``best_score``, ``stopped_epoch`` and ``stopping_reason``
    follow it (a stop by a rule or a time budget reads ``PATIENCE_EXHAUSTED``
    there; :attr:`core` has the exact reason).
    """

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
        if isinstance(monitor, Monitor):
            core, name, mode = monitor, str(monitor.config.name), monitor.mode
        else:
            core = Monitor(
                monitor,
                mode=mode,
                patience=patience,
                min_delta=min_delta,
                check_finite=check_finite,
                stopping_threshold=stopping_threshold,
                divergence_threshold=divergence_threshold,
                restore_best_weights=restore_best_weights,
                **options,
            )
            name = monitor
        super().__init__(
            name, min_delta, patience, verbose, mode, strict, check_finite, stopping_threshold,
            divergence_threshold, check_on_train_epoch_end, log_rank_zero_only,
        )  # fmt: skip
        self._core = core
        self._stopper_options: dict[str, Any] = {"snapshot": snapshot, "path": path}
        self._stopper: EarlyStopper | None = None
        self._pending: dict[str, Any] | None = None  # a checkpoint's state loaded before the fit's setup

    @property
    def core(self) -> Monitor:
        """The Monitor making the decisions."""
        return self._core

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        if self._stopper is not None:
            self._stopper.close()
        self._stopper = EarlyStopper(pl_module, self._core, **self._stopper_options)
        self._stopper.reset()  # a new fit starts afresh; a checkpoint's state is loaded after this
        self._books()
        if self._pending is not None:
            self._stopper.load_state_dict(self._pending)
            self._pending = None
            self._books()

    def _run_early_stopping_check(self, trainer: Any) -> None:
        logs = trainer.callback_metrics
        if trainer.fast_dev_run or not self._validate_condition_metric(logs):
            return
        names = {self.monitor, *getattr(self._core.config.rule, "requires", ())}
        metrics = {name: float(logs[name].squeeze()) for name in names if name in logs}
        stopper = self._stopper
        decision = self._core.update(metrics) if stopper is None else stopper.step(metrics)
        self._books()
        should_stop = trainer.strategy.reduce_boolean_decision(decision.should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason_message = decision.message
            if decision.should_stop:
                reason = decision.reason.name
                self.stopping_reason = _Reason[reason] if reason in _Reason.__members__ else _Reason.PATIENCE_EXHAUSTED
        if self.verbose and (decision.improved or decision.should_stop):
            self._log_info(trainer, decision.message, self.log_rank_zero_only)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._stopper is not None:
            try:
                self._stopper.finish()  # restores the best weights (restore_best_weights) unless a stop did
            finally:
                self._stopper.close()

    def state_dict(self) -> dict[str, Any]:
        """Lightning's fields, and the Monitor's state with the best weights under ``"earlystop"``."""
        ours = self._core.state_dict() if self._stopper is None else self._stopper.state_dict()
        return {**super().state_dict(), "earlystop": ours}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (a checkpoint of Lightning's own callback loads its fields only)."""
        ours = state_dict.get("earlystop")
        if ours is not None:
            if self._stopper is not None:
                self._stopper.load_state_dict(ours)  # checked before anything changes
            elif "format" in ours and "best" in ours:
                self._pending = ours
            else:
                self._core.load_state_dict(ours)
        super().load_state_dict(state_dict)
        if ours is not None and self._stopper is not None:
            self._books()

    def _books(self) -> None:
        """Lightning's attributes, from the Monitor."""
        core = self._core
        self.wait_count = core.wait
        if core.best is not None:
            self.best_score = torch.tensor(core.best)
        elif core.best_epoch is None:
            self.best_score = torch.tensor(torch.inf if self.monitor_op == torch.lt else -torch.inf)
        if core.stop_reason is StopReason.NOT_STOPPED:
            self.stopping_reason = _Reason.NOT_STOPPED
