"""Monitor against the real ``keras.callbacks.EarlyStopping``, sequence by sequence.

Keras's callback is driven directly, without a model or a ``fit()``: a stub
stands in for the model, and its "weights" are the epoch they were taken at,
so the weights Keras restores at the end of training name the epoch it chose.
Both sides see the same Python floats, as ``fit()`` hands Keras Python floats
in its logs. Our Monitor runs with ``check_finite=False``, which is Keras's
rule for NaN and infinities.

For each sequence both must agree on the stop epoch (or both run to the end),
the best epoch and value, the patience count, and the epoch whose weights are
restored (if any).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from earlystop_core import Monitor

# same(): NaN equals NaN, as Keras can adopt a NaN as best
from helpers import any_finite_value, finite_runs, grid_values, same

# Keras picks its backend on first import; torch is the only one installed.
os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")

NAN = math.nan
INF = math.inf
MAX_EPOCHS = 30


class StubModel:
    """What EarlyStopping touches of a model; its weights are the epoch they come from."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.stop_training = False
        self.restored: list[int] = []

    def get_weights(self) -> list[int | None]:
        return [self.epoch]

    def set_weights(self, weights: list[int]) -> None:
        self.restored.append(weights[0])


@dataclass
class Outcome:
    """What one run decided, in terms both sides can be compared on."""

    stop_epoch: int | None
    best: float | None
    best_epoch: int | None
    wait: int
    restored: list[int]  # epochs whose weights were (asked to be) restored, in order


def run_keras(args: dict[str, Any], values: list[float]) -> Outcome:
    model = StubModel()
    callback = keras.callbacks.EarlyStopping(**args)
    callback.set_model(model)
    callback.on_train_begin()
    stop_epoch = None
    for epoch, value in enumerate(values):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {args["monitor"]: value})
        if model.stop_training:
            stop_epoch = epoch
            break
    callback.on_train_end()
    # Keras leaves best_epoch at 0 when no epoch was ever monitored; we say None.
    best_epoch = None if callback.best is None else callback.best_epoch
    return Outcome(stop_epoch, callback.best, best_epoch, callback.wait, model.restored)


def run_monitor(args: dict[str, Any], values: list[float]) -> Outcome:
    monitor = Monitor(**args, check_finite=False)
    stop_epoch = None
    restored = []
    for epoch, value in enumerate(values):
        decision = monitor.update({args["monitor"]: value})
        assert decision.epoch == epoch
        if decision.restore:
            restored.append(decision.best_epoch)
        if decision.should_stop:
            stop_epoch = epoch
            break
    # Training ends here either way; Keras restores in on_train_end.
    final = monitor.finish()
    if final.restore:
        restored.append(final.best_epoch)
    assert monitor.stopped_epoch == stop_epoch
    return Outcome(stop_epoch, monitor.best, monitor.best_epoch, monitor.wait, restored)


def assert_same_as_keras(args: dict[str, Any], values: list[float]) -> None:
    theirs = run_keras(args, values)
    ours = run_monitor(args, values)
    context = f"args={args} values={values}\nkeras={theirs}\nours ={ours}"
    assert ours.stop_epoch == theirs.stop_epoch, context
    assert ours.best_epoch == theirs.best_epoch, context
    assert same(ours.best, theirs.best), context
    assert ours.wait == theirs.wait, context
    assert ours.restored == theirs.restored, context


# -- strategies -------------------------------------------------------------

STEPS = (0.1, 0.05, 0.01)
any_value = any_finite_value(grid_values, STEPS)
finite_sequences = finite_runs(grid_values, STEPS, MAX_EPOCHS)

# Non-finite values mixed into grid values, the case where Keras's NaN rule matters.
non_finite_sequences = st.lists(
    st.sampled_from([NAN, NAN, INF, -INF]) | grid_values(0.1), min_size=1, max_size=MAX_EPOCHS
)

min_deltas = st.sampled_from([0.0, 0.05, -0.05, 0.1, -0.1, 0.25, 1e-7]) | st.floats(-0.3, 0.3)


