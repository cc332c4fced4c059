"""ReduceLROnPlateau: the checked Keras examples, the real Keras callback, properties.

The differential test drives the real ``keras.callbacks.ReduceLROnPlateau``
on a stub model whose ``optimizer`` is a real ``keras.optimizers.SGD``, so the
learning rate lives in a real float32 variable. Each epoch our object is fed
the rate that optimizer holds (what a user reading ``optimizer.learning_rate``
would feed back), and must agree with Keras on whether to reduce, on the new
rate (Keras stores our float64 result rounded to float32: rel. tol. 1e-6),
and on best, wait and the cooldown counter.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from earlystop_core import MissingMetricError, ReduceLROnPlateau, StateError
from earlystop_core._float32 import to_float32
from earlystop_core.testing import metric_sequences

# same(): NaN equals NaN, as Keras can adopt a NaN as best
from helpers import finite_runs, grid_values, same

# Keras picks its backend on first import; torch is the only one installed.
os.environ["KERAS_BACKEND"] = "torch"
NAN = math.nan
INF = math.inf
MAX_EPOCHS = 30
KEY = "val_loss"


def run(plateau: ReduceLROnPlateau, values: list[float], lr: float) -> list[float]:
    """The rate after each epoch, feeding each result back as the next rate."""
    rates = []
    for value in values:
        lr = plateau.update({KEY: value}, lr)
        rates.append(lr)
    return rates


def counters(plateau: ReduceLROnPlateau) -> tuple[Any, ...]:
    return plateau.wait, plateau.cooldown_counter, plateau.reductions, plateau.last_reduced


# -- SEMANTICS.md's checked examples ------------------------------------------


@pytest.mark.parametrize(
    ("args", "lr", "values", "rates", "reduced_at"),
    [
        ({"patience": 2}, 1.0, [0.086, 0.1096, 0.104], [1.0, 1.0, 0.1], [2]),
        ({"patience": 1, "cooldown": 2}, 1.0, [1.0] * 7, [1, 0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3], [1, 3, 5]),
        ({"patience": 1, "cooldown": 3}, 1.0, [1.0, 1.0, 0.5, 0.6, 0.6], [1, 0.1, 0.1, 0.1, 0.01], [1, 4]),
        ({"patience": 1, "min_lr": 0.005}, 0.1, [1.0] * 5, [0.1, 0.01, 0.005, 0.005, 0.005], [1, 2]),
    ],
    ids=["p2-reduce-at-2", "p1-cooldown2", "p1-cooldown3", "min_lr"],
)
def test_checked_keras_examples(
    args: dict[str, Any], lr: float, values: list[float], rates: list[float], reduced_at: list[int]
) -> None:
    plateau = ReduceLROnPlateau(mode="min", **args)
    seen, reductions = [], []
    for epoch, value in enumerate(values):
        lr = plateau.update({KEY: value}, lr)
        seen.append(lr)
        if plateau.last_reduced:
            reductions.append(epoch)
    assert seen == pytest.approx(rates, rel=1e-12)
    assert reductions == reduced_at
    assert plateau.reductions == len(reduced_at)


def test_at_min_lr_wait_keeps_growing() -> None:
    plateau = ReduceLROnPlateau(patience=1, min_lr=0.005, mode="min")
    run(plateau, [1.0] * 6, 0.1)
    assert plateau.wait == 3
    assert plateau.exhausted(0.005)


# -- against the real Keras callback ------------------------------------------


def small_grid(step: float) -> st.SearchStrategy[float]:
    return grid_values(step, lowest=-5, highest=20)


sequences = finite_runs(small_grid, (0.1, 0.05), MAX_EPOCHS)
# NaN, inf, -inf and epochs whose logs lack the metric (None), among grid values: the kit's sequences.
odd_sequences = metric_sequences(values=small_grid(0.1), non_finite=True, missing=True, min_size=1, max_size=20)


@st.composite
def keras_cases(draw: st.DrawFn, values: st.SearchStrategy[list[float | None]]) -> tuple[dict[str, Any], Any]:
    args = {
        "mode": draw(st.sampled_from(["min", "max", "auto"])),
        "patience": draw(st.integers(0, 4)),
        "cooldown": draw(st.integers(0, 3)),
        "factor": draw(st.sampled_from([0.1, 0.5, 0.9])),
        "min_lr": draw(st.sampled_from([0.0, 1e-4, 1e-3, 0.02])),
        "min_delta": draw(st.sampled_from([0.0, 1e-4, 0.05])),
    }
    return args, (draw(st.sampled_from([1.0, 0.1, 0.03])), draw(values))


@pytest.fixture(scope="module")
def keras() -> Any:
    return pytest.importorskip("keras")


class StubModel:
    """All the callback touches of a model: its optimizer, a real one holding lr in float32."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = optimizer


