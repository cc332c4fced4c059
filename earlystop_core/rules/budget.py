"""A wall-clock budget: stop once training has taken a given time, counted across save and resume."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from earlystop_core._validate import check_positive
from earlystop_core.decision import StopReason
from earlystop_core.errors import StateError
from earlystop_core.rules.base import Rule


class TimeBudget(Rule):
    """Stop at the first epoch that ends once ``seconds`` of training time are spent.

    Time counts from the Monitor's construction or its last ``reset()`` (the
    Keras callback resets at the start of every ``fit``), and across a save
    and resume: the state holds the time spent, and a loaded state goes on
    from it (the time between the save and the load is not counted). Like
    every rule it is asked at monitored epochs, once a best exists; compose
    it with the rule that stops on progress: ``rule=Patience(10) |
    TimeBudget(3600)``. Its stops say `StopReason.TIME_BUDGET`, and
    may come at an improving epoch (``stops_on_improvement``): time is up
    whatever the metric does.

    Args:
        seconds: The budget, in seconds (> 0).
        clock: Seconds from a fixed point, as ``time.monotonic`` (the default)
            gives them; inject another to test. A Monitor's copy of the rule
            shares it.

    Examples:
        >>> from earlystop_core import Monitor, Patience
        >>> now = [0.0]
        >>> monitor = Monitor(rule=Patience(5) | TimeBudget(60, clock=lambda: now[0]))
        >>> now[0] = 30.0; monitor.update({"val_loss": 0.9}).should_stop
        False
        >>> now[0] = 61.0; decision = monitor.update({"val_loss": 0.8})
        >>> decision.should_stop, decision.reason.name
        (True, 'TIME_BUDGET')
    """

    reason = StopReason.TIME_BUDGET
    replayable = False  # recorded logs carry no training time
    stops_on_improvement = True  # the budget is spent whatever the metric does

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = check_positive("seconds", seconds)
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds (such as time.monotonic), got {clock!r}")
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self._spent = 0.0  # before the last start (a loaded state's)
        self._started = self.clock()
        self._elapsed = 0.0  # at the last check, for explain()

    def elapsed(self) -> float:
        """Seconds of training time spent so far."""
        return self._spent + (self.clock() - self._started)

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        self._elapsed = self.elapsed()
        return self._elapsed >= self.seconds

    def spec(self) -> dict[str, Any]:
        return {"rule": "TimeBudget", "seconds": self.seconds}

    def explain(self) -> str:
        return f"{self._elapsed:.1f} s of training spent, budget {self.seconds:g} s"

    def limit(self) -> float | None:
        return self.seconds

    def state_dict(self) -> Any:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: Any) -> None:
        elapsed: Any = state.get("elapsed") if isinstance(state, Mapping) and set(state) == {"elapsed"} else None
        if type(elapsed) not in (int, float) or not math.isfinite(elapsed) or elapsed < 0:
            raise StateError(f"corrupt Monitor state: {self!r} needs 'elapsed', seconds spent (>= 0), got {state!r}")
        self._spent = float(elapsed)
        self._started = self.clock()

    def __deepcopy__(self, memo: dict[int, Any]) -> TimeBudget:
        twin = copy.copy(self)  # the clock is shared, not copied: a test's clock must reach the Monitor's rule
        memo[id(self)] = twin
        return twin
