"""The learned stopping policy: online features, exact resume, the saved format, fitting, and use in a Monitor."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earlystop_core import Monitor, StopReason
from earlystop_core.errors import MissingMetricError, StateError
from earlystop_core.policy.features import FAMILIES, LOG_FLOOR, FeatureTracker
from earlystop_core.policy.fit import (
    LEFT_OUT,
    fit_logistic,
    fit_policy,
    group_folds,
    patience_outcome,
    read_runs_meta,
    record_runs,
    simulate,
)
from earlystop_core.policy.learned import FEATURES, FORMAT, VERSION, LearnedPolicy, PolicyError, recommended_policy
from earlystop_core.replay.scalar import replay, replay_run
from earlystop_core.rules.base import Rule

ALL = tuple(FEATURES)
#: The features of toy_policy(): every one but the budget ones.
TOY = sum(FEATURES[name] != "budget" for name in ALL)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- a deliberately naive reference: every feature recomputed from the whole prefix --------------------------------


class Recorder(Rule):
    """Records what the Monitor passes to its rule, and the tracker's features, at every epoch."""

    def __init__(self, tracker: FeatureTracker) -> None:
        self.tracker = tracker
        self.requires = frozenset(k for k in (tracker.train_metric, tracker.accuracy_metric) if k)
        self.optional = frozenset(k for k in (tracker.lr_metric,) if k)
        self.calls: list[tuple[int, float, float | None, int, bool, dict[str, Any]]] = []
        self.features: list[list[float]] = []

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        self.calls.append((epoch, value, best, wait, improved, dict(logs)))
        self.features.append(self.tracker.step(epoch, value, best, wait, improved, logs))
        return False

    def spec(self) -> dict[str, Any]:
        return {"rule": "Recorder"}


def level(value: float) -> float:
    return math.log(value) if value > LOG_FLOOR else math.log(LOG_FLOOR)


def reference(
    calls: Sequence[tuple[int, float, float | None, int, bool, dict[str, Any]]], t: int, budget: int | None
) -> dict[str, float]:
    """The features at call ``t`` from the prefix ``calls[: t + 1]``, straight from the definitions."""
    prefix = calls[: t + 1]
    n = t + 1
    epoch, _, _, wait, _, _ = prefix[-1]
    levels = [level(c[1]) for c in prefix]
    best_levels = [level(c[2]) if c[2] is not None else level(c[1]) for c in prefix]
    improving = [i for i, c in enumerate(prefix) if c[4]]
    b = improving[-1] if improving else 0  # index among calls of the last improvement (or the first)
    gl = min(levels[-1] - best_levels[-1], 50.0)
    steps = [abs(levels[i] - levels[i - 1]) for i in range(1, n)][-10:]
    noise = sum(steps) / len(steps) if steps else 0.0
    out = {
        "log_wait": math.log1p(wait),
        "wait_share": wait / n,
        "log_best_epoch": math.log1p(prefix[b][0]),
        "log_epoch": math.log1p(epoch),
        "gl": gl,
        "trend5": (sum(levels[-5:]) - sum(levels[-10:-5])) / 5 if n >= 10 else 0.0,
        "noise10": noise,
        "gl_over_noise": min(gl / max(noise, 1e-6), 50.0),
        "recent_gain10": (best_levels[-11] if n >= 11 else levels[0]) - best_levels[-1],
    }
    if budget is not None:
        out |= {
            "budget_position": epoch / budget,
            "budget_left": math.log1p(max(budget - 1 - epoch, 0)),
            "wait_budget": wait / budget,
        }
    train = [level(c[5]["loss"]) for c in prefix]
    out |= {
        "train_since_best": train[-1] - train[b],
        "train_log_wait": math.log1p(n - 1 - int(np.argmin(train))),
        "train_gap": levels[-1] - train[-1],
    }
    acc = [c[5]["val_accuracy"] for c in prefix]
    out |= {
        "acc_log_wait": math.log1p(n - 1 - int(np.argmax(acc))),
        "acc_best_gap": max(acc) - acc[b],
        "acc_progress": max(acc) - acc[0],
        "acc_level": acc[-1],
        "acc_best": max(acc),
    }
    # The learning rate: optional; an epoch without one (or with NaN, inf) carries the last one logged.
    logged = [c[5]["lr"] if math.isfinite(c[5].get("lr", math.nan)) else None for c in prefix]
    rates = [r for r in logged if r is not None]
    if not rates:
        return out | dict(zip(FAMILIES["lr"], (1.0, 0.0, 0.0, 0.0), strict=True))
    carried = [next((r for r in reversed(logged[: i + 1]) if r is not None), rates[0]) for i in range(n)]
    now, top = carried[-1], max(rates)

    def clip(x: float) -> float:
        return min(max(x, -10.0), 10.0)

    return out | {
        "lr_to_max": now / top if top > 0 else 1.0,
        "lr_log_to_max": max(level(now) - level(top), -10.0),
        "lr_trend10": clip(level(now) - level(carried[max(n - 11, 0)])),
        "lr_since_best": clip(level(now) - level(carried[b])),
    }


