"""The store an ``EarlyStopper`` keeps its best weights in: memory (`._snapshot`) or a file (`._disk`)."""

from __future__ import annotations

import os
from pathlib import Path

from ._disk import DiskSnapshot
from ._snapshot import FlatSnapshot

Store = FlatSnapshot | DiskSnapshot


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
