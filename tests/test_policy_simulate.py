"""The vectorised learned policy decides exactly as ``Monitor(policy=...)``: random policies, curves and settings.

Three levels: the exact logarithm; :func:`first_stops` against the policy's own
``check`` fed the same inputs; and the replay engine (``evaluate``) against the
scalar replay through a real Monitor, errors included; plus the dev bank with
the recommended policy, and the fitting-time simulation against the Monitor.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from earlystop_core import Monitor
from earlystop_core.policy import simulate as simulation
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


@st.composite
def stop_inputs(draw: st.DrawFn, policy: LearnedPolicy, loss: st.SearchStrategy[float] = LOSS) -> dict[str, Any]:
    """What `first_stops` takes besides the policy: up to 4 runs of up to 40 rows, any block size."""
    runs, rows = draw(st.integers(1, 4)), draw(st.integers(1, 40))

    def cells(values: st.SearchStrategy[Any]) -> np.ndarray:
        return np.array(draw(st.lists(values, min_size=rows * runs, max_size=rows * runs))).reshape(rows, runs)

    logs = {"loss": cells(loss | st.just(-1.0)).astype(float), "val_accuracy": cells(ACCURACY).astype(float)}
    rate = draw(rates(rows, runs))
    if rate is not None:
        logs["lr"] = rate
    adopted = cells(st.booleans())
    shared = draw(st.booleans())  # no baseline: every adoption resets wait (the same array, as the engine passes)
    return {
        "start": draw(st.integers(0, 3)),
        "value": cells(loss if policy.log else st.floats(-5, 5) | loss).astype(float),
        "adopted": adopted,
        "reset": adopted if shared else adopted & cells(st.booleans()),  # an adoption that beats the baseline
        "logs": logs,
        "limit": np.array(draw(st.lists(st.integers(0, rows), min_size=runs, max_size=runs))),
        "earliest": draw(st.integers(0, rows)),
        "block": draw(st.sampled_from([1, 3, 16])),
    }


def checked(
    policy: LearnedPolicy, inputs: dict[str, Any], run: int, drop: Any = None
) -> list[tuple[bool, float, bool]]:
    """Per row of ``run`` up to its limit: what the policy's own ``check`` says, its logit, whether the logit decides.

    ``drop``: called where the learning rate is NaN, whether to leave it out of the logs instead.
    """
    start, value, adopted, reset, logs = (inputs[name] for name in ("start", "value", "adopted", "reset", "logs"))
    own = LearnedPolicy.from_json(policy.to_json(), max_epochs=policy.max_epochs)
    best, wait, said = None, 0, []
    for row in range(int(inputs["limit"][run])):
        wait = 0 if reset[row, run] else wait + 1
        if adopted[row, run]:
            best = float(value[row, run])
        metrics = {name: float(array[row, run]) for name, array in logs.items()}
        if math.isnan(metrics.get("lr", 0.0)) and drop is not None and drop():
            del metrics["lr"]  # not logged, rather than logged as NaN: the same to the policy
        says = own.check(start + row, float(value[row, run]), best, wait, bool(adopted[row, run]), metrics)
        by_logit = not adopted[row, run] and start + row != 0 and policy.min_wait <= wait < policy.max_wait
        said.append((says, own._logit, by_logit))
    return said


def first_said(said: list[tuple[bool, float, bool]], earliest: int, rows: int) -> int:
    """The first row from ``earliest`` where ``check`` said stop (``rows``: none)."""
    return next((row for row, (says, _, _) in enumerate(said) if says and row >= earliest), rows)


@given(policies(), st.data())
@SETTINGS
def test_first_stops_is_the_first_epoch_the_policy_check_says_stop(policy: LearnedPolicy, data: st.DataObject) -> None:
    inputs = data.draw(stop_inputs(policy))
    got = first_stops(policy, **inputs)
    rows, runs = inputs["value"].shape
    for run in range(runs):
        said = checked(policy, inputs, run, lambda: data.draw(st.booleans()))
        assert got[run] == first_said(said, inputs["earliest"], rows), f"run {run}"


# -- the fast pass: numpy's logarithm, vouched for by a bound on its logit ------------------------------------------


def worse_log(values: np.ndarray) -> np.ndarray:
    """numpy's logarithm moved by up to 8 units in the last place: a function of the value (its low bits)."""
    logs = np.log(values)
    shift = (np.asarray(values, dtype=np.float64).view(np.uint64) % np.uint64(17)).astype(np.float64) - 8.0
    moved: np.ndarray = np.where(np.isfinite(logs), logs + shift * np.spacing(logs), logs)
    return moved