positive = st.floats(min_value=1e-4, max_value=50.0, allow_nan=False)
losses = st.one_of(positive, st.just(0.0))  # a cross-entropy of exactly 0.0 happens (float underflow)


#: Learning rates as schedules log them: decaying to 0 and below the log floor, now and then not finite.
rates = st.one_of(
    st.floats(1e-6, 1.0), st.sampled_from([0.0, 1e-13, 0.1, 0.1, 0.01, math.nan, math.inf]), st.floats(1e-300, 1e-9)
)


@st.composite
def curves(draw: st.DrawFn, min_size: int = 1, max_size: int = 60) -> dict[str, list[float | None]]:
    """A run; its learning rate at every epoch, at some (None: not logged), or never."""
    n = draw(st.integers(min_value=min_size, max_value=max_size))
    curve: dict[str, list[float | None]] = {
        "val_loss": draw(st.lists(losses, min_size=n, max_size=n)),
        "loss": draw(st.lists(losses, min_size=n, max_size=n)),
        "val_accuracy": draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)),
    }
    how = draw(st.sampled_from(["every epoch", "some epochs", "never"]))
    if how != "never":
        curve["lr"] = draw(st.lists(rates | st.none() if how == "some epochs" else rates, min_size=n, max_size=n))
    return curve


def epochs_of(curve: Mapping[str, Sequence[float | None]]) -> list[dict[str, float]]:
    names = list(curve)
    return [
        {name: value for name, value in zip(names, values, strict=True) if value is not None}
        for values in zip(*curve.values(), strict=True)
    ]


@SETTINGS
@given(curve=curves(), best_from_epoch=st.integers(0, 3), budget=st.one_of(st.none(), st.integers(1, 80)))
def test_online_features_equal_a_batch_recomputation_at_every_epoch(
    curve: dict[str, list[float | None]], best_from_epoch: int, budget: int | None
) -> None:
    tracker = FeatureTracker(True, budget, "loss", "val_accuracy", "lr")
    monitor = Monitor(rule=Recorder(tracker), best_from_epoch=best_from_epoch, check_finite=True)
    recorder = monitor.rule
    assert isinstance(recorder, Recorder)
    for logs in epochs_of(curve):
        monitor.update(logs)
    assert len(recorder.features) == len(curve["val_loss"])
    for t, online in enumerate(recorder.features):
        expected = reference(recorder.calls, t, budget)
        got = dict(zip(recorder.tracker.names, online, strict=True))
        assert set(got) == set(expected)
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (t, name)


def test_features_do_not_read_the_future() -> None:
    """Changing epochs after t changes nothing at t (and the tracker never sees them)."""
    base = {"val_loss": [1.0, 0.8, 0.7, 0.75, 0.9, 1.2], "loss": [1.0] * 6, "val_accuracy": [0.5] * 6}
    changed = {name: [*values[:3], *(v * 3 for v in values[3:])] for name, values in base.items()}
    outputs = []
    for curve in (base, changed):
        tracker = FeatureTracker(True, 10, "loss", "val_accuracy")
        monitor = Monitor(rule=Recorder(tracker))
        for logs in epochs_of(curve):
            monitor.update(logs)
        assert isinstance(monitor.rule, Recorder)
        outputs.append(monitor.rule.features[:3])
    assert outputs[0] == outputs[1]


def test_non_finite_inputs_carry_the_last_finite_value() -> None:
    tracker = FeatureTracker(True, None, "loss", "val_accuracy")
    first = tracker.step(0, 1.0, 1.0, 0, True, {"loss": 2.0, "val_accuracy": 0.5})
    second = tracker.step(1, math.nan, 1.0, 1, False, {"loss": math.inf, "val_accuracy": math.nan})
    named = dict(zip(tracker.names, second, strict=True))
    assert all(math.isfinite(x) for x in first + second)
    assert named["gl"] == 0.0 and named["train_gap"] == pytest.approx(math.log(1.0) - math.log(2.0))
    assert named["acc_level"] == 0.5


def test_a_negative_value_with_log_raises_clearly() -> None:
    with pytest.raises(ValueError, match="log=False"):
        FeatureTracker().step(0, -1.0, None, 0, False, {})


# -- policies for the tests ------------------------------------------------------------------------------------------


def toy_policy(**changes: Any) -> LearnedPolicy:
    """A policy on every feature but the budget ones: stops when waiting long relative to the run."""
    names = [n for n in ALL if FEATURES[n] != "budget"]
    weights = [0.0] * len(names)
    weights[names.index("log_wait")] = -3.0
    weights[names.index("log_best_epoch")] = 2.0
    weights[names.index("acc_best_gap")] = 1.0
    weights[names.index("lr_since_best")] = 0.5  # a rate lowered since the best: more to come
    arguments: dict[str, Any] = {
        "features": names,
        "means": [0.0] * len(names),
        "scales": [1.0] * len(names),
        "weights": weights,
        "bias": 1.0,
        "threshold": 0.4,
        "min_wait": 2,
        "max_wait": 25,
    }
    arguments |= changes
    return LearnedPolicy(**arguments)


