"""Strict JSON for saved states: non-finite floats as strings, a checked envelope.

Every saved state is ``{"format", "version", "config", "state"}``. Loading
checks the envelope once, here, for the Monitor and ReduceLROnPlateau alike:
the format, the version, and that the saving object was configured exactly as
the loading one (naming each difference).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from earlystop_core.errors import StateError

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def float_to_json(value: float | None) -> float | str | None:
    """A float as strict JSON: ``"nan"``, ``"inf"`` and ``"-inf"`` as strings.

    Examples:
        >>> float_to_json(float("-inf")), float_to_json(0.5)
        ('-inf', 0.5)
    """
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def float_from_json(value: Any, what: str) -> float | None:
    """The inverse of :func:`float_to_json`; ``what`` names the field in errors.

    Examples:
        >>> float_from_json("nan", "best")
        nan
    """
    if value is None:
        return None
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"corrupt saved state: {what} must be a number, got {value!r}")
    return float(value)


def same(saved: object, value: object) -> bool:
    """Equal and of the same type (``1 == True`` and ``0 == 0.0`` in Python, not here)."""
    return saved == value and type(saved) is type(value)


def open_envelope(
    saved: Mapping[str, Any] | str, kind: str, version: int, config: Mapping[str, Any]
) -> Mapping[str, Any]:
    """Check a saved state's envelope against the loading object; return its ``state`` section.

    Examples:
        >>> open_envelope({"format": "x"}, "earlystop_core.Monitor", 1, {})
        Traceback (most recent call last):
        ...
        earlystop_core.errors.StateError: not a saved earlystop_core.Monitor state: 'format' is 'x'
    """
    if isinstance(saved, str):
        try:
            saved = json.loads(saved)
        except json.JSONDecodeError as error:
            raise StateError(f"saved {kind} state is not valid JSON: {error}") from None
    if not isinstance(saved, Mapping):
        raise StateError(f"a saved {kind} state is a dict from state_dict(), got {type(saved).__name__}")
    if saved.get("format") != kind:
        raise StateError(f"not a saved {kind} state: 'format' is {saved.get('format')!r}")
    if not same(saved.get("version"), version):
        raise StateError(
            f"saved {kind} state has version {saved.get('version')!r}; this earlystop_core reads {version}"
        )
    _check_same_config(kind, saved.get("config"), config)
    state = saved.get("state")
    if not isinstance(state, Mapping):
        raise StateError(f"saved {kind} state has no 'state' section")
    return state


def _check_same_config(kind: str, saved: object, mine: Mapping[str, Any]) -> None:
    if not isinstance(saved, Mapping):
        raise StateError(f"saved {kind} state has no 'config' section")
    differences = [
        f"{name}={saved.get(name, '<absent>')!r} (saved) vs {value!r} (here)"
        for name, value in mine.items()
        if not same(saved.get(name, "<absent>"), value)
    ]
    differences += [f"{name} (unknown setting)" for name in sorted(set(saved) - set(mine))]
    if differences:
        raise StateError(
            f"saved {kind} state comes from one configured differently: "
            + "; ".join(differences)
            + ". Build it with the saved settings to resume."
        )
