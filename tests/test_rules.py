"""Stopping rules, their composition, and the Monitor features around them (hypothesis).

Each rule runs inside a ``Monitor`` beside a naive reference written from its
definition: the reference keeps the whole history and recomputes its verdict
from scratch at every epoch, in float64. Values are drawn from a grid of
multiples of 1/64 in a sane range, so float32 comparisons are exact comparisons
and no verdict hangs on a float32 tie; verdicts that a float64 computation
cannot settle (a ratio within 1e-9 of the threshold) are not asserted.

Decisions are compared as whole tuples, with NaN equal to NaN. Suspected bugs
are kept as regression tests at the end of the file.
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from earlystop_core import (
    GL,
    PQ,
    UP,
    AllOf,
    AnyOf,
    AutoPatience,
    Decision,
    DynamicPatience,
    MissingMetricError,
    Monitor,
    Patience,
    ReduceLROnPlateau,
    RelativePatience,
    Rule,
    Stalled,
    StopReason,
    never,
    suggest_patience,
)
from earlystop_core.testing import metric_sequences, monitor_configs

from helpers import assert_same_decisions, same, strict_json

KEY = "val_loss"
TRAIN = "loss"
ACC = "val_accuracy"
NAN = math.nan
INF = math.inf
SETTINGS = settings(deadline=None, max_examples=100)
FEW = settings(deadline=None, max_examples=30)  # resuming at every split point is quadratic

# Multiples of 1/64: exact in float32, so comparisons never tie by rounding.
POSITIVE = st.integers(1, 512).map(lambda k: k / 64)  # (0, 8]
SIGNED = st.integers(-512, 512).map(lambda k: k / 64)  # [-8, 8]
COARSE = st.integers(1, 12).map(lambda k: k / 4)  # ties and exact repeats
VALUES = COARSE | POSITIVE
PATIENCE_LIKE = (Patience, RelativePatience, DynamicPatience, AutoPatience)
CRITERIA = (GL, PQ, UP, Stalled)


# -- helpers --------------------------------------------------------------------------


def logs(value: float | None, train: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {} if value is None else {KEY: value}
    if train is not None:
        out[TRAIN] = train
    return out


def run(monitor: Monitor, sequence: Sequence[Mapping[str, Any]], previous: Decision | None = None) -> list[Decision]:
    """Feed each epoch's logs; with a plateau, pass the rate the previous decision asked for (1.0 at first)."""
    decisions = []
    for entry in sequence:
        if monitor.plateau is None:
            decision = monitor.update(entry)
        else:
            decision = monitor.update(entry, lr=1.0 if previous is None else previous.lr)
        decisions.append(decision)
        previous = decision
    return decisions


def run_values(
    monitor: Monitor, values: Sequence[float | None], train: Sequence[float] | None = None
) -> list[Decision]:
    trains: Sequence[float | None] = [None] * len(values) if train is None else train
    return run(monitor, [logs(v, t) for v, t in zip(values, trains, strict=True)])


def signed(values: Sequence[float], mode: str) -> list[float]:
    return list(values) if mode == "min" else [-v for v in values]


def keras_trace(history: Sequence[float]) -> tuple[bool, int, int]:
    """(improved, wait, best_epoch) after the last epoch: Keras's rule, min_delta 0, no baseline, lower is better."""
    best: float | None = None
    best_epoch = 0
    wait = 0
    improved = False
    for epoch, value in enumerate(history):
        wait += 1
        improved = best is None or value < best
        if improved:
            best, best_epoch, wait = value, epoch, 0
    return improved, wait, best_epoch


def clear_of(value: float, threshold: float) -> bool:
    """Whether a float64 computation settles ``value > threshold`` (not within 1e-9 of it)."""
    return abs(value - threshold) > 1e-9 * max(1.0, abs(threshold))


def patience_stop(d: Decision) -> bool:
    return d.should_stop and d.reason is StopReason.PATIENCE_EXHAUSTED


# -- naive references, one verdict per epoch from the whole history ----------------------


def gl_verdict(history: Sequence[float], alpha: float) -> bool | None:
    """Prechelt's GL_alpha: 100 * (E_va(t) / E_opt(t) - 1) > alpha, E_opt the best so far."""
    loss = 100.0 * (history[-1] / min(history) - 1.0)
    return loss > alpha if clear_of(loss, alpha) else None


def up_verdict(history: Sequence[float], strips: int, strip: int) -> bool:
    """UP_s: at a strip end, the value went up at the end of each of the last s strips."""
    t = len(history) - 1
    if (t + 1) % strip != 0:
        return False
    for j in range(strips):
        end, before = t - j * strip, t - (j + 1) * strip
        if before < 0 or not history[end] > history[before]:
            return False
    return True


def pq_verdict(history: Sequence[float], train: Sequence[float], alpha: float, strip: int) -> bool | None:
    """PQ_alpha at strip ends: GL / P_k > alpha, or P_k == 0 and GL > 0."""
    t = len(history) - 1
    if (t + 1) % strip != 0 or len(train) < strip:
        return False
    last = train[-strip:]
    progress = 1000.0 * (sum(last) / (strip * min(last)) - 1.0)
    loss = 100.0 * (history[-1] / min(history) - 1.0)
    if progress == 0.0:
        return loss > 0.0
    quotient = loss / progress
    return quotient > alpha if clear_of(quotient, alpha) else None


def stalled_verdict(values: Sequence[float], window: int, log: bool) -> bool | None:
    """Mean of the last ``window`` values >= mean of the ``window`` before (of their logs with log=True)."""
    if len(values) < 2 * window:
        return False
    before, after = list(values[-2 * window : -window]), list(values[-window:])
    if sorted(before) == sorted(after):
        return True
    if log:
        before, after = [math.log(v) for v in before], [math.log(v) for v in after]
    mean_before, mean_after = float(np.mean(before)), float(np.mean(after))
    return mean_after >= mean_before if clear_of(mean_after, mean_before) else None


def relative_verdict(values: Sequence[float], fraction: float, minimum: int, maximum: int | None) -> bool:
    """On a non-improving epoch > 0: wait >= max(minimum, ceil(fraction * (epoch + 1))), capped by maximum."""
    epoch = len(values) - 1
    improved, wait, _ = keras_trace(values)
    limit = max(minimum, math.ceil(fraction * (epoch + 1)))
    if maximum is not None:
        limit = min(limit, maximum)
    return not improved and epoch > 0 and wait >= limit


def dynamic_patience(values: Sequence[float], rule: DynamicPatience) -> tuple[bool, int]:
    """(stop, patience in force) from DynamicPatience's docstring, replaying every epoch."""
    patience = rule.initial
    previous: float | None = None
    stop = False
    for epoch in range(len(values)):
        improved, wait, _ = keras_trace(values[: epoch + 1])
        stop = False
        if improved:
            best = values[epoch]
            if previous is not None:
                gain = (previous - best) / abs(previous) if previous != 0.0 else math.inf
                if gain >= rule.significant:
                    patience = min(rule.maximum, patience + rule.grow)
                else:
                    patience = max(rule.minimum, patience - rule.shrink)
            previous = best
        else:
            stop = wait >= patience and epoch > 0
    return stop, patience


# -- 1. each rule against its reference ------------------------------------------------


def keras_configs() -> st.SearchStrategy[dict[str, Any]]:
    """Monitor keyword arguments for the Keras/Lightning part (the kit's ``monitor_configs``): no patience, NaN and
    missing epochs allowed, values and deltas on this module's grid."""
    deltas = st.sampled_from([0.0, 0.25, -0.25, 0.5, 1 / 64])
    return monitor_configs(values=SIGNED, min_delta=deltas, patience=False, non_finite=True, missing=True)


ANY_VALUES = metric_sequences(values=SIGNED, non_finite=True, missing=True, max_size=25)


def _without_patience_wording(d: Decision) -> Decision:
    # A patience stop by the built-in carries limit=patience; by a rule, the rule's explanation.
    return d._replace(limit=None, detail=None) if patience_stop(d) else d


@SETTINGS
@given(config=keras_configs(), patience=st.integers(0, 5), sequence=ANY_VALUES)
def test_patience_rule_decides_like_builtin_patience(
    config: dict[str, Any], patience: int, sequence: list[float | None]
) -> None:
    builtin = run_values(Monitor(**config, patience=patience), sequence)
    ruled = run_values(Monitor(**config, rule=Patience(patience)), sequence)
    assert_same_decisions(
        [_without_patience_wording(d) for d in ruled], [_without_patience_wording(d) for d in builtin]
    )
    for b, r in zip(builtin, ruled, strict=True):
        if patience_stop(b):
            assert b.limit == patience
            assert r.detail is not None
            assert f"Patience({patience})" in r.detail


@SETTINGS
@given(values=st.lists(VALUES, max_size=30), alpha=st.sampled_from([0.5, 1.0, 5.0, 20.0, 50.0]) | st.floats(0.1, 100))
def test_gl_stops_when_the_generalisation_loss_exceeds_alpha(values: list[float], alpha: float) -> None:
    decisions = run_values(Monitor(mode="min", rule=GL(alpha)), values)
    for t, d in enumerate(decisions):
        expected = gl_verdict(values[: t + 1], alpha)
        if expected is not None:
            assert d.should_stop == expected, (t, d)
        if d.should_stop:
            assert d.reason is StopReason.CRITERION_MET
            assert "(GL)" in (d.detail or "")


@SETTINGS
@given(values=st.lists(COARSE, max_size=30), strips=st.integers(1, 3), strip=st.integers(1, 4))
def test_up_stops_after_s_successive_strips_got_worse(values: list[float], strips: int, strip: int) -> None:
    decisions = run_values(Monitor(mode="min", rule=UP(strips, strip)), values)
    for t, d in enumerate(decisions):
        assert d.should_stop == up_verdict(values[: t + 1], strips, strip), (t, d)
        if d.should_stop:
            assert d.reason is StopReason.CRITERION_MET


@SETTINGS
@given(
    data=st.data(),
    alpha=st.sampled_from([0.1, 0.5, 1.0, 2.0]) | st.floats(0.01, 5),
    strip=st.integers(2, 4),
)
def test_pq_compares_generalisation_loss_with_training_progress(data: st.DataObject, alpha: float, strip: int) -> None:
    values = data.draw(st.lists(VALUES, max_size=30), label="values")
    train = data.draw(st.lists(COARSE | POSITIVE, min_size=len(values), max_size=len(values)), label="train")
    decisions = run_values(Monitor(mode="min", rule=PQ(alpha, strip)), values, train)
    for t, d in enumerate(decisions):
        expected = pq_verdict(values[: t + 1], train[: t + 1], alpha, strip)
        if expected is not None:
            assert d.should_stop == expected, (t, d)
        if d.should_stop:
            assert d.reason is StopReason.CRITERION_MET


@SETTINGS
@given(
    values=st.lists(VALUES, max_size=30),
    window=st.integers(1, 4),
    log=st.booleans(),
    mode=st.sampled_from(["min", "max"]),
)
def test_stalled_compares_the_means_of_the_last_two_windows(
    values: list[float], window: int, log: bool, mode: str
) -> None:
    mode = "min" if log else mode  # log=True takes logarithms of a positive minimised metric
    decisions = run_values(Monitor(mode=mode, rule=Stalled(window, log=log)), values)
    seen = signed(values, mode)
    for t, d in enumerate(decisions):
        expected = stalled_verdict(seen[: t + 1], window, log)
        if expected is not None:
            assert d.should_stop == expected, (t, d)
        if d.should_stop:
            assert d.reason is StopReason.CRITERION_MET


@SETTINGS
@given(
    values=st.lists(COARSE, max_size=40),
    fraction=st.integers(1, 64).map(lambda k: k / 64),  # dyadic: exact in float64
    minimum=st.integers(0, 5),
    extra=st.none() | st.integers(0, 6),
    mode=st.sampled_from(["min", "max"]),
)
def test_relative_patience_is_a_fraction_of_the_epochs_run(
    values: list[float], fraction: float, minimum: int, extra: int | None, mode: str
) -> None:
    maximum = None if extra is None else minimum + extra
    decisions = run_values(Monitor(mode=mode, rule=RelativePatience(fraction, minimum, maximum)), values)
    seen = signed(values, mode)
    for t, d in enumerate(decisions):
        assert d.should_stop == relative_verdict(seen[: t + 1], fraction, minimum, maximum), (t, d)
        if d.should_stop:
            assert d.reason is StopReason.PATIENCE_EXHAUSTED


@st.composite
def dynamic_rules(draw: st.DrawFn) -> DynamicPatience:
    minimum, initial, maximum = sorted(draw(st.lists(st.integers(0, 8), min_size=3, max_size=3)))
    return DynamicPatience(
        initial=initial,
        minimum=minimum,
        maximum=maximum,
        grow=draw(st.integers(0, 3)),
        shrink=draw(st.integers(0, 3)),
        significant=draw(st.sampled_from([0.0, 1e-3, 0.01, 0.1, 0.25, 1.0])),
    )


@SETTINGS
@given(values=st.lists(VALUES, max_size=40), rule=dynamic_rules(), mode=st.sampled_from(["min", "max"]))
def test_dynamic_patience_follows_its_docstring(values: list[float], rule: DynamicPatience, mode: str) -> None:
    monitor = Monitor(mode=mode, rule=rule)
    seen = signed(values, mode)
    for t, value in enumerate(values):
        d = monitor.update(logs(value))
        stop, patience = dynamic_patience(seen[: t + 1], rule)
        assert d.should_stop == stop, (t, d)
        assert isinstance(monitor.rule, DynamicPatience)
        assert monitor.rule.patience == patience
        if d.should_stop:
            assert d.reason is StopReason.PATIENCE_EXHAUSTED


@SETTINGS
@given(
    values=st.lists(SIGNED, max_size=40),
    rule=dynamic_rules(),
    mode=st.sampled_from(["min", "max"]),
    min_delta=st.sampled_from([0.0, 1 / 64, 0.25]),
    start_from_epoch=st.integers(0, 3),
)
def test_dynamic_patience_stays_within_its_bounds(
    values: list[float], rule: DynamicPatience, mode: str, min_delta: float, start_from_epoch: int
) -> None:
    monitor = Monitor(mode=mode, rule=rule, min_delta=min_delta, start_from_epoch=start_from_epoch)
    for d in run_values(monitor, values):
        if d.best_epoch is None or d.improved:
            assert not d.should_stop
            continue
        since = d.epoch - d.best_epoch  # epochs since the last improvement (no baseline: == wait)
        assert since == d.wait
        if d.should_stop:
            assert since >= rule.minimum
        if since >= rule.maximum and d.epoch > 0:
            assert d.should_stop, d


# -- 2. composition ---------------------------------------------------------------------


RULES: st.SearchStrategy[Rule] = st.one_of(
    st.builds(Patience, st.integers(0, 4)),
    st.builds(GL, st.sampled_from([1.0, 5.0, 20.0])),
    st.builds(UP, st.integers(1, 2), st.integers(1, 3)),
    st.builds(PQ, st.sampled_from([0.1, 0.5, 2.0]), st.integers(2, 3)),
    st.builds(Stalled, st.integers(1, 3), st.booleans()),
    st.builds(RelativePatience, st.sampled_from([0.125, 0.25, 0.5]), st.integers(0, 3)),
    dynamic_rules(),
    st.builds(AutoPatience, st.integers(5, 40), st.none() | st.sampled_from([500, 50_000, 500_000])),
)
EPOCHS = st.lists(st.tuples(VALUES, COARSE), max_size=30)


def _run_rule(rule: Rule, epochs: Sequence[tuple[float, float]]) -> list[Decision]:
    return run(Monitor(mode="min", rule=rule), [logs(v, t) for v, t in epochs])


def _expected_reason(rule: Rule) -> StopReason:
    return StopReason.PATIENCE_EXHAUSTED if isinstance(rule, PATIENCE_LIKE) else StopReason.CRITERION_MET


@SETTINGS
@given(a=RULES, b=RULES, epochs=EPOCHS)
def test_or_and_and_stop_exactly_when_their_parts_would(a: Rule, b: Rule, epochs: list[tuple[float, float]]) -> None:
    before = pickle.dumps((a, b))
    alone_a, alone_b = _run_rule(a, epochs), _run_rule(b, epochs)
    either, both = _run_rule(a | b, epochs), _run_rule(a & b, epochs)
    assert pickle.dumps((a, b)) == before  # every monitor worked on its own copy
    for da, db, do, dn in zip(alone_a, alone_b, either, both, strict=True):
        for d in (da, db):
            if d.should_stop:
                assert d.reason is _expected_reason(a if d is da else b)
        # The rule decides only whether to stop: everything else is the monitor's.
        state = da._replace(should_stop=False, reason=StopReason.NOT_STOPPED, detail=None, limit=None)
        for d in (db, do, dn):
            assert same(d._replace(should_stop=False, reason=StopReason.NOT_STOPPED, detail=None, limit=None), state)
        assert do.should_stop == (da.should_stop or db.should_stop)
        assert dn.should_stop == (da.should_stop and db.should_stop)
        if do.should_stop:
            fired = da if da.should_stop else db
            assert (do.reason, do.detail) == (fired.reason, fired.detail)
            assert fired.detail is not None
            assert fired.detail in do.message
        if dn.should_stop:
            assert dn.reason in (da.reason, db.reason)
            assert dn.detail == f"{da.detail} and {db.detail}"


@SETTINGS
@given(a=RULES, b=RULES, c=RULES, epochs=EPOCHS)
def test_nested_compositions_see_every_epoch(a: Rule, b: Rule, c: Rule, epochs: list[tuple[float, float]]) -> None:
    stops = [[d.should_stop for d in _run_rule(r, epochs)] for r in (a, b, c)]
    nested = _run_rule(a | (b & c), epochs)
    other = _run_rule((a | b) & c, epochs)
    for t, (da, db, dc) in enumerate(zip(*stops, strict=True)):
        assert nested[t].should_stop == (da or (db and dc))
        assert other[t].should_stop == ((da or db) and dc)


@pytest.mark.parametrize(
    "rule", [Patience(3), GL(5), UP(2), PQ(0.5), Stalled(4), RelativePatience(), DynamicPatience(), Patience(1) | GL(2)]
)
def test_never_is_the_identity_of_or_and_absorbs_and(rule: Rule) -> None:
    assert (never | rule) is rule
    assert (rule | never) is rule
    assert (rule & never) is never
    assert (never & rule) is never
    assert (never | never) is never
    assert isinstance(rule | Patience(9), AnyOf)
    assert isinstance(rule & Patience(9), AllOf)


def test_never_never_stops_but_the_guards_still_do() -> None:
    monitor = Monitor(rule=never, stopping_threshold=0.1)
    decisions = run_values(monitor, [1.0] * 50 + [0.05])
    assert [d.should_stop for d in decisions] == [False] * 50 + [True]
    assert decisions[-1].reason is StopReason.STOPPING_THRESHOLD
    assert Monitor(rule=never).update({KEY: NAN}).reason is StopReason.NON_FINITE_METRIC


@SETTINGS
@given(rule=RULES, first=EPOCHS, second=EPOCHS)
def test_one_rule_object_configures_monitors_that_decide_independently(
    rule: Rule, first: list[tuple[float, float]], second: list[tuple[float, float]]
) -> None:
    before = pickle.dumps(rule)
    expected = _run_rule(copy.deepcopy(rule), first), _run_rule(copy.deepcopy(rule), second)
    one, two = Monitor(mode="min", rule=rule), Monitor(mode="min", rule=rule)
    got: tuple[list[Decision], list[Decision]] = ([], [])
    for k in range(max(len(first), len(second))):  # interleaved
        for monitor, epochs, out in ((one, first, got[0]), (two, second, got[1])):
            if k < len(epochs):
                out.append(monitor.update(logs(*epochs[k])))
    assert_same_decisions(got[0], expected[0])
    assert_same_decisions(got[1], expected[1])
    assert pickle.dumps(rule) == before
    assert one.rule is not rule
    assert one.rule == rule  # an equal copy (same spec)


@pytest.mark.parametrize(
    ("rule", "values", "reason", "says"),
    [
        (Patience(2) | GL(5), [1.0, 1.1], StopReason.CRITERION_MET, "(GL)"),
        (GL(50) | Patience(1), [1.0, 1.1], StopReason.PATIENCE_EXHAUSTED, "Patience(1)"),
        (UP(1, strip=1) | Patience(9), [1.0, 2.0], StopReason.CRITERION_MET, "(UP)"),
        (Patience(9) | Stalled(1), [1.0, 2.0], StopReason.CRITERION_MET, "mean value"),
        (GL(50) | RelativePatience(0.5, 1), [1.0, 1.1], StopReason.PATIENCE_EXHAUSTED, "of the epochs run"),
        (GL(50) | DynamicPatience(1, 1, 1), [1.0, 1.1], StopReason.PATIENCE_EXHAUSTED, "dynamic patience"),
        (Patience(1) & GL(5), [1.0, 1.1], StopReason.CRITERION_MET, "Patience(1)) and generalisation loss"),
    ],
)
def test_a_composite_reports_the_part_that_fired(
    rule: Rule, values: list[float], reason: StopReason, says: str
) -> None:
    d = run_values(Monitor(rule=rule), values)[-1]
    assert d.should_stop
    assert d.reason is reason
    assert d.detail is not None
    assert says in d.detail
    assert says in d.message