def run_monitor(monitor: Monitor, logs: Sequence[Mapping[str, float]]) -> list[tuple[bool, int, float | None]]:
    out = []
    for entry in logs:
        decision = monitor.update(entry)
        out.append((decision.should_stop, decision.epoch, decision.best))
        if decision.should_stop:
            break
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(curve=curves(min_size=2, max_size=50), best_from_epoch=st.integers(0, 3))
def test_resume_through_the_monitor_state_dict_is_exact_at_every_split(
    curve: dict[str, list[float]], best_from_epoch: int
) -> None:
    policy = toy_policy()
    logs = epochs_of(curve)

    def make() -> Monitor:
        return Monitor(rule=policy, best_from_epoch=best_from_epoch, restore_best_weights=True)

    straight = make()
    expected = run_monitor(straight, logs)
    final_state = straight.state_dict()
    for split in range(1, len(expected)):
        first = make()
        head = run_monitor(first, logs[:split])
        saved = json.loads(json.dumps(first.state_dict()))
        resumed = make()
        resumed.load_state_dict(saved)
        assert resumed.state_dict() == first.state_dict()
        tail = run_monitor(resumed, logs[split:])
        assert head + tail == expected, split
        assert resumed.state_dict() == final_state


def test_resume_keeps_the_probability_and_features() -> None:
    policy = toy_policy()
    monitor = Monitor(rule=policy)
    logs = {"val_loss": 0.5, "loss": 0.4, "val_accuracy": 0.7}
    monitor.update(logs)
    monitor.update({**logs, "val_loss": 0.6})
    resumed = Monitor(rule=policy)
    resumed.load_state_dict(monitor.state_dict())
    assert isinstance(resumed.rule, LearnedPolicy) and isinstance(monitor.rule, LearnedPolicy)
    assert resumed.rule.probability() == monitor.rule.probability()
    assert resumed.rule.features_now() == monitor.rule.features_now()


def test_a_policy_inside_a_composition_resumes_exactly() -> None:
    from earlystop_core import Patience

    def make() -> Monitor:
        return Monitor(rule=Patience(30) | toy_policy(), restore_best_weights=True)

    logs = epochs_of(overfitting(12, noise=0.01))
    expected = run_monitor(make(), logs)
    first = make()
    head = run_monitor(first, logs[:15])
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + run_monitor(resumed, logs[15:]) == expected


def test_an_infinite_best_keeps_its_level_across_a_resume() -> None:
    """Found by check_rule (earlystop_core.testing): with check_finite=False an infinite value can become the best
    (here, the first epoch after the warm-up), and in rel mode nothing beats it; the features measured the
    generalisation loss against the level of the epoch that adopted it, which a resumed policy had forgotten."""

    def make() -> Monitor:
        return Monitor(rule=recommended_policy(), check_finite=False, min_delta_mode="rel", best_from_epoch=2)

    logs = [{"val_loss": v, "loss": 0.5, "val_accuracy": 0.5} for v in [1.0, 0.99, math.inf, 0.97, 0.96, 0.95]]
    whole = make()
    expected = run_monitor(whole, logs)
    for split in range(len(logs) + 1):
        first = make()
        head = run_monitor(first, logs[:split])
        resumed = make()
        resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
        assert head + run_monitor(resumed, logs[split:]) == expected
        assert resumed.state_dict() == whole.state_dict(), split


def test_a_corrupt_policy_state_is_refused() -> None:
    monitor = Monitor(rule=toy_policy())
    monitor.update({"val_loss": 0.5, "loss": 0.4, "val_accuracy": 0.7})
    state = monitor.state_dict()
    state["state"]["rule"]["features"]["history"] = [[1.0, 2.0]]
    with pytest.raises(StateError, match="history"):
        Monitor(rule=toy_policy()).load_state_dict(state)
    state = monitor.state_dict()
    state["state"]["rule"] = {"logit": 0.0}
    with pytest.raises(StateError, match="corrupt"):
        Monitor(rule=toy_policy()).load_state_dict(state)


def test_the_learning_rate_is_optional_and_checked_by_the_monitor_before_anything_changes() -> None:
    policy = toy_policy()
    assert policy.optional == {"lr"} and "lr" not in policy.requires and policy.spec()["lr_metric"] == "lr"
    monitor = Monitor(rule=policy)
    logs = {"val_loss": 0.5, "loss": 0.4, "val_accuracy": 0.7}
    monitor.update(logs)  # no rate: as a constant one
    assert policy.features_now() == {} and isinstance(monitor.rule, LearnedPolicy)
    assert [monitor.rule.features_now()[name] for name in FAMILIES["lr"]] == [1.0, 0.0, 0.0, 0.0]
    before = monitor.state_dict()
    with pytest.raises(ValueError, match="'lr' must be >= 0"):
        monitor.update({**logs, "lr": -0.1})
    with pytest.raises(TypeError, match="metric 'lr' must be a number"):
        monitor.update({**logs, "lr": "0.1"})
    assert monitor.state_dict() == before
    monitor.update({**logs, "lr": 0.1})
    monitor.update({**logs, "lr": 0.025})
    named = monitor.rule.features_now()
    assert named["lr_to_max"] == 0.25 and named["lr_log_to_max"] == pytest.approx(math.log(0.25))
    # Epochs before the first rate logged count as having had it: the trend is since the rate first logged.
    assert named["lr_trend10"] == named["lr_log_to_max"]
    renamed = policy.renamed({"lr": "learning_rate"})
    assert renamed.optional == {"learning_rate"} and renamed.requires == policy.requires


