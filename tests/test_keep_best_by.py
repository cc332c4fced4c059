"""``Monitor(keep_best_by=...)``: stop on one metric, keep the weights of another's best epoch.

The kept epoch is checked against a naive reference (argmax of the keep
metric, ties to the lowest monitored value, then the earliest epoch) over
generated sequences on a coarse grid, where float32 comparisons are exact.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from earlystop_core import MissingMetricError, Monitor, StateError, StopReason
from earlystop_core.replay.engine import evaluate
from earlystop_core.replay.scalar import replay_run

SETTINGS = settings(deadline=None, max_examples=150)
LOSS = st.integers(1, 12).map(lambda k: k / 4)
ACCURACY = st.integers(0, 8).map(lambda k: k / 8)
EPOCHS = st.lists(st.tuples(LOSS, ACCURACY), min_size=1, max_size=40)


def logs(loss: float, accuracy: float) -> dict[str, float]:
    return {"val_loss": loss, "val_accuracy": accuracy}


def reference_kept(epochs: list[tuple[float, float]], start: int = 0) -> int | None:
    """The epoch with the highest accuracy, then the lowest loss, then the earliest (from ``start``)."""
    candidates = [(-acc, loss, epoch) for epoch, (loss, acc) in enumerate(epochs) if epoch >= start]
    return min(candidates)[2] if candidates else None


def test_stops_on_the_loss_and_restores_the_best_accuracy() -> None:
    monitor = Monitor(patience=2, keep_best_by="val_accuracy", restore_best_weights=True)
    history = [(1.0, 0.5), (0.8, 0.7), (0.7, 0.7), (0.75, 0.9), (0.72, 0.8)]
    decisions = [monitor.update(logs(*epoch)) for epoch in history]
    assert [d.improved for d in decisions] == [True, True, True, True, False]
    last = decisions[-1]
    assert last.should_stop and last.reason is StopReason.PATIENCE_EXHAUSTED
    assert last.wait == 2  # patience counts from the lowest loss (epoch 2) ...
    assert (last.restore, last.best_epoch, last.best) == (True, 3, 0.75)  # ... the weights are accuracy's best


def test_ties_go_to_the_lower_loss_then_the_earlier_epoch() -> None:
    monitor = Monitor(patience=100, keep_best_by="val_accuracy")
    kept = [monitor.update(logs(loss, 0.5)).best_epoch for loss in [0.9, 0.8, 0.8, 0.85, 0.7]]
    assert kept == [0, 1, 1, 1, 4]


def test_a_minimised_keep_metric() -> None:
    monitor = Monitor(monitor="val_accuracy", patience=100, keep_best_by="val_error")
    assert monitor.config.keep_best_mode == "min"
    kept = [monitor.update({"val_accuracy": 0.5, "val_error": e}).best_epoch for e in [0.3, 0.2, 0.4]]
    assert kept == [0, 1, 1]


def test_a_non_finite_keep_value_counts_as_the_worst() -> None:
    monitor = Monitor(patience=100, keep_best_by="val_accuracy")
    kept = [monitor.update(logs(loss, acc)).best_epoch for loss, acc in [(1.0, math.nan), (0.9, 0.1), (0.8, math.inf)]]
    assert kept == [0, 1, 1]


def test_start_from_epoch_applies_min_delta_and_warm_up_do_not() -> None:
    monitor = Monitor(patience=100, keep_best_by="val_accuracy", start_from_epoch=1, best_from_epoch=3, min_delta=0.5)
    kept = [monitor.update(logs(1.0, acc)).best_epoch for acc in [0.9, 0.1, 0.2, 0.15]]
    assert kept == [None, 1, 2, 2]


@SETTINGS
@given(EPOCHS, st.integers(0, 3))
def test_the_kept_epoch_is_the_reference_at_every_epoch(epochs: list[tuple[float, float]], start: int) -> None:
    monitor = Monitor(patience=1000, keep_best_by="val_accuracy", start_from_epoch=start)
    for t, epoch in enumerate(epochs):
        decision = monitor.update(logs(*epoch))
        assert decision.best_epoch == reference_kept(epochs[: t + 1], start)
        if decision.best_epoch is not None:
            assert decision.best == epochs[decision.best_epoch][0]


@SETTINGS
@given(EPOCHS, st.integers(1, 6))
def test_stopping_is_that_of_the_monitored_metric_alone(epochs: list[tuple[float, float]], patience: int) -> None:
    plain = Monitor(patience=patience)
    keeping = Monitor(patience=patience, keep_best_by="val_accuracy")
    for epoch in epochs:
        a, b = plain.update(logs(*epoch)), keeping.update(logs(*epoch))
        assert (a.should_stop, a.reason, a.wait) == (b.should_stop, b.reason, b.wait)


@SETTINGS
@given(EPOCHS, st.data())
def test_resuming_from_a_saved_state_changes_nothing(epochs: list[tuple[float, float]], data: Any) -> None:
    cut = data.draw(st.integers(0, len(epochs)))
    settings_ = {"patience": 3, "keep_best_by": "val_accuracy", "restore_best_weights": True}
    whole = Monitor(**settings_)
    expected = [whole.update(logs(*epoch)) for epoch in epochs]
    first = Monitor(**settings_)
    got = [first.update(logs(*epoch)) for epoch in epochs[:cut]]
    resumed = Monitor(**settings_)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    got += [resumed.update(logs(*epoch)) for epoch in epochs[cut:]]
    assert got == expected


def test_a_missing_keep_metric_raises_and_changes_nothing() -> None:
    monitor = Monitor(patience=2, keep_best_by="val_accuracy", on_missing="skip")
    monitor.update(logs(1.0, 0.5))
    before = monitor.state_dict()
    with pytest.raises(MissingMetricError, match="keep_best_by='val_accuracy' needs it in every epoch's logs"):
        monitor.update({"val_loss": 0.5, "val_acc": 0.9})
    assert monitor.state_dict() == before


def test_a_corrupt_state_is_refused() -> None:
    monitor = Monitor(patience=2, keep_best_by="val_accuracy")
    monitor.update(logs(1.0, 0.5))
    state = monitor.state_dict()
    state["state"]["kept_by"] = None
    with pytest.raises(StateError, match="'kept_by'"):
        Monitor(patience=2, keep_best_by="val_accuracy").load_state_dict(state)
    with pytest.raises(StateError, match="configured differently"):
        Monitor(patience=2).load_state_dict(monitor.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"keep_best_by": "val_loss"}, ValueError, "is the monitored metric"),
        ({"keep_best_by": ""}, TypeError, "must be a metric name"),
        ({"keep_best_by": 3}, TypeError, "must be a metric name"),
        ({"keep_best_mode": "max"}, ValueError, "pass keep_best_by="),
        ({"keep_best_by": "val_accuracy", "keep_best_mode": "up"}, ValueError, "keep_best_mode must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Monitor(**kwargs)


def test_replay_keeps_what_the_monitor_keeps_and_so_does_the_vectorised_engine() -> None:
    curve = {
        "val_loss": [1.0, 0.8, 0.7, 0.75, 0.72, 0.9],
        "val_accuracy": [0.5, 0.7, 0.7, 0.9, 0.8, 0.6],
        "test_accuracy": [0.5, 0.6, 0.6, 0.8, 0.7, 0.6],
    }
    strategy = {"patience": 2, "keep_best_by": "val_accuracy", "restore_best_weights": True}
    result = replay_run(curve, lambda: Monitor(**strategy), "test_accuracy")
    assert (result.stop, result.kept, result.oracle) == (4, 3, 2)
    assert result.regret == pytest.approx(-0.2)  # better than the lowest-loss epoch
    for engine in ("scan", "loop", "scalar"):
        evaluation = evaluate({"a": curve}, strategy, target="test_accuracy", engine=engine)
        assert evaluation.kept.tolist() == [3] and evaluation.regret.tolist() == pytest.approx([-0.2])
    assert evaluate({"a": curve}, strategy).engine == "scan"


@pytest.mark.parametrize(
    ("losses", "kept"),
    [
        ([1.0, math.nan, 0.8, 0.7, 0.9], 1),  # a NaN loss at the first tied epoch is never displaced
        ([1.0, 0.8, math.nan, 0.7, 0.9], 3),  # a NaN loss never wins a tie
        ([1.0, math.nan, math.nan, math.nan, 0.9], 1),  # every tied loss NaN: the first tied epoch
        ([1.0, 0.8, 0.8, 0.7, 0.7], 3),  # equal losses: the earlier epoch
    ],
)
def test_every_engine_breaks_accuracy_ties_as_the_monitor_does(losses: list[float], kept: int) -> None:
    curve = {"val_loss": losses, "val_accuracy": [0.5, 0.7, 0.7, 0.7, 0.7], "test_accuracy": [0.5] * 5}
    strategy = {"patience": 10, "keep_best_by": "val_accuracy", "check_finite": False, "restore_best_weights": True}
    assert replay_run(curve, lambda: Monitor(**strategy), "test_accuracy").kept == kept
    for engine in ("scan", "loop", "scalar"):
        assert evaluate({"a": curve}, strategy, target="test_accuracy", engine=engine).kept.tolist() == [kept]


class KeepBestByMachine(RuleBasedStateMachine):
    """Updates, save/load through strict JSON and resets, beside a naive model of the kept epoch.

    The model keeps the whole history: the kept epoch is :func:`reference_kept`
    over it, and stopping is a plain Monitor's on the loss alone.
    """

    @initialize(patience=st.integers(1, 5), start=st.integers(0, 2))
    def build(self, patience: int, start: int) -> None:
        self.settings = {"patience": patience, "start_from_epoch": start, "restore_best_weights": True}
        self.monitor = Monitor(keep_best_by="val_accuracy", **self.settings)
        self.plain = Monitor(**self.settings)
        self.history: list[tuple[float, float]] = []

    @rule(loss=LOSS, accuracy=ACCURACY)
    def update(self, loss: float, accuracy: float) -> None:
        self.history.append((loss, accuracy))
        decision, plain = self.monitor.update(logs(loss, accuracy)), self.plain.update({"val_loss": loss})
        kept = reference_kept(self.history, self.settings["start_from_epoch"])
        assert decision.best_epoch == kept
        assert decision.improved == (kept == len(self.history) - 1)
        assert (decision.should_stop, decision.wait, decision.reason) == (plain.should_stop, plain.wait, plain.reason)
        assert decision.restore == (plain.should_stop and kept is not None)

    @rule()
    def save_and_load(self) -> None:
        resumed = Monitor(keep_best_by="val_accuracy", **self.settings)
        resumed.load_state_dict(json.loads(json.dumps(self.monitor.state_dict())))
        self.monitor = resumed

    @rule()
    def reset(self) -> None:
        self.monitor.reset()
        self.plain.reset()
        self.history = []

    @invariant()
    def the_kept_value_is_the_loss_at_the_kept_epoch(self) -> None:
        epoch = self.monitor.best_epoch
        assert self.monitor.best == (None if epoch is None else self.history[epoch][0])


TestKeepBestByMachine = KeepBestByMachine.TestCase
TestKeepBestByMachine.settings = settings(deadline=None, max_examples=80, stateful_step_count=40)


def test_decisions_name_the_metric_that_keeps_and_their_messages_say_so() -> None:
    monitor = Monitor(patience=2, keep_best_by="val_accuracy", restore_best_weights=True)
    decisions = [monitor.update(logs(*epoch)) for epoch in [(1.0, 0.5), (0.8, 0.9), (0.7, 0.6), (0.75, 0.6)]]
    assert {d.kept_by for d in decisions} == {"val_accuracy"} and Monitor().update(logs(1.0, 0.5)).kept_by is None
    assert decisions[1].message == "epoch 1: the best epoch by val_accuracy so far, kept (val_loss=0.8)"
    assert decisions[-1].message == (
        "epoch 3: val_loss=0.75, no improvement for 1 epoch(s); kept epoch 1, the best by val_accuracy (val_loss=0.8)"
    )
    last = monitor.update(logs(0.9, 0.5))
    assert last.should_stop and last.message.endswith(
        "kept epoch 1, the best by val_accuracy (val_loss=0.8); restoring the weights of epoch 1"
    )
