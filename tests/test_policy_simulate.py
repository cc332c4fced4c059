"""The vectorised learned policy decides exactly as ``Monitor(policy=...)``: random policies, curves and settings.

Three levels: the exact logarithm; :func:`first_stops` against the policy's own
``check`` fed the same inputs; and the replay engine (``evaluate``) against the
scalar replay through a real Monitor, errors included; plus the dev bank with
the recommended policy, and the fitting-time simulation against the Monitor.
"""

from __future__ import annotations

import math
import operator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from earlystop_core import Monitor
from earlystop_core.policy.features import FAMILIES, FeatureTracker
from earlystop_core.policy.fit import record_runs, simulate
from earlystop_core.policy.learned import LearnedPolicy
from earlystop_core.policy.simulate import _log, first_stops
from earlystop_core.replay import engine as engine_module
from earlystop_core.replay.bank import Bank
from earlystop_core.replay.engine import evaluate
from earlystop_core.replay.scalar import replay

from helpers import groups_of

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "curves" / "dev" / "curves.csv.gz"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values as training loops log them, edge cases over-represented: the log floor, zero, non-finite values.
LOSS = st.one_of(
    st.floats(1e-3, 5.0),
    st.sampled_from([0.0, 1e-13, 1e-12, 2e-12, 0.5, 1.0, math.nan, math.inf]),
    st.floats(1e-300, 1e-6),
)
ACCURACY = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.5, math.nan, math.inf, -math.inf]))
# Learning rates as schedules log them (decaying to 0, below the log floor), now and then not finite.
RATE = st.one_of(
    st.floats(1e-6, 1.0),
    st.sampled_from([0.0, 1e-13, 0.1, 0.1, 0.01, 1e-3, math.nan, math.inf]),
    st.floats(1e-300, 1e-9),
)


@st.composite
def rates(draw: st.DrawFn, rows: int, runs: int) -> np.ndarray | None:
    """A learning rate per epoch and run: logged at every epoch, at some (NaN: not logged), or not at all."""
    how = draw(st.sampled_from(["every epoch", "some epochs", "never"]))
    if how == "never":
        return None
    values = RATE | st.just(math.nan) if how == "some epochs" else RATE
    return np.array(draw(st.lists(values, min_size=rows * runs, max_size=rows * runs))).reshape(rows, runs)


@st.composite
def policies(draw: st.DrawFn, log: bool | None = None) -> LearnedPolicy:
    """A random policy over random features of every family (budget ones bound to a random budget)."""
    families = draw(st.sets(st.sampled_from(sorted(FAMILIES)), min_size=1))
    names = [name for family in sorted(families) for name in FAMILIES[family]]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    count = len(chosen)
    numbers = st.lists(st.floats(-3.0, 3.0), min_size=count, max_size=count)
    min_wait = draw(st.integers(1, 5))
    return LearnedPolicy(
        chosen,
        draw(numbers),
        draw(st.lists(st.floats(0.05, 5.0), min_size=count, max_size=count)),
        draw(numbers),
        draw(st.floats(-4.0, 4.0)),
        threshold=draw(st.floats(0.05, 0.95)),
        min_wait=min_wait,
        max_wait=draw(st.integers(min_wait, 25)),
        max_epochs=draw(st.integers(1, 60)),
        log=draw(st.booleans()) if log is None else log,
        train_metric="loss",
        accuracy_metric="val_accuracy",
    )


# -- the exact logarithm -----------------------------------------------------------------------------------------


@given(st.lists(st.floats(min_value=5e-324, allow_infinity=False), min_size=1, max_size=200))
@SETTINGS
def test_the_vectorised_log_is_math_log(values: list[float]) -> None:
    assert _log(np.array(values)).tolist() == [math.log(v) for v in values]


def test_the_vectorised_log_is_math_log_on_a_million_values() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(1e-12, 10.0, 500_000), np.exp(rng.uniform(-700, 700, 500_000))])
    exact = np.fromiter(map(math.log, values.tolist()), dtype=np.float64, count=len(values))
    assert np.array_equal(_log(values), exact)


# -- first_stops against the policy's own check --------------------------------------------------------------------


