"""Choosing patience (seed guide, section 2.2): the guide's heuristics as a function and a rule.

The guide: start from 10-20% of the planned epochs; 8-15 for datasets under
10k samples, 5-10 over 100k; more when the validation metric is volatile.
Volatility is measured online on the first epochs: the share of epoch-to-epoch
steps that went the wrong way (a healthy early curve improves almost every
epoch; a noisy one does not).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from earlystop_core._json import float_to_json, floats_from_json
from earlystop_core._validate import check_int, check_real
from earlystop_core.decision import StopReason
from earlystop_core.errors import StateError
from earlystop_core.rules.base import Rule

SMALL_DATA = 10_000
LARGE_DATA = 100_000


def suggest_patience(max_epochs: int, n_samples: int | None = None, volatility: float | None = None) -> int:
    """The seed guide's patience for a run of ``max_epochs`` epochs.

    15% of the planned epochs (the middle of the guide's 10-20%), kept within
    8-15 for under 10k training samples and 5-10 for over 100k (5-15 between),
    then raised by up to 100% in proportion to ``volatility`` (the share of
    early epochs that got worse, in [0, 1]); never more than ``max_epochs``.

    Examples:
        >>> suggest_patience(100), suggest_patience(100, n_samples=5_000), suggest_patience(100, 500_000)
        (15, 15, 10)
        >>> suggest_patience(200, n_samples=5_000, volatility=0.5)
        23
    """
    epochs = check_int("max_epochs", max_epochs, minimum=1)
    patience = round(0.15 * epochs)
    if n_samples is not None:
        samples = check_int("n_samples", n_samples, minimum=1)
        low, high = (8, 15) if samples < SMALL_DATA else (5, 10) if samples > LARGE_DATA else (5, 15)
        patience = min(max(patience, low), high)
    if volatility is not None:
        share = check_real("volatility", volatility)
        assert share is not None
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"'volatility' must be in [0, 1], got {volatility!r}")
        patience = math.ceil(patience * (1.0 + share))
    return max(1, min(patience, epochs))


def volatility(values: Sequence[float]) -> float:
    """The share of steps that went the wrong way (values signed: lower is better).

    Examples:
        >>> volatility([1.0, 0.8, 0.9, 0.7, 0.75])
        0.5
    """
    steps = list(itertools.pairwise(values))
    if not steps:
        return 0.0
    return sum(1 for before, after in steps if after > before) / len(steps)


class AutoPatience(Rule):
    """``patience="auto"``: [`suggest_patience`][earlystop_core.suggest_patience], refined by the first epochs' noise.

    Until ``probe`` epochs have been seen, patience is sized from
    ``max_epochs`` and ``n_samples`` alone; from then on it also counts the
    measured volatility, and stays fixed.

    Examples:
        >>> rule = AutoPatience(max_epochs=100, n_samples=5_000)
        >>> rule.patience
        15
    """

    reason = StopReason.PATIENCE_EXHAUSTED

    def __init__(self, max_epochs: int, n_samples: int | None = None, probe: int | None = None) -> None:
        self.max_epochs = check_int("max_epochs", max_epochs, minimum=1)
        self.n_samples = n_samples
        self.probe = min(10, max(3, self.max_epochs // 10)) if probe is None else check_int("probe", probe, minimum=2)
        self.reset()

    def reset(self) -> None:
        self.patience = suggest_patience(self.max_epochs, self.n_samples)
        self._seen: list[float] = []

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        if len(self._seen) < self.probe:
            self._seen.append(value)
            if len(self._seen) == self.probe:
                self.patience = suggest_patience(self.max_epochs, self.n_samples, volatility(self._seen))
        return not improved and wait >= self.patience and epoch > 0 and best is not None

    def spec(self) -> dict[str, Any]:
        return {"rule": "AutoPatience", "max_epochs": self.max_epochs, "n_samples": self.n_samples, "probe": self.probe}

    def explain(self) -> str:
        return f"no improvement for {self.patience} epoch(s) (patience='auto')"

    def limit(self) -> float | None:
        return self.patience

    def remembered(self) -> list[float]:
        return list(self._seen)

    def state_dict(self) -> Any:
        return {"patience": self.patience, "seen": [float_to_json(v) for v in self._seen]}

    def load_state_dict(self, state: Any) -> None:
        if not isinstance(state, Mapping) or set(state) != {"patience", "seen"}:
            raise StateError(f"corrupt Monitor state: {self!r} needs 'patience' and 'seen', got {state!r}")
        patience, seen = state["patience"], state["seen"]
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise StateError(f"corrupt Monitor state: auto patience must be an int >= 1, got {patience!r}")
        if not isinstance(seen, list) or len(seen) > self.probe:
            raise StateError(f"corrupt Monitor state: auto patience probe must be a list of <= {self.probe} values")
        values = floats_from_json(seen, "auto patience probe")
        # Patience is a function of the probe: the guide's until it is full, then refined by its volatility.
        noise = volatility(values) if len(values) == self.probe else None
        expected = suggest_patience(self.max_epochs, self.n_samples, noise)
        if patience != expected:
            raise StateError(
                f"corrupt Monitor state: auto patience is {patience!r}, but its probe of {len(values)} value(s) "
                f"gives {expected}"
            )
        self.patience = patience
        self._seen = values