def test_pq_reports_its_quotient() -> None:
    # strip 2; GL at epoch 1 is 20%, training progress 1000 * (0.99 / 0.98 - 1) ~ 10.2: 1.96 > 0.5.
    d = run(Monitor(rule=Patience(9) | PQ(0.5, strip=2)), [logs(1.0, 0.5), logs(1.2, 0.49)])[-1]
    assert (d.should_stop, d.reason) == (True, StopReason.CRITERION_MET)
    assert "(PQ)" in (d.detail or "")


# -- 3. resuming at every split point ---------------------------------------------------


# Each rule, and compositions of them, resume at every split under drawn Monitor settings in
# test_testing_kit.py (check_rule's property 'resume'); here, the Monitor's own settings.
RESUMED: dict[str, dict[str, Any]] = {
    "auto": {"patience": "auto", "max_epochs": 30, "n_samples": 500},
    "smoothing": {"patience": 3, "smoothing": 0.6},
    "smoothing and a rule": {"rule": Patience(2) | Stalled(2), "smoothing": 0.5, "best_from_epoch": 2},
    "weighted": {"monitor": {ACC: 0.7, KEY: 0.3}, "normalize": "initial", "patience": 2},
    "best_from_epoch": {"patience": 2, "best_from_epoch": 3},
    "rel": {"patience": 2, "min_delta": 0.125, "min_delta_mode": "rel"},
    "plateau": {"patience": 1, "plateau": ReduceLROnPlateau(patience=1, factor=0.5, min_lr=0.1, cooldown=1)},
    "plateau and a rule": {
        "rule": Patience(2) | GL(30),
        "plateau": ReduceLROnPlateau(patience=0, factor=0.5, max_reductions=2),
    },
}
RESUME_EPOCHS = st.lists(
    st.fixed_dictionaries({KEY: VALUES | st.just(NAN), TRAIN: COARSE, ACC: st.integers(1, 64).map(lambda k: k / 64)}),
    max_size=16,
)


@pytest.mark.parametrize("name", sorted(RESUMED))
@FEW
@given(sequence=RESUME_EPOCHS)
def test_resuming_at_any_epoch_changes_no_decision(name: str, sequence: list[dict[str, float]]) -> None:
    config = RESUMED[name]
    if "normalize" in config and sequence:
        assume(math.isfinite(sequence[0][KEY]))  # the first values are the scales

    def make() -> Monitor:
        return Monitor(**config)

    whole = make()
    expected = run(whole, sequence)
    expected_end = whole.finish()
    for split in range(len(sequence) + 1):
        before = make()
        head = run(before, sequence[:split])
        after = make()
        after.load_state_dict(strict_json(before.state_dict()))
        tail = run(after, sequence[split:], head[-1] if head else None)
        assert_same_decisions(head + tail, expected)
        assert same(after.finish(), expected_end)
        assert after.state_dict() == whole.state_dict()


# -- 4. signals -------------------------------------------------------------------------


def plain_configs() -> st.SearchStrategy[dict[str, Any]]:
    """As :func:`keras_configs`, with a patience, every value finite and logged."""
    deltas = st.sampled_from([0.0, 0.25, -0.25, 0.5, 1 / 64])
    return monitor_configs(values=SIGNED, min_delta=deltas, patience=st.integers(0, 4))


@SETTINGS
@given(config=plain_configs(), values=st.lists(SIGNED, max_size=25))
def test_a_weighted_monitor_of_one_metric_with_weight_one_is_the_plain_monitor(
    config: dict[str, Any], values: list[float]
) -> None:
    plain = run_values(Monitor(**config), values)
    weighted = run_values(Monitor(**dict(config, monitor={KEY: 1.0})), values)
    # Only the name differs: the weighted one is called "1*val_loss".
    assert_same_decisions([d._replace(monitor=KEY) for d in weighted], plain)


@SETTINGS
@given(
    epochs=st.lists(st.tuples(st.integers(0, 64).map(lambda k: k / 64), POSITIVE), max_size=25),
    patience=st.integers(0, 4),
)
def test_accuracy_and_loss_combine_into_a_maximised_score(epochs: list[tuple[float, float]], patience: int) -> None:
    weighted = Monitor(monitor={ACC: 0.7, KEY: 0.3}, patience=patience)
    assert weighted.config.mode == "max"
    score = Monitor(monitor="score", mode="max", patience=patience)
    for acc, loss in epochs:
        d = weighted.update({ACC: acc, KEY: loss})
        reference = score.update({"score": math.fsum([0.7 * acc, -0.3 * loss])})
        assert same(d._replace(monitor="score"), reference)


def test_accuracy_up_is_good_and_loss_up_is_bad() -> None:
    m = Monitor(monitor={ACC: 0.7, KEY: 0.3}, patience=5)
    assert m.update({ACC: 0.5, KEY: 1.0}).improved
    assert m.update({ACC: 0.6, KEY: 1.0}).improved  # accuracy up
    assert not m.update({ACC: 0.6, KEY: 1.5}).improved  # loss up
    assert m.update({ACC: 0.6, KEY: 0.5}).improved  # loss down
    assert not m.update({ACC: 0.5, KEY: 0.5}).improved  # accuracy down
    assert m.best_epoch == 3


@SETTINGS
@given(
    epochs=st.lists(st.tuples(st.integers(1, 64).map(lambda k: k / 64), POSITIVE), min_size=1, max_size=20),
    weights=st.tuples(st.sampled_from([0.25, 0.5, 1.0, 3.0]), st.sampled_from([0.25, 0.5, 1.0, 3.0])),
)
def test_normalize_initial_divides_by_the_first_values(
    epochs: list[tuple[float, float]], weights: tuple[float, float]
) -> None:
    monitor = Monitor(monitor={ACC: weights[0], KEY: weights[1]}, normalize="initial", patience=3)
    first_acc, first_loss = epochs[0]
    for acc, loss in epochs:
        d = monitor.update({ACC: acc, KEY: loss})
        expected = weights[0] * acc / first_acc - weights[1] * loss / first_loss
        assert d.value is not None
        assert math.isclose(d.value, expected, rel_tol=1e-12, abs_tol=1e-12)


def test_normalize_initial_weighs_relative_changes() -> None:
    # A loss falling from 2.0 to 1.0 weighs as much as an accuracy rising from 0.4 to 0.6 (both 50%).
    m = Monitor(monitor={ACC: 0.5, KEY: 0.5}, normalize="initial")
    assert m.update({ACC: 0.4, KEY: 2.0}).value == 0.0
    assert m.update({ACC: 0.6, KEY: 2.0}).value == pytest.approx(0.25)
    assert m.update({ACC: 0.4, KEY: 1.0}).value == pytest.approx(0.25)


@pytest.mark.parametrize(("acc", "loss"), [(0.0, 1.0), (0.5, 0.0), (0.5, -0.0)])
def test_normalize_initial_leaves_a_metric_starting_at_zero_unscaled(acc: float, loss: float) -> None:
    # An accuracy of 0 at epoch 0 happens on real curves (soybean1); it cannot scale anything.
    m = Monitor(monitor={ACC: 0.7, KEY: 0.3}, normalize="initial")
    m.update({ACC: acc, KEY: loss})
    later = m.update({ACC: 0.6, KEY: 0.5}).value
    acc_scale = acc if acc else 1.0
    loss_scale = abs(loss) if loss else 1.0
    assert later == pytest.approx(0.7 * 0.6 / acc_scale - 0.3 * 0.5 / loss_scale)


def test_normalize_initial_refuses_a_non_finite_first_value() -> None:
    m = Monitor(monitor={ACC: 0.7, KEY: 0.3}, normalize="initial", check_finite=False)
    with pytest.raises(ValueError, match=r"normalize='initial' divides .* but 'val_loss' starts at inf"):
        m.update({ACC: 0.5, KEY: INF})


@SETTINGS
@given(config=plain_configs(), values=st.lists(SIGNED, max_size=25))
def test_smoothing_zero_is_the_plain_monitor(config: dict[str, Any], values: list[float]) -> None:
    plain = Monitor(**config)
    smoothed = Monitor(**config, smoothing=0.0)
    assert_same_decisions(run_values(smoothed, values), run_values(plain, values))
    assert smoothed.smoothed is None


class Recorder(Rule):
    """Never stops; remembers what the monitor showed it."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float, float | None, bool]] = []

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        self.seen.append((epoch, value, best, improved))
        return False

    def spec(self) -> dict[str, Any]:
        return {"rule": "Recorder"}


@SETTINGS
@given(
    values=st.lists(SIGNED, max_size=30),
    smoothing=st.sampled_from([0.25, 0.5, 0.9]) | st.floats(0.01, 0.99),
    mode=st.sampled_from(["min", "max"]),
    best_from_epoch=st.integers(0, 4),
)
def test_rules_see_the_ema_and_the_best_epoch_is_the_best_raw_one(
    values: list[float], smoothing: float, mode: str, best_from_epoch: int
) -> None:
    monitor = Monitor(mode=mode, rule=Recorder(), smoothing=smoothing, best_from_epoch=best_from_epoch)
    ema: float | None = None
    tracked: float | None = None  # the best EMA (signed), compared in float32
    for t, value in enumerate(values):
        d = monitor.update(logs(value))
        ema = value if ema is None else smoothing * ema + (1.0 - smoothing) * value
        assert monitor.smoothed == ema
        s = ema if mode == "min" else -ema
        if t >= best_from_epoch and (tracked is None or np.float32(s) < np.float32(tracked)):
            tracked = s
        assert isinstance(monitor.rule, Recorder)
        assert monitor.rule.seen[-1][:3] == (t, s, tracked)
        # The best (restored) epoch: the first best raw value of all epochs so far (warm-up included:
        # best_from_epoch only delays the best that patience counts from).
        eligible = signed(values[: t + 1], mode)
        best_epoch = eligible.index(min(eligible))
        assert (d.best_epoch, d.best) == (best_epoch, values[best_epoch])
        assert d.improved == (best_epoch == t)


def test_smoothing_restores_the_best_raw_epoch_not_the_best_smoothed_one() -> None:
    monitor = Monitor(patience=2, smoothing=0.5, restore_best_weights=True)
    decisions = run_values(monitor, [4.0, 1.0, 3.0, 2.0, 2.0, 2.0])
    # EMA: 4, 2.5, 2.75, 2.375, 2.1875, 2.09375: the smoothed best moves on, the raw best stays at epoch 1.
    assert [d.improved for d in decisions] == [True, True, False, False, False, False]
    assert monitor.smoothed == 2.09375
    assert (monitor.best_epoch, monitor.best) == (1, 1.0)


# -- 5. best_from_epoch -----------------------------------------------------------------


@SETTINGS
@given(
    config=keras_configs(),
    patience=st.integers(0, 4),
    best_from_epoch=st.integers(0, 6),
    smoothing=st.sampled_from([0.0, 0.5]),
    sequence=ANY_VALUES,
)
def test_epochs_before_best_from_epoch_never_become_best(
    config: dict[str, Any], patience: int, best_from_epoch: int, smoothing: float, sequence: list[float | None]
) -> None:
    monitor = Monitor(**config, patience=patience, best_from_epoch=best_from_epoch, smoothing=smoothing)
    first = max(best_from_epoch, config["start_from_epoch"])
    for d in run_values(monitor, sequence):
        if d.best_epoch is not None:
            assert d.best_epoch >= config["start_from_epoch"]
        if d.epoch < first and d.value is not None and not d.should_stop:
            # A warm-up epoch never resets the patience count (only a tracked best does).
            assert d.wait >= 1 or d.epoch < config["start_from_epoch"]
        if patience_stop(d):
            assert d.epoch > first  # patience cannot run out before a tracked best exists


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_guards_apply_during_the_best_from_epoch_warm_up(value: float) -> None:
    d = Monitor(patience=3, best_from_epoch=5).update({KEY: value})
    assert (d.should_stop, d.reason, d.best_epoch) == (True, StopReason.NON_FINITE_METRIC, None)
    m = Monitor(patience=3, best_from_epoch=5, divergence_threshold=10.0, stopping_threshold=0.5)
    assert m.update({KEY: 11.0}).reason is StopReason.DIVERGENCE_THRESHOLD
    assert m.update({KEY: 0.25}).reason is StopReason.STOPPING_THRESHOLD


GUARDS = (StopReason.NON_FINITE_METRIC, StopReason.DIVERGENCE_THRESHOLD, StopReason.STOPPING_THRESHOLD)


@SETTINGS
@given(
    config=keras_configs(), patience=st.integers(0, 4), warm_up=st.integers(0, 6), values=st.lists(SIGNED, max_size=25)
)
def test_best_from_epoch_decides_like_start_from_epoch_without_a_baseline(
    config: dict[str, Any], patience: int, warm_up: int, values: list[float]
) -> None:
    config = dict(config, baseline=None, start_from_epoch=0, patience=patience)
    best_from = run_values(Monitor(**config, best_from_epoch=warm_up), values)
    start_from = run_values(Monitor(**dict(config, start_from_epoch=warm_up)), values)
    for b, s in zip(best_from, start_from, strict=True):
        # Until the first tracked best, the warm-up epochs count in wait for best_from_epoch, not for
        # start_from_epoch; and best_from_epoch keeps the warm-up epochs' weights when they stay the lowest.
        assert (b.should_stop, b.reason) == (s.should_stop, s.reason)
        if b.epoch < warm_up:
            assert s.wait == 0
        elif b.reason not in GUARDS:  # a guard stops before the patience step: the books stay as they were
            assert b.wait == s.wait


def test_best_from_epoch_against_start_from_epoch() -> None:
    values = [0.1, 0.2, 5.0, 4.0, 4.5, 4.2, 3.0]  # SEMANTICS.md V11
    start = run_values(Monitor(patience=2, start_from_epoch=2), values)
    best = run_values(Monitor(patience=2, best_from_epoch=2), values)
    assert [d.best_epoch for d in start] == [None, None, 2, 3, 3, 3, 6]
    # best_from_epoch keeps epoch 0's weights (0.1, the lowest) while patience counts from epoch 3.
    assert [d.best_epoch for d in best] == [0, 0, 0, 0, 0, 0, 0]
    assert [d.should_stop for d in start] == [d.should_stop for d in best] == [False] * 5 + [True, False]
    assert [d.wait for d in start] == [0, 0, 0, 0, 1, 2, 0]
    assert [d.wait for d in best] == [1, 2, 0, 0, 1, 2, 0]
    # A rule sees the warm-up epochs with best_from_epoch only.
    seen_best = Monitor(rule=Recorder(), best_from_epoch=2)
    seen_start = Monitor(rule=Recorder(), start_from_epoch=2)
    run_values(seen_best, values)
    run_values(seen_start, values)
    assert isinstance(seen_best.rule, Recorder)
    assert isinstance(seen_start.rule, Recorder)
    assert [e for e, *_ in seen_best.rule.seen] == list(range(7))
    assert [e for e, *_ in seen_start.rule.seen] == list(range(2, 7))


# -- 6. min_delta_mode="rel" ------------------------------------------------------------


def rel_reference(
    values: Sequence[float], mode: str, delta: float, baseline: float | None, patience: int
) -> list[tuple[bool, bool, int]]:
    """(should_stop, improved, wait) per epoch: Keras's rule with a margin of delta * |reference|."""

    def beats(x: float, reference: float) -> bool:
        margin = delta * abs(reference)
        return x < reference - margin if mode == "min" else x > reference + margin

    out = []
    for t in range(len(values)):
        best: float | None = None
        wait = 0
        stop = improved = False
        for epoch, x in enumerate(values[: t + 1]):
            wait += 1
            improved = best is None or beats(x, best)
            if improved:
                best = x
                if baseline is None or beats(x, baseline):
                    wait = 0
            stop = not improved and wait >= patience and epoch > 0
        out.append((stop, improved, wait))
    return out


