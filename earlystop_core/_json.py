"""Strict JSON for saved states: non-finite floats as strings, a checked envelope.

Every saved state is ``{"format", "version", "config", "state", "checksum"}``.
Loading checks the envelope once, here, for the Monitor and ReduceLROnPlateau
alike: the format, the version, and that the saving object was configured
exactly as the loading one (naming each difference); once the fields have been
checked, the checksum (`check_seal`) catches damage they cannot.
"""

from __future__ import annotations

import hashlib
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
    """The inverse of `float_to_json`; ``what`` names the field in errors.

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
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        raise StateError(f"corrupt saved state: {what} is out of range, got {value!r}") from None


def floats_from_json(values: list[Any], what: str) -> list[float]:
    """A saved list of numbers read back with `float_from_json`; a null in it is corrupt, not skipped.

    Examples:
        >>> floats_from_json([0.5, "inf"], "recent")
        [0.5, inf]
        >>> floats_from_json([0.5, None], "recent")
        Traceback (most recent call last):
        ...
        earlystop_core.errors.StateError: corrupt saved state: recent must be a list of numbers, got [0.5, None]
    """
    numbers = [float_from_json(value, what) for value in values]
    if any(number is None for number in numbers):
        raise StateError(f"corrupt saved state: {what} must be a list of numbers, got {values!r}")
    return [number for number in numbers if number is not None]


def seal(envelope: dict[str, Any]) -> dict[str, Any]:
    """Add a ``checksum`` of the envelope's content, which `check_seal` verifies at load time.

    A state is checked field by field when it is loaded, but some damage
    leaves it plausible (a best of 0.7 edited to 0.07 is still a number):
    the checksum catches what the field checks cannot.

    Examples:
        >>> sealed = seal({"format": "x", "version": 1, "config": {}, "state": {"best": 0.7}})
        >>> sealed["checksum"][:7]
        'sha256:'
        >>> sealed["state"]["best"] = 0.07
        >>> check_seal(sealed, "x")
        Traceback (most recent call last):
        ...
        earlystop_core.errors.StateError: saved x state does not match its checksum: it was changed after...
    """
    envelope["checksum"] = digest(envelope)
    return envelope


def check_seal(saved: Mapping[str, Any] | str, kind: str) -> None:
    """Raise ``StateError`` unless ``saved`` matches its checksum (a state without one, written by hand, passes)."""
    if isinstance(saved, str):
        saved = json.loads(saved)
    assert isinstance(saved, Mapping)  # open_envelope has checked it
    if not matches_checksum(saved):
        raise StateError(
            f"saved {kind} state does not match its checksum: it was changed after it was saved, or damaged. "
            "Load the state as state_dict() returned it (if you edited it on purpose, delete its 'checksum')"
        )


def matches_checksum(content: Mapping[str, Any]) -> bool:
    """Whether ``content`` matches its own ``checksum``; content without one (written by hand) does.

    Examples:
        >>> matches_checksum({"a": 1}), matches_checksum({"a": 1, "checksum": digest({"a": 2})})
        (True, False)
    """
    if "checksum" not in content:
        return True
    try:
        return bool(content["checksum"] == digest(content))
    except (TypeError, ValueError):  # a value JSON cannot hold: not what was written
        return False


def digest(content: Mapping[str, Any]) -> str:
    """SHA-256 of ``content`` as canonical JSON, its own ``checksum`` left out.

    Examples:
        >>> digest({"a": 1, "checksum": "x"}) == digest({"a": 1})
        True
    """
    text = json.dumps(
        {name: value for name, value in content.items() if name != "checksum"},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    unknown = sorted(map(str, set(saved) - {"format", "version", "config", "state", "checksum"}))
    if unknown:  # nothing is silently ignored
        raise StateError(f"saved {kind} state has unknown section(s) {', '.join(map(repr, unknown))}")
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