def test_a_policy_without_rate_features_keeps_its_spec_and_old_states() -> None:
    names = [n for n in ALL if FEATURES[n] not in ("budget", "lr")]
    plain = LearnedPolicy(names, [0.0] * len(names), [1.0] * len(names), [0.0] * len(names), 1.0, 0.4, 2, 25)
    plain = LearnedPolicy.from_json(plain.to_json())
    assert plain.lr_metric is None and plain.optional == frozenset()
    assert "lr_metric" not in plain.spec() and "lr_metric" not in plain.to_json()
    monitor = Monitor(rule=plain)
    monitor.update({"val_loss": 0.5, "loss": 0.4, "val_accuracy": 0.7, "lr": -1.0})  # not read: not checked
    state = monitor.state_dict()
    assert "lr" not in state["state"]["rule"]["features"]  # the state as before rate features existed
    # A state without the rate's memory, given to a policy that reads the rate, is refused and says why.
    reader = toy_policy()
    with pytest.raises(StateError, match="no 'lr' memory"):
        reader.load_state_dict(state["state"]["rule"])


def test_a_corrupt_learning_rate_memory_is_refused() -> None:
    monitor = Monitor(rule=toy_policy())
    for t, rate in enumerate([None, 0.1, 0.05]):
        logs = {"val_loss": 0.5 + t, "loss": 0.4, "val_accuracy": 0.7}
        monitor.update(logs if rate is None else {**logs, "lr": rate})
    good = monitor.state_dict()
    fresh = Monitor(rule=toy_policy())
    fresh.load_state_dict(json.loads(json.dumps(good)))
    assert fresh.state_dict() == good
    for change, message in [
        ({"levels": ["nan", -2.0, "nan"]}, "NaN after a rate"),
        ({"levels": [-2.0]}, "list of 3"),
        ({"last": 0.2}, "do not match"),
        ({"max": 0.05}, "do not match"),
        ({"first": "nan"}, "none was logged"),
        ({"at_best": 5.0}, "not within"),
        ({"extra": 1}, "needs the fields"),
    ]:
        state = json.loads(json.dumps(good))
        state["state"]["rule"]["features"]["lr"] |= change
        with pytest.raises(StateError, match=message):
            Monitor(rule=toy_policy()).load_state_dict(state)


# -- the saved format ------------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    policy = toy_policy(monitor={"monitor": "val_loss", "best_from_epoch": 3}, info={"note": "x"})
    path = tmp_path / "policy.json"
    policy.save(path)
    loaded = LearnedPolicy.load(path)
    assert loaded == policy
    assert loaded.to_json() == policy.to_json()
    assert loaded.monitor == {"monitor": "val_loss", "best_from_epoch": 3} and loaded.info == {"note": "x"}
    assert json.loads(path.read_text())["format"] == FORMAT
    assert LearnedPolicy.load(path) == policy


def test_load_reads_a_file_and_load_state_dict_restores_memory(tmp_path: Path) -> None:
    policy = toy_policy()
    policy.check(0, 0.5, 0.5, 0, True, {"loss": 0.4, "val_accuracy": 0.7})
    other = toy_policy()
    other.load_state_dict(policy.state_dict())
    assert other.state_dict() == policy.state_dict()
    policy.save(tmp_path / "p.json")
    assert isinstance(LearnedPolicy.load(tmp_path / "p.json"), LearnedPolicy)
    assert isinstance(policy.load(tmp_path / "p.json"), LearnedPolicy)  # a classmethod, on an instance too


