"""Where the best weights are kept: flat preallocated buffers in memory, or one file on disk.

A snapshot holds named *sections*, each a flat mapping of keys to tensors:
``"model"`` (the model's state dict) and, when kept, ``"optimizer"`` (the
optimizer's per-parameter tensors). Both are captured, loaded and restored
as one unit, tagged with the epoch they come from.

A :class:`FlatSnapshot` packs every tensor into one contiguous buffer per
(device, dtype), allocated at the first capture. Each later capture copies
into views of those buffers and allocates nothing: on CPU with an
:class:`~._copy.AdaptiveCopy` (near the speed of one flat copy of the same
bytes, on a busy machine too: ``docs/torch.md``); to or from an accelerator
with one ``torch._foreach_copy_`` (fused kernels), into pinned memory without
blocking the host for a CPU copy. Tied tensors are stored once, views keep each source's
strides (a ``channels_last`` weight copies linearly), and non-float buffers
(BatchNorm's ``num_batches_tracked``) get a buffer of their own dtype. When
the layout changes (the first capture, a model moved to another dtype), the
new buffers are allocated and filled before the old ones are let go: an
allocation that fails (out of memory) leaves the previous snapshot whole.

A :class:`DiskSnapshot` writes one file, ``torch.load(path, weights_only=True)``
loadable, with the sections, the run that wrote it, the epoch, and a SHA-256
checksum of it all (layout in ``docs/torch.md``). It is written to a
temporary file in the same directory, fsynced, and renamed over the target
(``os.replace``), then the directory is fsynced: the file is always a whole
snapshot. A lock file beside it (:mod:`._lock`) keeps other runs off the
path, and reading it back checks the run, the epoch and the checksum, so
neither another run's weights nor a damaged file is restored silently.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from earlystop_core import StateError

from ._copy import AdaptiveCopy
from ._lock import SnapshotLock

_ALIGN_BYTES = 64  # each tensor starts on a cache line (and a vector-load boundary on GPUs)
FILE_FORMAT, FILE_VERSION = "earlystop_core.adapters.torch.snapshot", 1
_HEADER = ("format", "version", "run", "epoch", "sections", "checksum")

Sections = Mapping[str, Mapping[Any, torch.Tensor]]


class SnapshotError(StateError):
    """A snapshot that must not be restored: its file is damaged, gone, or another run's.

    A :class:`~earlystop_core.StateError` (so a ``ValueError``): like a saved
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

        If this raises, :attr:`captured` is False or the previous snapshot is whole.
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


class DiskSnapshot:
    """Sections of tensors kept in one file, replaced atomically at each capture, checked when read.

    Args:
        path: The file; its directory must exist and be writable.
        run: This run's identity, written into the file and its lock (a new
            random one by default).

    Raises:
        SnapshotInUseError: Another live stopper uses ``path``.
        OSError: The directory is not writable.

    Examples:
        >>> import tempfile, pathlib
        >>> model = torch.nn.Linear(2, 2)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     snapshot = DiskSnapshot(pathlib.Path(folder) / "best.pt")
        ...     snapshot.capture({"model": model.state_dict()}, epoch=3)
        ...     saved = torch.load(snapshot.path, weights_only=True)
        ...     _ = model.load_state_dict(saved["model"])
        ...     snapshot.close()
        ...     saved["epoch"], saved["run"] == snapshot.run, sorted(snapshot.tensors()["model"])
        (3, True, ['bias', 'weight'])
    """

    def __init__(self, path: Path, run: str | None = None) -> None:
        self.path = path
        self.run = run or uuid.uuid4().hex
        self.captured = False
        self.epoch: int | None = None
        self._checksum: str | None = None  # of the file this run wrote last
        self._lock = SnapshotLock(path, self.run)
        self._lock.acquire()

    def capture(self, sections: Sections, epoch: int | None = None) -> None:
        """Write ``sections`` as ``epoch``'s to a temporary file, fsync it, and rename it over :attr:`path`.

        If this raises (a full disk), the previous file is whole and still the snapshot.
        """
        self._lock.acquire()  # again, if close() released it
        payload = _payload(sections, self.run, epoch)
        save_atomically(payload, self.path)
        self.captured, self.epoch, self._checksum = True, epoch, payload["checksum"]

    def load(self, sections: Sections, like: Sections, epoch: int | None = None) -> None:
        """Write ``sections`` (a checkpoint's tensors) under this run's identity, once checked against ``like``."""
        check_sections(sections, like)
        self.capture(sections, epoch)

    def tensors(self) -> dict[str, dict[Any, torch.Tensor]]:
        """The snapshot's sections, read back (memory-mapped, on CPU) once the file is checked.

        Raises:
            SnapshotError: The file is gone, damaged, or not the one this run wrote last.
        """
        payload = read_snapshot(self.path)
        if payload["run"] != self.run:
            raise SnapshotError(
                f"the snapshot file {self.path} was written by another run ({payload['run'][:8]}, not this one's "
                f"{self.run[:8]}): it holds that run's weights, so they are not restored. Give each run its own path="
            )
        if (payload["epoch"], payload["checksum"]) != (self.epoch, self._checksum):
            raise SnapshotError(
                f"the snapshot file {self.path} is not the one this run wrote last (it holds epoch "
                f"{payload['epoch']}, this run wrote epoch {self.epoch}): it was replaced, so it is not restored"
            )
        return {name: payload[name] for name in payload["sections"]}

    def forget(self) -> None:
        """Hold no snapshot (the file stays, but is not restored)."""
        self.captured, self.epoch, self._checksum = False, None, None

    def close(self) -> None:
        """Release the lock on :attr:`path` (the file stays); the next capture takes it again."""
        self._lock.release()


Store = FlatSnapshot | DiskSnapshot


