"""Where the best weights are kept: flat preallocated buffers in memory, or one file on disk.

A :class:`FlatSnapshot` packs every tensor of a state dict into one contiguous
buffer per (device, dtype), allocated at the first capture. Each later capture
copies into views of those buffers and allocates nothing: on CPU with an
:class:`~._copy.AdaptiveCopy` (near the speed of one flat copy of the same
bytes, on a busy machine too: ``docs/torch.md``); to or from an accelerator
with one ``torch._foreach_copy_`` (fused kernels), into pinned memory without
blocking the host for a CPU copy. Tied tensors are stored once, views keep each source's
strides (a ``channels_last`` weight copies linearly), and non-float buffers
(BatchNorm's ``num_batches_tracked``) get a buffer of their own dtype.

A :class:`DiskSnapshot` writes the state dict with ``torch.save`` to a
temporary file in the target's directory, fsyncs it and renames it over the
target (``os.replace``): the file is always a complete snapshot, loadable with
``torch.load(path, weights_only=True)``.

Both keep a state dict (``capture``), refill from a checkpoint laid out like
the live model (``load``) and hand it back (``tensors``).
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._copy import AdaptiveCopy

_ALIGN_BYTES = 64  # each tensor starts on a cache line (and a vector-load boundary on GPUs)


class FlatSnapshot:
    """A copy of a state dict in one preallocated buffer per (device, dtype).

    Args:
        device: Where to keep the copy; None keeps each tensor on its own
            device. A CPU copy of accelerator tensors goes to pinned memory
            and is made without blocking the host (``non_blocking=True``).

    Examples:
        >>> model = torch.nn.Linear(2, 2)
        >>> snapshot = FlatSnapshot()
        >>> snapshot.capture(model.state_dict())
        >>> buffers = [b.data_ptr() for b in snapshot.buffers]
        >>> with torch.no_grad():
        ...     _ = model.weight.add_(1.0)
        >>> snapshot.capture(model.state_dict())  # same layout: copied into the same buffers
        >>> [b.data_ptr() for b in snapshot.buffers] == buffers
        True
        >>> torch.equal(snapshot.tensors()["weight"], model.weight)
        True
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = None if device is None else torch.device(device)
        self.captured = False
        self.buffers: list[torch.Tensor] = []
        self._signature: tuple[Any, ...] | None = None
        self._views: OrderedDict[Any, torch.Tensor] = OrderedDict()
        self._targets: list[torch.Tensor] = []  # one view per distinct source tensor
        self._sources: tuple[int, ...] = ()  # their data_ptrs when the copy was prepared
        self._on_cpu: AdaptiveCopy | None = None  # CPU to CPU
        self._others: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])  # to or from an accelerator
        self._non_blocking = False
        self._pending: list[torch.Event] = []

    def capture(self, state: Mapping[Any, torch.Tensor]) -> None:
        """Copy ``state`` into the buffers (allocated only when its layout is new)."""
        self._prepare(self._layout(state))
        with torch.no_grad():
            if self._on_cpu is not None:
                self._on_cpu.run()
            if self._others[0]:
                torch._foreach_copy_(*self._others, non_blocking=self._non_blocking)
        if self._non_blocking:
            self._pending = [torch.Event(device=device) for device in {t.device for t in self._others[1]}]
            for event in self._pending:
                event.record()
        self._views._metadata = getattr(state, "_metadata", None)  # type: ignore[attr-defined]
        self.captured = True

    def load(self, state: Mapping[Any, torch.Tensor], like: Mapping[Any, torch.Tensor]) -> None:
        """Fill from ``state`` (a checkpoint's tensors) with the layout ``like`` has (the live ones).

        Raises:
            ValueError: ``state`` has other keys or shapes than ``like``.
        """
        check_same_keys(state, like)
        self._wait()
        self._layout(like)
        copied: set[int] = set()
        with torch.no_grad():
            for key, view in self._views.items():
                if id(view) not in copied:  # a tied group is copied once, from its first key
                    copied.add(id(view))
                    if state[key].shape != view.shape:
                        raise ValueError(
                            f"{key!r} has shape {tuple(state[key].shape)} in the snapshot, {tuple(view.shape)} here"
                        )
                    view.copy_(state[key])
        self._views._metadata = getattr(like, "_metadata", None)  # type: ignore[attr-defined]
        self.captured = True

    def tensors(self) -> OrderedDict[Any, torch.Tensor]:
        """The snapshot as a state dict of views into the buffers (overwritten by the next capture)."""
        self._wait()
        return self._views

    def _wait(self) -> None:
        """Let a pending non-blocking copy land before the host reads or writes the buffers."""
        for event in self._pending:
            event.synchronize()
        self._pending = []

    def _layout(self, state: Mapping[Any, torch.Tensor]) -> list[torch.Tensor]:
        """The distinct tensors of ``state``; (re)allocates the buffers when the layout changed."""
        first: dict[tuple[Any, ...], int] = {}
        sources: list[torch.Tensor] = []
        signature = []
        for key, tensor in state.items():
            alias = (tensor.data_ptr(), tensor.device, tensor.dtype, tensor.shape, tensor.stride())
            index = first.setdefault(alias, len(sources))
            if index == len(sources):
                sources.append(tensor)
            signature.append((key, alias[1:], index))
        if tuple(signature) != self._signature:
            self._allocate(state, sources, [index for _, _, index in signature])
            self._signature = tuple(signature)
        return sources

    def _prepare(self, sources: list[torch.Tensor]) -> None:
        """Prepare the copy from these sources, unless it is ready (the same tensors into the same buffers)."""
        pointers = tuple(t.data_ptr() for t in sources)
        if pointers and pointers == self._sources:
            return
        pairs = list(zip(self._targets, sources, strict=True))
        on_cpu = [(t, s) for t, s in pairs if t.is_cpu and s.is_cpu]
        self._on_cpu = AdaptiveCopy([t for t, _ in on_cpu], [s for _, s in on_cpu]) if on_cpu else None
        self._others = (
            [t for t, s in pairs if not t.is_cpu or not s.is_cpu],
            [s for t, s in pairs if not t.is_cpu or not s.is_cpu],
        )
        self._sources = pointers

    def _allocate(self, state: Mapping[Any, torch.Tensor], sources: list[torch.Tensor], aliases: list[int]) -> None:
        self._wait()
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for index, tensor in enumerate(sources):
            groups.setdefault((self.device or tensor.device, tensor.dtype), []).append(index)
        targets: list[torch.Tensor | None] = [None] * len(sources)
        self.buffers = []
        self._non_blocking = False
        for (device, dtype), members in groups.items():
            step = max(1, _ALIGN_BYTES // sources[members[0]].element_size())
            offsets, total = [], 0
            for index in members:
                offsets.append(total)
                total += -(-sources[index].numel() // step) * step
            pin = device.type == "cpu" and any(sources[i].device.type != "cpu" for i in members)
            buffer = torch.empty(total, dtype=dtype, device=device, pin_memory=pin)
            self._non_blocking |= pin
            self.buffers.append(buffer)
            for index, offset in zip(members, offsets, strict=True):
                # A meta tensor has the strides empty_like would give: the source's when dense, else contiguous.
                like = torch.empty_like(sources[index], device="meta")
                targets[index] = buffer.as_strided(like.shape, like.stride(), offset)
        self._targets = [t for t in targets if t is not None]
        self._views = OrderedDict((key, self._targets[i]) for key, i in zip(state, aliases, strict=True))
        self._sources = ()
        self.captured = False


class DiskSnapshot:
    """A state dict kept in one file, replaced atomically at each capture.

    Args:
        path: The file; its directory must exist.

    Examples:
        >>> import tempfile, pathlib
        >>> model = torch.nn.Linear(2, 2)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     snapshot = DiskSnapshot(pathlib.Path(folder) / "best.pt")
        ...     snapshot.capture(model.state_dict())
        ...     _ = model.load_state_dict(torch.load(snapshot.path, weights_only=True))
        ...     sorted(snapshot.tensors())
        ['bias', 'weight']
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.captured = False

    def capture(self, state: Mapping[Any, torch.Tensor]) -> None:
        """Write ``state`` to a temporary file, fsync it, and rename it over :attr:`path`."""
        save_atomically(state, self.path)
        self.captured = True

    def load(self, state: Mapping[Any, torch.Tensor], like: Mapping[Any, torch.Tensor]) -> None:
        """Write ``state`` (a checkpoint's tensors) once checked against ``like``."""
        check_same_keys(state, like)
        self.capture(state)

    def tensors(self) -> dict[Any, torch.Tensor]:
        """The snapshot, read back (memory-mapped, on CPU)."""
        loaded: dict[Any, torch.Tensor] = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        return loaded


Store = FlatSnapshot | DiskSnapshot


def save_atomically(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, then ``os.replace``.

    A reader sees the old file or the new one, never a partial one; on an
    error the temporary file is removed and ``path`` is untouched.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def make_store(kind: str, path: str | os.PathLike[str] | None, suffix: str, rank: int, world: int) -> Store:
    """The store for ``EarlyStopper(snapshot=kind, path=path)``, with ``suffix`` before the file's extension."""
    if kind != "disk":
        if path is not None:
            raise ValueError(f"'path' is for snapshot='disk', got snapshot={kind!r}")
        return FlatSnapshot("cpu" if kind == "cpu" else None)
    if path is None:
        raise ValueError("snapshot='disk' needs path=, the file to keep the best weights in")
    text = os.fspath(path)
    if world > 1 and "{rank}" not in text:
        raise ValueError(f"with {world} ranks each needs its own file: put '{{rank}}' in 'path', got {text!r}")
    file = Path(text.replace("{rank}", str(rank)))
    if not file.parent.is_dir():
        raise ValueError(f"'path' must be in an existing directory, got {text!r}")
    return DiskSnapshot(file.with_name(file.stem + suffix + file.suffix))


def cpu_copies(tensors: Mapping[Any, torch.Tensor]) -> dict[Any, torch.Tensor]:
    """CPU copies of ``tensors`` that share no memory with them; tied tensors stay tied."""
    copies: dict[int, torch.Tensor] = {}
    for tensor in tensors.values():
        if id(tensor) not in copies:
            copies[id(tensor)] = tensor.detach().to("cpu", copy=True)
    return {key: copies[id(tensor)] for key, tensor in tensors.items()}


def check_same_keys(state: Mapping[Any, Any], like: Mapping[Any, Any]) -> None:
    """Raise a ``ValueError`` naming the keys ``state`` lacks and those it should not have."""
    if state.keys() != like.keys():
        missing, extra = sorted(map(str, like.keys() - state.keys())), sorted(map(str, state.keys() - like.keys()))
        raise ValueError(f"the snapshot does not fit: missing keys {missing}, unexpected keys {extra}")
