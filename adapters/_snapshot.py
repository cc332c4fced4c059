"""Where the best weights are kept in memory: flat preallocated buffers; and the checks every store makes.

A snapshot holds named *sections*, each a flat mapping of keys to tensors:
``"model"`` (the model's state dict) and, when kept, ``"optimizer"`` (the
optimizer's per-parameter tensors). Both are captured, loaded and restored
as one unit, tagged with the epoch they come from.

A `FlatSnapshot` packs every tensor into one contiguous buffer per
(device, dtype), allocated at the first capture. Each later capture copies
into views of those buffers and allocates nothing: on CPU with an
`AdaptiveCopy` (near the speed of one flat copy of the same
bytes, on a busy machine too: ``docs/torch.md``); to or from an accelerator
with one ``torch._foreach_copy_`` (fused kernels), into pinned memory without
blocking the host for a CPU copy. Tied tensors are stored once, views keep each source's
strides (a ``channels_last`` weight copies linearly), and non-float buffers
(BatchNorm's ``num_batches_tracked``) get a buffer of their own dtype. When
the layout changes (the first capture, a model moved to another dtype), the
new buffers are allocated and filled before the old ones are let go: an
allocation that fails (out of memory) leaves the previous snapshot whole.

The file on disk is `._disk`'s; `._stores.make_store` picks one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from earlystop_core import StateError

from ._copy import AdaptiveCopy

_ALIGN_BYTES = 64  # each tensor starts on a cache line (and a vector-load boundary on GPUs)

Sections = Mapping[str, Mapping[Any, torch.Tensor]]


class SnapshotError(StateError):
    """A snapshot that must not be restored: its file is damaged, gone, or another run's.

    A [`StateError`][earlystop_core.StateError] (so a ``ValueError``): like a saved
    state that does not fit, it is refused before anything is changed.
    """


class FlatSnapshot:
    """A copy of some sections of tensors in one preallocated buffer per (device, dtype).

    Args:
        device: Where to keep the copy; None keeps each tensor on its own
            device. A CPU copy of accelerator tensors goes to pinned memory
            and is made without blocking the host (``non_blocking=True``).

    Examples:
        >>> model = torch.nn.Linear(2, 2)
        >>> snapshot = FlatSnapshot()
        >>> snapshot.capture({"model": model.state_dict()}, epoch=0)
        >>> buffers = [b.data_ptr() for b in snapshot.buffers]
        >>> with torch.no_grad():
        ...     _ = model.weight.add_(1.0)
        >>> snapshot.capture({"model": model.state_dict()}, epoch=1)  # same layout: copied into the same buffers
        >>> [b.data_ptr() for b in snapshot.buffers] == buffers, snapshot.epoch
        (True, 1)
        >>> torch.equal(snapshot.tensors()["model"]["weight"], model.weight)
        True
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = None if device is None else torch.device(device)
        self.captured = False
        self.epoch: int | None = None
        self._layout = _Layout()
        self._copy: _PreparedCopy | None = None
        self._pending: list[torch.Event] = []

    @property
    def buffers(self) -> list[torch.Tensor]:
        """The preallocated buffers, one per (device, dtype)."""
        return self._layout.buffers

    @property
    def _on_cpu(self) -> AdaptiveCopy | None:
        """The CPU-to-CPU copy of the last capture (``benchmarks/bench_snapshot.py`` reports its choice)."""
        return None if self._copy is None else self._copy.on_cpu

    def capture(self, sections: Sections, epoch: int | None = None) -> None:
        """Copy ``sections`` into the buffers (allocated only when their layout is new), as ``epoch``'s.

        If this raises, `captured` is False or the previous snapshot is whole.
        """
        sources, signature = _distinct(sections)
        layout = self._layout
        if signature != layout.signature:
            layout = _Layout.allocate(sources, signature, self.device)  # if this raises, nothing has changed
        copy = self._copy
        if copy is None or not copy.ready_for(layout, sources):
            copy = _PreparedCopy(layout, sources)
        if layout is self._layout:
            self.captured = False  # the copy overwrites the snapshot: it is whole again only once the copy is
        else:
            self._wait()  # a pending copy into the old buffers lands before they are let go
        copy.run()
        self._layout, self._copy, self._pending = layout, copy, copy.record()
        layout.keep_metadata(sections)
        self.captured, self.epoch = True, epoch

    def load(self, sections: Sections, like: Sections, epoch: int | None = None) -> None:
        """Fill from ``sections`` (a checkpoint's tensors) with the layout ``like`` has (the live ones).

        Raises:
            ValueError: ``sections`` has other keys, shapes or dtypes than
                ``like``; nothing has changed then.
        """
        check_sections(sections, like)
        sources, signature = _distinct(like)
        layout = self._layout
        if signature != layout.signature:
            layout = _Layout.allocate(sources, signature, self.device)
        self._wait()
        if layout is self._layout:
            self.captured = False
        layout.fill(sections)
        self._layout = layout
        layout.keep_metadata(like)
        self.captured, self.epoch = True, epoch

    def tensors(self) -> dict[str, OrderedDict[Any, torch.Tensor]]:
        """The snapshot's sections, as state dicts of views into the buffers (overwritten by the next capture)."""
        self._wait()
        return self._layout.sections

    def forget(self) -> None:
        """Hold no snapshot (the buffers are kept for the next capture)."""
        self.captured, self.epoch = False, None

    def close(self) -> None:
        """Nothing to release: the buffers live as long as the snapshot."""

    def _wait(self) -> None:
        """Let a pending non-blocking copy land before the host reads or writes the buffers."""
        for event in self._pending:
            event.synchronize()
        self._pending = []


