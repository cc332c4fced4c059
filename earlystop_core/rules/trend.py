"""A trend test: has the monitored value stopped falling over the last windows?"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from earlystop_core._json import float_to_json, floats_from_json
from earlystop_core._validate import check_bool, check_int
from earlystop_core.errors import StateError
from earlystop_core.rules.base import Rule


class Stalled(Rule):
    """Stop when the mean of the last ``window`` values is no better than the mean of the ``window`` before.

    Noisy curves make single epochs misleading; comparing window means asks
    whether the run is still going anywhere. With ``log=True`` the means are of
    ``log(value)`` (a positive loss, falling by ratios), so late, small
    improvements of a loss still count. Values are signed (lower is better), so
    ``log=True`` needs a non-negative minimised metric (a loss of exactly 0
    counts as ``log 0 = -inf``: two windows of it are a stall). On the dev curves,
    ``Patience(20) | (Patience(14) & Stalled(10, log=True))`` saved more epochs
    than patience 20 at the same regret (see the rules evidence in the docs).

    A trend test compares window means, not the best: it may stop on an epoch
    that improves on the best when the windows' means say the run stalled
    (``stops_on_improvement``); compose it with ``&`` and a patience
    (``Patience(14) & Stalled(10)``) to stop only after epochs without progress.

    Examples:
        >>> from earlystop_core import Monitor
        >>> monitor = Monitor("val_loss", rule=Stalled(window=2))
        >>> [monitor.update({"val_loss": loss}).should_stop for loss in [4.0, 3.0, 2.0, 2.5, 2.2, 2.6]]
        [False, False, False, False, False, True]
    """

    stops_on_improvement = True  # the means of the windows decide, not the best

    def __init__(self, window: int = 10, log: bool = False) -> None:
        self.window = check_int("window", window, minimum=1)
        self.log = check_bool("log", log)
        self.takes_log = self.log
        self.reset()

    def reset(self) -> None:
        self._recent: list[float] = []
        self._means = (math.nan, math.nan)

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        if self.log:
            if value < 0:
                raise ValueError(
                    f"Stalled(log=True) takes logarithms of a non-negative minimised metric, got {value!r}; "
                    "use log=False"
                )
            value = math.log(value) if value > 0 else -math.inf  # a loss of exactly 0: as low as it gets
        recent = self._recent
        recent.append(value)
        if len(recent) > 2 * self.window:
            del recent[0]
        if len(recent) < 2 * self.window:
            return False
        before, after = _mean(recent[: self.window]), _mean(recent[self.window :])
        self._means = (before, after)
        return after >= before

    def spec(self) -> dict[str, Any]:
        return {"rule": "Stalled", "window": self.window, "log": self.log}

    def explain(self) -> str:
        before, after = self._means
        kind = "mean log value" if self.log else "mean value"
        window = self.window
        return f"{kind} of the last {window} epochs ({after:.4g}) no better than the {window} before ({before:.4g})"

    def state_dict(self) -> Any:
        return {"recent": [float_to_json(v) for v in self._recent]}

    def remembered(self) -> list[float]:
        return list(self._recent)

    def load_state_dict(self, state: Any) -> None:
        recent = state.get("recent") if isinstance(state, Mapping) and set(state) == {"recent"} else None
        if not isinstance(recent, list) or len(recent) > 2 * self.window:
            raise StateError(f"corrupt Monitor state: {self!r} needs 'recent', a list of <= {2 * self.window} values")
        self._recent = floats_from_json(recent, f"{self!r} recent")


def _mean(values: list[float]) -> float:
    """The exact mean; NaN for a window holding both infinities (with ``check_finite=False``), which has none.

    Examples:
        >>> _mean([1.0, 2.0]), _mean([math.inf, 1.0]), _mean([-math.inf, math.inf])
        (1.5, inf, nan)
    """
    try:
        return math.fsum(values) / len(values)
    except ValueError:  # fsum refuses inf + -inf
        return math.nan
