"""Monitor against the real ``pytorch_lightning.callbacks.EarlyStopping``.

Lightning's callback is driven through its decision function,
``_evaluate_stopping_criteria``, with the float32 tensor a ``LightningModule``
would log; our Monitor gets the same value as a Python float. For each
sequence both must stop at the same epoch for the same reason, and, where the
two keep the same books, agree on the best value and the patience count.

Lightning-only arguments are left at their defaults; Keras-only ones (baseline,
start_from_epoch, restore_best_weights) are off. Lightning's defaults differ
from ours (patience 3, mode "min"), so every argument is passed explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from earlystop_core import Monitor, StopReason

from helpers import any_finite_value, finite_runs, grid_values

torch = pytest.importorskip("torch")
lightning_early_stopping = pytest.importorskip("pytorch_lightning.callbacks.early_stopping")
EarlyStopping = lightning_early_stopping.EarlyStopping

NAN = math.nan
INF = math.inf
MAX_EPOCHS = 30


def as_float32(value: float) -> float:
    """The value as Lightning holds it: a float32 tensor."""
    return float(torch.tensor(value, dtype=torch.float32))


@dataclass
class Outcome:
    stop_epoch: int | None
    reason: StopReason
    best: float | None  # None: no epoch has been counted yet
    wait: int


def run_lightning(args: dict[str, Any], values: list[float]) -> Outcome:
    callback = EarlyStopping(monitor="val_loss", **args)
    stop_epoch = None
    for epoch, value in enumerate(values):
        should_stop, _message = callback._evaluate_stopping_criteria(torch.tensor(value, dtype=torch.float32))
        if should_stop:
            stop_epoch = epoch
            break
    # Lightning's reasons are an int enum whose names are our string values.
    reason = StopReason(callback.stopping_reason.name.lower())
    # Lightning's best starts at +-inf; it stays there until an epoch is counted.
    best = float(callback.best_score)
    return Outcome(stop_epoch, reason, None if math.isinf(best) else best, callback.wait_count)


def run_monitor(args: dict[str, Any], values: list[float]) -> Outcome:
    monitor = Monitor(monitor="val_loss", **args, baseline=None, start_from_epoch=0, restore_best_weights=False)
    stop_epoch = None
    for epoch, value in enumerate(values):
        decision = monitor.update({"val_loss": value})
        if decision.should_stop:
            stop_epoch = epoch
            assert decision.reason is monitor.stop_reason
            break
        assert decision.reason is StopReason.NOT_STOPPED
    assert monitor.stopped_epoch == stop_epoch
    return Outcome(stop_epoch, monitor.stop_reason, monitor.best, monitor.wait)


def assert_same_as_lightning(args: dict[str, Any], values: list[float]) -> None:
    theirs = run_lightning(args, values)
    ours = run_monitor(args, values)
    context = f"args={args} values={values}\nlightning={theirs}\nours     ={ours}"
    assert ours.stop_epoch == theirs.stop_epoch, context
    assert ours.reason == theirs.reason, context
    # On reaching stopping_threshold we first count the epoch as Keras would
    # (it can become the best, to be restored); Lightning stops without
    # counting it. Only the books differ there, never the stop.
    if ours.reason is not StopReason.STOPPING_THRESHOLD:
        assert ours.best == theirs.best, context
        assert ours.wait == theirs.wait, context


def shift_rounding_decides(values: list[float], min_delta: float, mode: str) -> bool:
    """Whether the two ways of adding ``min_delta`` can disagree on an improvement in this run.

    Lightning computes ``current - min_delta`` in float32, so ``min_delta`` is
    rounded to float32 before the subtraction; Keras (and we, following Keras)
    subtract in float64 and round the result once. For a ``min_delta`` that
    float32 cannot hold (0.1, 0.05) the shifted values can then be adjacent
    float32 numbers, and a best equal to one of them is beaten by one rule and
    not the other. See ``test_min_delta_rounding_is_lightnings``.
    """
    finite = {v for v in values if math.isfinite(v)}
    signed = -min_delta if mode == "min" else min_delta  # as Lightning stores it
    for x in finite:
        lightning = float(torch.tensor(x, dtype=torch.float32) - signed)
        keras = as_float32(x - signed)
        if lightning == keras:
            continue
        # min: improvement is shifted < best, so only best == the higher shift
        # tells them apart; max: shifted > best, only best == the lower shift.
        edge = max(lightning, keras) if mode == "min" else min(lightning, keras)
        if edge in finite:
            return True
    return False


# -- strategies -------------------------------------------------------------


def product_grid(step: float) -> st.SearchStrategy[float]:
    # k * step carries float64 noise (0.1 * 3 == 0.30000000000000004) that
    # float32 must absorb: values, thresholds and min_delta all live on it.
    return grid_values(step, spellings=("product",))


STEPS = (0.1, 0.05, 0.01)
any_value = any_finite_value(product_grid, STEPS)
finite_sequences = finite_runs(product_grid, STEPS, MAX_EPOCHS)
non_finite_sequences = st.lists(st.sampled_from([NAN, INF, -INF]) | product_grid(0.1), min_size=1, max_size=MAX_EPOCHS)

# Lightning uses min_delta with its sign and we use its absolute value: only
# non-negative values mean the same on both sides (see the explicit test).
min_deltas = st.sampled_from([0.0, 0.05, 0.1, 0.25, 1e-7]) | st.floats(0, 0.3)


def thresholds(values: list[float]) -> st.SearchStrategy[float | None]:
    """None, a value of the run (ties are the strictness edge), or one inside or outside its range."""
    finite = [v for v in values if math.isfinite(v)]
    choices = st.none() | any_value
    if finite:
        lo, hi = min(finite), max(finite)
        choices |= st.sampled_from(finite) | st.floats(lo - 1, hi + 1)
    return choices


def consistent(mode: str, goal: float | None, limit: float | None) -> tuple[float | None, float | None]:
    """Order two thresholds so the goal is on the good side of the divergence limit.

    Our Monitor refuses the other orders (every epoch would stop); Lightning
    accepts them. ``test_contradictory_thresholds_raise`` covers the refusal.
    """
    if goal is None or limit is None:
        return goal, limit
    if goal == limit:
        return goal, None
    low, high = sorted((goal, limit))
    return (low, high) if mode == "min" else (high, low)


@st.composite
def lightning_cases(draw: st.DrawFn) -> tuple[dict[str, Any], list[float]]:
    """Arguments understood alike by both sides, and float32 values to feed them."""
    check_finite = draw(st.booleans())
    # Without check_finite the two treat NaN differently on purpose (we follow
    # Keras: a NaN never improves); only finite runs are comparable then.
    sequences = finite_sequences | non_finite_sequences if check_finite else finite_sequences
    values = [as_float32(v) for v in draw(sequences)]
    mode = draw(st.sampled_from(["min", "max"]))
    goal, limit = consistent(mode, draw(thresholds(values)), draw(thresholds(values)))
    args = {
        "mode": mode,
        "patience": draw(st.integers(0, 6)),
        "min_delta": draw(min_deltas),
        "stopping_threshold": goal,
        "divergence_threshold": limit,
        "check_finite": check_finite,
    }
    return args, values


def case(values: list[float], **args: Any) -> tuple[dict[str, Any], list[float]]:
    """An explicit example in the shape lightning_cases draws."""
    defaults = {
        "mode": "min",
        "patience": 0,
        "min_delta": 0.0,
        "stopping_threshold": None,
        "divergence_threshold": None,
        "check_finite": True,
    }
    return {**defaults, **args}, [as_float32(v) for v in values]


# -- tests -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(lightning_cases())
@example(case([0.5, 0.4, 0.3, 0.2], patience=3, stopping_threshold=0.3))  # equal is not beyond: stops at 3
@example(case([0.5, 0.1, 0.2], patience=3, stopping_threshold=0.1))  # float32(0.1) vs 0.1: equal
@example(case([0.5, 2.0], patience=3, divergence_threshold=2.0))  # equal is not worse
@example(case([0.5, NAN], patience=3, divergence_threshold=0.6))  # non-finite is checked first
@example(case([INF], stopping_threshold=0.3, divergence_threshold=2.0))
@example(case([0.5, 0.2, 0.25], mode="max", patience=1, stopping_threshold=0.9, divergence_threshold=0.22))
@example(case([1.0, 0.96, 0.89, 0.885, 0.88], patience=2, min_delta=0.05))
def test_matches_lightning(lightning_case: tuple[dict[str, Any], list[float]]) -> None:
    args, values = lightning_case
    # Runs where the rounding of x + min_delta could decide an improvement are
    # a known disagreement, pinned by test_min_delta_rounding_is_lightnings.
    assume(not shift_rounding_decides(values, args["min_delta"], args["mode"]))
    assert_same_as_lightning(args, values)


@pytest.mark.parametrize(
    ("values", "min_delta", "keras_stop"),
    [
        # 0.08 + 0.1 vs 0.18: Lightning sees a tie (no improvement, stop at 1);
        # Keras and we see an improvement and go on.
        ([0.18, 0.08], 0.1, None),
        # 0.04 + 0.01 vs 0.05: Lightning sees an improvement and goes on;
        # Keras and we see a tie and stop at 1.
        ([0.05, 0.04], 0.01, 1),
    ],
)
def test_min_delta_rounding_follows_keras_not_lightning(
    values: list[float], min_delta: float, keras_stop: int | None
) -> None:
    """A documented difference: Lightning rounds min_delta to float32 and adds in float32;
    Keras (and the Monitor) add in float64 and round once. Where they part, we are Keras."""
    args, values = case(values, min_delta=min_delta)
    assert shift_rounding_decides(values, min_delta, "min")
    ours, theirs = run_monitor(args, values), run_lightning(args, values)
    assert ours.stop_epoch == keras_stop
    assert theirs.stop_epoch != keras_stop


def test_negative_min_delta_means_the_same_as_positive_to_us_not_to_lightning() -> None:
    # Lightning multiplies min_delta by -1 in min mode and uses it with its
    # sign, so -0.5 lets a value 0.5 *worse* than the best count as an
    # improvement; Keras and we take abs(min_delta).
    values = [1.0, 1.2, 1.4]
    negative = case(values, patience=1, min_delta=-0.5)[0]
    positive = case(values, patience=1, min_delta=0.5)[0]
    assert run_lightning(negative, values).stop_epoch is None  # every epoch "improves"
    assert run_lightning(positive, values).stop_epoch == 1
    assert run_monitor(negative, values) == run_monitor(positive, values) == run_lightning(positive, values)


def test_without_check_finite_a_first_nan_is_kerass_rule_not_lightnings() -> None:
    # The deliberate difference that keeps non-finite values out of the
    # check_finite=False runs above: Lightning's best starts at +inf, which a
    # NaN cannot beat, so the NaN just counts as a bad epoch; Keras and we
    # take the first value as best whatever it is (SEMANTICS.md V17), and
    # nothing beats a NaN.
    args, values = case([NAN, 1.0, 0.5], patience=2, check_finite=False)
    assert run_lightning(args, values).stop_epoch is None
    ours = run_monitor(args, values)
    assert ours.stop_epoch == 2
    assert ours.best is not None and math.isnan(ours.best)


@pytest.mark.parametrize(
    ("mode", "goal", "limit"),
    [("min", 1.0, 0.5), ("min", 0.5, 0.5), ("max", 0.5, 1.0), ("max", 0.5, 0.5)],
)
def test_contradictory_thresholds_raise(mode: str, goal: float, limit: float) -> None:
    with pytest.raises(ValueError, match="stopping_threshold"):
        Monitor(mode=mode, stopping_threshold=goal, divergence_threshold=limit)
    # Lightning takes them, and then stops on (nearly) any value.
    EarlyStopping(monitor="val_loss", mode=mode, stopping_threshold=goal, divergence_threshold=limit)
