"""Faults that must not lose, swap or silently change the best: the core Monitor (issue 11).

Each test is one finding of the fault hunt: a rejected call that changed the
Monitor anyway, a damaged state that was accepted, a mapping whose default
value passed for a metric. ``test_faults_torch.py`` holds the PyTorch
adapter's faults and ``test_faults_readers.py`` the curve readers'. The
property tests at the end draw random configurations and sequences and check
the two general claims: a rejected call changes nothing, and a damaged state
is refused or decides exactly as the undamaged one.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earlystop_core import (
    GL,
    PQ,
    UP,
    DynamicPatience,
    LearnedPolicy,
    MissingMetricError,
    Monitor,
    Patience,
    ReduceLROnPlateau,
    Stalled,
    StateError,
    recommended_policy,
)

KEY, TRAIN, ACC = "val_loss", "loss", "val_accuracy"
SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def state_of(monitor: Monitor) -> str:
    """The whole state as text: equal texts, equal states (NaN included)."""
    return json.dumps(monitor.state_dict(), sort_keys=True, allow_nan=False)


# -- 5. a rejected update changes nothing ------------------------------------------------


def test_a_plateau_update_refused_for_its_epoch_counts_no_reduction() -> None:
    schedule = ReduceLROnPlateau(patience=0, factor=0.5, max_reductions=2)
    monitor = Monitor(patience=5, plateau=schedule)
    monitor.update({KEY: 1.0}, lr=0.1)
    before = state_of(monitor)
    for bad_epoch in (-1, 0, "1"):
        with pytest.raises((ValueError, TypeError)):
            monitor.update({KEY: 2.0}, epoch=bad_epoch, lr=0.1)
        assert state_of(monitor) == before
    assert monitor.plateau is not None and monitor.plateau.reductions == 0
    assert monitor.update({KEY: 2.0}, lr=0.1).lr == 0.05  # the first reduction is still to come


def test_a_first_epoch_refused_for_keep_best_by_fixes_no_scales() -> None:
    monitor = Monitor({KEY: 1.0, TRAIN: 1.0}, normalize="initial", keep_best_by=ACC)
    before = state_of(monitor)
    with pytest.raises(MissingMetricError, match="keep_best_by"):
        monitor.update({KEY: 4.0, TRAIN: 2.0})
    assert state_of(monitor) == before
    # The scales come from the first accepted epoch, as for a Monitor that never saw the refused one.
    fresh = Monitor({KEY: 1.0, TRAIN: 1.0}, normalize="initial", keep_best_by=ACC)
    good = {KEY: 1.0, TRAIN: 0.5, ACC: 0.5}
    assert monitor.update(good) == fresh.update(good)
    assert state_of(monitor) == state_of(fresh)


def test_a_plateau_update_refused_by_the_monitor_leaves_the_plateau_as_it_was() -> None:
    monitor = Monitor(ACC, plateau=ReduceLROnPlateau(KEY, patience=0), keep_best_by=TRAIN)
    monitor.update({ACC: 0.5, KEY: 1.0, TRAIN: 1.0}, lr=0.1)
    before = state_of(monitor)
    with pytest.raises(MissingMetricError):
        monitor.update({ACC: 0.4, KEY: 2.0}, lr=0.1)  # no keep_best_by metric
    assert state_of(monitor) == before


def test_a_standalone_plateau_update_that_raises_changes_nothing() -> None:
    schedule = ReduceLROnPlateau(patience=0)
    schedule.update({KEY: 1.0}, 0.1)
    schedule.update({KEY: 2.0}, 0.1)
    assert schedule.last_reduced
    with pytest.raises(MissingMetricError):
        schedule.update({}, 0.01)
    assert schedule.last_reduced


# -- 6. epochs going backwards -------------------------------------------------------------


@pytest.mark.parametrize("again", [9, 5, 0])
def test_an_epoch_that_does_not_come_after_the_last_is_refused(again: int) -> None:
    monitor = Monitor(patience=3)
    monitor.update({KEY: 1.0}, epoch=9)
    before = state_of(monitor)
    with pytest.raises(ValueError, match=rf"epoch {again} does not come after epoch 9") as error:
        monitor.update({KEY: 0.5}, epoch=again)
    assert "docs/resuming.md" in str(error.value)
    assert "reset()" in str(error.value)
    assert state_of(monitor) == before
    # What is left is a state that loads back.
    Monitor(patience=3).load_state_dict(json.loads(before))


def test_epochs_may_skip_forward_and_restart_after_reset() -> None:
    monitor = Monitor(patience=3)
    monitor.update({KEY: 1.0}, epoch=3)
    assert monitor.update({KEY: 1.0}, epoch=7).epoch == 7
    monitor.reset()
    assert monitor.update({KEY: 1.0}, epoch=0).epoch == 0


def test_a_resumed_monitor_refuses_the_epochs_it_has_seen() -> None:
    first = Monitor(patience=3)
    for loss in [1.0, 0.9, 0.8]:
        first.update({KEY: loss})
    resumed = Monitor(patience=3)
    resumed.load_state_dict(first.state_dict())
    with pytest.raises(ValueError, match="epoch 1 does not come after epoch 2"):
        resumed.update({KEY: 0.1}, epoch=1)
    assert resumed.update({KEY: 0.7}, epoch=3).improved


# -- 7. damaged states ---------------------------------------------------------------------


def _saved(monitor: Monitor, values: list[float], **extra: Any) -> dict[str, Any]:
    for value in values:
        monitor.update({KEY: value, **extra})
    return monitor.state_dict()


@pytest.mark.parametrize("damage", ["delete", None, "inf", "-inf", math.inf, "nan", math.nan])
def test_a_damaged_tracked_best_is_refused(damage: Any) -> None:
    state = _saved(Monitor(patience=5), [0.5, 0.6])
    if damage == "delete":
        del state["state"]["tracked"]
    else:
        state["state"]["tracked"] = damage
    monitor = Monitor(patience=5)
    before = state_of(monitor)
    with pytest.raises(StateError, match="tracked"):
        monitor.load_state_dict(state)
    assert state_of(monitor) == before


def test_a_state_without_tracked_no_longer_makes_a_worse_loss_the_best() -> None:
    """Accepted, such a state made the next epoch the best, however bad (0.9 after a best of 0.5)."""
    state = _saved(Monitor(patience=5, restore_best_weights=True), [0.5, 0.6])
    del state["checksum"]  # a hand-edited state: only the field checks stand between it and the run
    state["state"]["tracked"] = None
    monitor = Monitor(patience=5, restore_best_weights=True)
    with pytest.raises(StateError, match="'tracked'"):
        monitor.load_state_dict(state)
    assert (monitor.epoch, monitor.best, monitor.best_epoch) == (0, None, None)


@pytest.mark.parametrize(
    ("build", "field", "extra"),
    [
        (lambda: Monitor(patience=5, smoothing=0.5), "smoothed", {}),
        (lambda: Monitor(patience=5, smoothing=0.5), "tracked", {}),
        (lambda: Monitor(patience=5, keep_best_by=ACC), "kept_by", {ACC: 0.5}),
        (lambda: Monitor(patience=5, best_from_epoch=1), "tracked", {}),
    ],
)
def test_nan_is_refused_where_no_run_can_put_it(
    build: Callable[[], Monitor], field: str, extra: dict[str, Any]
) -> None:
    state = _saved(build(), [0.5, 0.4, 0.45], **extra)
    state["state"][field] = "nan"
    with pytest.raises(StateError, match=field):
        build().load_state_dict(state)


@pytest.mark.parametrize(
    ("rule", "field"),
    [(Stalled(2), "recent"), (PQ(0.5, strip=2), "train")],
)
def test_a_null_inside_a_rule_list_is_refused_not_dropped(rule: Any, field: str) -> None:
    state = _saved(Monitor(rule=rule), [0.5, 0.4, 0.45], **{TRAIN: 0.3})
    assert state["state"]["rule"][field]
    state["state"]["rule"][field][0] = None
    with pytest.raises(StateError, match="list of numbers"):
        Monitor(rule=rule).load_state_dict(state)


def test_a_learning_rate_without_a_plateau_is_refused() -> None:
    state = _saved(Monitor(patience=5), [0.5])
    for lr in ("nan", 0.1):
        state["state"]["lr"] = lr
        with pytest.raises(StateError, match="no plateau"):
            Monitor(patience=5).load_state_dict(state)


@pytest.mark.parametrize("lr", ["nan", "inf", 0.0, -0.1, None, "0.1"])
def test_a_bad_learning_rate_with_a_plateau_is_refused(lr: Any) -> None:
    def build() -> Monitor:
        return Monitor(patience=5, plateau=ReduceLROnPlateau(patience=1))

    monitor = build()
    monitor.update({KEY: 0.5}, lr=0.1)
    state = monitor.state_dict()
    state["state"]["lr"] = lr
    with pytest.raises(StateError, match="lr"):
        build().load_state_dict(state)


def test_a_state_refused_by_a_part_loads_nothing() -> None:
    """The rule's section is bad, everything before it fine: nothing at all is loaded."""
    rule = Patience(3) | UP(strips=1, strip=2)
    source = Monitor(rule=rule, plateau=ReduceLROnPlateau(patience=1))
    for value in [0.5, 0.4, 0.45, 0.6]:
        source.update({KEY: value}, lr=0.1)
    state = source.state_dict()
    state["state"]["plateau"]["state"]["wait"] = -1
    target = Monitor(rule=rule, plateau=ReduceLROnPlateau(patience=1))
    target.update({KEY: 9.0}, lr=0.2)
    before = state_of(target)
    with pytest.raises(StateError):
        target.load_state_dict(state)
    assert state_of(target) == before


