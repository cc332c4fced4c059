"""A wall-clock budget (``TimeBudget``): stops once the training time is spent, counted across save and resume;
tested with an injected clock, in a Monitor and in a real Keras fit."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop_core import GL, Monitor, Patience, StateError, StopReason, TimeBudget, evaluate
from earlystop_core.replay.scalar import replay


class Clock:
    """Seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stops_at_the_first_epoch_ending_past_the_budget() -> None:
    clock = Clock()
    monitor = Monitor(rule=Patience(100) | TimeBudget(60, clock=clock))
    decisions = []
    for epoch in range(10):
        clock.now += 25.0  # each epoch takes 25 s
        decisions.append(monitor.update({"val_loss": 1.0 / (epoch + 1)}))
        if decisions[-1].should_stop:
            break
    last = decisions[-1]
    assert len(decisions) == 3 and last.should_stop  # 75 s >= 60 s at the third epoch's end
    assert last.reason is StopReason.TIME_BUDGET and monitor.stop_reason is StopReason.TIME_BUDGET
    assert last.limit == 60.0 and "75.0 s of training spent" in (last.detail or "")
    assert not any(d.should_stop for d in decisions[:-1])


@settings(deadline=None, max_examples=150)
@given(
    values=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=40),
    durations=st.lists(st.integers(0, 30).map(float), min_size=40, max_size=40),  # whole seconds: exact sums
    budget=st.integers(1, 400).map(float),
    patience=st.integers(0, 6),
    split=st.integers(0, 40),
    pause=st.integers(0, 10**6).map(float),
)
def test_a_resumed_run_stops_where_an_uninterrupted_one_does(
    values: list[float], durations: list[float], budget: float, patience: int, split: int, pause: float
) -> None:
    """Save after ``split`` epochs, load in a new Monitor after a pause (not training time): the same decisions,
    which are patience's until the budget is spent, and then a stop for the budget."""

    def decisions(resume_at: int | None) -> list[Any]:
        clock = Clock()
        monitor = Monitor(rule=Patience(patience) | TimeBudget(budget, clock=clock))
        out = []
        for epoch, value in enumerate(values):
            if epoch == resume_at:
                saved = json.loads(json.dumps(monitor.state_dict(), allow_nan=False))
                clock.now += pause
                monitor = Monitor(rule=Patience(patience) | TimeBudget(budget, clock=clock))
                monitor.load_state_dict(saved)
            clock.now += durations[epoch]
            out.append(monitor.update({"val_loss": value}))
            if out[-1].should_stop:
                break
        return out

    whole = decisions(None)
    assert decisions(split) == whole
    plain = Monitor(patience=patience)
    spent = 0.0
    for value, duration, decision in zip(values, durations, whole, strict=False):
        spent += duration
        expected = plain.update({"val_loss": value})
        if decision.reason is StopReason.TIME_BUDGET:
            assert spent >= budget and not expected.should_stop
            break
        assert decision.should_stop == expected.should_stop
        assert spent < budget or decision.best_epoch is None or decision.should_stop


def test_reset_starts_the_clock_again() -> None:
    clock = Clock()
    monitor = Monitor(rule=Patience(100) | TimeBudget(10, clock=clock))
    clock.now += 5.0
    monitor.update({"val_loss": 1.0})
    clock.now += 50.0
    monitor.reset()  # a new fit
    clock.now += 5.0
    assert not monitor.update({"val_loss": 1.0}).should_stop
    clock.now += 5.0
    assert monitor.update({"val_loss": 0.5}).reason is StopReason.TIME_BUDGET


def test_bad_settings_and_states_are_refused_and_change_nothing() -> None:
    with pytest.raises(ValueError, match="'seconds' must be > 0"):
        TimeBudget(0)
    with pytest.raises(TypeError, match="'seconds' must be a number"):
        TimeBudget("1h")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be a callable"):
        TimeBudget(10, clock=5.0)  # type: ignore[arg-type]
    clock = Clock()
    monitor = Monitor(rule=Patience(3) | TimeBudget(100, clock=clock))
    clock.now += 10.0
    monitor.update({"val_loss": 1.0})
    state = monitor.state_dict()
    broken = json.loads(json.dumps(state))
    broken["state"]["rule"][1]["elapsed"] = -5.0
    del broken["checksum"]
    before = monitor.state_dict()
    with pytest.raises(StateError, match="'elapsed'"):
        monitor.load_state_dict(broken)
    assert monitor.state_dict() == before


def test_the_time_spent_survives_json_and_is_a_rule_of_its_own() -> None:
    clock = Clock()
    rule = Patience(5) | TimeBudget(100, clock=clock)
    monitor = Monitor(rule=rule)
    clock.now += 42.0
    monitor.update({"val_loss": 1.0})
    saved = json.loads(json.dumps(monitor.state_dict(), allow_nan=False))
    assert saved["state"]["rule"][1] == {"elapsed": 42.0}
    assert TimeBudget(100) == TimeBudget(100, clock=clock) != TimeBudget(101)  # the clock is not a setting
    assert repr(rule) == "AnyOf(Patience(5), TimeBudget(seconds=100.0))"


def test_a_time_budget_is_not_replayed_from_logs() -> None:
    curves = {"a": {"val_loss": [1.0, 0.9, 0.8], "test_accuracy": [0.5, 0.6, 0.7]}}
    strategy = {"rule": GL(5) | TimeBudget(10)}
    with pytest.raises(ValueError, match="cannot be replayed"):
        evaluate(curves, strategy)
    with pytest.raises(ValueError, match="cannot be replayed"):
        replay(curves, lambda: Monitor(rule=TimeBudget(10)))


def test_in_a_real_keras_fit_with_an_injected_clock() -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    import numpy as np

    from earlystop_core.adapters.keras import EarlyStoppingCallback

    clock = Clock()

    class Tick(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            clock.now += 20.0  # each epoch takes 20 s

    callback = EarlyStoppingCallback(rule=Patience(100) | TimeBudget(90, clock=clock), restore_best_weights=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(16, 2)
    history = model.fit(x, x[:, :1], validation_data=(x, x[:, :1]), epochs=50, callbacks=[Tick(), callback], verbose=0)
    assert len(history.epoch) == 5  # 100 s >= 90 s at the fifth epoch's end
    assert callback.core.stop_reason is StopReason.TIME_BUDGET
    assert math.isclose(callback.core.state_dict()["state"]["rule"][1]["elapsed"], 100.0)
