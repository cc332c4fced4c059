"""The learning rate between the adapters and the Monitor, whatever the framework (none imported here).

The core keeps ``Decision.lr`` finite and positive and refuses a saved state
that says otherwise; the adapters check again before they touch an
optimizer (`checked_lr`), so a rate that slipped through (a corrupt state, a
bug) raises instead of training on with a NaN learning rate. The other way,
`missing_rates` hands a rule that reads the rate the optimizer's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any


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


def missing_rates(rule: Any, logs: Mapping[str, Any], rate: Callable[[], float]) -> dict[str, float]:
    """``rate()`` under each name a stopping rule reads as a learning rate (its ``optional`` names: a learned
    policy's ``lr``) that the logs lack, so that the rule sees the schedule; ``{}`` (and no call) when none.

    Examples:
        >>> from earlystop_core import Monitor
        >>> missing_rates(Monitor(policy="recommended").rule, {"val_loss": 1.0}, lambda: 0.1)
        {'lr': 0.1}
        >>> missing_rates(Monitor(policy="recommended").rule, {"val_loss": 1.0, "lr": 0.5}, lambda: 0.1)
        {}
        >>> missing_rates(None, {}, lambda: 0.1)
        {}
    """
    names = [name for name in getattr(rule, "optional", ()) if name not in logs]
    return dict.fromkeys(names, rate()) if names else {}
