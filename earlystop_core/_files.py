"""Files written whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Let ``write`` fill a temporary file beside ``path``; fsync it, rename it over ``path``, fsync the folder.

    A reader (or a process that crashed mid-write) sees the old file or the
    new one, never a partial one; on an error the temporary file is removed
    and ``path`` is left as it was. The saved policy and the PyTorch
    helper's snapshot file are written so.

    Examples:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "policy.json"
        >>> write_atomically(target, lambda file: file.write(b"{}\\n"))
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('{}\\n', ['policy.json'])
    """
    target = Path(path)
    if not target.parent.is_dir():  # said of the folder, not of the temporary file mkstemp would name
        raise FileNotFoundError(errno.ENOENT, f"no folder {str(target.parent)!r} to write {target.name!r} in")
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); keep the old file's mode, or the usual 0644.
        os.chmod(temporary, target.stat().st_mode & 0o7777 if target.exists() else 0o644)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; a no-op where folders cannot be opened or synced (Windows, some FS)."""
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