def _payload(sections: Sections, run: str, epoch: int | None) -> dict[str, Any]:
    """What the snapshot file holds: the header, the sections (on CPU), and the checksum of both."""
    on_cpu = {name: _on_cpu(part) for name, part in sections.items()}
    assert not on_cpu.keys() & set(_HEADER), "a section may not be named like a header field"
    payload: dict[str, Any] = {"format": FILE_FORMAT, "version": FILE_VERSION, "run": run, "epoch": epoch}
    payload.update(sections=list(on_cpu), checksum=checksum(run, epoch, on_cpu), **on_cpu)
    return payload


def _on_cpu(part: Mapping[Any, torch.Tensor]) -> OrderedDict[Any, torch.Tensor]:
    """The tensors on CPU (no copy for CPU tensors), with the state dict's ``_metadata``."""
    moved: OrderedDict[Any, torch.Tensor] = OrderedDict((k, t.detach().to("cpu")) for k, t in part.items())
    metadata = getattr(part, "_metadata", None)
    if metadata is not None:
        moved._metadata = metadata  # type: ignore[attr-defined]
    return moved


def checksum(run: str, epoch: int | None, sections: Sections) -> str:
    """SHA-256 of the run, the epoch, and each tensor's section, key, dtype, shape and bytes, in order.

    Examples:
        >>> a = {"model": {"w": torch.zeros(2)}}
        >>> checksum("r", 1, a) == checksum("r", 1, {"model": {"w": torch.zeros(2)}})
        True
        >>> checksum("r", 1, a) == checksum("r", 1, {"model": {"w": torch.tensor([0.0, 1e-45])}})
        False
    """
    digest = hashlib.sha256(f"{FILE_FORMAT}\0{FILE_VERSION}\0{run}\0{epoch}\0".encode())
    for name, part in sections.items():
        for key, tensor in part.items():
            flat = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
            digest.update(f"{name}\0{key!r}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(flat.view(torch.uint8).numpy().data)
    return "sha256:" + digest.hexdigest()


def read_snapshot(path: Path) -> dict[str, Any]:
    """A snapshot file read back and checked: its layout, then its checksum.

    Raises:
        SnapshotError: The file is gone, is no snapshot file, or is damaged.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise SnapshotError(f"the snapshot file {path} is gone (deleted while the run went on?)") from None
    except Exception as error:
        raise SnapshotError(f"the snapshot file {path} is damaged: it does not load ({error})") from error
    checked = _checked_payload(payload, path)
    sections = {name: checked[name] for name in checked["sections"]}
    if checksum(checked["run"], checked["epoch"], sections) != checked["checksum"]:
        raise SnapshotError(
            f"the snapshot file {path} is damaged: its contents do not match its checksum, so it is not restored"
        )
    return checked


def _checked_payload(payload: Any, path: Path) -> dict[str, Any]:
    def refuse(why: str) -> SnapshotError:
        return SnapshotError(f"{path} is not a snapshot file of this version, or is damaged: {why}")

    if not isinstance(payload, dict) or any(field not in payload for field in _HEADER):
        raise refuse(f"it lacks the fields {list(_HEADER)}")
    if (payload["format"], payload["version"]) != (FILE_FORMAT, FILE_VERSION):
        raise refuse(f"it is {payload['format']!r} version {payload['version']!r}")
    if not isinstance(payload["run"], str) or not isinstance(payload["checksum"], str):
        raise refuse("'run' and 'checksum' must be strings")
    if payload["epoch"] is not None and (isinstance(payload["epoch"], bool) or not isinstance(payload["epoch"], int)):
        raise refuse(f"'epoch' must be an int or None, got {payload['epoch']!r}")
    sections = payload["sections"]
    if not isinstance(sections, list) or any(not isinstance(payload.get(name), Mapping) for name in sections):
        raise refuse("'sections' must list its sections of tensors")
    for name in sections:
        if any(not isinstance(t, torch.Tensor) for t in payload[name].values()):
            raise refuse(f"section {name!r} holds something other than tensors")
    return payload


def save_atomically(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, fsync, ``os.replace``, fsync the directory.

    A reader sees the old file or the new one, never a partial one; on an
    error the temporary file is removed and ``path`` is untouched.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable; a no-op where directories cannot be opened or synced (Windows, some FS)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def make_store(kind: str, path: str | os.PathLike[str] | None, rank: int, world: int, run: str | None = None) -> Store:
    """The store for ``EarlyStopper(snapshot=kind, path=path)``; a disk store takes the path's lock now.

    Raises:
        ValueError: ``path`` does not go with ``kind``, or its directory does not exist.
        SnapshotInUseError: Another live stopper uses the file.
        OSError: The directory is not writable.
    """
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
    if file.is_dir():  # found now, not at the first improvement
        example = os.path.join(text, "best.pt")
        raise ValueError(f"'path' must be a file for the best weights, got the folder {text!r}; e.g. {example!r}")
    if file.exists() and not file.is_file():
        raise ValueError(f"'path' must be a regular file to keep the best weights in, got {text!r}")
    return DiskSnapshot(file, run)


def cpu_copies(tensors: Mapping[Any, torch.Tensor]) -> dict[Any, torch.Tensor]:
    """CPU copies of ``tensors`` that share no memory with them; tied tensors stay tied."""
    copies: dict[int, torch.Tensor] = {}
    for tensor in tensors.values():
        if id(tensor) not in copies:
            copies[id(tensor)] = tensor.detach().to("cpu", copy=True)
    return {key: copies[id(tensor)] for key, tensor in tensors.items()}


def check_sections(sections: Sections, like: Sections) -> None:
    """Raise a ``ValueError`` unless ``sections`` has the sections of ``like``, each fitting (:func:`check_fits`)."""
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