def saved() -> dict[str, Any]:
    return toy_policy().to_json()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something"}, "not a saved policy"),
        ({"version": 2}, "version 2"),
        ({"version": True}, "version True"),
        ({"threshold": 1.5}, "'threshold' must be in"),
        ({"min_wait": 0}, "'min_wait' must be >= 1"),
        ({"max_wait": 1}, "'max_wait' must be >= 2"),
        ({"features": ["log_wait", "nope"]}, "unknown feature 'nope'"),
        ({"features": "log_wait"}, "'features' must be a list"),
        ({"means": [0.0]}, "one number per feature"),
        ({"scales": [-1.0] * TOY}, "'scales' must all be > 0"),
        ({"weights": ["a"] * TOY}, "must be a number"),
        ({"bias": float("nan")}, "'bias' must be finite"),
        ({"families": ["value"]}, "do not match its features"),
        ({"extra": 1}, "unknown field"),
        ({"accuracy_metric": None}, "accuracy features"),
        ({"monitor": [1]}, "'monitor' must be a dict"),
    ],
)
def test_invalid_saved_policies_are_refused_with_a_clear_message(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        LearnedPolicy.from_json(saved() | change)


def test_missing_fields_and_bad_json_are_refused(tmp_path: Path) -> None:
    data = saved()
    del data["bias"]
    with pytest.raises(PolicyError, match="lacks 'bias'"):
        LearnedPolicy.from_json(data)
    with pytest.raises(PolicyError, match="must be JSON"):
        LearnedPolicy.from_json("{not json")
    with pytest.raises(PolicyError, match="JSON object"):
        LearnedPolicy.from_json("[1, 2]")
    path = tmp_path / "broken.json"
    path.write_text('{"format": "x"}')
    with pytest.raises(PolicyError, match=r"broken\.json"):
        LearnedPolicy.load(path)
    assert FORMAT == "earlystop_core.LearnedPolicy" and VERSION == 1


def test_budget_features_need_max_epochs_before_anything_is_decided() -> None:
    policy = LearnedPolicy(["budget_position", "log_wait"], [0.5, 1.0], [0.3, 1.0], [1.0, -1.0], 0.0, 0.5, 2, 20)
    assert policy.needs_budget and policy.max_epochs is None
    with pytest.raises(ValueError, match="max_epochs"):
        Monitor(rule=policy)
    with pytest.raises(ValueError, match="max_epochs"):
        policy.check(0, 1.0, 1.0, 0, True, {})
    bound = policy.bind(100)
    monitor = Monitor(rule=bound)
    monitor.update({"val_loss": 1.0})
    assert bound.max_epochs == 100 and bound.features == policy.features
    assert LearnedPolicy.from_json(policy.to_json(), max_epochs=50).max_epochs == 50


def test_requires_and_log_are_checked_by_the_monitor_before_anything_changes() -> None:
    policy = toy_policy()
    assert policy.requires == {"loss", "val_accuracy"}
    monitor = Monitor(rule=policy)
    with pytest.raises(MissingMetricError, match="'loss'"):
        monitor.update({"val_loss": 0.5, "val_accuracy": 0.7})
    assert monitor.epoch == 0 and monitor.best is None
    with pytest.raises(ValueError, match="log=False"):
        Monitor(monitor="val_accuracy", rule=policy)
    value_only = LearnedPolicy(["log_wait", "gl"], [0.0, 0.0], [1.0, 1.0], [-1.0, 0.0], 1.0, 0.5, 1, 5, log=False)
    assert value_only.requires == frozenset()
    maximising = Monitor(monitor="val_accuracy", rule=value_only)
    assert not maximising.update({"val_accuracy": 0.5}).should_stop


# -- deciding inside a Monitor and a replay --------------------------------------------------------------------------


def overfitting(bottom: int, epochs: int = 60, noise: float = 0.0, seed: int = 0) -> dict[str, list[float]]:
    """A curve whose val_loss falls to epoch ``bottom`` and then rises; test accuracy mirrors it."""
    rng = np.random.default_rng(seed)
    val = [1.0 + 0.002 * (t - bottom) ** 2 + noise * float(rng.normal()) for t in range(epochs)]
    return {
        "val_loss": val,
        "loss": [1.0 / (1 + t) for t in range(epochs)],
        "val_accuracy": [0.9 - 0.1 * (v - 1.0) for v in val],
        "test_accuracy": [0.9 - 0.1 * (v - 1.0) for v in val],
    }


def test_a_policy_stops_inside_a_monitor_with_a_reason_and_restores_the_best() -> None:
    monitor = Monitor(rule=toy_policy(), restore_best_weights=True)
    decisions = [monitor.update(logs) for logs in epochs_of(overfitting(10))]
    stop = next(d for d in decisions if d.should_stop)
    assert stop.restore and stop.best_epoch == 10 and stop.epoch > 10
    assert stop.reason is StopReason.CRITERION_MET and "learned policy" in (stop.detail or "")
    capped = Monitor(rule=toy_policy(bias=50.0, max_wait=7), restore_best_weights=True)
    stop = next(d for d in (capped.update(logs) for logs in epochs_of(overfitting(10))) if d.should_stop)
    assert stop.epoch == 17 and stop.limit == 7 and "max_wait" in (stop.detail or "")


def test_replay_of_a_policy_matches_the_vectorised_simulation() -> None:
    policy = toy_policy()
    bank = {str(i): overfitting(5 + 3 * i, noise=0.01, seed=i) for i in range(6)}
    results = replay(bank, lambda: Monitor(rule=policy, restore_best_weights=True))
    records = record_runs(bank, train_metric="loss", accuracy_metric="val_accuracy", lr_metric="lr")
    columns = [FeatureTracker(True, None, "loss", "val_accuracy", "lr").names.index(n) for n in policy.features]
    means, scales, weights = np.array(policy.means), np.array(policy.scales), np.array(policy.weights)
    logits = [policy.bias + ((r.features[:, columns] - means) / scales) @ weights for r in records]
    cut = math.log(policy.threshold / (1 - policy.threshold))
    saved, regret, stops = simulate(records, logits, policy.min_wait, policy.max_wait, [cut])
    assert [r.stop for r in results] == stops[:, 0].tolist()
    assert [r.saved for r in results] == pytest.approx(saved[:, 0].tolist())
    assert [r.regret for r in results] == pytest.approx(regret[:, 0].tolist())
    one = replay_run(bank["0"], policy.make_monitor)
    assert one.stop == results[0].stop


def test_the_recommended_policy_runs_and_does_not_import_numpy() -> None:
    policy = recommended_policy()
    assert not policy.needs_budget and policy.features
    code = (
        "import sys; from earlystop_core import Monitor; from earlystop_core.policy.learned import recommended_policy;"
        "m = Monitor(rule=recommended_policy(), restore_best_weights=True);"
        "[m.update({'val_loss': 1.0 / (1 + t), 'loss': 0.5, 'val_accuracy': 0.8}) for t in range(30)];"
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- fitting ---------------------------------------------------------------------------------------------------------


def synthetic_bank(
    runs: int = 24, epochs: int = 80
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, str]]]:
    """Overfitting runs whose best epoch varies; the obvious policy stops a few epochs after the minimum."""
    bank, meta = {}, {}
    for i in range(runs):
        bank[str(i)] = overfitting(8 + (i * 7) % 40, epochs=epochs, noise=0.002, seed=i)
        meta[str(i)] = {"run": str(i), "problem": f"p{i % 4}", "epochs": str(epochs)}
    return bank, meta


