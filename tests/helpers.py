"""Helpers shared by the test modules (``from helpers import same``: pytest puts ``tests/`` on the path)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from earlystop_core import Decision


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN, element-wise for tuples (Decisions); ``None`` equals only ``None``.

    Examples:
        >>> same((1.0, float("nan")), (1.0, float("nan"))), same(None, 0.0)
        (True, False)
    """
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def assert_same_decisions(actual: Sequence[Decision], expected: Sequence[Decision]) -> None:
    """Two runs' decisions, equal one by one (NaN equal to NaN)."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert same(got, want), f"\n got: {got!r}\nwant: {want!r}"


def strict_json(state: dict[str, Any]) -> dict[str, Any]:
    """Round trip through JSON without NaN/Infinity tokens (raises if any)."""
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded
