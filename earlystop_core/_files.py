"""Files written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A reader (or a process that crashed mid-write) sees the old file or the
    new one, never a partial one; on an error the temporary file is removed
    and ``path`` is left as it was.

    Examples:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "policy.json"
        >>> write_atomically(target, "{}\\n")
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('{}\\n', ['policy.json'])
    """
    target = Path(path)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); keep the old file's mode, or the usual 0644.
        os.chmod(temporary, target.stat().st_mode & 0o7777 if target.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