def test_fitting_on_an_obvious_bank_stops_early_without_regret() -> None:
    bank, meta = synthetic_bank()
    policy = fit_policy(bank, meta, max_regret=0.0)
    assert policy.info["groups"] == 4 and policy.info["cv"]["folds"] == 4
    assert policy.info["cv"]["regret"] <= 0.0 and policy.info["cv"]["feasible"]
    assert policy.needs_budget  # runs_meta has epochs: budget features are used
    assert set(policy.features) == set(ALL) - set(FAMILIES["lr"])  # no run logs a learning rate
    results = replay(bank, lambda: Monitor(rule=policy.bind(80), restore_best_weights=True))
    p20 = replay(bank, lambda: Monitor(patience=20, restore_best_weights=True))
    assert sum(r.saved for r in results) > sum(r.saved for r in p20) + 0.05 * len(bank)
    assert max(r.regret for r in results) < 1e-3


def test_fitting_is_deterministic_and_reads_a_runs_csv(tmp_path: Path) -> None:
    bank, meta = synthetic_bank(runs=12, epochs=50)
    path = tmp_path / "runs.csv"
    path.write_text("run,problem,epochs\n" + "".join(f"{r},{m['problem']},{m['epochs']}\n" for r, m in meta.items()))
    assert read_runs_meta(path)["3"]["problem"] == "p3"
    first = fit_policy(bank, path, budget=False)
    second = fit_policy(bank, str(path), budget=False)
    assert first.to_json() == second.to_json()
    assert not first.needs_budget and first.monitor == {"monitor": "val_loss", "mode": "min"}
    matched = fit_policy(bank, meta, budget=False, max_regret=None, match_patience=20)
    assert matched.info["cv"]["reference"]["patience"] == 20


def test_fitting_validates_its_arguments() -> None:
    bank, meta = synthetic_bank(runs=6, epochs=40)
    with pytest.raises(ValueError, match="at least 2 groups"):
        fit_policy(bank, groups=dict.fromkeys(bank, "one"))
    with pytest.raises(ValueError, match="exactly one regret budget"):
        fit_policy(bank, meta, match_patience=20)
    with pytest.raises(ValueError, match="unknown feature"):
        fit_policy(bank, meta, features=["nope"])
    with pytest.raises(ValueError, match="budget features need"):
        fit_policy(bank, features=["budget_position"])
    with pytest.raises(KeyError, match="test_accuracy"):
        fit_policy({"a": {"val_loss": [1.0, 0.5]}, "b": {"val_loss": [1.0, 0.5]}})
    with pytest.raises(ValueError, match="may not set 'rule'"):
        fit_policy(bank, meta, monitor_options={"rule": None})
    with pytest.raises(ValueError, match="maximised"):
        fit_policy(bank, meta, monitor="val_accuracy", log=True)


def test_fitting_without_training_loss_or_accuracy_uses_what_is_there() -> None:
    bank, meta = synthetic_bank(runs=8, epochs=40)
    plain = {run: {k: curve[k] for k in ("val_loss", "test_accuracy")} for run, curve in bank.items()}
    policy = fit_policy(plain, meta, budget=False)
    assert set(policy.features) == set(FAMILIES["value"]) and policy.requires == frozenset()
    monitor = Monitor(rule=policy, restore_best_weights=True)
    assert not monitor.update({"val_loss": 1.0}).should_stop