@SETTINGS
@given(
    values=st.lists(SIGNED, max_size=25),
    mode=st.sampled_from(["min", "max"]),
    delta=st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0]),
    baseline=st.none() | SIGNED,
    patience=st.integers(0, 4),
)
def test_relative_min_delta_scales_with_the_best(
    values: list[float], mode: str, delta: float, baseline: float | None, patience: int
) -> None:
    monitor = Monitor(mode=mode, patience=patience, min_delta=delta, min_delta_mode="rel", baseline=baseline)
    got = [(d.should_stop, d.improved, d.wait) for d in run_values(monitor, values)]
    assert got == rel_reference(values, mode, delta, baseline, patience)


@pytest.mark.parametrize(
    ("mode", "best", "value", "improves"),
    [
        ("min", -10.0, -10.5, True),
        ("min", -10.0, -10.05, False),
        ("min", 10.0, 9.5, True),
        ("min", 10.0, 9.95, False),
        ("max", -10.0, -9.5, True),
        ("max", -10.0, -9.95, False),
        ("max", 10.0, 10.5, True),
        ("max", 10.0, 10.05, False),
    ],
)
def test_relative_min_delta_is_right_for_negative_metrics(mode: str, best: float, value: float, improves: bool) -> None:
    monitor = Monitor(monitor="val_score", mode=mode, patience=5, min_delta=0.01, min_delta_mode="rel")
    monitor.update({"val_score": best})
    assert monitor.update({"val_score": value}).improved == improves
    # In "abs" mode both steps are larger than 0.01: both improve.
    absolute = Monitor(monitor="val_score", mode=mode, patience=5, min_delta=0.01)
    absolute.update({"val_score": best})
    assert absolute.update({"val_score": value}).improved


# -- 7. coordination with ReduceLROnPlateau ---------------------------------------------


@st.composite
def plateaus(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "patience": draw(st.integers(0, 3)),
        "factor": draw(st.sampled_from([0.5, 0.1])),
        "min_lr": draw(st.sampled_from([0.0, 0.1, 0.3])),
        "cooldown": draw(st.integers(0, 2)),
        "max_reductions": draw(st.none() | st.integers(0, 3)),
        "min_delta": 0.0,
    }


@SETTINGS
@given(plateau=plateaus(), patience=st.integers(0, 4), values=st.lists(COARSE, max_size=40))
def test_a_plateau_holds_patience_until_its_schedule_is_exhausted(
    plateau: dict[str, Any], patience: int, values: list[float]
) -> None:
    monitor = Monitor(patience=patience, plateau=ReduceLROnPlateau(**plateau))
    alone = ReduceLROnPlateau(**plateau)
    lr = 1.0
    best: float | None = None
    wait = 0
    for t, value in enumerate(values):
        d = monitor.update({KEY: value}, lr=lr)
        expected_lr = alone.update({KEY: value}, lr)
        assert d.lr == expected_lr == monitor.lr
        # The reference: Keras's wait, restarted by a reduction; patience only once the schedule is exhausted.
        wait += 1
        improved = best is None or value < best
        if improved:
            best, wait = value, 0
        hold = alone.last_reduced or not alone.exhausted(expected_lr)
        stop = not improved and wait >= patience and t > 0 and not hold
        if alone.last_reduced:
            wait = 0
            assert d.detail == f"learning rate lowered to {expected_lr:g}"
            assert d.detail in d.message
        assert (d.should_stop, d.improved, d.wait, monitor.wait) == (stop, improved, wait, wait), t
        if d.should_stop:
            assert d.reason is StopReason.PATIENCE_EXHAUSTED
            assert alone.exhausted(d.lr)
            assert not alone.last_reduced
        lr = expected_lr


@SETTINGS
@given(
    values=st.lists(VALUES | st.sampled_from([NAN, INF]), max_size=30),
    stopping=st.none() | st.sampled_from([0.25, 0.5]),
    divergence=st.none() | st.sampled_from([2.0, 2.5]),
    rule=st.none() | RULES,
)
def test_guards_stop_at_once_with_a_plateau(
    values: list[float], stopping: float | None, divergence: float | None, rule: Rule | None
) -> None:
    assume(rule is None or not isinstance(rule, (PQ, Stalled)))  # no train loss; log needs > 0
    monitor = Monitor(
        mode="min",
        rule=rule,
        patience=0,
        stopping_threshold=stopping,
        divergence_threshold=divergence,
        plateau=ReduceLROnPlateau(patience=10, factor=0.5),  # never exhausted here: only guards stop
    )
    for d in run(monitor, [{KEY: v} for v in values]):
        value = d.value
        assert value is not None
        if not math.isfinite(value):
            expected = StopReason.NON_FINITE_METRIC
        elif divergence is not None and value > divergence:
            expected = StopReason.DIVERGENCE_THRESHOLD
        elif stopping is not None and value < stopping:
            expected = StopReason.STOPPING_THRESHOLD
        else:
            expected = StopReason.NOT_STOPPED
        assert d.reason is expected
        assert d.should_stop == (expected is not StopReason.NOT_STOPPED)


