"""Constructor argument checks with exact messages (``'patience' must be >= 0, got -1``)."""

from __future__ import annotations

import math
import numbers
from typing import Any


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum``.

    Examples:
        >>> check_int("patience", -1)
        Traceback (most recent call last):
        ...
        ValueError: 'patience' must be >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name!r} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name!r} must be >= {minimum}, got {value!r}")
    return int(value)


def check_real(name: str, value: Any, optional: bool = False) -> float | None:
    """Return ``value`` as a finite float (or None when ``optional``).

    Examples:
        >>> check_real("min_delta", float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: 'min_delta' must be finite, got nan
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "a number or None" if optional else "a number"
        raise TypeError(f"{name!r} must be {kind}, got {type(value).__name__} ({value!r})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name!r} must be finite, got {number!r}")
    return number


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a finite float if it is > 0.

    Examples:
        >>> check_positive("alpha", 0)
        Traceback (most recent call last):
        ...
        ValueError: 'alpha' must be > 0, got 0
    """
    number = check_real(name, value)
    assert number is not None
    if number <= 0:
        raise ValueError(f"{name!r} must be > 0, got {value!r}")
    return number


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool.

    Examples:
        >>> check_bool("restore_best_weights", 1)
        Traceback (most recent call last):
        ...
        TypeError: 'restore_best_weights' must be True or False, got int (1)
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name!r} must be True or False, got {type(value).__name__} ({value!r})")
    return value


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Return ``value`` if it is one of ``choices``.

    Examples:
        >>> check_choice("on_missing", "ignore", ("raise", "skip"))
        Traceback (most recent call last):
        ...
        ValueError: on_missing must be one of 'raise', 'skip', got 'ignore'
    """
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value
