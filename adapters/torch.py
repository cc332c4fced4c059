"""PyTorch glue: snapshot on ``Decision.improved``, restore on ``Decision.restore``, apply ``Decision.lr``.

Every decision is the core [`Monitor`][earlystop_core.Monitor]'s; see
``docs/torch.md`` for the snapshot modes, resuming, distributed training, and
what is guaranteed when something fails: a step whose snapshot fails is
undone, a refused state changes nothing, and a snapshot file that is damaged
or another run's is never restored.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import torch

from earlystop_core import Decision, Monitor, StateError
from earlystop_core._validate import check_bool, check_choice

from . import _distributed as dist
from . import _optimizer as optim
from ._checks import checked_lr
from ._lock import SnapshotInUseError
from ._snapshot import SnapshotError, check_fits, cpu_copies
from ._stores import make_store

__all__ = ["EarlyStopper", "SnapshotError", "SnapshotInUseError"]
FORMAT, VERSION = "earlystop_core.adapters.torch.EarlyStopper", 1


class EarlyStopper:
    """Early stopping for a PyTorch model: snapshots the best weights, restores them when training ends.

    Args:
        model: The model whose ``state_dict`` is snapshotted and restored in place.
        monitor: A [`Monitor`][earlystop_core.Monitor], or the metric to watch,
            with the Monitor's other arguments as keywords (``patience=5``...).
        optimizer: Needed to apply a ``plateau``'s learning rates and to snapshot its state.
        snapshot: ``"device"`` (a copy beside the weights: fastest), ``"cpu"``
            (frees accelerator memory; pinned, non-blocking) or ``"disk"`` (a file at ``path``).
        path: The file for ``snapshot="disk"``; with several ranks it must contain ``{rank}``.
            A lock file beside it (``best.pt.lock``) keeps other runs off it until `close`.
        snapshot_optimizer: Keep and restore the optimizer's state with the weights.
        restore_on_exception: Restore the best weights also when the ``with`` block raises.
        sync: Under ``torch.distributed``: ``"reduce"`` (decide on the mean of the
            metric over ranks), ``"rank0"`` (rank 0 decides, the others follow) or
            ``"local"`` (each rank on its own metrics: a framework that combines the
            ranks' decisions itself, as Lightning does).
        **monitor_kwargs: The Monitor's arguments, when ``monitor`` is a name.

    Raises:
        SnapshotInUseError: ``snapshot="disk"`` and another live stopper uses ``path``.
        OSError: ``snapshot="disk"`` and ``path``'s directory is not writable.

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
        self.sync: str = check_choice("sync", sync, ("reduce", "rank0", "local"))
        self.snapshot_optimizer = check_bool("snapshot_optimizer", snapshot_optimizer)
        if optimizer is None and snapshot_optimizer:
            raise ValueError("snapshot_optimizer=True needs the optimizer: pass optimizer=...")
        if optimizer is None and self.monitor.plateau is not None:
            raise ValueError("a Monitor with plateau= sets the learning rate: pass optimizer=...")
        self.restore_on_exception = check_bool("restore_on_exception", restore_on_exception)
        self.model, self.optimizer = model, optimizer
        self._metrics = dist.watched_metrics(self.monitor)
        rank, world = dist.rank_and_world()
        # Last: a disk store takes its path's lock, which an error above would leave held until collected.
        self._store = make_store(snapshot, path, rank, world, run=uuid.uuid4().hex)
        self._optimizer_others: dict[int, Any] = {}  # the non-tensor part of the optimizer's snapshot

    def step(self, logs: Mapping[str, Any], epoch: int | None = None) -> Decision:
        """Decide on this epoch's logs, then snapshot, set the learning rate, or restore as told.

        A step is all or nothing: when the snapshot or the learning rate
        cannot be taken (a full disk, out of memory, a corrupt rate), the
        Monitor is put back as it was before this step and the error is
        raised, so no later decision names weights that were not kept.
        """
        monitor = self.monitor
        lr = None if monitor.plateau is None else float(self._optimizer.param_groups[0]["lr"])
        undo = monitor.state_dict() if monitor.restore_best_weights or monitor.plateau is not None else None
        rates = optim.rates(monitor.rule, logs, self.optimizer)  # a learned policy sees the schedule
        decision = self._decide({**logs, **rates} if rates else logs, epoch, lr)
        try:
            self._act(decision)
        except BaseException:
            if undo is not None:
                monitor.load_state_dict(undo)
            raise
        if decision.restore:
            self.restore()
        return decision

    def _decide(self, logs: Mapping[str, Any], epoch: int | None, lr: float | None) -> Decision:
        if self.sync == "local" or dist.rank_and_world()[1] == 1:
            return self.monitor.update(logs, epoch, lr)
        if self.sync == "rank0":
            return dist.decide_on_rank0(self.monitor, logs, epoch, lr)
        return self.monitor.update(dist.mean_metrics(logs, self._metrics), epoch, lr)

    def _act(self, decision: Decision) -> None:
        """Snapshot and set the learning rate as ``decision`` says; the rate is checked before anything is done."""
        lr = None if decision.lr is None else checked_lr(decision.lr)
        if lr is not None and self.optimizer is None:
            raise ValueError(f"the Monitor asked for the learning rate {lr!r}, but it has no plateau: a corrupt state?")
        if decision.improved and self.monitor.restore_best_weights:
            self._snapshot(decision.best_epoch)
        if lr is not None:
            optim.set_lr(self._optimizer, lr)

    def _snapshot(self, epoch: int | None) -> None:
        sections: dict[str, Any] = {"model": self.model.state_dict()}
        others = None
        if self.snapshot_optimizer:
            sections["optimizer"], others = optim.split(self._optimizer.state_dict()["state"])
        self._store.capture(sections, epoch)
        if others is not None:  # only once the tensors are kept too
            self._optimizer_others = others

    def restore(self) -> None:
        """Load the best snapshot into the model (and optimizer) now, in place.

        Raises:
            RuntimeError: There is no snapshot (no epoch has improved with
                ``restore_best_weights=True``).
            SnapshotError: The snapshot is not the monitor's best epoch's, or
                (``snapshot="disk"``) its file is damaged, gone or another
                run's, or it does not fit the model any more. The model is
                untouched then.
        """
        sections = self._best_snapshot()
        model = sections["model"]
        try:
            check_fits(model, self.model.state_dict(), dtypes=False)  # torch would copy what fits, then raise
        except ValueError as error:
            raise SnapshotError(f"the best snapshot no longer fits the model: {error}") from None
        self.model.load_state_dict(model)
        if "optimizer" in sections:
            optim.load(self._optimizer, optim.join(sections["optimizer"], self._optimizer_others))

    def _best_snapshot(self) -> Mapping[str, Mapping[Any, torch.Tensor]]:
        """The kept snapshot once checked to be the monitor's best epoch's (and, on disk, whole and this run's)."""
        store = self._store
        if not store.captured:
            raise RuntimeError("no snapshot to restore: no epoch has improved since restore_best_weights was on")
        if store.epoch != self.monitor.best_epoch:
            raise SnapshotError(
                f"the snapshot holds the weights of epoch {store.epoch}, but the monitor's best epoch is "
                f"{self.monitor.best_epoch}: not restored (was the monitor changed by hand?)"
            )
        return store.tensors()

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
        self._store.forget()

    def close(self) -> None:
        """Release the snapshot file's lock (``snapshot="disk"``; the file stays); idempotent.

        The end of a ``with`` block calls it, and so does garbage collection
        or the interpreter's exit. A later snapshot takes the lock again.
        """
        self._store.close()

    def __enter__(self) -> EarlyStopper:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        """Restore (after an error only with ``restore_on_exception``) and close.

        The error that ended the block always propagates: a restore that
        fails after it is attached to it as a note (and, before Python 3.11,
        warned about), never raised in its place.
        """
        try:
            if error is None:
                self.finish()
            elif self.restore_on_exception:
                self._finish_after(error)
        finally:
            self.close()

    def _finish_after(self, error: BaseException) -> None:
        try:
            self.finish()
        except Exception as failure:
            note = (
                f"EarlyStopper could not restore the best weights after this error: {type(failure).__name__}: {failure}"
            )
            if hasattr(error, "add_note"):
                error.add_note(note)
            else:  # Python 3.10
                warnings.warn(note, RuntimeWarning, stacklevel=3)

    def state_dict(self) -> dict[str, Any]:
        """The monitor's state and CPU copies of the best snapshot, for ``torch.save`` (``weights_only`` loads it).

        Raises:
            SnapshotError: ``snapshot="disk"`` and the file is damaged, gone or another run's.
        """
        sections = self._store.tensors() if self._store.captured else None
        return {
            "format": FORMAT,
            "version": VERSION,
            "monitor": self.monitor.state_dict(),
            "best": None if sections is None else cpu_copies(sections["model"]),
            "optimizer": None
            if sections is None or "optimizer" not in sections
            else optim.join(cpu_copies(sections["optimizer"]), self._optimizer_others),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from `state_dict`: the monitor where it was, the same best weights.

        Everything is checked (format, keys, each best tensor's shape and
        dtype against this model, the optimizer's part, the monitor's state)
        before anything changes: a refused state leaves the monitor, the
        snapshot and its file as they were. With ``snapshot="disk"`` the
        best weights are written to this stopper's file, as its own.

        Raises:
            StateError: The state is not an EarlyStopper's or does not fit this model or monitor.
        """
        best, optimizer = self._checked_snapshot(state)
        undo = self.monitor.state_dict()
        try:
            self.monitor.load_state_dict(state["monitor"])  # refuses an lr without a plateau, or not finite > 0
            if self.monitor.restore_best_weights and (best is None) != (self.monitor.best_epoch is None):
                raise StateError(
                    f"the saved state's monitor has best epoch {self.monitor.best_epoch}, but "
                    f"{'no' if best is None else 'some'} best weights: it was saved after a failed snapshot, "
                    "or pieced together"
                )
            self._load_snapshot(best, optimizer)
        except BaseException:
            self.monitor.load_state_dict(undo)
            raise

    def _checked_snapshot(self, state: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The best weights and optimizer tensors of ``state``, checked to fit; ``StateError`` if not."""
        if not isinstance(state, Mapping) or (state.get("format"), state.get("version")) != (FORMAT, VERSION):
            raise StateError(f"not a {FORMAT} state of version {VERSION}")
        missing = sorted({"monitor", "best", "optimizer"} - state.keys())
        if missing:
            raise StateError(f"corrupt {FORMAT} state: it lacks {missing}")
        best, saved_optimizer = state["best"], state["optimizer"]
        try:
            if best is not None:
                if not isinstance(best, Mapping):
                    raise ValueError(f"'best' must be a state dict, got {type(best).__name__}")
                check_fits(best, self.model.state_dict())
            if best is None or not self.snapshot_optimizer or saved_optimizer is None:
                return (None if best is None else dict(best)), None
            tensors, others = optim.split(optim.checked_state(self._optimizer, saved_optimizer))
            live = optim.split(self._optimizer.state_dict()["state"])[0]
            if live.keys() == tensors.keys():  # a fresh optimizer has no state yet to compare with
                check_fits(tensors, live, "optimizer state")
            else:
                live = tensors  # the layout to keep them in: their own
            return dict(best), {"tensors": tensors, "others": others, "like": live}
        except (ValueError, KeyError, TypeError) as error:
            raise StateError(f"the saved EarlyStopper state does not fit: {error}") from error

    def _load_snapshot(self, best: dict[str, Any] | None, optimizer: dict[str, Any] | None) -> None:
        """Write the checked best weights (and optimizer tensors) as the monitor's best epoch's."""
        if best is None:
            self._store.forget()
            return
        sections: dict[str, Any] = {"model": best}
        like: dict[str, Any] = {"model": self.model.state_dict()}
        if optimizer is not None:  # without it, a restore leaves the optimizer's state as it is
            sections["optimizer"], like["optimizer"] = optimizer["tensors"], optimizer["like"]
        self._store.load(sections, like, self.monitor.best_epoch)
        if optimizer is not None:
            self._optimizer_others = optimizer["others"]
