"""Properties of ``Monitor`` over generated metric sequences (hypothesis).

Sequences are lists of metric values; ``None`` in a sequence stands for an
epoch whose logs lack the metric (only used with ``on_missing="skip"``).
Decisions are compared as whole tuples, with NaN equal to NaN. The sequences
and Monitor arguments are the testing kit's (``earlystop_core.testing``), on
adversarial values (a coarse grid and any finite float).
"""

from __future__ import annotations

import copy
import decimal
import difflib
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop_core import Decision, MissingMetricError, Monitor, StateError, StopReason
from earlystop_core.modes import held_out
from earlystop_core.testing import metric_sequences, monitor_configs

from helpers import assert_same_decisions, same, strict_json

KEY = "val_loss"
SETTINGS = settings(deadline=None, max_examples=120)
MANY = settings(SETTINGS, max_examples=400)  # for the min_delta claims

# A coarse grid provokes ties and exact min_delta boundaries; quarters are exact
# in float32, so on the grid float32 comparisons are exact comparisons.
GRID = st.integers(-16, 16).map(lambda k: k / 4)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
DELTAS = st.sampled_from([0.0, 0.25, -0.25, 0.5, 1.0]) | st.floats(-2.0, 2.0)
THRESHOLD_REASONS = (StopReason.STOPPING_THRESHOLD, StopReason.DIVERGENCE_THRESHOLD)


# -- helpers ------------------------------------------------------------------


def logs(value: float | None) -> dict[str, Any]:
    return {} if value is None else {KEY: value}


def run(monitor: Monitor, sequence: Sequence[float | None]) -> list[Decision]:
    return [monitor.update(logs(value)) for value in sequence]


def negate(value: float | None) -> float | None:
    return None if value is None else -value


def first_stop(decisions: Sequence[Decision]) -> int | None:
    return next((d.epoch for d in decisions if d.should_stop), None)


def configs(values: st.SearchStrategy[float] = GRID | FINITE, **options: Any) -> st.SearchStrategy[dict[str, Any]]:
    """The kit's Monitor arguments (``earlystop_core.testing.monitor_configs``) on this module's values and deltas."""
    return monitor_configs(values=values, min_delta=DELTAS, **options)


def sequences(
    values: st.SearchStrategy[float] = GRID | FINITE, **options: Any
) -> st.SearchStrategy[list[float | None]]:
    """The kit's sequences (``earlystop_core.testing.metric_sequences``) of values drawn one by one from ``values``:
    adversarial, not learning curves (``None``: an epoch without the metric)."""
    return metric_sequences(values=values, **{"max_size": 25, **options})


# -- the decision rule -----------------------------------------------------------


@SETTINGS
@given(
    config=configs(stopping_threshold=False, non_finite=True, missing=True),
    sequence=sequences(non_finite=True, missing=True),
)
def test_never_stops_on_an_improving_epoch(config: dict[str, Any], sequence: list[float | None]) -> None:
    for d in run(Monitor(**config), sequence):
        assert not (d.improved and d.should_stop), d
        if d.should_stop:
            assert d.reason is not StopReason.NOT_STOPPED


@SETTINGS
@given(
    config=configs(non_finite=True, missing=True),
    sequence=sequences(non_finite=True, missing=True),
)
def test_best_is_the_value_seen_at_best_epoch(config: dict[str, Any], sequence: list[float | None]) -> None:
    monitor = Monitor(**config)
    decisions = run(monitor, sequence)
    for d in decisions:
        if d.best_epoch is None:
            assert d.best is None
            continue
        assert config["start_from_epoch"] <= d.best_epoch <= d.epoch
        assert same(d.best, sequence[d.best_epoch])
    assert monitor.epoch == len(sequence)
    if decisions:
        last = decisions[-1]
        assert (monitor.best_epoch, monitor.wait) == (last.best_epoch, last.wait)
        assert same(monitor.best, last.best)