def test_fit_logistic_separates_and_is_regularised() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    y = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    _, _, weak, _ = fit_logistic(x, y, np.ones(6), l2=100.0)
    _, _, strong, _ = fit_logistic(x, y, np.ones(6), l2=0.01)
    assert 0 < weak[0] < strong[0]
    _, _, _, bias = fit_logistic(x, np.zeros(6), np.ones(6), l2=1.0)  # one class only: finite, very negative
    assert math.isfinite(bias) and bias < -5


def test_group_folds_and_patience_outcome() -> None:
    folds = group_folds([f"g{i}" for i in range(25)], folds=5, seed=1)
    assert len(folds) == 5 and sorted(np.concatenate(folds).tolist()) == list(range(25))
    bank, _ = synthetic_bank(runs=4, epochs=60)
    records = record_runs(bank)
    saved, regret = patience_outcome(records, 20)
    expected = replay(bank, lambda: Monitor(patience=20, restore_best_weights=True))
    assert saved.tolist() == pytest.approx([r.saved for r in expected])
    assert regret.tolist() == pytest.approx([r.regret for r in expected])


def write_tune_inputs(folder: Path, rate: Callable[[str, int], str] | None = None) -> None:
    """A synthetic bank of 8 runs x 40 epochs as ``curves.csv`` (with an ``lr`` column of ``rate(run, epoch)``
    when given) beside a ``runs.csv`` naming each run's problem."""
    bank, meta = synthetic_bank(runs=8, epochs=40)
    metrics = ["loss", "val_loss", "val_accuracy", "test_accuracy"]
    rows = [",".join(["run", "epoch", *metrics, *(["lr"] if rate else [])])]
    for run, curve in bank.items():
        for t in range(40):
            rows.append(
                ",".join([run, str(t), *(repr(curve[k][t]) for k in metrics), *([rate(run, t)] if rate else [])])
            )
    (folder / "curves.csv").write_text("\n".join(rows) + "\n")
    (folder / "runs.csv").write_text(
        "run,problem,epochs\n" + "".join(f"{r},{m['problem']},40\n" for r, m in meta.items())
    )


def test_the_tune_command_learns_a_policy_by_group_and_saves_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from earlystop_core.cli import main

    write_tune_inputs(tmp_path)
    out = tmp_path / "policy.json"
    assert main(["tune", str(tmp_path / "curves.csv"), "--learn", str(out), "--max-regret", "0.001", "--json"]) == 0
    captured = capsys.readouterr()
    assert "cross-validated over 4 folds of 4 group(s)" in captured.err  # runs.csv beside the curves groups them
    front = json.loads(captured.out)["front"]
    policy = LearnedPolicy.load(out)
    assert policy.info["groups"] == 4 and policy.requires == {"loss", "val_accuracy"}
    assert not policy.needs_budget  # the command's policies need no max_epochs
    assert policy.monitor["keep_best_by"] == "val_accuracy"  # 'auto': every run logs it
    assert policy.info["cv"]["budget"] == 0.001
    assert front and all(set(row) >= {"strategy", "epochs_saved", "regret"} for row in front)
    assert main(["tune", str(tmp_path / "curves.csv"), "--learn", str(out), "--keep-best-by", "none"]) == 0
    assert "keep_best_by" not in LearnedPolicy.load(out).monitor
    assert main(["tune", str(tmp_path / "curves.csv"), "--learn", str(out), "--keep-best-by", "val_auc"]) == 2
    assert "--keep-best-by val_auc: run '0' does not log it" in capsys.readouterr().err
    assert main(["tune", str(tmp_path / "curves.csv"), "--learn", str(out), "--runs", "nowhere.csv"]) == 2
    assert "--runs nowhere.csv: no such file" in capsys.readouterr().err


def test_the_tune_command_learns_schedule_features_when_runs_log_the_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from earlystop_core.cli import main

    # Even runs anneal their rate (cosine), odd ones log none: they count as a constant rate.
    write_tune_inputs(
        tmp_path, lambda run, t: repr(0.1 * 0.5 * (1 + math.cos(math.pi * t / 40))) if int(run) % 2 == 0 else ""
    )
    out = tmp_path / "policy.json"
    assert main(["tune", str(tmp_path / "curves.csv"), "--learn", str(out), "--json"]) == 0
    assert "with schedule features from 'lr'" in capsys.readouterr().err
    policy = LearnedPolicy.load(out)
    assert policy.lr_metric == "lr" and policy.optional == {"lr"}
    # The rate features of the recommended policy: lr_since_best is left out unless named (fit_policy.LEFT_OUT).
    assert set(FAMILIES["lr"]) - LEFT_OUT <= set(policy.features) and not LEFT_OUT & set(policy.features)
    assert main(["tune", str(tmp_path / "curves.csv"), "--learn", str(out), "--lr-metric", "none", "--json"]) == 0
    assert "schedule features" not in capsys.readouterr().err
    plain = LearnedPolicy.load(out)
    assert plain.lr_metric is None and not set(FAMILIES["lr"]) & set(plain.features)


