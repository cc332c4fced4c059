"""Patience that adapts to the run: dynamic (bounded) and relative to progress.

The seed guide's dynamic patience grows patience while the run progresses and
shrinks it while it stagnates, but its sketch resets ``wait`` every time it
adapts and so never stops. Here patience moves only on improving epochs — by
how much they improved — inside fixed bounds, and ``wait`` is never reset by
the rule, so a run always stops at most ``maximum`` epochs after its last
improvement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from earlystop_core._json import float_from_json, float_to_json
from earlystop_core._validate import check_int, check_real
from earlystop_core.decision import StopReason
from earlystop_core.errors import StateError
from earlystop_core.rules.base import Rule


class DynamicPatience(Rule):
    """Patience that grows after real progress and shrinks after marginal gains.

    On an improving epoch, an improvement of at least ``significant`` (relative
    to the previous best's magnitude) adds ``grow`` to the patience; a smaller
    one takes ``shrink`` off; patience stays within ``[minimum, maximum]``.
    Training stops on a non-improving epoch once ``wait`` reaches the current
    patience — never later than ``maximum`` epochs after the last improvement.

    Examples:
        >>> from earlystop_core import Monitor
        >>> monitor = Monitor("val_loss", rule=DynamicPatience(initial=4, minimum=2, maximum=8, grow=2, shrink=1))
        >>> _ = monitor.update({"val_loss": 1.0})      # first value: no previous best
        >>> _ = monitor.update({"val_loss": 0.5})      # 50% better: patience 4 -> 6
        >>> monitor.rule.patience
        6
        >>> _ = monitor.update({"val_loss": 0.4999})   # 0.02% better: 6 -> 5
        >>> monitor.rule.patience
        5
    """

    reason = StopReason.PATIENCE_EXHAUSTED

    def __init__(
        self,
        initial: int = 10,
        minimum: int = 5,
        maximum: int = 20,
        grow: int = 2,
        shrink: int = 1,
        significant: float = 1e-3,
    ) -> None:
        self.initial = check_int("initial", initial)
        self.minimum = check_int("minimum", minimum)
        self.maximum = check_int("maximum", maximum)
        if not self.minimum <= self.initial <= self.maximum:
            raise ValueError(f"need minimum <= initial <= maximum, got {minimum}, {initial}, {maximum}")
        self.grow = check_int("grow", grow)
        self.shrink = check_int("shrink", shrink)
        threshold = check_real("significant", significant)
        assert threshold is not None
        if threshold < 0:
            raise ValueError(f"'significant' must be >= 0, got {significant!r}")
        self.significant = threshold
        self.reset()

    def reset(self) -> None:
        self.patience = self.initial
        self._best: float | None = None

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        if improved:
            previous, self._best = self._best, best
            if previous is not None and best is not None and math.isfinite(previous):
                gain = (previous - best) / abs(previous) if previous != 0.0 else math.inf
                if gain >= self.significant:
                    self.patience = min(self.maximum, self.patience + self.grow)
                else:
                    self.patience = max(self.minimum, self.patience - self.shrink)
            return False
        return wait >= self.patience and epoch > 0

    def spec(self) -> dict[str, Any]:
        return {
            "rule": "DynamicPatience",
            "initial": self.initial,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "grow": self.grow,
            "shrink": self.shrink,
            "significant": self.significant,
        }

    def explain(self) -> str:
        return f"no improvement for {self.patience} epoch(s) (dynamic patience, now {self.patience})"

    def limit(self) -> float | None:
        return self.patience

    def state_dict(self) -> Any:
        return {"patience": self.patience, "best": float_to_json(self._best)}

    def remembered(self) -> list[float]:
        return [] if self._best is None else [self._best]

    def load_state_dict(self, state: Any) -> None:
        if not isinstance(state, Mapping) or set(state) != {"patience", "best"}:
            raise StateError(f"corrupt Monitor state: {self!r} needs 'patience' and 'best', got {state!r}")
        patience, best = state["patience"], state["best"]
        if isinstance(patience, bool) or not isinstance(patience, int) or not self.minimum <= patience <= self.maximum:
            raise StateError(f"corrupt Monitor state: dynamic patience {patience!r} outside its bounds")
        self._best = float_from_json(best, f"{self!r} best")
        self.patience = patience


class RelativePatience(Rule):
    """Patience as a fraction of the epochs run so far, never below ``minimum``.

    Stops on a non-improving epoch when ``wait >= max(minimum, ceil(fraction * (epoch + 1)))``:
    early in training a short plateau is enough, late in a long run the rule
    waits longer, in proportion.

    Examples:
        Improving for 30 epochs, then flat: at epoch 39, 10 epochs without improvement are 25% of the 40 run.

        >>> from earlystop_core import Monitor
        >>> monitor = Monitor("val_loss", rule=RelativePatience(fraction=0.25, minimum=3))
        >>> losses = [1.0 - 0.01 * epoch for epoch in range(30)] + [1.0] * 20
        >>> [monitor.update({"val_loss": loss}).should_stop for loss in losses].index(True)
        39
    """

    reason = StopReason.PATIENCE_EXHAUSTED

    def __init__(self, fraction: float = 0.25, minimum: int = 5, maximum: int | None = None) -> None:
        share = check_real("fraction", fraction)
        assert share is not None
        if not 0 < share <= 1:
            raise ValueError(f"'fraction' must be in (0, 1], got {fraction!r}")
        self.fraction = share
        # The fraction as written (0.07 is 7/100, not 0.07000000000000000666...), so that
        # ceil(0.07 * 100) is 7: integer arithmetic on the decimal the user meant.
        exact = Fraction(repr(share)).limit_denominator(10**9)
        self._numerator, self._denominator = exact.numerator, exact.denominator
        self.minimum = check_int("minimum", minimum)
        self.maximum = None if maximum is None else check_int("maximum", maximum, minimum=self.minimum)
        self._epoch = 0

    def limit_at(self, epoch: int) -> int:
        """The patience in force at ``epoch``."""
        patience = max(self.minimum, -(-self._numerator * (epoch + 1) // self._denominator))
        return patience if self.maximum is None else min(patience, self.maximum)

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        self._epoch = epoch
        return not improved and epoch > 0 and wait >= self.limit_at(epoch)

    def spec(self) -> dict[str, Any]:
        return {"rule": "RelativePatience", "fraction": self.fraction, "minimum": self.minimum, "maximum": self.maximum}

    def explain(self) -> str:
        return f"no improvement for {self.limit_at(self._epoch)} epoch(s), {self.fraction:.0%} of the epochs run"

    def limit(self) -> float | None:
        return self.limit_at(self._epoch)