@SETTINGS
@given(
    config=configs(non_finite=True, missing=True),
    sequence=sequences(non_finite=True, missing=True),
)
def test_guard_stops_record_the_stop_and_nothing_else(config: dict[str, Any], sequence: list[float | None]) -> None:
    """A non-finite or diverging value stops without touching best or wait (Lightning's steps 1 and 3)."""
    monitor = Monitor(**config)
    before = monitor.state_dict()["state"]
    for value in sequence:
        d = monitor.update(logs(value))
        after = monitor.state_dict()["state"]
        if d.reason in (StopReason.NON_FINITE_METRIC, StopReason.DIVERGENCE_THRESHOLD):
            assert not d.improved
            for field in ("best", "best_epoch", "wait"):
                assert after[field] == before[field], field
            assert (after["stopped_epoch"], after["stop_reason"]) == (d.epoch, d.reason.value)
        before = after


@SETTINGS
@given(
    config=configs(mode="min", non_finite=True, missing=True),
    sequence=sequences(non_finite=True, missing=True),
)
def test_max_mode_is_min_mode_on_negated_values(config: dict[str, Any], sequence: list[float | None]) -> None:
    mirrored = dict(
        config,
        mode="max",
        baseline=negate(config["baseline"]),
        stopping_threshold=negate(config["stopping_threshold"]),
        divergence_threshold=negate(config["divergence_threshold"]),
    )
    minimised = run(Monitor(**config), sequence)
    maximised = run(Monitor(**mirrored), [negate(v) for v in sequence])

    def unmirror(d: Decision) -> Decision:
        limit = -d.limit if d.reason in THRESHOLD_REASONS and d.limit is not None else d.limit
        return d._replace(value=negate(d.value), best=negate(d.best), limit=limit)

    assert_same_decisions([unmirror(d) for d in maximised], minimised)


# -- saving, resuming, resetting ---------------------------------------------------


@SETTINGS
@given(
    config=configs(non_finite=True, missing=True),
    sequence=sequences(non_finite=True, missing=True, max_size=20),
)
def test_resuming_at_any_epoch_changes_no_decision(config: dict[str, Any], sequence: list[float | None]) -> None:
    whole = Monitor(**config)
    expected = run(whole, sequence)
    expected_end = whole.finish()
    for split in range(len(sequence) + 1):
        before = Monitor(**config)
        run(before, sequence[:split])
        after = Monitor(**config)
        after.load_state_dict(strict_json(before.state_dict()))
        assert_same_decisions(run(after, sequence[split:]), expected[split:])
        assert same(after.finish(), expected_end)
        assert after.state_dict() == whole.state_dict()


@SETTINGS
@given(
    config=configs(non_finite=True, missing=True),
    sequence=sequences(non_finite=True, missing=True),
    finished=st.booleans(),
)
def test_state_dict_survives_a_json_round_trip(
    config: dict[str, Any], sequence: list[float | None], finished: bool
) -> None:
    monitor = Monitor(**config)
    run(monitor, sequence)
    if finished:
        monitor.finish()
    state = monitor.state_dict()
    text = json.dumps(state, allow_nan=False)
    for saved in (json.loads(text), text):
        resumed = Monitor(**config)
        resumed.load_state_dict(saved)
        assert resumed.state_dict() == state


@SETTINGS
@given(
    config=configs(non_finite=True, missing=True),
    first=sequences(non_finite=True, missing=True),
    second=sequences(non_finite=True, missing=True),
)
def test_reset_makes_a_used_monitor_behave_like_a_fresh_one(
    config: dict[str, Any], first: list[float | None], second: list[float | None]
) -> None:
    used, fresh = Monitor(**config), Monitor(**config)
    run(used, first)
    used.finish()
    used.reset()
    assert used.state_dict() == fresh.state_dict()
    assert_same_decisions(run(used, second), run(fresh, second))
    assert same(used.finish(), fresh.finish())


# -- load_state_dict refuses what it cannot resume ----------------------------------


def _saved_state() -> dict[str, Any]:
    monitor = Monitor(monitor=KEY, mode="min", patience=2)
    run(monitor, [1.0, 0.5, 0.7])
    return strict_json(monitor.state_dict())


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("monitor", "loss"),
        ("mode", "max"),
        ("patience", 3),
        ("min_delta", 0.1),
        ("baseline", 0.5),
        ("start_from_epoch", 1),
        ("restore_best_weights", True),
        ("stopping_threshold", 0.01),
        ("divergence_threshold", 10.0),
        ("check_finite", False),
        ("on_missing", "skip"),
    ],
)
def test_load_rejects_a_state_from_a_differently_configured_monitor(setting: str, value: Any) -> None:
    other = Monitor(**{"monitor": KEY, "mode": "min", "patience": 2, setting: value})
    with pytest.raises(StateError, match=setting):
        other.load_state_dict(_saved_state())


@pytest.mark.parametrize(
    ("setting", "value"),
    [("patience", 2.0), ("check_finite", 1), ("min_delta", 0), ("mode", None), ("extra_setting", 1)],
)
def test_load_rejects_edited_config_values(setting: str, value: Any) -> None:
    saved = _saved_state()
    saved["config"][setting] = value
    with pytest.raises(StateError, match=setting):
        Monitor(monitor=KEY, mode="min", patience=2).load_state_dict(saved)


@pytest.mark.parametrize(
    "version",
    [
        0,
        2,
        "1",
        None,
        True,  # True == 1 in Python: the check must compare types too
    ],
)
def test_load_rejects_another_version(version: Any) -> None:
    saved = _saved_state()
    saved["version"] = version
    with pytest.raises(StateError, match="version"):
        Monitor(monitor=KEY, mode="min", patience=2).load_state_dict(saved)


def test_load_rejects_another_format_and_non_states() -> None:
    monitor = Monitor(monitor=KEY, mode="min", patience=2)
    saved = _saved_state()
    saved["format"] = "keras.EarlyStopping"
    with pytest.raises(StateError, match="format"):
        monitor.load_state_dict(saved)
    with pytest.raises(StateError, match="JSON"):
        monitor.load_state_dict("{not json")
    with pytest.raises(StateError, match="list"):
        monitor.load_state_dict([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("next_epoch", -1, "next_epoch"),
        ("next_epoch", "3", "next_epoch"),
        ("next_epoch", 3.0, "next_epoch"),
        ("next_epoch", True, "next_epoch"),
        ("next_epoch", 1, "best_epoch"),  # best_epoch 1 is then after the last epoch (0)
        ("best", "0.5", "best"),
        ("best", [0.5], "best"),
        ("best", True, "best"),
        ("best", None, "best"),  # while best_epoch is set
        ("best_epoch", None, "best"),  # while best is set
        ("best_epoch", 7, "best_epoch"),
        ("best_epoch", -1, "best_epoch"),
        ("wait", -1, "wait"),
        ("wait", None, "wait"),
        ("stopped_epoch", 1, "stopped_epoch"),  # without a stop_reason
        ("stopped_epoch", 9, "stopped_epoch"),
        ("stop_reason", "bored", "stop_reason"),
        ("stop_reason", "patience_exhausted", "stop"),  # without a stopped_epoch
        ("restore_requested", "no", "restore_requested"),
        ("restore_requested", 0, "restore_requested"),
        ("restore_requested", None, "restore_requested"),
    ],
)
def test_load_rejects_corrupted_fields(field: str, value: Any, problem: str) -> None:
    saved = _saved_state()
    saved["state"][field] = value
    with pytest.raises(StateError, match=problem):
        Monitor(monitor=KEY, mode="min", patience=2).load_state_dict(saved)


@pytest.mark.parametrize("field", ["next_epoch", "best_epoch", "wait"])
def test_load_rejects_missing_fields(field: str) -> None:
    saved = _saved_state()
    del saved["state"][field]
    with pytest.raises(StateError, match=field):
        Monitor(monitor=KEY, mode="min", patience=2).load_state_dict(saved)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10) | FINITE | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@SETTINGS