@st.composite
def keras_cases(
    draw: st.DrawFn,
    sequences: st.SearchStrategy[list[float]],
    monitors: tuple[tuple[str, str], ...] = (("val_loss", "min"), ("val_loss", "max")),
) -> tuple[dict[str, Any], list[float]]:
    """EarlyStopping's arguments (shared by both sides) and a sequence of values."""
    values = draw(sequences)
    monitor, mode = draw(st.sampled_from(monitors))
    # A baseline equal to a value of the run provokes the strict-comparison edge.
    finite = [v for v in values if math.isfinite(v)]
    baselines = st.none() | any_value
    if finite:
        baselines |= st.sampled_from(finite)
    args = {
        "monitor": monitor,
        "mode": mode,
        "patience": draw(st.integers(0, 6)),
        "min_delta": draw(min_deltas),
        "baseline": draw(baselines),
        "start_from_epoch": draw(st.integers(0, 4)),
        "restore_best_weights": draw(st.booleans()),
    }
    return args, values


def case(values: list[float], **args: Any) -> tuple[dict[str, Any], list[float]]:
    """An explicit example in the shape keras_cases draws."""
    defaults = {
        "monitor": "val_loss",
        "mode": "min",
        "patience": 0,
        "min_delta": 0.0,
        "baseline": None,
        "start_from_epoch": 0,
        "restore_best_weights": False,
    }
    return {**defaults, **args}, values


# -- tests -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(keras_cases(finite_sequences))
@example(case([0.8, 0.7 + 0.1], patience=0))  # 0.7 + 0.1 < 0.8 in float64 only: a stop
@example(case([1.0, 0.96, 0.89, 0.885, 0.88], patience=2, min_delta=0.05, restore_best_weights=True))  # V9
@example(case([0.9, 0.8, 0.7, 0.6, 0.55, 0.56], patience=2, baseline=0.5))  # V15
@example(case([0.1, 0.2, 5.0, 4.0, 4.5, 4.2, 3.0], patience=2, start_from_epoch=2, restore_best_weights=True))
@example(case([0.5, 0.4, 0.3, 0.35, 0.2, 0.25], patience=3, restore_best_weights=True))  # V7: restore at end
@example(case([1.0, 2.0], start_from_epoch=5, restore_best_weights=True))  # nothing monitored, nothing restored
def test_matches_keras_on_finite_values(keras_case: tuple[dict[str, Any], list[float]]) -> None:
    assert_same_as_keras(*keras_case)


@settings(max_examples=300, deadline=None)
@given(keras_cases(non_finite_sequences))
@example(case([NAN, 1.0, 0.5, 0.4], patience=2, restore_best_weights=True))  # V17: a first NaN becomes best
@example(case([1.0, NAN, 0.9, NAN, NAN], patience=2, restore_best_weights=True))  # V18: NaN never improves
@example(case([INF, 1.0, -INF, -INF], patience=1, mode="max"))
def test_matches_keras_nan_and_infinity_rule(keras_case: tuple[dict[str, Any], list[float]]) -> None:
    assert_same_as_keras(*keras_case)


@settings(max_examples=150, deadline=None)
@given(keras_cases(finite_sequences, monitors=(("val_loss", "auto"), ("loss", "auto"), ("val_accuracy", "max"))))
def test_matches_keras_auto_mode_and_accuracy(keras_case: tuple[dict[str, Any], list[float]]) -> None:
    assert_same_as_keras(*keras_case)


def test_keras_auto_mode_cannot_tell_accuracy_without_a_compiled_model() -> None:
    # Why the auto test above sticks to loss names: Keras asks the compiled
    # metric objects for any other name, and our stub has none. We infer from
    # the name instead, so accuracy is maximised.
    callback = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="auto")
    callback.set_model(StubModel())
    callback.on_train_begin()
    with pytest.raises(ValueError, match="mode='max'"):
        callback.on_epoch_end(0, {"val_accuracy": 0.5})
    assert Monitor(monitor="val_accuracy", mode="auto").mode == "max"
