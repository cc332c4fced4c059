"""One live stopper per snapshot file: a lock file beside it, ``best.pt.lock``.

Two runs given the same ``path=`` would overwrite each other's best weights
and each restore the other's at the end, while its message names its own
best epoch. So the stopper that writes ``best.pt`` first creates
``best.pt.lock`` with ``O_CREAT | O_EXCL`` (atomic: of two creators, one
wins) and writes into it who holds it: pid, host and run id, as JSON. Another
stopper, in this process or another, finds the lock and refuses with a
`SnapshotInUseError` naming the holder and the fixes.

The lock is released by ``EarlyStopper.close()`` (and so by the end of a
``with`` block), or when the stopper is garbage-collected or the interpreter
exits (``weakref.finalize``). A process killed outright leaves its lock
behind: a lock whose pid is no longer running on this host is stale, and is
taken over with a warning. A lock from another host (a shared filesystem)
cannot be checked from here and is never taken over; the error says to
delete it if its run is over.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
import weakref
from pathlib import Path
from typing import NamedTuple

__all__ = ["Holder", "SnapshotInUseError", "SnapshotLock", "lock_path"]


class SnapshotInUseError(RuntimeError):
    """Another live stopper (in this process or another) holds the lock of this snapshot file."""


class Holder(NamedTuple):
    """Who holds a lock: what the lock file says."""

    pid: int
    host: str
    run: str

    def describe(self) -> str:
        """``pid 12 on host 'box' (run 3f2a9c1e)``, with ``this process`` when it is this one.

        Examples:
            >>> Holder(12, "box", "3f2a9c1e5d").describe()
            "pid 12 on host 'box' (run 3f2a9c1e)"
        """
        here = " (this process)" if (self.pid, self.host) == (os.getpid(), socket.gethostname()) else ""
        return f"pid {self.pid}{here} on host {self.host!r} (run {self.run[:8]})"


def lock_path(snapshot: Path) -> Path:
    """The lock file of a snapshot file: the same name with ``.lock`` added.

    Examples:
        >>> lock_path(Path("runs/best.pt")).as_posix()
        'runs/best.pt.lock'
    """
    return snapshot.with_name(snapshot.name + ".lock")


class SnapshotLock:
    """The lock of one snapshot file, for one run.

    Args:
        snapshot: The snapshot file the lock guards.
        run: The run's identity, written into the lock.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     first = SnapshotLock(Path(folder) / "best.pt", run="a" * 32)
        ...     first.acquire()
        ...     try:
        ...         SnapshotLock(Path(folder) / "best.pt", run="b" * 32).acquire()
        ...     except SnapshotInUseError as error:
        ...         print(str(error).split(":")[0])
        ...     first.release()
        ...     first.held, sorted(p.name for p in Path(folder).iterdir())
        snapshot file ... is in use by pid ... (this process) on host ...
        (False, [])
    """

    def __init__(self, snapshot: Path, run: str) -> None:
        self.snapshot = snapshot
        self.path = lock_path(snapshot)
        self.run = run
        self._finalizer: weakref.finalize[..., SnapshotLock] | None = None

    @property
    def held(self) -> bool:
        """Whether this lock is held now (acquired and not yet released)."""
        return self._finalizer is not None and self._finalizer.alive

    def acquire(self) -> None:
        """Take the lock (a no-op when held): create the lock file, or take over a stale one.

        Raises:
            SnapshotInUseError: Another live stopper holds it.
            OSError: The lock file cannot be created (an unwritable or full
                directory); the message names the directory and the fix.
        """
        if self.held:
            return
        me = Holder(os.getpid(), socket.gethostname(), self.run)
        for attempt in range(2):
            try:
                _create(self.path, me)
                break
            except FileExistsError:
                holder = read_holder(self.path)
                if attempt == 1 or holder is None or not _stale(holder):
                    raise SnapshotInUseError(self._in_use(holder)) from None
                warnings.warn(
                    f"taking over the lock {self.path} of {holder.describe()}: that process is no longer running",
                    RuntimeWarning,
                    stacklevel=5,  # the line that built the EarlyStopper
                )
                _remove_if_held_by(self.path, holder)  # unless another process took it over first
            except OSError as error:
                raise OSError(
                    error.errno,
                    f"cannot create files in {self.path.parent} to keep the best weights in {self.snapshot.name} "
                    f"(creating {self.path.name}: {error.strerror}); pass a path= in a writable directory "
                    "with free space",
                ) from error
        # The callback must not hold self: it runs when self is collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _release, self.path, me)

    def release(self) -> None:
        """Delete the lock file if this lock holds it; idempotent."""
        if self._finalizer is not None:
            self._finalizer()

    def _in_use(self, holder: Holder | None) -> str:
        who = "an unknown holder (the lock file is unreadable)" if holder is None else holder.describe()
        return (
            f"snapshot file {self.snapshot} is in use by {who}: two runs on one path would restore each other's "
            f"weights. Pass another path=, or close the other stopper first (stopper.close(), or end its `with` "
            f"block); if no run uses this path any more, delete {self.path}"
        )


def read_holder(path: Path) -> Holder | None:
    """What a lock file says, or None when it is unreadable (being written, damaged, gone)."""
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        return Holder(int(fields["pid"]), str(fields["host"]), str(fields["run"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _create(path: Path, holder: Holder) -> None:
    """Create the lock file, failing with ``FileExistsError`` when it exists; whole or not at all."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(holder._asdict(), file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _stale(holder: Holder) -> bool:
    """Whether the holder's process is gone: only knowable for a pid on this host, and not on Windows.

    (``os.kill(pid, 0)`` only checks on POSIX; on Windows it would end the process.)
    """
    if holder.host != socket.gethostname() or os.name == "nt":
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False


def _release(path: Path, holder: Holder) -> None:
    """Delete the lock file if ``holder`` still holds it, from the holder's own process.

    A forked child (a DataLoader worker) inherits the finalizer but not the
    lock; and a lock taken over since belongs to its new holder.
    """
    if holder.pid == os.getpid():
        _remove_if_held_by(path, holder)


def _remove_if_held_by(path: Path, holder: Holder) -> None:
    """Delete the lock file if it still names ``holder``; never raises (a finalizer calls it)."""
    if read_holder(path) != holder:
        return
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:  # at interpreter exit or in a finally: say so, never raise
        warnings.warn(f"could not delete the lock {path}: {error}; delete it by hand", RuntimeWarning, stacklevel=2)
