"""The best weights in one file: written atomically, owned by one run, checked when read.

A `DiskSnapshot` writes one file, ``torch.load(path, weights_only=True)``
loadable, with the sections, the run that wrote it, the epoch, and a SHA-256
checksum of it all (layout in ``docs/torch.md``). It is written to a
temporary file in the same directory, fsynced, and renamed over the target
(``os.replace``), then the directory is fsynced: the file is always a whole
snapshot. A lock file beside it (`._lock`) keeps other runs off the
path, and reading it back checks the run, the epoch and the checksum, so
neither another run's weights nor a damaged file is restored silently.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from earlystop_core._files import write_atomically

from ._lock import SnapshotLock
from ._snapshot import Sections, SnapshotError, check_sections

FILE_FORMAT, FILE_VERSION = "earlystop_core.adapters.torch.snapshot", 1
_HEADER = ("format", "version", "run", "epoch", "sections", "checksum")


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
        """Write ``sections`` as ``epoch``'s to a temporary file, fsync it, and rename it over `path`.

        If this raises (a full disk), the previous file is whole and still the snapshot.
        """
        self._lock.acquire()  # again, if close() released it
        payload = _payload(sections, self.run, epoch)
        write_atomically(self.path, lambda file: torch.save(payload, file))
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
        """Release the lock on `path` (the file stays); the next capture takes it again."""
        self._lock.release()


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