def assert_same_as_keras(keras: Any, args: dict[str, Any], run_input: tuple[float, list[float | None]]) -> None:
    lr0, values = run_input
    model = StubModel(keras.optimizers.SGD(learning_rate=lr0))
    callback = keras.callbacks.ReduceLROnPlateau(monitor=KEY, **args)
    callback.set_model(model)
    callback.on_train_begin()
    ours = ReduceLROnPlateau(monitor=KEY, on_missing="skip", **args)
    for epoch, value in enumerate(values):
        held = float(model.optimizer.learning_rate)  # float32, as Keras reads it
        logs = {} if value is None else {KEY: value}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns on a missing metric
            callback.on_epoch_end(epoch, dict(logs))
        theirs = float(model.optimizer.learning_rate)
        mine = ours.update(logs, held)
        context = f"args={args} lr0={lr0} values={values} epoch={epoch}: keras {held}->{theirs}, ours {mine}"
        assert ours.last_reduced == (theirs != held), context
        assert mine == pytest.approx(theirs, rel=1e-6), context
        assert to_float32(mine) == theirs, context  # what Keras's optimizer would hold
        assert (ours.wait, ours.cooldown_counter) == (callback.wait, callback.cooldown_counter), context
        assert same(ours.best, callback.best), context
        assert ours.exhausted(theirs) == (not theirs > to_float32(args["min_lr"])), context


def case(values: list[float | None], lr: float = 1.0, **args: Any) -> tuple[dict[str, Any], Any]:
    defaults = {"mode": "min", "patience": 1, "cooldown": 0, "factor": 0.1, "min_lr": 0.0, "min_delta": 0.0}
    return {**defaults, **args}, (lr, values)


@settings(max_examples=250, deadline=None)
@given(keras_cases(sequences))
@example(case([0.086, 0.1096, 0.104], patience=2, min_delta=1e-4))
@example(case([0.8, 0.7 + 0.1, 0.8], patience=1))  # 0.7 + 0.1 < 0.8 in float64 only: not an improvement
@example(case([1.0, 0.95 + 1e-9, 0.9], patience=1, min_delta=0.05))  # x + min_delta ties best in float32
@example(case([1.0] * 8, patience=0, factor=0.5, min_lr=0.25 * (1 - 2**-30)))  # min_lr == 0.25 in float32
@example(case([1.0] * 12, lr=0.1, patience=0, cooldown=1, factor=0.9, min_lr=0.05))
def test_matches_keras(keras: Any, keras_case: tuple[dict[str, Any], Any]) -> None:
    assert_same_as_keras(keras, *keras_case)


@settings(max_examples=100, deadline=None)
@given(keras_cases(odd_sequences))
@example(case([NAN, 1.0, 0.5, 0.4, 0.3]))  # a first NaN becomes best: nothing improves after it
@example(case([1.0, NAN, None, 0.9, None, NAN, NAN], patience=2))
@example(case([INF, 1.0, -INF, -INF], mode="max"))
def test_matches_keras_on_nan_infinity_and_missing(keras: Any, keras_case: tuple[dict[str, Any], Any]) -> None:
    assert_same_as_keras(keras, *keras_case)


def test_min_lr_test_is_float32() -> None:
    # 0.25 > min_lr in float64, but not in float32, where Keras's optimizer holds it.
    plateau = ReduceLROnPlateau(patience=0, factor=0.5, min_lr=0.25 * (1 - 2**-30), mode="min")
    rates = run(plateau, [1.0] * 5, 1.0)
    assert rates == [1.0, 0.5, 0.25, 0.25, 0.25]
    assert plateau.exhausted(0.25)
    assert not ReduceLROnPlateau(min_lr=0.25 * (1 - 2**-20)).exhausted(0.25)


# -- properties -----------------------------------------------------------------


@st.composite
def plateaus(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "patience": draw(st.integers(0, 4)),
        "cooldown": draw(st.integers(0, 3)),
        "factor": draw(st.sampled_from([0.1, 0.5, 0.9])),
        "min_lr": draw(st.sampled_from([0.0, 1e-3, 0.02])),
        "min_delta": draw(st.sampled_from([0.0, 1e-4, 0.05, 0.1])),
        "min_delta_mode": draw(st.sampled_from(["abs", "rel"])),
        "max_reductions": draw(st.none() | st.integers(0, 4)),
    }