def test_a_section_for_a_part_the_monitor_lacks_is_refused() -> None:
    state = _saved(Monitor(patience=5), [0.5])
    state["state"]["rule"] = {"recent": [0.5]}
    with pytest.raises(StateError, match="no rule"):
        Monitor(patience=5).load_state_dict(state)


def test_unknown_fields_are_refused() -> None:
    state = _saved(Monitor(patience=5), [0.5])
    state["state"]["bets"] = 0.1
    with pytest.raises(StateError, match="unknown field"):
        Monitor(patience=5).load_state_dict(state)


def test_unknown_sections_are_refused() -> None:
    state = _saved(Monitor(patience=5), [0.5])
    state["notes"] = "resumed by hand"
    with pytest.raises(StateError, match="unknown section"):
        Monitor(patience=5).load_state_dict(state)


def test_infinite_score_scales_are_refused() -> None:
    def build() -> Monitor:
        return Monitor({KEY: 1.0, TRAIN: 1.0}, normalize="initial")

    state = _saved(build(), [0.5], **{TRAIN: 0.2})
    state["state"]["score"][KEY] = math.inf
    with pytest.raises(StateError, match="finite"):
        build().load_state_dict(state)


def test_an_int_too_large_for_a_float_is_a_state_error() -> None:
    state = _saved(Monitor(patience=5), [0.5])
    state["state"]["best"] = state["state"]["tracked"] = 10**400
    with pytest.raises(StateError, match="out of range"):
        Monitor(patience=5).load_state_dict(state)


