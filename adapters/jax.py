"""JAX binding: ``EarlyStopper`` for Flax / optax loops, keeping the best pytree (parameters or a train state).

Every decision is the [`Monitor`][earlystop_core.Monitor]'s; the stopper keeps a
copy of the pytree at each improvement and hands the best one back at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import jax
import numpy as np

from earlystop_core import Decision, Monitor, StateError
from earlystop_core._validate import check_choice

__all__ = ["EarlyStopper"]
FORMAT, VERSION = "earlystop_core.adapters.jax.EarlyStopper", 1


class EarlyStopper:
    """Early stopping for a JAX training loop: a Monitor, and the best pytree kept.

    Args:
        monitor: A [`Monitor`][earlystop_core.Monitor], or the metric to watch, with the Monitor's
            other arguments as keywords (``patience=5``, ``restore_best_weights=True``...).
        snapshot: Where the best pytree is kept: ``"device"`` (a copy beside the live one: safe when
            the training step donates its buffers) or ``"host"`` (numpy copies in host memory: frees
            accelerator memory).

    Pass any pytree to `step`: the parameters, or a whole train state (then the optimizer's
    state comes back with the weights). Copies are taken only with ``restore_best_weights=True``.

    Examples:
        >>> import jax.numpy as jnp
        >>> stopper = EarlyStopper("val_loss", patience=1, restore_best_weights=True)
        >>> for epoch, loss in enumerate([0.5, 0.4, 0.6, 0.7]):
        ...     params = {"w": jnp.full(2, float(epoch))}
        ...     if stopper.step({"val_loss": loss}, params).should_stop:
        ...         break
        >>> stopper.result(params)["w"].tolist()  # the pytree of the best epoch, 1
        [1.0, 1.0]
    """

    def __init__(self, monitor: Monitor | str | Mapping[str, float] = "val_loss", *, snapshot: str = "device",
                 **monitor_kwargs: Any) -> None:  # fmt: skip
        if isinstance(monitor, Monitor) and monitor_kwargs:
            raise ValueError(f"pass a Monitor or its arguments, not both: got a Monitor and {sorted(monitor_kwargs)}")
        self.monitor = monitor if isinstance(monitor, Monitor) else Monitor(monitor, **monitor_kwargs)
        self.snapshot: str = check_choice("snapshot", snapshot, ("device", "host"))
        self._best: Any = None
        self._best_epoch: int | None = None

    def step(self, logs: Mapping[str, Any], tree: Any, epoch: int | None = None) -> Decision:
        """Decide on this epoch's logs; keep a copy of ``tree`` when it is the new best.

        All or nothing: if the copy fails (out of memory), the Monitor is put back as it was
        before this step and the error is raised, so it never names a best that was not kept.
        """
        monitor = self.monitor
        undo = monitor.state_dict() if monitor.restore_best_weights else None
        decision = monitor.update(logs, epoch)  # a scalar JAX array is read as a number by the Monitor itself
        if decision.improved and monitor.restore_best_weights:
            try:
                self._best = self._copy(tree)
            except BaseException:
                assert undo is not None
                monitor.load_state_dict(undo)
                raise
            self._best_epoch = decision.best_epoch
        return decision

    def result(self, tree: Any) -> Any:
        """The pytree to end training with: the best one when the Monitor says restore, else ``tree``.

        Call it after the loop (it calls [`Monitor.finish`][earlystop_core.Monitor.finish] when training ran to its
        end).
        """
        decision = self.monitor.finish() if self.monitor.stopped_epoch is None else None
        restore = self.monitor.restore_best_weights and (decision is None or decision.restore)
        if not restore or self._best is None:
            return tree
        if self._best_epoch != self.monitor.best_epoch:
            raise StateError(
                f"the kept pytree is epoch {self._best_epoch}'s, but the monitor's best epoch is "
                f"{self.monitor.best_epoch}: not restored (was the monitor changed by hand?)"
            )
        _check_like(self._best, tree)
        return self._best if self.snapshot == "device" else jax.device_put(self._best)

    @property
    def best(self) -> Any:
        """The kept copy of the best pytree (None before the first improvement)."""
        return self._best

    def state_dict(self) -> dict[str, Any]:
        """The Monitor's state (strict JSON) and the best pytree as host numpy arrays, to save with the rest."""
        best = None if self._best is None else jax.tree.map(np.asarray, jax.device_get(self._best))
        return {"format": FORMAT, "version": VERSION, "monitor": self.monitor.state_dict(), "best": best}

    def load_state_dict(self, state: Mapping[str, Any], like: Any) -> None:
        """Resume from `state_dict`; ``like`` is the live pytree the saved best must match.

        Everything is checked (format, the Monitor's state, the best pytree's structure, shapes
        and dtypes against ``like``) before anything changes.

        Raises:
            StateError: The state is not an EarlyStopper's, or does not fit this Monitor or pytree.
        """
        if not isinstance(state, Mapping) or (state.get("format"), state.get("version")) != (FORMAT, VERSION):
            raise StateError(f"not a {FORMAT} state of version {VERSION}")
        best = state.get("best")
        if best is not None:
            _check_like(best, like)
        undo = self.monitor.state_dict()
        self.monitor.load_state_dict(state["monitor"])
        if self.monitor.restore_best_weights and (best is None) != (self.monitor.best_epoch is None):
            self.monitor.load_state_dict(undo)
            raise StateError(
                f"the saved state's monitor has best epoch {self.monitor.best_epoch}, but "
                f"{'no' if best is None else 'a'} best pytree: pieced together?"
            )
        self._best = None if best is None else self._copy(best)
        self._best_epoch = self.monitor.best_epoch if best is not None else None

    def _copy(self, tree: Any) -> Any:
        if self.snapshot == "host":
            return jax.tree.map(np.array, jax.device_get(tree))  # np.array: a copy even of a host array
        return jax.tree.map(lambda leaf: jax.numpy.array(leaf, copy=True), tree)


def _check_like(saved: Any, live: Any) -> None:
    """Raise ``StateError`` unless ``saved`` has the structure, shapes and dtypes of ``live``."""
    saved_leaves, saved_tree = jax.tree.flatten(saved)
    live_leaves, live_tree = jax.tree.flatten(live)
    saved_tree, live_tree = cast(Any, saved_tree), cast(Any, live_tree)  # PyTreeDef compares; its stub says not
    if saved_tree != live_tree:
        raise StateError(f"the saved best pytree does not fit: its structure is {saved_tree}, the live one {live_tree}")
    for index, (a, b) in enumerate(zip(saved_leaves, live_leaves, strict=True)):
        kinds = [leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype for leaf in (a, b)]  # no transfer
        if np.shape(a) != np.shape(b) or kinds[0] != kinds[1]:
            raise StateError(
                f"the saved best pytree does not fit: leaf {index} is {kinds[0]} {np.shape(a)} there, "
                f"{kinds[1]} {np.shape(b)} here"
            )