def test_a_plateau_lowers_the_rate_before_patience_stops() -> None:
    plateau = ReduceLROnPlateau(patience=1, factor=0.5, min_lr=0.25)
    monitor = Monitor(patience=1, plateau=plateau)
    lr: float | None = 1.0
    rates, stops, waits = [], [], []
    for value in [1.0, 1.0, 1.0, 1.0, 1.0]:
        d = monitor.update({KEY: value}, lr=lr)
        lr = d.lr
        rates.append(d.lr)
        stops.append(d.should_stop)
        waits.append(d.wait)
    assert rates == [1.0, 0.5, 0.25, 0.25, 0.25]
    assert waits == [0, 0, 0, 1, 2]
    assert stops == [False, False, False, True, True]
    assert plateau.reductions == 0  # the monitor works on its own copy
    assert monitor.plateau is not plateau


# -- 8. patience="auto" -----------------------------------------------------------------


def test_auto_patience_needs_max_epochs() -> None:
    with pytest.raises(ValueError, match=r"patience='auto' needs max_epochs="):
        Monitor(patience="auto")
    with pytest.raises(ValueError, match=r"patience='auto' and rule= both decide"):
        Monitor(patience="auto", max_epochs=10, rule=Patience(3))


def naive_volatility(values: Sequence[float]) -> float:
    ups = sum(1 for t in range(1, len(values)) if values[t] > values[t - 1])
    return ups / (len(values) - 1)


@SETTINGS
@given(
    values=st.lists(COARSE, min_size=10, max_size=60),
    mode=st.sampled_from(["min", "max"]),
    start_from_epoch=st.integers(0, 3),
)
@example(values=[1.0] * 10 + [2.0] * 30, mode="min", start_from_epoch=0)
def test_auto_patience_is_the_suggested_patience_for_the_measured_volatility(
    values: list[float], mode: str, start_from_epoch: int
) -> None:
    probe = values[start_from_epoch : start_from_epoch + 10]
    assume(len(probe) == 10)
    patience = suggest_patience(100, 5000, volatility=naive_volatility(signed(probe, mode)))
    auto = Monitor(mode=mode, patience="auto", max_epochs=100, n_samples=5000, start_from_epoch=start_from_epoch)
    fixed = Monitor(mode=mode, patience=patience, start_from_epoch=start_from_epoch)
    for t, value in enumerate(values):
        a, f = auto.update({KEY: value}), fixed.update({KEY: value})
        assert same(_without_patience_wording(a), _without_patience_wording(f)), t
    assert isinstance(auto.rule, AutoPatience)
    assert auto.rule.patience == patience


def test_auto_patience_before_the_probe_is_the_guide_patience() -> None:
    monitor = Monitor(patience="auto", max_epochs=100, n_samples=5000)
    assert isinstance(monitor.rule, AutoPatience)
    assert monitor.rule.patience == suggest_patience(100, 5000) == 15
    run_values(monitor, [1.0, 0.9, 1.0, 0.8, 0.9, 0.7, 0.8, 0.6, 0.7, 0.5])  # 4 of 9 steps up
    assert monitor.rule.patience == suggest_patience(100, 5000, volatility=4 / 9) == 22


# -- 9. constructor validation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Patience(-1), ValueError, "'patience' must be >= 0, got -1"),
        (lambda: Patience(2.0), TypeError, "'patience' must be an int, got float (2.0)"),  # type: ignore[arg-type]
        (lambda: GL(0), ValueError, "'alpha' must be > 0, got 0"),
        (lambda: GL(-5.0), ValueError, "'alpha' must be > 0, got -5.0"),
        (lambda: GL(NAN), ValueError, "'alpha' must be finite, got nan"),
        (lambda: GL("5"), TypeError, "'alpha' must be a number, got str ('5')"),  # type: ignore[arg-type]
        (lambda: UP(0), ValueError, "'strips' must be >= 1, got 0"),
        (lambda: UP(2, strip=0), ValueError, "'strip' must be >= 1, got 0"),
        (lambda: PQ(0.5, strip=1), ValueError, "'strip' must be >= 2, got 1"),
        (lambda: PQ(0.0), ValueError, "'alpha' must be > 0, got 0.0"),
        (lambda: PQ(0.5, train_monitor=""), TypeError, "'train_monitor' must be a non-empty metric name, got ''"),
        (lambda: Stalled(0), ValueError, "'window' must be >= 1, got 0"),
        (lambda: Stalled(3, log=1), TypeError, "'log' must be True or False, got int (1)"),  # type: ignore[arg-type]
        (lambda: RelativePatience(0.0), ValueError, "'fraction' must be in (0, 1], got 0.0"),
        (lambda: RelativePatience(1.5), ValueError, "'fraction' must be in (0, 1], got 1.5"),
        (lambda: RelativePatience(0.2, minimum=-1), ValueError, "'minimum' must be >= 0, got -1"),
        (lambda: RelativePatience(0.2, minimum=5, maximum=3), ValueError, "'maximum' must be >= 5, got 3"),
        (lambda: DynamicPatience(initial=1, minimum=2), ValueError, "need minimum <= initial <= maximum, got 2, 1, 20"),
        (lambda: DynamicPatience(initial=30), ValueError, "need minimum <= initial <= maximum, got 5, 30, 20"),
        (lambda: DynamicPatience(grow=-1), ValueError, "'grow' must be >= 0, got -1"),
        (lambda: DynamicPatience(significant=-0.1), ValueError, "'significant' must be >= 0, got -0.1"),
        (lambda: AutoPatience(0), ValueError, "'max_epochs' must be >= 1, got 0"),
        (lambda: AutoPatience(100, n_samples=0), ValueError, "'n_samples' must be >= 1, got 0"),
        (lambda: AutoPatience(100, probe=1), ValueError, "'probe' must be >= 2, got 1"),
        (lambda: AnyOf(Patience(1), 3), TypeError, "AnyOf combines Rule objects, got int (3)"),  # type: ignore[arg-type]
        (lambda: Patience(1) & "GL", TypeError, "& combines stopping rules, got str ('GL')"),  # type: ignore[operator]
        (lambda: Monitor(rule=Patience(2), patience=3), ValueError, "rule=Patience(3) | Patience(2)"),
        (lambda: Monitor(rule="GL(5)"), TypeError, "'rule' must be a Rule (e.g. Patience(10) | GL(5)), got str"),  # type: ignore[arg-type]
        (lambda: suggest_patience(100, volatility=1.5), ValueError, "'volatility' must be in [0, 1], got 1.5"),
    ],
)
def test_rule_constructors_reject_bad_arguments(build: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        build()
    assert message in str(caught.value)


# -- regressions: bugs these tests found, fixed


@pytest.mark.parametrize("rule", [Patience(1), RelativePatience(0.1, 1), DynamicPatience(1, 1, 2)])
def test_rule_patience_cannot_run_out_before_a_best_exists(rule: Rule) -> None:
    builtin = run_values(Monitor(patience=1, best_from_epoch=3), [1.0, 2.0, 3.0, 4.0])
    ruled = run_values(Monitor(rule=rule, best_from_epoch=3), [1.0, 2.0, 3.0, 4.0])
    assert [d.should_stop for d in builtin] == [False] * 4
    assert [d.should_stop for d in ruled] == [False] * 4


def test_relative_patience_limit_is_exact_for_decimal_fractions() -> None:
    assert RelativePatience(fraction=0.07, minimum=0).limit_at(99) == 7
    assert RelativePatience(fraction=0.14, minimum=0).limit_at(49) == 7


def test_a_rule_used_twice_in_a_composition_acts_as_two_fresh_copies() -> None:
    stalled = Stalled(2)
    shared = Patience(100) | stalled | (Patience(50) & stalled)
    separate = Patience(100) | Stalled(2) | (Patience(50) & Stalled(2))
    values = [4.0, 3.0, 2.0, 2.5, 2.2, 2.6, 2.7, 2.8]
    expected = [d.should_stop for d in run_values(Monitor(rule=separate), values)]
    assert expected == [False] * 5 + [True] * 3
    assert [d.should_stop for d in run_values(Monitor(rule=shared), values)] == expected


@pytest.mark.parametrize(
    ("rule", "bad"),
    [(PQ(0.5, strip=2), {KEY: 0.5}), (Stalled(2, log=True), {KEY: -0.5})],
)
def test_an_update_that_raises_in_a_rule_changes_nothing(rule: Rule, bad: dict[str, float]) -> None:
    monitor = Monitor(rule=rule)
    monitor.update({KEY: 1.0, TRAIN: 1.0})
    before = monitor.state_dict()
    with pytest.raises((MissingMetricError, ValueError)):
        monitor.update(bad)
    assert monitor.state_dict() == before


def test_a_coordinated_update_that_raises_changes_nothing() -> None:
    monitor = Monitor(monitor=ACC, patience=3, plateau=ReduceLROnPlateau(monitor=KEY, patience=1))
    monitor.update({ACC: 0.5, KEY: 1.0}, lr=0.1)
    before = monitor.state_dict()
    with pytest.raises(MissingMetricError):
        monitor.update({KEY: 1.0})
    assert monitor.state_dict() == before


@pytest.mark.parametrize("combine", [lambda: never | 5, lambda: never & 5])  # type: ignore[operator]
def test_never_refuses_non_rules(combine: Callable[[], Any]) -> None:
    with pytest.raises(TypeError, match="combines stopping rules"):
        combine()


def test_smoothing_ignores_start_from_epoch_warm_up() -> None:
    monitor = Monitor(smoothing=0.5, start_from_epoch=2)
    run_values(monitor, [100.0, 100.0, 1.0])
    assert monitor.smoothed == 1.0


def _built_in_rule_classes() -> list[type[Rule]]:
    """Every Rule subclass defined in ``earlystop_core`` (exported or not), the base class included."""
    found: list[type[Rule]] = []
    todo: list[type[Rule]] = [Rule]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__.startswith("earlystop_core.")]