any_sequence = sequences | odd_sequences.map(lambda vs: [NAN if v is None else v for v in vs])


@settings(max_examples=150, deadline=None)
@given(plateaus(), sequences)
def test_max_on_x_is_min_on_minus_x(args: dict[str, Any], values: list[float]) -> None:
    lowest = ReduceLROnPlateau(mode="min", **args)
    highest = ReduceLROnPlateau(mode="max", **args)
    assert run(lowest, values, 0.1) == run(highest, [-v for v in values], 0.1)
    assert counters(lowest) == counters(highest)
    assert highest.best is not None and same(lowest.best, -highest.best)


@settings(max_examples=100, deadline=None)
@given(plateaus(), any_sequence, st.sampled_from(["min", "max"]))
def test_resuming_at_any_epoch_changes_nothing(args: dict[str, Any], values: list[float], mode: str) -> None:
    whole = ReduceLROnPlateau(mode=mode, **args)
    expected = run(whole, values, 0.1)
    for split in range(len(values) + 1):
        first = ReduceLROnPlateau(mode=mode, **args)
        rates = run(first, values[:split], 0.1)
        saved = json.dumps(first.state_dict(), allow_nan=False)
        resumed = ReduceLROnPlateau(mode=mode, **args)
        resumed.load_state_dict(json.loads(saved))
        rates += run(resumed, values[split:], rates[-1] if rates else 0.1)
        assert rates == expected
        assert resumed.state_dict() == whole.state_dict()


@pytest.mark.parametrize(
    ("mode", "before", "after", "improves"),
    [
        ("min", -10.0, -10.5, True),
        ("min", -10.0, -10.05, False),
        ("min", 10.0, 9.8, True),
        ("min", 10.0, 9.95, False),
        ("max", -10.0, -9.8, True),
        ("max", -10.0, -9.95, False),
        ("max", 10.0, 10.2, True),
        ("max", 10.0, 10.05, False),
    ],
)
def test_relative_min_delta_is_relative_to_abs_best(mode: str, before: float, after: float, improves: bool) -> None:
    # PyTorch's threshold_mode="rel" would call -10 -> -10.05 an improvement (it beats -10 * 0.99).
    plateau = ReduceLROnPlateau(mode=mode, min_delta=0.01, min_delta_mode="rel", patience=5)
    run(plateau, [before, after], 0.1)
    assert plateau.best == (after if improves else before)
    assert plateau.wait == (0 if improves else 1)


@settings(max_examples=150, deadline=None)
@given(plateaus(), sequences, st.integers(0, 5))
def test_max_reductions_bounds_the_reductions(args: dict[str, Any], values: list[float], limit: int) -> None:
    args["max_reductions"] = None
    free = ReduceLROnPlateau(mode="min", **args)
    bounded = ReduceLROnPlateau(mode="min", **{**args, "max_reductions": limit})
    lr = free_lr = 0.1
    for value in values:
        was_exhausted = bounded.reductions == limit
        free_lr, new_lr = free.update({KEY: value}, free_lr), bounded.update({KEY: value}, lr)
        if was_exhausted:  # no more reductions: the rate stays
            assert (new_lr, bounded.reductions, bounded.last_reduced) == (lr, limit, False)
        else:  # Keras's run, up to and including the limit-th reduction
            assert (new_lr, counters(bounded)) == (free_lr, counters(free))
        lr = new_lr
        assert bounded.reductions <= limit
        assert bounded.exhausted(lr) or bounded.reductions < limit


def test_missing_metric_raises_or_skips() -> None:
    with pytest.raises(MissingMetricError, match="not in the logs; logged: 'loss'"):
        ReduceLROnPlateau().update({"loss": 1.0}, 0.1)
    plateau = ReduceLROnPlateau(patience=0, on_missing="skip", mode="min")
    lr = run(plateau, [1.0, 1.0], 0.1)[-1]
    before = plateau.state_dict()
    assert plateau.update({"loss": 0.5}, lr) == lr
    assert not plateau.last_reduced  # this update did not reduce; best and counters are untouched
    assert plateau.state_dict()["state"] == {**before["state"], "last_reduced": False}


def test_reset_and_accepted_lr_types() -> None:
    np = pytest.importorskip("numpy")
    plateau = ReduceLROnPlateau(patience=0, mode="min")
    assert plateau.update({KEY: np.float32(1.0)}, np.float32(0.5)) == 0.5
    assert plateau.update({KEY: 1.0}, 1) == pytest.approx(0.1)
    plateau.reset()
    assert (plateau.best, *counters(plateau)) == (None, 0, 0, 0, False)