@given(policies(), st.data())
@SETTINGS
def test_first_stops_is_the_first_epoch_the_policy_check_says_stop(policy: LearnedPolicy, data: st.DataObject) -> None:
    runs, rows = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 40))
    start, block = data.draw(st.integers(0, 3)), data.draw(st.sampled_from([1, 3, 16]))
    cells = st.lists(st.lists(LOSS if policy.log else st.floats(-5, 5) | LOSS, min_size=runs, max_size=runs),
                     min_size=rows, max_size=rows)  # fmt: skip
    value = np.array(data.draw(cells), dtype=float).reshape(rows, runs)
    loss = np.array(data.draw(st.lists(LOSS | st.just(-1.0), min_size=rows * runs, max_size=rows * runs)))
    accuracy = np.array(data.draw(st.lists(ACCURACY, min_size=rows * runs, max_size=rows * runs)))
    logs = {"loss": loss.reshape(rows, runs), "val_accuracy": accuracy.reshape(rows, runs)}
    rate = data.draw(rates(rows, runs))
    if rate is not None:
        logs["lr"] = rate
    adopted = np.array(data.draw(st.lists(st.booleans(), min_size=rows * runs, max_size=rows * runs))).reshape(
        rows, runs
    )
    beats = np.array(data.draw(st.lists(st.booleans(), min_size=rows * runs, max_size=rows * runs)))
    reset = adopted & beats.reshape(rows, runs)  # an adoption that beats the baseline
    limit = np.array(data.draw(st.lists(st.integers(0, rows), min_size=runs, max_size=runs)))
    earliest = data.draw(st.integers(0, rows))
    got = first_stops(policy, start, value, adopted, reset, logs, limit, earliest, block)
    for run in range(runs):
        own = LearnedPolicy.from_json(policy.to_json(), max_epochs=policy.max_epochs)
        best = None
        expected, wait = rows, 0
        for row in range(int(limit[run])):
            wait = 0 if reset[row, run] else wait + 1
            if adopted[row, run]:
                best = float(value[row, run])
            metrics = {name: float(array[row, run]) for name, array in logs.items()}
            if math.isnan(metrics.get("lr", 0.0)) and data.draw(st.booleans()):
                del metrics["lr"]  # not logged, rather than logged as NaN: the same to the policy
            says = own.check(start + row, float(value[row, run]), best, wait, bool(adopted[row, run]), metrics)
            if says and row >= earliest:
                expected = row
                break
        assert got[run] == expected, f"run {run}"


# -- the replay engine against the Monitor --------------------------------------------------------------------------


@st.composite
def banks(draw: st.DrawFn, complete: bool = False) -> dict[str, dict[str, list[float]]]:
    """Runs of up to 30 epochs; unless ``complete``, some with a negative loss or without a metric."""
    curves = {}
    for run in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 30))

        def column(values: st.SearchStrategy[float], n: int = n) -> list[float]:
            return draw(st.lists(values, min_size=n, max_size=n))

        curve = {
            "val_loss": column(LOSS if complete else LOSS | st.just(-0.5))
            if draw(st.booleans())
            else column(st.floats(0.05, 2.0)),
            "loss": column(LOSS),
            "val_accuracy": column(ACCURACY),
            "test_accuracy": column(st.floats(0.0, 1.0)),
        }
        for name in ("loss", "val_accuracy"):
            if not complete and draw(st.integers(0, 9)) == 0:  # now and then a run without a metric the policy reads
                del curve[name]
        how = draw(st.sampled_from(["every epoch", "some epochs", "never"]))  # the optional learning rate
        if how != "never":
            values: st.SearchStrategy[float | None] = RATE | st.none() if how == "some epochs" else RATE
            if not complete and draw(st.integers(0, 9)) == 0:
                values = values | st.just(-0.1)  # refused by the Monitor, at the epoch it is logged
            curve["lr"] = draw(st.lists(values, min_size=n, max_size=n))
        curves[f"r{run}"] = curve
    return curves


@st.composite
def monitor_options(draw: st.DrawFn) -> dict[str, Any]:
    options: dict[str, Any] = {
        "start_from_epoch": draw(st.integers(0, 4)),
        "best_from_epoch": draw(st.integers(0, 5)),
        "smoothing": draw(st.sampled_from([0.0, 0.0, 0.3, 0.8])),
        "min_delta": draw(st.sampled_from([0.0, 0.0, 1e-3, 0.05])),
        "min_delta_mode": draw(st.sampled_from(["abs", "rel"])),
        "check_finite": draw(st.booleans()),
        "restore_best_weights": draw(st.booleans()),
    }
    for name, values in (
        ("baseline", st.floats(0.05, 2.0)),
        ("stopping_threshold", st.floats(0.0, 0.5)),
        ("divergence_threshold", st.floats(1.0, 10.0)),
        ("keep_best_by", st.just("val_accuracy")),
    ):
        if draw(st.booleans()):
            options[name] = draw(values)
    return options


