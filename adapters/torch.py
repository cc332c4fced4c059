"""PyTorch glue: snapshot on ``Decision.improved``, restore on ``Decision.restore``, apply ``Decision.lr``.

Every decision is the core :class:`~earlystop_core.Monitor`'s; see
``docs/torch.md`` for the snapshot modes, resuming and distributed training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import torch

from earlystop_core import Decision, Monitor, StateError
from earlystop_core._validate import check_bool, check_choice

from . import _distributed as dist
from . import _optimizer as optim
from ._snapshot import cpu_copies, make_store

__all__ = ["EarlyStopper"]
FORMAT, VERSION = "earlystop_core.adapters.torch.EarlyStopper", 1


class EarlyStopper:
    """Early stopping for a PyTorch model: snapshots the best weights, restores them when training ends.

    Args:
        model: The model whose ``state_dict`` is snapshotted and restored in place.
        monitor: A :class:`~earlystop_core.Monitor`, or the metric to watch,
            with the Monitor's other arguments as keywords (``patience=5``...).
        optimizer: Needed to apply a ``plateau``'s learning rates and to snapshot its state.
        snapshot: ``"device"`` (a copy beside the weights: fastest), ``"cpu"``
            (frees accelerator memory; pinned, non-blocking) or ``"disk"`` (a file at ``path``).
        path: The file for ``snapshot="disk"``; with several ranks it must contain ``{rank}``.
        snapshot_optimizer: Keep and restore the optimizer's state with the weights.
        restore_on_exception: Restore the best weights also when the ``with`` block raises.
        sync: Under ``torch.distributed``: ``"reduce"`` (decide on the mean of the
            metric over ranks) or ``"rank0"`` (rank 0 decides, the others follow).
        **monitor_kwargs: The Monitor's arguments, when ``monitor`` is a name.

    Snapshots are taken only with ``restore_best_weights=True`` (nothing else reads them).

    Examples:
        >>> model = torch.nn.Linear(2, 1)
        >>> with EarlyStopper(model, monitor="val_loss", patience=1, restore_best_weights=True) as stopper:
        ...     for epoch, loss in enumerate([0.5, 0.4, 0.6, 0.3]):
        ...         _ = torch.nn.init.constant_(model.weight, epoch)
        ...         if stopper.step({"val_loss": loss}).should_stop:
        ...             break
        >>> model.weight.tolist()  # the weights of the best epoch, 1
        [[1.0, 1.0]]
    """

    def __init__(
        self,
        model: torch.nn.Module,
        monitor: Monitor | str | Mapping[str, float] = "val_loss",
        *,
        optimizer: torch.optim.Optimizer | None = None,
        snapshot: str = "device",
        path: str | os.PathLike[str] | None = None,
        snapshot_optimizer: bool = False,
        restore_on_exception: bool = False,
        sync: str = "reduce",
        **monitor_kwargs: Any,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"'model' must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(monitor, Monitor) and monitor_kwargs:
            raise ValueError(f"pass a Monitor or its arguments, not both: got a Monitor and {sorted(monitor_kwargs)}")
        self.monitor = monitor if isinstance(monitor, Monitor) else Monitor(monitor, **monitor_kwargs)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"'optimizer' must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
        check_choice("snapshot", snapshot, ("device", "cpu", "disk"))
        self.sync: str = check_choice("sync", sync, ("reduce", "rank0"))
        if optimizer is None and check_bool("snapshot_optimizer", snapshot_optimizer):
            raise ValueError("snapshot_optimizer=True needs the optimizer: pass optimizer=...")
        if optimizer is None and self.monitor.plateau is not None:
            raise ValueError("a Monitor with plateau= sets the learning rate: pass optimizer=...")
        self.restore_on_exception = check_bool("restore_on_exception", restore_on_exception)
        self.model, self.optimizer = model, optimizer
        self._metrics = dist.watched_metrics(self.monitor)
        rank, world = dist.rank_and_world()
        self._store = make_store(snapshot, path, "", rank, world)
        self._optimizer_store = make_store(snapshot, path, ".optimizer", rank, world) if snapshot_optimizer else None
        self._optimizer_others: dict[int, Any] = {}  # the non-tensor part of its snapshot

    def step(self, logs: Mapping[str, Any], epoch: int | None = None) -> Decision:
        """Decide on this epoch's logs, then snapshot, set the learning rate, or restore as told."""
        lr = None if self.monitor.plateau is None else float(self._optimizer.param_groups[0]["lr"])
        if dist.rank_and_world()[1] == 1:
            decision = self.monitor.update(logs, epoch, lr)
        elif self.sync == "rank0":
            decision = dist.decide_on_rank0(self.monitor, logs, epoch, lr)
        else:
            decision = self.monitor.update(dist.mean_metrics(logs, self._metrics), epoch, lr)
        if decision.improved and self.monitor.restore_best_weights:
            self._store.capture(self.model.state_dict())
            if self._optimizer_store is not None:
                tensors, self._optimizer_others = optim.split(self._optimizer.state_dict()["state"])
                self._optimizer_store.capture(tensors)
        if decision.lr is not None:
            optim.set_lr(self._optimizer, decision.lr)
        if decision.restore:
            self.restore()
        return decision

    def restore(self) -> None:
        """Load the best snapshot into the model (and optimizer) now, in place."""
        if not self._store.captured:
            raise RuntimeError("no snapshot to restore: no epoch has improved since restore_best_weights was on")
        self.model.load_state_dict(self._store.tensors())
        if self._optimizer_store is not None and self._optimizer_store.captured:
            optim.load(self._optimizer, optim.join(self._optimizer_store.tensors(), self._optimizer_others))

    @property
    def _optimizer(self) -> torch.optim.Optimizer:
        assert self.optimizer is not None  # __init__ asks for it whenever it is needed
        return self.optimizer

    def finish(self) -> Decision:
        """Say training has ended: restores the best weights unless a stop already did."""
        decision = self.monitor.finish()
        if decision.restore:
            self.restore()
        return decision

    def reset(self) -> None:
        """Forget the run (the monitor's state and the snapshot) to start another; buffers are kept."""
        self.monitor.reset()
        self._store.captured = False
        if self._optimizer_store is not None:
            self._optimizer_store.captured = False

    def __enter__(self) -> EarlyStopper:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None or self.restore_on_exception:
            self.finish()

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state and CPU copies of the best snapshot, for ``torch.save`` (``weights_only`` loads it)."""
        optimizer = self._optimizer_store
        return {
            "format": FORMAT,
            "version": VERSION,
            "monitor": self.monitor.state_dict(),
            "best": cpu_copies(self._store.tensors()) if self._store.captured else None,
            "optimizer": None
            if optimizer is None or not optimizer.captured
            else optim.join(cpu_copies(optimizer.tensors()), self._optimizer_others),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the monitor where it was, the same best weights.

        Raises:
            StateError: The state is not an EarlyStopper's or does not fit this model or monitor.
        """
        if not isinstance(state, Mapping) or (state.get("format"), state.get("version")) != (FORMAT, VERSION):
            raise StateError(f"not a {FORMAT} state of version {VERSION}")
        previous = self.monitor.state_dict()
        self.monitor.load_state_dict(state["monitor"])
        try:
            if state["best"] is not None:
                self._store.load(state["best"], like=self.model.state_dict())
            if self._optimizer_store is not None and state["optimizer"] is not None:
                tensors, self._optimizer_others = optim.split(state["optimizer"])
                live = optim.split(self._optimizer.state_dict()["state"])[0]
                self._optimizer_store.load(tensors, like=live if live.keys() == tensors.keys() else tensors)
        except (ValueError, KeyError, TypeError) as error:
            self.monitor.load_state_dict(previous)
            raise StateError(f"the saved EarlyStopper state does not fit: {error}") from error