@contextlib.contextmanager
def fast_log(log: Any) -> Iterator[list[int]]:
    """The fast pass with ``log`` for numpy's logarithm (trusted); yields the runs the exact pass decides again."""
    again: list[int] = []
    exact = simulation.first_stops

    def spy(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("exact"):
            again.append(args[2].shape[1])
        return exact(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(simulation, "_fast_log", log)
        patch.setattr(simulation, "_fast_log_trusted", lambda: True)
        patch.setattr(simulation, "first_stops", spy)
        yield again


BIG = st.floats(1e12, 1e300)  # levels above the floor's magnitude: a larger bound


def at_threshold(policy: LearnedPolicy, logit: float) -> LearnedPolicy:
    """The policy with its bias moved so that ``logit`` becomes the threshold's (0, to within a rounding)."""
    saved = policy.to_json()
    saved["bias"] -= logit
    saved["threshold"] = 0.5
    del saved["checksum"]  # edited on purpose
    return LearnedPolicy.from_json(saved, max_epochs=policy.max_epochs)


@given(policies(), st.data())
@SETTINGS
def test_a_logarithm_8_units_off_in_the_last_place_changes_no_stop(policy: LearnedPolicy, data: st.DataObject) -> None:
    inputs = data.draw(stop_inputs(policy, LOSS | BIG))
    exact = first_stops(policy, **inputs, exact=True)
    with fast_log(worse_log):
        assert first_stops(policy, **inputs).tolist() == exact.tolist()


@given(st.data())
@settings(SETTINGS, max_examples=80)
def test_a_decision_at_the_threshold_itself_is_made_by_the_exact_pass(data: st.DataObject) -> None:
    """The threshold is moved onto a logit the policy decides by: only the exact pass can tell which side it is."""
    policy = data.draw(policies())
    drawn = data.draw(stop_inputs(policy))
    adopted = drawn["adopted"][:, :1]  # run 0 alone, every row of it asked
    inputs = dict(
        drawn,
        value=drawn["value"][:, :1],
        adopted=adopted,
        reset=adopted if drawn["reset"] is drawn["adopted"] else drawn["reset"][:, :1],
        logs={name: array[:, :1] for name, array in drawn["logs"].items()},
        limit=np.array([len(drawn["value"])]),
        earliest=0,
    )
    said = checked(policy, inputs, 0)
    asked = [
        row
        for row, (_, logit, by_logit) in enumerate(said)
        if by_logit and row >= inputs["earliest"] and abs(logit) < 2
    ]
    assume(asked)
    row = data.draw(st.sampled_from(asked))
    on_it = at_threshold(policy, said[row][1])
    moved = checked(on_it, inputs, 0)[row][1]  # not always 0: moving the bias rounds
    assume(abs(moved) <= 1e-14 * (sum(map(abs, on_it._folded)) + abs(on_it._bias_folded)))  # within any bound
    exact = first_stops(on_it, **inputs, exact=True)
    with fast_log(worse_log) as again:
        assert first_stops(on_it, **inputs).tolist() == exact.tolist()
    assert exact[0] == first_said(checked(on_it, inputs, 0), inputs["earliest"], len(inputs["value"]))
    if exact[0] >= row:  # the decision at the threshold was asked
        assert again == [1]


def test_the_exact_pass_decides_again_a_run_whose_logit_is_at_the_threshold() -> None:
    """A run stepping onto the threshold's logit is decided again by the exact pass, the others not."""
    policy = LearnedPolicy(["gl", "log_wait"], [0.0, 0.0], [1.0, 1.0], [4.0, -1.0], 0.0, threshold=0.5,
                           min_wait=1, max_wait=100, log=True)  # fmt: skip
    rows = 30
    value = np.tile(np.concatenate([np.linspace(1.0, 0.5, 10), np.full(rows - 10, 0.6)])[:, None], (1, 3))
    adopted = np.zeros_like(value, dtype=bool)
    adopted[:10] = True
    inputs = {"start": 0, "value": value, "adopted": adopted, "reset": adopted, "logs": {},
              "limit": np.full(3, rows), "earliest": 0, "block": 16}  # fmt: skip
    said = checked(policy, inputs, 0)
    logit = said[20][1]  # row 20: wait 11 (the logit falls with the wait: higher at every row before)
    assert all(earlier > logit for _, earlier, _ in said[10:20])
    value[10:, 2] = 0.7  # run 2: further from its best, its logit further from the threshold at every row
    on_it = at_threshold(policy, logit)
    exact = first_stops(on_it, **inputs, exact=True)
    with fast_log(worse_log) as again:
        assert first_stops(on_it, **inputs).tolist() == exact.tolist()
    assert again == [2]  # runs 0 and 1, alike, decided again together; run 2 by the fast pass alone


def test_a_record_of_the_training_loss_the_logarithms_might_order_otherwise_is_left_to_the_exact_pass() -> None:
    """Two training losses a unit in the last place apart: the exact pass sets a record where the fast one does not."""
    lower = next(
        x for x in np.nextafter(1.5, 2.0) + np.spacing(1.5) * np.arange(1000)  # a loss, and the one just below it
        if worse_log(np.array([np.nextafter(x, 0.0)]))[0] >= worse_log(np.array([x]))[0]
    )  # fmt: skip
    below = float(np.nextafter(lower, 0.0))
    assert math.log(below) < math.log(lower)
    loss = np.array([2.0, lower, 3.0, 3.0, below, 3.0, 3.0, 3.0, 3.0, 3.0])[:, None]
    policy = LearnedPolicy(["train_log_wait"], [0.0], [1.0], [-1.0], 0.0, threshold=1 / (1 + math.exp(1.5)),
                           min_wait=1, max_wait=100, train_metric="loss")  # fmt: skip
    value = np.linspace(1.0, 0.9, 10)[:, None]
    adopted = np.zeros_like(value, dtype=bool)
    adopted[0] = True
    inputs = {"start": 0, "value": value, "adopted": adopted, "reset": adopted, "logs": {"loss": loss},
              "limit": np.array([10]), "earliest": 0, "block": 16}  # fmt: skip
    exact = first_stops(policy, **inputs, exact=True)
    assert exact.tolist() == [8] == [first_said(checked(policy, inputs, 0), 0, 10)]  # the record at row 4
    with fast_log(worse_log) as again:
        assert first_stops(policy, **inputs).tolist() == [8]  # row 5 had the record stayed at row 1
    assert again == [1]


def test_a_numpy_logarithm_further_off_than_checked_turns_the_fast_pass_off() -> None:
    simulation._fast_log_trusted.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(simulation, "_fast_log", lambda values: np.log(values) * (1.0 + 1e-13))
            assert not simulation._fast_log_trusted()
    finally:
        simulation._fast_log_trusted.cache_clear()
    assert simulation._fast_log_trusted()  # numpy's own is within 2 units of math.log here


def test_the_fast_pass_decides_every_run_of_the_bundled_sample_alone() -> None:
    bank = Bank.load(ROOT / "earlystop_core" / "data" / "sample_curves.csv.gz")
    with fast_log(np.log) as again:
        fast = evaluate(bank, {"policy": "recommended"})
    assert again == [] and fast.results() == evaluate(bank, {"policy": "recommended"}, engine="scalar").results()


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