class _Layout:
    """Buffers for one arrangement of tensors (sections, keys, devices, dtypes, shapes, strides, ties), and views.

    Built whole or not at all: an allocation that fails leaves nothing behind.
    """

    def __init__(self) -> None:
        self.signature: tuple[Any, ...] | None = None
        self.buffers: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []  # one view per distinct source tensor
        self.sections: dict[str, OrderedDict[Any, torch.Tensor]] = {}
        self.non_blocking = False

    @classmethod
    def allocate(cls, sources: list[torch.Tensor], signature: tuple[Any, ...], device: torch.device | None) -> _Layout:
        """New buffers for ``sources`` (on ``device``, or each on its own), and the views of ``signature``."""
        layout = cls()
        targets: list[torch.Tensor | None] = [None] * len(sources)
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for index, tensor in enumerate(sources):
            groups.setdefault((device or tensor.device, tensor.dtype), []).append(index)
        for (where, dtype), members in groups.items():
            step = max(1, _ALIGN_BYTES // sources[members[0]].element_size())
            offsets, total = [], 0
            for index in members:
                offsets.append(total)
                total += -(-sources[index].numel() // step) * step
            pin = where.type == "cpu" and any(sources[i].device.type != "cpu" for i in members)
            buffer = torch.empty(total, dtype=dtype, device=where, pin_memory=pin)
            layout.non_blocking |= pin
            layout.buffers.append(buffer)
            for index, offset in zip(members, offsets, strict=True):
                # A meta tensor has the strides empty_like would give: the source's when dense, else contiguous.
                like = torch.empty_like(sources[index], device="meta")
                targets[index] = buffer.as_strided(like.shape, like.stride(), offset)
        layout.targets = [t for t in targets if t is not None]
        names, entries = signature
        layout.sections = {name: OrderedDict() for name in names}
        for name, key, _, index in entries:
            layout.sections[name][key] = layout.targets[index]
        layout.signature = signature
        return layout

    def fill(self, sections: Sections) -> None:
        """Copy ``sections`` (checked to fit) into the views; a tied group from its first key."""
        copied: set[int] = set()
        with torch.no_grad():
            for name, views in self.sections.items():
                for key, view in views.items():
                    if id(view) not in copied:
                        copied.add(id(view))
                        view.copy_(sections[name][key])

    def keep_metadata(self, sections: Sections) -> None:
        """Carry each state dict's ``_metadata`` (module versions ``load_state_dict`` reads) over to its views."""
        for name, part in sections.items():
            self.sections[name]._metadata = getattr(part, "_metadata", None)  # type: ignore[attr-defined]


class _PreparedCopy:
    """The copy of given source tensors into a layout's views, prepared once and run at every capture."""

    def __init__(self, layout: _Layout, sources: list[torch.Tensor]) -> None:
        self.layout = layout
        self.pointers = tuple(t.data_ptr() for t in sources)
        pairs = list(zip(layout.targets, sources, strict=True))
        on_cpu = [(t, s) for t, s in pairs if t.is_cpu and s.is_cpu]
        self.on_cpu = AdaptiveCopy([t for t, _ in on_cpu], [s for _, s in on_cpu]) if on_cpu else None
        self.others = (
            [t for t, s in pairs if not t.is_cpu or not s.is_cpu],
            [s for t, s in pairs if not t.is_cpu or not s.is_cpu],
        )

    def ready_for(self, layout: _Layout, sources: list[torch.Tensor]) -> bool:
        """Whether this copy is the one to run: the same tensors into the same buffers."""
        return layout is self.layout and bool(self.pointers) and self.pointers == tuple(t.data_ptr() for t in sources)

    def run(self) -> None:
        with torch.no_grad():
            if self.on_cpu is not None:
                self.on_cpu.run()
            if self.others[0]:
                torch._foreach_copy_(*self.others, non_blocking=self.layout.non_blocking)

    def record(self) -> list[torch.Event]:
        """Events marking the end of a non-blocking copy, one per source device (none for a blocking one)."""
        if not self.layout.non_blocking:
            return []
        events = [torch.Event(device=device) for device in {t.device for t in self.others[1]}]
        for event in events:
            event.record()
        return events


def _distinct(sections: Sections) -> tuple[list[torch.Tensor], tuple[Any, ...]]:
    """The distinct tensors of ``sections``, and their layout: the section names, then per tensor its
    (section, key, device, dtype, shape and strides, index among the distinct ones)."""
    first: dict[tuple[Any, ...], int] = {}
    sources: list[torch.Tensor] = []
    signature = []
    for name, part in sections.items():
        for key, tensor in part.items():
            alias = (tensor.data_ptr(), tensor.device, tensor.dtype, tensor.shape, tensor.stride())
            index = first.setdefault(alias, len(sources))
            if index == len(sources):
                sources.append(tensor)
            signature.append((name, key, alias[1:], index))
    return sources, (tuple(sections), tuple(signature))


def cpu_copies(tensors: Mapping[Any, torch.Tensor]) -> dict[Any, torch.Tensor]:
    """CPU copies of ``tensors`` that share no memory with them; tied tensors stay tied."""
    copies: dict[int, torch.Tensor] = {}
    for tensor in tensors.values():
        if id(tensor) not in copies:
            copies[id(tensor)] = tensor.detach().to("cpu", copy=True)
    return {key: copies[id(tensor)] for key, tensor in tensors.items()}


def check_sections(sections: Sections, like: Sections) -> None:
    """Raise a ``ValueError`` unless ``sections`` has the sections of ``like``, each fitting (`check_fits`)."""
    if sections.keys() != like.keys():
        raise ValueError(f"the snapshot has the sections {sorted(sections)}, not {sorted(like)}")
    for name, part in sections.items():
        check_fits(part, like[name], name)


def check_fits(
    state: Mapping[Any, Any], like: Mapping[Any, torch.Tensor], what: str = "model", dtypes: bool = True
) -> None:
    """Raise a ``ValueError`` naming the first difference in keys, type, shape or dtype between ``state`` and ``like``.

    ``dtypes=False`` allows other dtypes (a restore into a model since cast to
    another dtype converts, as ``load_state_dict`` does).

    Examples:
        >>> check_fits({"w": torch.zeros(2, 3)}, {"w": torch.zeros(3, 2)})
        Traceback (most recent call last):
        ...
        ValueError: the saved model does not fit: 'w' is torch.float32 of shape (2, 3) there, ... (3, 2) here
    """
    if state.keys() != like.keys():
        missing, extra = sorted(map(str, like.keys() - state.keys())), sorted(map(str, state.keys() - like.keys()))
        raise ValueError(f"the saved {what} does not fit: missing keys {missing}, unexpected keys {extra}")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"the saved {what} does not fit: {key!r} is a {type(value).__name__}, not a tensor")
        live = like[key]
        if value.shape != live.shape or (dtypes and value.dtype != live.dtype):
            raise ValueError(
                f"the saved {what} does not fit: {key!r} is {value.dtype} of shape {tuple(value.shape)} there, "
                f"{live.dtype} of shape {tuple(live.shape)} here"
            )