def outcome(function: Any) -> Any:
    """What a call returns, or the type and message of what it raises."""
    try:
        return function()
    except (KeyError, ValueError, ArithmeticError) as error:
        return type(error), str(error)


@given(
    banks(),
    policies(log=True) | policies(log=False),
    monitor_options(),
    st.sampled_from(["raise", "skip"]),
    st.sampled_from([engine_module.GROUP, 1, 2]),
)
@SETTINGS
def test_the_engine_replays_a_policy_as_the_monitor_does(
    curves: dict[str, dict[str, list[float]]], policy: LearnedPolicy, options: dict[str, Any], on_error: str, group: int
) -> None:
    strategy = {"rule": policy, **options}
    try:
        Monitor(**strategy)
    except ValueError:
        assume(False)  # contradictory settings: refused alike by both, before any run
    bank = Bank.from_curves(curves)
    with groups_of(group):  # replayed a group of runs at a time, as a large bank is
        fast = outcome(lambda: evaluate(bank, strategy, on_error=on_error))
    slow = outcome(lambda: evaluate(bank, strategy, on_error=on_error, engine="scalar"))
    if isinstance(fast, tuple):
        assert fast == slow
    else:
        # A negative learning rate (refused by the Monitor at the epoch it is logged) is replayed by the Monitor.
        assert fast.engine in ("scan", "loop") or "is negative at some epoch" in (fast.reason or "")
        assert not isinstance(slow, tuple), slow
        assert fast.results() == slow.results()


@pytest.mark.slow
@pytest.mark.skipif(not DEV.exists(), reason="the dev curve bank is not here")
def test_the_recommended_policy_on_the_dev_bank_is_replayed_exactly() -> None:
    bank = Bank.load(DEV)
    for options in ({}, {"smoothing": 0.5}, {"start_from_epoch": 5, "best_from_epoch": 10, "min_delta": 1e-3}):
        strategy = {"policy": "recommended", **options}
        fast = evaluate(bank, strategy)
        assert fast.engine in ("scan", "loop") and len(fast) == 1200
        assert fast.results() == evaluate(bank, strategy, engine="scalar").results()


# -- the fitting-time simulation against the Monitor -----------------------------------------------------------------


@given(
    banks(complete=True),
    st.lists(st.floats(-3.0, 3.0), min_size=21, max_size=21),
    st.floats(-4.0, 4.0),
    st.floats(0.05, 0.95),
    st.integers(1, 5),
    st.integers(0, 20),
    st.fixed_dictionaries(
        {"best_from_epoch": st.integers(0, 3), "smoothing": st.sampled_from([0.0, 0.5]), "check_finite": st.booleans()}
    ),
)
@SETTINGS
def test_the_fitting_simulation_stops_where_the_monitor_does(
    curves: dict[str, dict[str, list[float]]],
    weights: list[float],
    bias: float,
    threshold: float,
    min_wait: int,
    extra: int,
    options: dict[str, Any],
) -> None:
    assume(all(any(math.isfinite(v) for v in curve["val_loss"]) for curve in curves.values()))  # an oracle epoch
    names = FeatureTracker(True, None, "loss", "val_accuracy", "lr").names
    count = len(names)
    policy = LearnedPolicy(names, [0.0] * count, [1.0] * count, weights, bias, threshold, min_wait, min_wait + extra)
    records = record_runs(
        curves, train_metric="loss", accuracy_metric="val_accuracy", lr_metric="lr", monitor_options=options
    )
    # The policy's own logit (means 0 and scales 1: its folded weights are the weights), row by row.
    logits = [np.array([bias + sum(map(operator.mul, weights, row)) for row in r.features.tolist()]) for r in records]
    cut = math.log(threshold / (1 - threshold))
    _, _, stops = simulate(records, logits, policy.min_wait, policy.max_wait, [cut])
    results = replay(curves, lambda: Monitor(rule=policy, restore_best_weights=True, **options))
    assert [r.stop for r in results] == stops[:, 0].tolist()


def test_runs_taken_a_few_at_a_time_stop_where_all_at_once_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large banks are cut into groups of runs (for the cache): the stops must not depend on the cut."""
    import earlystop_core.policy.simulate as simulation

    bank = Bank.load(ROOT / "earlystop_core" / "data" / "sample_curves.csv.gz")
    strategy = {"policy": "recommended", "smoothing": 0.3}
    whole = evaluate(bank, strategy)
    monkeypatch.setattr(simulation, "_RUNS", 7)
    assert evaluate(bank, strategy).results() == whole.results()
    assert whole.results() == evaluate(bank, strategy, engine="scalar").results()
