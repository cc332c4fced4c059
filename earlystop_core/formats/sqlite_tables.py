"""Which tables an SQLite file holds, read with the standard library: how the Optuna and MLflow stores are told."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["sqlite_tables"]

_HEADER = b"SQLite format 3\x00"


def sqlite_tables(path: Path) -> set[str]:
    """The names of the tables in the SQLite file at ``path``, opened read-only; empty for any other file.

    Examples:
        >>> import tempfile
        >>> sqlite_tables(Path(tempfile.mkdtemp()) / "none.db")
        set()
    """
    try:
        with open(path, "rb") as stream:
            if stream.read(len(_HEADER)) != _HEADER:
                return set()
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except (OSError, sqlite3.Error):
        return set()