def test_every_stateful_object_saves_with_state_dict_and_load_state_dict() -> None:
    """One protocol name everywhere: ``state_dict()`` / ``load_state_dict(state)``, no ``state``/``load``."""
    import inspect

    import earlystop_core
    from earlystop_core.policy.features import FeatureTracker
    from earlystop_core.policy.learned import LearnedPolicy
    from earlystop_core.signals import WeightedScore

    exported = [obj for obj in vars(earlystop_core).values() if isinstance(obj, type) and issubclass(obj, Rule)]
    rules = _built_in_rule_classes()
    assert set(exported) <= set(rules) and LearnedPolicy in rules
    for cls in [*rules, WeightedScore, FeatureTracker, ReduceLROnPlateau, Monitor]:
        for name in ("state_dict", "load_state_dict"):
            assert callable(getattr(cls, name, None)), f"{cls.__name__} has no {name}"
        for name in ("state", "load_state", "save_state"):
            assert not hasattr(cls, name), f"{cls.__name__} still has {name}"
        assert hasattr(cls, "load") == (cls is LearnedPolicy), f"{cls.__name__}.load is not the protocol's name"
    load = inspect.getattr_static(LearnedPolicy, "load")
    assert isinstance(load, classmethod)
    assert list(inspect.signature(LearnedPolicy.load).parameters) == ["path", "max_epochs"]
    objects: list[Any] = [
        Patience(3) | (UP(strips=2) & Stalled(3)),
        WeightedScore({KEY: 1.0, ACC: 1.0}, normalize="initial"),
        FeatureTracker(),
        ReduceLROnPlateau(),
        Monitor(),
    ]
    for obj in objects:
        for name in ("state", "load", "load_state"):
            assert not hasattr(obj, name), f"{type(obj).__name__} instance has {name}"
        obj.load_state_dict(obj.state_dict())


def test_only_a_trend_test_and_a_time_budget_may_stop_on_an_improving_epoch() -> None:
    """``stops_on_improvement`` says it (checked by ``check_rule``); a composition says it as its parts decide:
    ``|`` may stop where any part may, ``&`` only where all may."""
    from earlystop_core import LearnedPolicy, TimeBudget
    from earlystop_core.rules.base import _Never

    may = {Stalled, TimeBudget}
    for cls in _built_in_rule_classes():
        if cls not in (Rule, AnyOf, AllOf) and not getattr(cls, "__abstractmethods__", None):
            assert cls.stops_on_improvement == (cls in may), cls.__name__
    assert LearnedPolicy in _built_in_rule_classes() and _Never in _built_in_rule_classes()
    assert (Patience(3) | Stalled(2)).stops_on_improvement
    assert not (Patience(3) & Stalled(2)).stops_on_improvement
    assert (Stalled(2) & TimeBudget(60)).stops_on_improvement
    assert not (GL(5) | UP(2)).stops_on_improvement
    # Stalled compares window means, not the best: 0.9 is the best so far, and the last two epochs' mean
    # (3.45) is no better than the two before (3.0).
    d = run_values(Monitor(rule=Stalled(2)), [1.0, 5.0, 6.0, 0.9])[-1]
    assert d.should_stop and d.improved


@pytest.mark.parametrize(("log", "values"), [(False, [1.0, INF, -INF, 1.0, 1.0]), (True, [1.0, INF, 0.0, 1.0, 1.0])])
def test_stalled_survives_both_infinities_in_one_window(log: bool, values: list[float]) -> None:
    """Found by check_rule (earlystop_core.testing): with check_finite=False a window could hold inf and -inf (a
    loss of 0 is -inf to log=True), and the exact sum of the means raised ValueError; such a window has no mean
    (NaN), so it does not stall."""
    decisions = run_values(Monitor(rule=Stalled(2, log=log), check_finite=False), values)
    assert [d.should_stop for d in decisions] == [False] * 5