@given(section=st.sampled_from(["state", "config", None]), data=st.data(), junk=JSON_VALUES)
def test_load_fails_only_with_state_error_on_any_json(section: str | None, data: st.DataObject, junk: Any) -> None:
    """Any JSON put anywhere in a saved state loads or raises StateError, never another error."""
    saved = _saved_state()
    target = saved if section is None else saved[section]
    field = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=12), label="field")
    target[field] = copy.deepcopy(junk)
    monitor = Monitor(monitor=KEY, mode="min", patience=2)
    try:
        monitor.load_state_dict(saved)
    except StateError:
        return
    # What was accepted is a state the monitor can go on from.
    assert monitor.best_epoch is None or monitor.best_epoch < monitor.epoch
    monitor.update({KEY: 0.1})


# -- min_delta ----------------------------------------------------------------------
#
# "A larger min_delta never stops later" is false for Keras's rule. With a larger
# min_delta fewer epochs improve, so `best` can stay at an older, higher value;
# a later epoch can then improve on that higher best (and reset the patience
# count) while, for the smaller min_delta, the same epoch fails to improve on its
# lower best and runs patience out.
#
# What holds (exactly, i.e. on values where float32 rounding is exact) is:
#
# (1) With min_delta=0, `best` is the running minimum m, and any d > 0 keeps
#     every value seen >= best_d - d (values since best_d did not improve, older
#     ones were above an earlier best - d > best_d). So an epoch that improves
#     with d (x < best_d - d <= m) also improves with 0, and an improvement that
#     beats the baseline with d beats it with 0. Resets of `wait` with d are a
#     subset of those with 0, so wait_d >= wait_0 at every epoch, and every epoch
#     at which min_delta=0 says stop, any d > 0 says stop too (guards do not
#     depend on min_delta). In particular d > 0 never stops later than 0.
# (2) For any d1 <= d2, up to every epoch, d2 has at most as many improving epochs
#     as d1 (improvement sets need not be nested, but the counts are): with
#     T = best - d, an invariant is "count1 == count2 implies T1 >= T2, and
#     count1 > count2 implies best1 >= T2", which each epoch preserves.
#
# Both fail on values that differ below float32 precision, since improvement is
# decided on float32(x + d) rather than on x + d: see the test after the counts.


def _stops_and_improvements(config: dict[str, Any], sequence: Sequence[float | None]) -> tuple[set[int], list[int]]:
    decisions = run(Monitor(**config), sequence)
    return {d.epoch for d in decisions if d.should_stop}, [d.epoch for d in decisions if d.improved]


def test_a_larger_min_delta_can_stop_later() -> None:
    # min_delta=1: 7 best; 1 improves (best 1); 0 does not (0 + 1 < 1 is false); 0: stop.
    # min_delta=6: 7 best; 1 does not (7 < 7 is false); 0 improves on 7 (6 < 7); 0; 0: stop.
    sequence = [7.0, 1.0, 0.0, 0.0, 0.0]
    small = run(Monitor(mode="min", patience=2, min_delta=1.0), sequence)
    large = run(Monitor(mode="min", patience=2, min_delta=6.0), sequence)
    assert (first_stop(small), [d.epoch for d in small if d.improved]) == (3, [0, 1])
    assert (first_stop(large), [d.epoch for d in large if d.improved]) == (4, [0, 2])


@MANY
@given(
    config=configs(GRID, non_finite=True, missing=True),
    sequence=sequences(GRID, non_finite=True, missing=True),
    delta=st.integers(1, 12).map(lambda k: k / 4),
)
def test_zero_min_delta_never_stops_where_a_positive_one_would_not(
    config: dict[str, Any], sequence: list[float | None], delta: float
) -> None:
    stops_zero, improved_zero = _stops_and_improvements(dict(config, min_delta=0.0), sequence)
    stops_delta, improved_delta = _stops_and_improvements(dict(config, min_delta=delta), sequence)
    assert set(improved_delta) <= set(improved_zero)
    assert stops_zero <= stops_delta
    if stops_zero:
        assert min(stops_delta) <= min(stops_zero)


