"""Checks the adapters make before they act on a decision or a resumed state (no framework imported here).

The core keeps ``Decision.lr`` finite and positive and refuses a saved state
that says otherwise; the adapters check again before they touch an
optimizer, so a rate that slipped through (a corrupt state, a bug) raises
instead of training on with a NaN learning rate.
"""

from __future__ import annotations

import math

from earlystop_core import Monitor, StateError


def checked_lr(lr: float) -> float:
    """``lr`` if it can be a learning rate (finite and > 0), else a ``ValueError`` saying nothing was applied.

    Examples:
        >>> checked_lr(0.01)
        0.01
        >>> checked_lr(float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: the Monitor asked for the learning rate nan, which is not finite and > 0: not applied, ...
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(
            f"the Monitor asked for the learning rate {lr!r}, which is not finite and > 0: not applied, and "
            "the epoch was not taken. Its state is corrupt (a resumed state?): load a sound one, or reset() it"
        )
    return float(lr)


def check_resumed_lr(monitor: Monitor) -> None:
    """Raise ``StateError`` if a just-loaded monitor holds a learning rate that could not be applied.

    Examples:
        >>> check_resumed_lr(Monitor())  # no plateau, no rate
    """
    lr = monitor.lr
    if lr is None:
        return
    if monitor.plateau is None:
        raise StateError(f"the saved Monitor state holds a learning rate ({lr!r}) but this Monitor has no plateau")
    try:
        checked_lr(lr)
    except ValueError:
        raise StateError(
            f"the saved Monitor state holds the learning rate {lr!r}; a rate must be finite and > 0"
        ) from None
