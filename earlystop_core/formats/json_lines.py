"""JSON lines, one value per non-blank line, each line's fault named by file, line and column."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from earlystop_core.errors import FormatError

__all__ = ["json_lines"]


def json_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> Iterator[tuple[int, str, Any]]:
    """Each non-blank line of ``lines`` (read from ``path``) as ``(line number, line, parsed value)``.

    Raises:
        FormatError: A line that is not JSON, at its line and column.

    Examples:
        >>> list(json_lines("log.jsonl", ['{"epoch": 0}', "", "[1, NaN]"]))
        [(1, '{"epoch": 0}', {'epoch': 0}), (3, '[1, NaN]', [1, nan])]
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise FormatError(path, number, error.colno, f"not JSON: {error.msg}") from None
        yield number, line, value
