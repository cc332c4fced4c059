"""A model-based test: ``Monitor`` beside a naive Keras reference.

The reference keeps the whole history and replays Keras 3's ``EarlyStopping``
rule over it from scratch after every epoch (SEMANTICS.md, "Keras 3
EarlyStopping"), comparing in float32 through numpy as Keras does. It shares
no code with the monitor: no sign trick, no cached best, no incremental wait.
Hypothesis interleaves updates, save/load through strict JSON, and resets.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from earlystop_core import Decision, Monitor

from helpers import same

KEY = "val_loss"

# Values that tie, values a min_delta of 0.25 apart, and 0.1 + 0.2 against
# 0.3, which differ as doubles but are the same float32.
COARSE = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, -0.5, 0.1, 0.2, 0.3, 0.1 + 0.2, 2.0]
# Where float32 rounding is delicate: around the largest float32 (from
# 2**128 - 2**103 up, doubles round to infinity) and around the subnormals.
_FLT_MAX = float(np.finfo(np.float32).max)
_OVERFLOW = 2.0**128 - 2.0**103
FLOAT32_EDGES = [
    sign * value
    for sign in (1.0, -1.0)
    for value in (
        _FLT_MAX,
        math.nextafter(_FLT_MAX, math.inf),
        math.nextafter(_OVERFLOW, 0.0),
        _OVERFLOW,
        math.nextafter(_OVERFLOW, math.inf),
        2.0**128,
        2.0**-149,
        2.0**-150,
        math.nextafter(2.0**-150, 1.0),
    )
]
DELTAS = st.sampled_from([0.0, 0.25, -0.25, 0.1, 0.5]) | st.floats(-1.0, 1.0)


class Outcome(NamedTuple):
    best: float | None
    best_epoch: int | None
    wait: int
    should_stop: bool
    improved: bool


class KerasReference:
    """Keras 3 ``EarlyStopping`` recomputed over the whole history on demand."""

    def __init__(self, mode: str, patience: int, min_delta: float, baseline: float | None, start_from_epoch: int):
        self.mode = mode
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.baseline = baseline
        self.start_from_epoch = start_from_epoch
        self.history: list[float] = []

    def _improves(self, value: float, reference: float | None) -> bool:
        if reference is None:
            return True
        with np.errstate(over="ignore"):
            if self.mode == "min":
                return bool(np.float32(value + self.min_delta) < np.float32(reference))
            return bool(np.float32(value - self.min_delta) > np.float32(reference))

    def replay(self) -> Outcome:
        """Run the rule over every epoch so far; report the state after the last."""
        best: float | None = None
        best_epoch: int | None = None
        wait = 0
        should_stop = improved = False
        for epoch, value in enumerate(self.history):
            should_stop = improved = False
            if epoch < self.start_from_epoch:
                continue
            wait += 1
            if self._improves(value, best):
                best, best_epoch, improved = value, epoch, True
                if self._improves(value, self.baseline):
                    wait = 0
            elif wait >= self.patience and epoch > 0:
                should_stop = True
        return Outcome(best, best_epoch, wait, should_stop, improved)


class MonitorAgainstKeras(RuleBasedStateMachine):
    monitor: Monitor
    reference: KerasReference
    config: dict[str, Any]
    last: Decision | None

    @initialize(
        mode=st.sampled_from(["min", "max"]),
        patience=st.integers(0, 4),
        min_delta=DELTAS,
        baseline=st.none() | st.sampled_from(COARSE) | st.floats(-2.0, 2.0),
        start_from_epoch=st.integers(0, 3),
    )
    def configure(
        self, mode: str, patience: int, min_delta: float, baseline: float | None, start_from_epoch: int
    ) -> None:
        rule_settings = {
            "mode": mode,
            "patience": patience,
            "min_delta": min_delta,
            "baseline": baseline,
            "start_from_epoch": start_from_epoch,
        }
        # check_finite=False: NaN and infinities follow Keras's rule, as in the reference.
        self.config = dict(rule_settings, monitor=KEY, check_finite=False)
        self.monitor = Monitor(**self.config)
        self.reference = KerasReference(**rule_settings)
        self.last = None

    def _update(self, value: float) -> None:
        self.last = self.monitor.update({KEY: value})
        self.reference.history.append(value)

    @rule(value=st.sampled_from(COARSE))
    def update_on_a_coarse_grid(self, value: float) -> None:
        self._update(value)

    @rule(value=st.sampled_from(FLOAT32_EDGES))
    def update_at_a_float32_edge(self, value: float) -> None:
        self._update(value)

    @rule(value=st.floats())
    def update_with_any_float(self, value: float) -> None:
        self._update(value)

    @rule()
    def save_and_resume_in_a_fresh_monitor(self) -> None:
        saved = json.loads(json.dumps(self.monitor.state_dict(), allow_nan=False))
        self.monitor = Monitor(**self.config)
        self.monitor.load_state_dict(saved)

    @rule()
    def reset(self) -> None:
        self.monitor.reset()
        self.reference.history.clear()
        self.last = None

    @invariant()
    def agrees_with_the_reference(self) -> None:
        expected = self.reference.replay()
        monitor = self.monitor
        assert monitor.epoch == len(self.reference.history)
        assert same(monitor.best, expected.best), (monitor.best, expected.best)
        assert (monitor.best_epoch, monitor.wait) == (expected.best_epoch, expected.wait)
        if self.last is not None:
            assert (self.last.should_stop, self.last.improved) == (expected.should_stop, expected.improved)
            assert (self.last.best_epoch, self.last.wait) == (expected.best_epoch, expected.wait)
            assert same(self.last.best, expected.best)


MonitorAgainstKeras.TestCase.settings = settings(max_examples=250, stateful_step_count=40, deadline=None)
TestMonitorAgainstKeras = MonitorAgainstKeras.TestCase