# -- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"factor": 1.5}, ValueError, "'factor' must be < 1.0, got 1.5"),
        ({"factor": 1}, ValueError, "'factor' must be < 1.0, got 1.0"),
        ({"factor": 0.0}, ValueError, "'factor' must be > 0, got 0.0"),
        ({"factor": -0.5}, ValueError, "'factor' must be > 0, got -0.5"),
        ({"factor": NAN}, ValueError, "'factor' must be finite, got nan"),
        ({"factor": "0.1"}, TypeError, "'factor' must be a number, got str ('0.1')"),
        ({"patience": -1}, ValueError, "'patience' must be >= 0, got -1"),
        ({"patience": 1.5}, TypeError, "'patience' must be an int, got float (1.5)"),
        ({"cooldown": -2}, ValueError, "'cooldown' must be >= 0, got -2"),
        ({"min_lr": -1e-3}, ValueError, "'min_lr' must be >= 0, got -0.001"),
        ({"min_lr": INF}, ValueError, "'min_lr' must be finite, got inf"),
        ({"min_delta": NAN}, ValueError, "'min_delta' must be finite, got nan"),
        ({"mode": "mni"}, ValueError, "mode must be one of 'auto', 'min', 'max', got 'mni'"),
        ({"monitor": "val_foo"}, ValueError, "mode='auto' cannot tell whether 'val_foo'"),
        ({"monitor": ""}, TypeError, "'monitor' must be a non-empty metric name, got ''"),
        ({"min_delta_mode": "pct"}, ValueError, "min_delta_mode must be one of 'abs', 'rel', got 'pct'"),
        ({"max_reductions": -1}, ValueError, "'max_reductions' must be >= 0, got -1"),
        ({"on_missing": "ignore"}, ValueError, "on_missing must be one of 'raise', 'skip', got 'ignore'"),
    ],
)
def test_constructor_messages(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        ReduceLROnPlateau(**kwargs)


@pytest.mark.parametrize(
    ("lr", "error", "message"),
    [
        (0.0, ValueError, "'lr' must be a finite learning rate > 0, got 0.0"),
        (-0.1, ValueError, "'lr' must be a finite learning rate > 0, got -0.1"),
        (INF, ValueError, "'lr' must be a finite learning rate > 0, got inf"),
        (NAN, ValueError, "'lr' must be a finite learning rate > 0, got nan"),
        ("0.1", TypeError, "'lr' must be a number, got str ('0.1')"),
        (None, TypeError, "'lr' must be a number, got NoneType (None)"),
    ],
)
def test_update_rejects_bad_lr(lr: Any, error: type[Exception], message: str) -> None:
    plateau = ReduceLROnPlateau()
    with pytest.raises(error, match=re.escape(message)):
        plateau.update({KEY: 1.0}, lr)
    with pytest.raises(error, match=re.escape(message)):
        plateau.exhausted(lr)
    assert plateau.best is None


def test_load_state_dict_refuses_other_settings_and_corrupt_states() -> None:
    plateau = ReduceLROnPlateau(patience=3)
    run(plateau, [NAN, 1.0], 0.1)
    saved = plateau.state_dict()
    assert saved["state"]["best"] == "nan"
    with pytest.raises(StateError, match=re.escape("patience=3 (saved) vs 4 (here)")):
        ReduceLROnPlateau(patience=4).load_state_dict(saved)
    with pytest.raises(StateError, match=re.escape("not a saved earlystop_core.ReduceLROnPlateau state")):
        plateau.load_state_dict({**saved, "format": "earlystop_core.Monitor"})
    with pytest.raises(StateError, match="version 2"):
        plateau.load_state_dict({**saved, "version": 2})
    with pytest.raises(StateError, match="not valid JSON"):
        plateau.load_state_dict("{")
    with pytest.raises(StateError, match="'wait' must be an int >= 0"):
        plateau.load_state_dict({**saved, "state": {**saved["state"], "wait": -1}})
    with pytest.raises(StateError, match="'best' must be a number"):
        plateau.load_state_dict({**saved, "state": {**saved["state"], "best": "lots"}})
    fresh = ReduceLROnPlateau(patience=3)
    fresh.load_state_dict(json.dumps(saved, allow_nan=False))
    assert fresh.best is not None
    assert math.isnan(fresh.best)
    assert counters(fresh) == counters(plateau)