# -- Monitor(policy=...) ---------------------------------------------------------------------------------------------


def policy_epochs(count: int = 60) -> list[dict[str, float]]:
    rng = np.random.default_rng(3)
    losses = [1.0 / (1 + t) + 0.02 * t / count + 0.01 * rng.random() for t in range(count)]
    return [
        {"val_loss": v, "loss": v * 0.8, "val_accuracy": round(0.9 - v / 4 + 0.05 * rng.random(), 2)} for v in losses
    ]


def test_monitor_policy_is_the_rule_set_as_the_policy_was_fitted(tmp_path: Path) -> None:
    policy = toy_policy(monitor={"monitor": "val_loss", "mode": "min", "keep_best_by": "val_accuracy"})
    path = tmp_path / "policy.json"
    policy.save(path)
    explicit = Monitor(rule=policy, keep_best_by="val_accuracy", restore_best_weights=True)
    for form in (policy, path, str(path)):
        monitor = Monitor(policy=form, restore_best_weights=True)
        assert monitor.keep_best_by == "val_accuracy" and monitor.rule == policy
        explicit.reset()
        assert [monitor.update(e) for e in policy_epochs()] == [explicit.update(e) for e in policy_epochs()]
    assert Monitor(policy="recommended").rule == recommended_policy()


def test_monitor_policy_refuses_what_contradicts_it(tmp_path: Path) -> None:
    policy = toy_policy(monitor={"monitor": "val_loss", "mode": "min", "best_from_epoch": 3})
    assert Monitor(policy=policy, best_from_epoch=3).best_from_epoch == 3  # the same value is fine
    with pytest.raises(ValueError, match="fitted with best_from_epoch=3, but best_from_epoch=5 was given"):
        Monitor(policy=policy, best_from_epoch=5)
    with pytest.raises(ValueError, match="fitted with monitor='val_loss', but monitor='loss' was given"):
        Monitor(monitor="loss", policy=policy)
    with pytest.raises(ValueError, match="fitted with mode='min', but mode='max' was given"):
        Monitor(mode="max", policy=policy)
    with pytest.raises(ValueError, match="policy= and rule= both decide"):
        Monitor(policy=policy, rule=policy)
    with pytest.raises(ValueError, match="policy= and patience=5 both decide"):
        Monitor(policy=policy, patience=5)
    with pytest.raises(FileNotFoundError, match="no such file"):
        Monitor(policy=str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="'policy' must be a LearnedPolicy"):
        Monitor(policy=3)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="cannot set"):
        Monitor(policy=toy_policy(monitor={"patience": 3}))


def test_monitor_policy_binds_a_budget_policy_to_max_epochs() -> None:
    policy = LearnedPolicy(["budget_position", "log_wait"], [0.5, 1.0], [0.3, 1.0], [1.0, -1.0], 0.0, 0.5, 2, 20)
    monitor = Monitor(policy=policy, max_epochs=100)
    assert isinstance(monitor.rule, LearnedPolicy) and monitor.rule.max_epochs == 100
    with pytest.raises(ValueError, match="max_epochs"):
        Monitor(policy=policy)


def test_the_recommended_policy_is_what_the_documented_fit_gives_on_the_two_banks() -> None:
    """``fit_policy`` on the dev and shift_dev banks together, with the default's features, refits it exactly."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "curves"
    if not all((shared / bank / "curves.csv.gz").exists() for bank in ("dev", "shift_dev")):
        pytest.skip(f"the dev and shift_dev curve banks are not in {shared}")
    from earlystop_core.formats.long_csv import load_curves

    curves: dict[str, Any] = {}
    meta: dict[str, dict[str, str]] = {}
    for tag, bank in (("dev", "dev"), ("shift", "shift_dev")):  # as docs/scripts/policy_schedules.py loads them
        runs = read_runs_meta(shared / bank / "runs.csv")
        for run, curve in load_curves(shared / bank / "curves.csv.gz").items():
            curves[f"{tag}/{run}"], meta[f"{tag}/{run}"] = curve, runs[run]
    default = recommended_policy()
    fitted = fit_policy(
        curves,
        meta,
        budget=False,
        features=default.features,
        monitor_options={"keep_best_by": "val_accuracy"},
        max_regret=-0.0005,
    )
    assert fitted.features == default.features and fitted.monitor == default.monitor
    assert fitted.lr_metric == default.lr_metric == "lr"
    assert (fitted.min_wait, fitted.max_wait) == (default.min_wait, default.max_wait)
    assert fitted.threshold == pytest.approx(default.threshold, rel=1e-9)
    for name in ("means", "scales", "weights"):
        assert getattr(fitted, name) == pytest.approx(getattr(default, name), rel=1e-6, abs=1e-9), name