@MANY
@given(
    config=configs(GRID, non_finite=True, missing=True),
    sequence=sequences(GRID, non_finite=True, missing=True),
    deltas=st.tuples(st.integers(0, 12), st.integers(0, 12)).map(lambda ks: sorted(k / 4 for k in ks)),
)
def test_improving_epochs_never_get_more_numerous_with_min_delta(
    config: dict[str, Any], sequence: list[float | None], deltas: list[float]
) -> None:
    _, improved_small = _stops_and_improvements(dict(config, min_delta=deltas[0]), sequence)
    _, improved_large = _stops_and_improvements(dict(config, min_delta=deltas[1]), sequence)
    for epoch in range(len(sequence)):
        assert sum(e <= epoch for e in improved_large) <= sum(e <= epoch for e in improved_small)


def test_float32_rounding_can_make_a_positive_min_delta_stop_later_than_zero() -> None:
    # y and x are the same float32 number, so x does not improve on y with
    # min_delta=0; but y + 0.5 rounds up to 1.0 (no improvement on 1.0) while
    # x + 0.5 rounds down below 1.0 (an improvement), so 0.5 resets patience later.
    y = 0.5 - 2.0**-25
    x = y - 2.0**-40
    assert np.float32(x) == np.float32(y)
    sequence = [1.0, y, x, x, x]
    stops_zero, improved_zero = _stops_and_improvements({"mode": "min", "patience": 2}, sequence)
    stops_half, improved_half = _stops_and_improvements({"mode": "min", "patience": 2, "min_delta": 0.5}, sequence)
    assert (min(stops_zero), improved_zero) == (3, [0, 1])
    assert (min(stops_half), improved_half) == (4, [0, 2])


# -- a missing metric -------------------------------------------------------------------

OTHER_KEYS = st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k != KEY), FINITE, max_size=6)


@SETTINGS
@given(logged=OTHER_KEYS)
def test_missing_metric_is_a_key_error_listing_keys_and_the_closest(logged: dict[str, float]) -> None:
    with pytest.raises(KeyError) as caught:
        Monitor(monitor=KEY, mode="min").update(logged)
    error = caught.value
    assert isinstance(error, MissingMetricError)
    message = str(error)
    assert repr(KEY) in message
    for key in logged:
        assert repr(key) in message
    suggested = [key for key in logged if f"Did you mean {key!r}?" in message]
    assert len(suggested) == ("Did you mean" in message)  # one suggestion at most, always a logged key
    pool = [key for key in logged if held_out(key) == held_out(KEY)] or list(logged)  # the same side first
    near = [key for key in pool if KEY in key or key in KEY] or difflib.get_close_matches(KEY, pool, n=1)
    assert bool(suggested) == bool(near)  # offered exactly when some logged key is near


def test_missing_metric_suggests_the_near_miss() -> None:
    with pytest.raises(MissingMetricError, match=r"logged: 'loss', 'val_los'\. Did you mean 'val_los'\?"):
        Monitor(monitor=KEY, mode="min").update({"loss": 0.3, "val_los": 0.4})


@SETTINGS
@given(
    config=configs(non_finite=True, missing=True),
    sequence=sequences(non_finite=True, missing=True),
    logged=OTHER_KEYS,
    finished=st.booleans(),
)
def test_skipping_a_missing_metric_only_advances_the_epoch(
    config: dict[str, Any], sequence: list[float | None], logged: dict[str, float], finished: bool
) -> None:
    monitor = Monitor(**config)
    run(monitor, sequence)
    if finished:
        monitor.finish()
    before = monitor.state_dict()
    d = monitor.update(logged)
    after = monitor.state_dict()
    assert after["state"].pop("next_epoch") == before["state"].pop("next_epoch") + 1
    assert after["state"] == before["state"]
    assert (d.should_stop, d.improved, d.restore, d.reason, d.epoch, d.value) == (
        False,
        False,
        False,
        StopReason.NOT_STOPPED,
        len(sequence),
        None,
    )
    assert (d.best_epoch, d.wait) == (monitor.best_epoch, monitor.wait)
    assert same(d.best, monitor.best)