def test_a_composite_rule_refusing_its_second_part_loads_not_its_first() -> None:
    rule = UP(strips=1, strip=1) | Stalled(2)
    for value in [0.5, 0.6]:
        rule.check(0, value, 0.5, 0, False, {})
    before = rule.state_dict()
    with pytest.raises(StateError):
        rule.load_state_dict([{"previous": 0.9, "ups": 3}, {"recent": "not a list"}])
    assert rule.state_dict() == before


def test_auto_patience_must_be_what_its_probe_gives() -> None:
    def build() -> Monitor:
        return Monitor(patience="auto", max_epochs=100)

    state = _saved(build(), [0.5, 0.4, 0.45, 0.3])
    del state["checksum"]
    state["state"]["rule"]["patience"] = 1000
    with pytest.raises(StateError, match="probe"):
        build().load_state_dict(state)


# -- 8. mappings with defaults -------------------------------------------------------------


@pytest.mark.parametrize("factory", [lambda: defaultdict(float), Counter])
def test_a_defaulting_mapping_does_not_make_up_a_metric(factory: Callable[[], Any]) -> None:
    monitor = Monitor(patience=2)
    monitor.update({KEY: 0.5})
    logs = factory()
    logs["loss"] = 0.1
    with pytest.raises(MissingMetricError):
        monitor.update(logs)
    assert KEY not in logs  # nothing inserted either
    skipping = Monitor(patience=2, on_missing="skip")
    skipping.update({KEY: 0.5})
    decision = skipping.update(logs)
    assert decision.value is None and not decision.improved and skipping.best == 0.5


