"""The check the adapters make before they apply a decision's learning rate (no framework imported here).

The core keeps ``Decision.lr`` finite and positive and refuses a saved state
that says otherwise; the adapters check again before they touch an
optimizer, so a rate that slipped through (a corrupt state, a bug) raises
instead of training on with a NaN learning rate.
"""

from __future__ import annotations

import math


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