@pytest.mark.parametrize("bad_logs", [{"loss": 0.3}, {KEY: "0.3"}, [0.3]])
def test_an_update_that_raises_changes_nothing(bad_logs: Any) -> None:
    monitor = Monitor(monitor=KEY, mode="min", patience=2)
    run(monitor, [1.0, 0.5])
    before = monitor.state_dict()
    with pytest.raises((KeyError, TypeError)):
        monitor.update(bad_logs)
    assert monitor.state_dict() == before


# -- value types -----------------------------------------------------------------------

WRAPPERS = {
    "float": float,
    "numpy float32": np.float32,
    "numpy float64": np.float64,
    "0-d float32 array": lambda x: np.array(x, dtype=np.float32),
    "0-d float64 array": np.array,
    "decimal": decimal.Decimal,
}


@SETTINGS
@given(x=FINITE | NON_FINITE, kind=st.sampled_from(sorted(WRAPPERS)))
def test_numeric_types_are_taken_as_their_float(x: float, kind: str) -> None:
    with np.errstate(over="ignore"):
        value = WRAPPERS[kind](x)
    monitor = Monitor(monitor=KEY, mode="min", check_finite=False)
    d = monitor.update({KEY: value})
    assert type(d.value) is float
    assert same(d.value, float(value))
    assert same(monitor.best, float(value))


@SETTINGS
@given(n=st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**300), 10**300))
def test_ints_are_taken_as_their_float(n: int) -> None:
    values: list[Any] = [n]
    if -(2**63) <= n < 2**63:
        values.append(np.int64(n))
    for value in values:
        d = Monitor(monitor=KEY, mode="min").update({KEY: value})
        assert type(d.value) is float
        assert d.value == float(value)


@SETTINGS
@given(x=FINITE, dtype=st.sampled_from(["float32", "float64", "float16", "bfloat16"]))
def test_zero_dim_torch_tensors_are_taken_as_their_float(x: float, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.tensor(x, dtype=getattr(torch, dtype))
    d = Monitor(monitor=KEY, mode="min", check_finite=False).update({KEY: tensor})
    assert type(d.value) is float
    assert same(d.value, tensor.item())


REJECTED = {
    "bool": True,
    "numpy bool": np.bool_(False),
    "str": "0.3",
    "numpy str": np.str_("0.3"),
    "bytes": b"0.3",
    "None": None,
    "list": [0.3],
    "complex": 0.3 + 0j,
    "multi-element array": np.array([0.3, 0.4]),
    "2-d array": np.zeros((2, 2)),
    "empty array": np.array([]),
    "bool array": np.array(True),
}


@pytest.mark.parametrize("kind", sorted(REJECTED))
def test_non_numbers_raise_a_type_error_naming_the_key(kind: str) -> None:
    monitor = Monitor(monitor="val_custom_loss", mode="min")
    with pytest.raises(TypeError, match="'val_custom_loss'"):
        monitor.update({"val_custom_loss": REJECTED[kind]})


def test_non_numeric_torch_tensors_raise_a_type_error_naming_the_key() -> None:
    torch = pytest.importorskip("torch")
    monitor = Monitor(monitor="val_custom_loss", mode="min")
    for tensor in (torch.tensor([0.3, 0.4]), torch.tensor(True), torch.zeros(2, 2)):
        with pytest.raises(TypeError, match="'val_custom_loss'"):
            monitor.update({"val_custom_loss": tensor})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("wait", 99, "exceeds the epochs seen"),
        ("best", "nan", "not finite, but check_finite=True"),
    ],
)
def test_load_rejects_impossible_states(field: str, value: Any, message: str) -> None:
    saved = _saved_state()
    saved["state"][field] = value
    with pytest.raises(StateError, match=message):
        Monitor(monitor=KEY, mode="min", patience=2).load_state_dict(saved)


def test_a_number_too_large_for_a_float_is_a_type_error_naming_the_key() -> None:
    with pytest.raises(TypeError, match=KEY):
        Monitor(monitor=KEY, mode="min").update({KEY: 10**400})