@pytest.mark.parametrize(
    "build",
    [
        lambda: Monitor(keep_best_by=ACC),
        lambda: Monitor({KEY: 1.0, ACC: 1.0}),
        lambda: Monitor(rule=PQ(0.5)),
        lambda: Monitor(plateau=ReduceLROnPlateau(monitor=ACC)),
        lambda: Monitor(policy="recommended"),
    ],
)
def test_every_metric_a_monitor_reads_is_missing_when_absent_from_a_defaultdict(build: Callable[[], Monitor]) -> None:
    monitor = build()
    full = {name: 0.5 for name in monitor.metrics}
    lr = 0.1 if monitor.plateau is not None else None
    monitor.update(full, lr=lr)
    before = state_of(monitor)
    for name in monitor.metrics:
        logs: defaultdict[str, float] = defaultdict(float, {k: v for k, v in full.items() if k != name})
        with pytest.raises(MissingMetricError, match=repr(name)):
            monitor.update(logs, lr=lr)
        assert state_of(monitor) == before


# -- 10. smaller ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.complex128(0.5 + 1j), np.complex64(0.5), np.array(0.5 + 0j)])
def test_complex_values_are_refused_not_truncated(value: Any) -> None:
    monitor = Monitor()
    with pytest.raises(TypeError, match="complex"):
        monitor.update({KEY: value})
    assert monitor.epoch == 0


def test_a_policy_file_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "policy.json"
    policy = recommended_policy()
    policy.save(path)
    saved = path.read_bytes()
    other = LearnedPolicy(["log_wait"], [0.0], [1.0], [-2.0], 4.0, threshold=0.5, min_wait=1, max_wait=9)

    def full(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match="No space"):
        other.save(path)
    assert path.read_bytes() == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.json"]  # no temporary file left behind


# -- property (a): a rejected call changes nothing -------------------------------------------


@st.composite
def monitors(draw: st.DrawFn, check_finite: bool | None = None) -> Callable[[], Monitor]:
    """A recipe for a randomly configured Monitor: rules, weighted, smoothing, plateau, keep_best_by, policy."""
    kind = draw(st.sampled_from(["plain", "rule", "weighted", "policy"]))
    if kind == "policy":
        restore = draw(st.booleans())
        return lambda: Monitor(policy="recommended", restore_best_weights=restore)
    options: dict[str, Any] = {
        "patience": draw(st.integers(0, 4)),
        "min_delta": draw(st.sampled_from([0.0, 0.01])),
        "start_from_epoch": draw(st.integers(0, 2)),
        "best_from_epoch": draw(st.integers(0, 2)),
        "smoothing": draw(st.sampled_from([0.0, 0.0, 0.5])),
        "check_finite": draw(st.booleans()) if check_finite is None else check_finite,
        "restore_best_weights": True,
    }
    if draw(st.booleans()):
        options["keep_best_by"] = ACC
    if kind == "weighted":
        options["monitor"] = {KEY: 1.0, TRAIN: 0.5}
        options["normalize"] = draw(st.sampled_from([None, "initial"]))
    if kind == "rule":
        rules = [Patience(2), GL(5.0), UP(strips=2, strip=2), PQ(0.5, strip=2), Stalled(2, log=True)]
        rules.append(DynamicPatience(initial=2, minimum=1, maximum=5))
        parts = draw(st.lists(st.sampled_from(rules), min_size=1, max_size=3))
        rule = parts[0]
        for part in parts[1:]:
            rule = rule | part if draw(st.booleans()) else rule & part
        options["rule"] = rule
        del options["patience"]
    plateau = draw(st.booleans())

    def build() -> Monitor:
        schedule = ReduceLROnPlateau(patience=1, factor=0.5, max_reductions=2) if plateau else None
        return Monitor(**options, plateau=schedule)

    return build


POSITIVE = st.floats(0.01, 4.0) | st.sampled_from([0.5, 0.25, 1.0])
GOOD = st.fixed_dictionaries({KEY: POSITIVE | st.just(math.nan), TRAIN: POSITIVE, ACC: st.floats(0.0, 1.0)})


def bad_calls(monitor: Monitor) -> list[tuple[str, Callable[[dict[str, Any], float | None], Any]]]:
    """Calls that must be refused by this monitor, each given good logs and a good lr."""
    epoch = monitor.epoch
    calls: list[tuple[str, Callable[[dict[str, Any], float | None], Any]]] = [
        ("negative epoch", lambda logs, lr: monitor.update(logs, epoch=-1, lr=lr)),
        ("epoch as text", lambda logs, lr: monitor.update(logs, epoch=str(epoch), lr=lr)),
        ("epoch as bool", lambda logs, lr: monitor.update(logs, epoch=True, lr=lr)),
        ("not a mapping", lambda logs, lr: monitor.update([*logs.values()], lr=lr)),  # type: ignore[arg-type]
    ]
    if epoch > 0:
        calls.append(("epoch going back", lambda logs, lr: monitor.update(logs, epoch=epoch - 1, lr=lr)))
    for name in monitor.metrics:
        calls.append((f"{name} missing", lambda logs, lr, n=name: monitor.update(_without(logs, n), lr=lr)))
        calls.append(
            (
                f"{name} in a defaultdict",
                lambda logs, lr, n=name: monitor.update(defaultdict(float, _without(logs, n)), lr=lr),
            )
        )
        calls.append((f"{name} as text", lambda logs, lr, n=name: monitor.update({**logs, n: "0.5"}, lr=lr)))
        calls.append((f"{name} as a vector", lambda logs, lr, n=name: monitor.update({**logs, n: [0.1, 0.2]}, lr=lr)))
        calls.append(
            (f"{name} complex", lambda logs, lr, n=name: monitor.update({**logs, n: np.complex128(1j)}, lr=lr))
        )
    if monitor.plateau is not None:
        for bad in (math.nan, 0.0, -0.1, math.inf):
            calls.append((f"lr={bad}", lambda logs, lr, b=bad: monitor.update(logs, lr=b)))
    else:
        calls.append(("lr without a plateau", lambda logs, lr: monitor.update(logs, lr=0.1)))
    return calls


def _without(logs: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in logs.items() if key != name}


@SETTINGS
@given(build=monitors(), data=st.data())
def test_a_rejected_call_leaves_the_monitor_as_it_was(build: Callable[[], Monitor], data: st.DataObject) -> None:
    monitor, twin = build(), build()  # the twin never sees the bad calls
    if monitor.config.on_missing != "raise":
        return
    for _ in range(data.draw(st.integers(1, 12), label="epochs")):
        lr = 0.1 if monitor.plateau is not None else None
        logs = data.draw(GOOD, label="logs")
        before = state_of(monitor)
        calls = bad_calls(monitor)
        for label, call in data.draw(st.lists(st.sampled_from(calls), max_size=3), label="bad calls"):
            with pytest.raises((ValueError, TypeError, KeyError)):
                call(logs, lr)
            assert state_of(monitor) == before, label
        assert repr(_outcome(monitor, logs, lr)) == repr(_outcome(twin, logs, lr))  # repr: NaN equals NaN
        assert state_of(monitor) == state_of(twin)


def _outcome(monitor: Monitor, logs: dict[str, Any], lr: float | None) -> tuple[Any, ...]:
    """The decision, or the error of an epoch the configuration refuses (a NaN first value to normalise)."""
    before = state_of(monitor)
    try:
        return tuple(monitor.update(logs, lr=lr))
    except ValueError as error:
        assert state_of(monitor) == before
        return (type(error), str(error))


# -- property (b): a damaged state is refused, or decides as the undamaged one ---------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON-like state section."""
    paths = [prefix] if prefix else []
    if isinstance(node, Mapping):
        for key, value in node.items():
            paths.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths.extend(_paths(value, (*prefix, index)))
    return paths


DAMAGE: dict[str, Callable[[Any], Any]] = {
    "deleted": lambda value: _DELETE,
    "null": lambda value: None,
    "NaN": lambda value: math.nan,
    "'nan'": lambda value: "nan",
    "inf": lambda value: math.inf,
    "'-inf'": lambda value: "-inf",
    "text": lambda value: "x",
    "list": lambda value: [],
    "dict": lambda value: {},
    "bool": lambda value: not value if isinstance(value, bool) else True,
    "negative": lambda value: -1 if not isinstance(value, float) else -abs(value) - 1.0,
    "huge": lambda value: 10**12,
}
_DELETE = object()


def _damaged(state: dict[str, Any], path: tuple[Any, ...], damage: Callable[[Any], Any]) -> dict[str, Any]:
    state = copy.deepcopy(state)
    node: Any = state["state"]
    for key in path[:-1]:
        node = node[key]
    value = damage(node[path[-1]])
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return state


def _continue(monitor: Monitor, epochs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    lr = 0.1 if monitor.plateau is not None else None
    decisions = [_outcome(monitor, logs, lr) for logs in epochs]
    return [*decisions, (state_of(monitor),)]


@SETTINGS
@given(build=monitors(), data=st.data())
def test_a_damaged_state_is_refused(build: Callable[[], Monitor], data: st.DataObject) -> None:
    """As state_dict() wrote it, a state carries a checksum: any damage to any field is refused."""
    source = build()
    lr = 0.1 if source.plateau is not None else None
    for logs in data.draw(st.lists(GOOD, min_size=1, max_size=10), label="before"):
        _outcome(source, logs, lr)
    state = json.loads(json.dumps(source.state_dict(), allow_nan=False))
    path = data.draw(st.sampled_from(_paths(state["state"])), label="path")
    label = data.draw(st.sampled_from(sorted(DAMAGE)), label="damage")
    damaged = _damaged(state, path, DAMAGE[label])
    if damaged == state:
        return  # e.g. a null made null
    target = build()
    before = state_of(target)
    with pytest.raises(StateError):
        target.load_state_dict(damaged)
    assert state_of(target) == before


# Without its checksum (a state written or edited by hand), the fields are checked one by one.
# Some damage leaves a state another run could have reached, which no check can tell apart:
# with check_finite=False (Keras's rule) a NaN or infinite value is a value like any other (left
# out here), and so is any value in the memories of metrics other than the monitored one (PQ's
# training losses, the policy's carried accuracy and loss, the plateau's best, which sees values
# before the Monitor's guards); and one number changed for another is checked only against the
# other fields (a best of 0.7 edited to 0.07 may be any run's): the checksum is what catches it.
@SETTINGS
@given(build=monitors(check_finite=True), data=st.data())
def test_a_damaged_state_without_checksum_is_refused_or_decides_as_the_undamaged_one(
    build: Callable[[], Monitor], data: st.DataObject
) -> None:
    source = build()
    lr = 0.1 if source.plateau is not None else None
    for logs in data.draw(st.lists(GOOD, min_size=1, max_size=10), label="before"):
        _outcome(source, logs, lr)
    state = json.loads(json.dumps(source.state_dict(), allow_nan=False))
    del state["checksum"]
    path = data.draw(st.sampled_from(_paths(state["state"])), label="path")
    label = data.draw(st.sampled_from(sorted(DAMAGE)), label="damage")
    if _reachable_anyway(state, path, label):
        return
    damaged = _damaged(state, path, DAMAGE[label])
    target = build()
    before = state_of(target)
    try:
        target.load_state_dict(damaged)
    except StateError:
        assert state_of(target) == before  # refused: nothing changed
        return
    after = data.draw(st.lists(GOOD, min_size=1, max_size=8), label="after")
    reference = build()
    reference.load_state_dict(state)
    assert repr(_continue(target, after)) == repr(_continue(reference, after)), (path, label)


NON_FINITE = {"NaN", "'nan'", "inf", "'-inf'"}


def _numeric(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("nan", "inf", "-inf")


OTHER_METRICS = {"train", "train_last", "acc_last", "plateau"}


def _reachable_anyway(state: dict[str, Any], path: tuple[Any, ...], label: str) -> bool:
    """Whether this damage may leave a state some run reaches (see above)."""
    value: Any = state["state"]
    for key in path:
        value = value[key]
    if label in {"huge", "negative"} and (isinstance(value, float) or path == ("next_epoch",)):
        return True  # a number for a number: only its relations to other fields can be checked
    if (label == "list" and isinstance(value, list)) or (label == "deleted" and isinstance(path[-1], int)):
        return True  # a shorter memory: a rule's memory is shorter early in any run
    numeric_damage = (label == "huge" and isinstance(value, int)) or (label == "null" and _numeric(value))
    if path[0] == "rule" and (numeric_damage or (label in {"huge", "negative"} and value is None)):
        return True  # a rule's count or best, larger, set or not yet set: only the rule's own relations are checked
    if path == ("kept_by",) and label in NON_FINITE:
        return True  # the keep_best_by value kept while every epoch's was non-finite (the worst)
    if path == ("tracked",) and label == "null" and state["config"]["best_from_epoch"] > 0:
        return True  # nothing tracked yet: every epoch seen was a warm-up epoch
    return label in NON_FINITE and bool(OTHER_METRICS & set(map(str, path)))


def test_a_bom_is_read_in_runs_csv_and_a_policy_file(tmp_path: Path) -> None:
    from earlystop_core.policy.fit import read_runs_meta

    runs = tmp_path / "runs.csv"
    runs.write_bytes(b"\xef\xbb\xbfrun,problem\n0,a\n")
    assert read_runs_meta(runs)["0"]["problem"] == "a"
    policy = tmp_path / "policy.json"
    recommended_policy().save(policy)
    policy.write_bytes(b"\xef\xbb\xbf" + policy.read_bytes())
    assert LearnedPolicy.load(policy) == recommended_policy()


class _Flaky(Patience):
    """A rule of the user's own that counts epochs in its memory, and raises on a chosen one."""

    def __init__(self, patience: int, fail_at: int) -> None:
        super().__init__(patience)
        self.fail_at = fail_at
        self.seen = 0

    def reset(self) -> None:
        self.seen = 0

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        self.seen += 1
        if epoch == self.fail_at:
            raise RuntimeError("injected: the rule failed")
        return super().check(epoch, value, best, wait, improved, logs)

    def state_dict(self) -> Any:
        return {"seen": self.seen}

    def load_state_dict(self, state: Any) -> None:
        self.seen = state["seen"]

    def spec(self) -> dict[str, Any]:
        return {"rule": "Flaky", "patience": self.patience, "fail_at": self.fail_at}


@pytest.mark.parametrize(
    "build", [lambda r: Monitor(rule=r), lambda r: Monitor({KEY: 1.0, TRAIN: 1.0}, rule=r | GL(5))]
)
def test_a_rule_of_ones_own_that_raises_leaves_the_monitor_and_the_rule_as_they_were(
    build: Callable[[Any], Monitor],
) -> None:
    monitor = build(_Flaky(2, fail_at=2))
    for value in [1.0, 0.5]:
        monitor.update({KEY: value, TRAIN: value})
    before = state_of(monitor)
    with pytest.raises(RuntimeError, match="injected"):
        monitor.update({KEY: 0.1, TRAIN: 0.1})
    assert state_of(monitor) == before


def test_a_policy_file_with_a_changed_weight_is_refused(tmp_path: Path) -> None:
    """A flipped digit in a saved policy's weight would change every decision without a word."""
    from earlystop_core.policy.learned import PolicyError

    path = tmp_path / "policy.json"
    recommended_policy().save(path)
    data = json.loads(path.read_text())
    data["weights"][0] = data["weights"][0] + 1e-3
    path.write_text(json.dumps(data))
    with pytest.raises(PolicyError, match="checksum"):
        LearnedPolicy.load(path)
    with pytest.raises(PolicyError, match="checksum"):
        Monitor(policy=path)
    del data["checksum"]  # edited on purpose: checked field by field only
    path.write_text(json.dumps(data))
    assert LearnedPolicy.load(path).weights[0] == data["weights"][0]
