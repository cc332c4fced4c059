"""The testing kit (``earlystop_core.testing``): every built-in rule keeps the contract ``check_rule`` checks, each
deliberately broken rule is caught under the right property with a small counterexample, the strategies draw what
they say, and ``check_monitor_loop`` tells a faithful training loop from a faulty one.

``check_rule`` replaces the hand-written resume tests of single rules (``test_rules.py`` keeps the Monitor
settings': smoothing, weighted scores, plateaus, ``patience="auto"``).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import earlystop_core
from earlystop_core import (
    GL,
    PQ,
    UP,
    AllOf,
    AnyOf,
    AutoPatience,
    Decision,
    DynamicPatience,
    LearnedPolicy,
    Monitor,
    Patience,
    RelativePatience,
    Rule,
    Stalled,
    TimeBudget,
    never,
    recommended_policy,
)
from earlystop_core.testing import (
    PROPERTIES,
    Clock,
    check_monitor_loop,
    check_rule,
    logs,
    metric_sequences,
    monitor_configs,
)

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = settings(deadline=None, max_examples=60)


# -- every built-in rule passes ------------------------------------------------------------------------------------


def toy_policy() -> LearnedPolicy:
    """A policy using every family but the budget, with weights that make it stop now and then."""
    names = ["log_wait", "gl", "trend5", "noise10", "train_gap", "acc_log_wait", "acc_best_gap"]
    count = len(names)
    return LearnedPolicy(names, [0.0] * count, [1.0] * count, [-1.0, 2.0, 1.0, 0.5, 0.3, -0.5, 1.0], 1.0, 0.4, 1, 6)


BUILT_IN: dict[str, Rule | Callable[[Clock], Rule]] = {
    "Patience": Patience(2),
    "Patience(0)": Patience(0),
    "GL": GL(5),
    "UP": UP(2, strip=2),
    "PQ": PQ(0.5, strip=3),
    "Stalled": Stalled(3),
    "Stalled log": Stalled(2, log=True),
    "RelativePatience": RelativePatience(0.25, 2, 6),
    "DynamicPatience": DynamicPatience(3, 1, 6, grow=2, shrink=1, significant=0.1),
    "AutoPatience": AutoPatience(30, 500),
    "LearnedPolicy": toy_policy(),
    "recommended_policy": recommended_policy(),
    "budget policy": LearnedPolicy(
        ["budget_position", "log_wait"], [0.5, 0.0], [0.3, 1.0], [1.0, -1.0], 0.0, 0.5, 1, 9, max_epochs=20, log=False
    ),
    "never": never,
    "TimeBudget": lambda clock: TimeBudget(60, clock=clock),
    "TimeBudget | Patience": lambda clock: Patience(3) | TimeBudget(45, clock=clock),
    "composition": Patience(6) | (Patience(2) & UP(1, strip=2)) | GL(40) | Stalled(3, log=True),
    "AllOf": Patience(1) & Stalled(2) & PQ(0.5, strip=2),
}


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_rule_passes_check_rule(name: str) -> None:
    check_rule(BUILT_IN[name])


def test_the_built_in_rules_checked_are_every_rule_the_package_exports() -> None:
    exported = {obj for obj in vars(earlystop_core).values() if isinstance(obj, type) and issubclass(obj, Rule)}
    checked: set[type] = set()
    for rule in BUILT_IN.values():
        todo = [rule if isinstance(rule, Rule) else rule(Clock())]
        while todo:
            part = todo.pop()
            checked.add(type(part))
            todo.extend(part.rules if isinstance(part, (AnyOf, AllOf)) else ())
    assert exported - {Rule} <= checked, exported - {Rule} - checked


# -- deliberately broken rules are caught ---------------------------------------------------------------------------


class Streak(Rule):
    """Stop after ``epochs`` epochs in a row without improvement, counted by the rule itself (a correct rule)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.streak = 0

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        self.streak = 0 if improved else self.streak + 1
        return self.streak >= self.epochs

    def spec(self) -> dict[str, Any]:
        return {"rule": type(self).__name__, "epochs": self.epochs}

    def reset(self) -> None:
        self.streak = 0

    def state_dict(self) -> Any:
        return {"streak": self.streak}

    def load_state_dict(self, state: Any) -> None:
        self.streak = state["streak"]


class Forgetful(Streak):
    """Keeps no state: a resumed run starts counting again."""

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None:
        pass


class NoReset(Streak):
    """Forgets to forget: reset() leaves the count of the last run."""

    def reset(self) -> None:
        pass


class Coin(Streak):
    """Stops at random on non-improving epochs."""

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        super().check(epoch, value, best, wait, improved, logs)
        return not improved and random.random() < 0.5


class Target(Rule):
    """Stops once the value reaches a target: on an improving epoch, without saying it may."""

    def __init__(self, target: float) -> None:
        self.target = target

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        return value <= self.target

    def spec(self) -> dict[str, Any]:
        return {"rule": "Target", "target": self.target}


class SaysTarget(Target):
    """The same, saying it may stop on an improving epoch: not held to it."""

    stops_on_improvement = True

    def spec(self) -> dict[str, Any]:
        return {"rule": "SaysTarget", "target": self.target}


class Chatty(Streak):
    """Puts its memory in its spec (and takes it as an argument, so that a new rule's spec rebuilds it)."""

    def __init__(self, epochs: int, streak: int = 0) -> None:
        super().__init__(epochs)
        self.streak = streak

    def spec(self) -> dict[str, Any]:
        return {"rule": "Chatty", "epochs": self.epochs, "streak": self.streak}


class Renamed(Streak):
    """A spec whose parameter names are not the constructor's."""

    def spec(self) -> dict[str, Any]:
        return {"rule": "Renamed", "n": self.epochs}


class Tupled(Streak):
    """Saves a tuple, which JSON reads back as a list."""

    def state_dict(self) -> Any:
        return {"streak": (self.streak,)}

    def load_state_dict(self, state: Any) -> None:
        self.streak = state["streak"][0]


class Last(Rule):
    """Stops after ``epochs`` rises in a row; saves the last value as a float, NaN and inf included."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.reset()

    def reset(self) -> None:
        self.last: float | None = None
        self.ups = 0

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        self.ups = self.ups + 1 if self.last is not None and value > self.last else 0
        self.last = value
        return self.ups >= self.epochs and not improved

    def spec(self) -> dict[str, Any]:
        return {"rule": "Last", "epochs": self.epochs}

    def state_dict(self) -> Any:
        return {"last": self.last, "ups": self.ups}

    def load_state_dict(self, state: Any) -> None:
        self.last, self.ups = state["last"], state["ups"]


class RawLogs(Streak):
    """Reads the monitored metric from the logs, unsigned: wrong in mode='max'."""

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        self.streak = self.streak + 1 if best is not None and logs["val_loss"] >= best else 0
        return self.streak >= self.epochs and not improved


def caught(rule: Rule | Callable[[Clock], Rule], **options: Any) -> str:
    with pytest.raises(AssertionError) as error:
        check_rule(rule, **options)
    return str(error.value)


def shown(message: str, metric: str = "val_loss") -> list[Any]:
    """The values of ``metric`` in a counterexample (the first such line)."""
    line = next(line for line in message.splitlines() if line.strip().startswith(f"{metric}:"))
    values: list[Any] = eval(line.split(":", 1)[1].strip(), {"nan": math.nan, "inf": math.inf})
    return values


def test_a_rule_forgetting_its_memory_on_resume_is_caught_with_a_small_counterexample() -> None:
    message = caught(Forgetful(3))
    assert message.startswith("check_rule(Forgetful(epochs=3)): property 'resume' does not hold: a Monitor saved after")
    assert "counterexample (shrunk by hypothesis):" in message
    assert re.search(r"split: the state saved after epoch \d+ \(rule's state None\), loaded into a new", message)
    assert "uninterrupted: stop (CRITERION_MET)" in message and "resumed:       continue" in message
    assert "should_stop by epoch:" in message
    assert shown(message) == [1.0, 1.0, 1.0, 1.0]  # shrunk: the shortest run that shows it, of one repeated value
    assert Streak(3).state_dict() == {"streak": 0}
    check_rule(Streak(3))  # the same rule, saving its count, passes


@pytest.mark.parametrize(
    ("rule", "prop", "says"),
    [
        (NoReset(2), "reset", "after reset() the rule remembers the run before"),
        (Coin(1), "deterministic", "two Monitors with the same rule, fed the same logs, decide differently"),
        (Target(0.5), "improved", "which improved on the best"),
        (Chatty(2), "spec", "spec() changes as the rule sees epochs"),
        (Renamed(2), "spec", "the rule cannot be rebuilt from its spec {'rule': 'Renamed', 'n': 2}"),
        (Tupled(2), "json", "changes in a JSON round trip"),
        (Last(2), "json", "is not strict JSON (ValueError: Out of range float values are not JSON compliant)"),
        (RawLogs(2), "mode", "in mode='max' on the negated values the rule decides differently"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.isidentifier() else None,
)
def test_each_broken_rule_is_caught_under_its_property(rule: Rule, prop: str, says: str) -> None:
    message = caught(rule)
    first = message.splitlines()[0]
    assert first.startswith(f"check_rule({rule!r}): property {prop!r} does not hold: "), first
    assert says in first
    assert "counterexample (shrunk by hypothesis):" in message
    assert len(message.splitlines()) < 30  # readable: a handful of epochs, not a dump


def test_the_counterexamples_name_what_a_user_needs_to_fix() -> None:
    json_message = caught(Last(2), properties=["json"])
    assert "check_finite=False" in json_message  # only then does a NaN reach a rule
    assert "the rule's state:" in json_message and "write non-finite floats as the strings" in json_message
    reset_message = caught(NoReset(2), properties=["reset"])
    assert "the run before reset():" in reset_message and "the run after it:" in reset_message
    improved_message = caught(Target(0.5), properties=["improved"])
    assert "stops_on_improvement = True" in improved_message
    spec_message = caught(Renamed(2), properties=["spec"])
    assert "TypeError" in spec_message and "from_spec=" in spec_message
    mode_message = caught(RawLogs(2), properties=["mode"])
    assert "mode='min':" in mode_message and "mode='max', negated:" in mode_message


def test_a_rule_that_says_it_may_stop_on_an_improving_epoch_is_not_held_to_it() -> None:
    check_rule(SaysTarget(0.5))


def test_a_broken_part_is_caught_in_a_composition_too() -> None:
    message = caught(Forgetful(3), properties=["composition"])
    assert message.startswith("check_rule(Forgetful(epochs=3)): property 'composition' does not hold: in ")
    assert "Patience(2)" in message


def test_from_spec_says_how_to_rebuild_a_rule() -> None:
    check_rule(Renamed(2), properties=["spec"], from_spec=lambda spec: Renamed(spec["n"]))


def test_a_clock_reading_rule_without_a_factory_and_a_broken_one_with_one() -> None:
    class Stopwatch(Rule):
        """Counts time from its construction, and saves the time it started (a wall-clock time, not the time
        spent): a resumed run counts the pause between saving and loading as training time."""

        replayable = False
        stops_on_improvement = True

        def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
            self.seconds, self.clock = seconds, clock
            self.started = clock()

        def reset(self) -> None:
            self.started = self.clock()

        def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
            return self.clock() - self.started >= self.seconds

        def spec(self) -> dict[str, Any]:
            return {"rule": "Stopwatch", "seconds": self.seconds}

        def state_dict(self) -> Any:
            return {"started": self.started}

        def load_state_dict(self, state: Any) -> None:
            self.started = state["started"]

    message = caught(lambda clock: Stopwatch(60, clock), properties=["resume"])
    assert "property 'resume' does not hold" in message
    assert "seconds per epoch on the clock:" in message and "s later (not training time)" in message


def test_the_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown property 'speed'; properties: deterministic, json"):
        check_rule(Patience(2), properties=["speed"])
    with pytest.raises(TypeError, match="check_rule takes a Rule, or a factory taking a Clock"):
        check_rule(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="the factory returned int"):
        check_rule(lambda clock: 3)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="'partner' must be a Rule"):
        check_rule(Patience(2), partner="Patience(3)")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'properties' must be a list of property names"):
        check_rule(Patience(2), properties="resume")


class Counting(Streak):
    """Counts the Monitors it is copied into (one per run the kit makes)."""

    copies = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Counting:
        Counting.copies += 1
        clone = Counting(self.epochs)
        clone.streak = self.streak
        return clone


def test_max_examples_and_settings_size_the_check_and_the_default_is_deterministic() -> None:
    Counting.copies = 0
    check_rule(Counting(2), properties=["deterministic"], max_examples=3)
    few = Counting.copies
    Counting.copies = 0
    check_rule(Counting(2), properties=["deterministic"], settings=settings(max_examples=12, database=None))
    assert 0 < few < Counting.copies
    first, second = caught(Forgetful(2), properties=["resume"]), caught(Forgetful(2), properties=["resume"])
    assert first == second  # the same counterexample every time: no flaky CI


# -- the strategies -------------------------------------------------------------------------------------------------


@SETTINGS
@given(metric_sequences())
def test_loss_like_sequences_are_finite_and_non_negative(run: list[float | None]) -> None:
    assert len(run) <= 30
    assert all(value is not None and math.isfinite(value) and value >= 0.0 for value in run)


@SETTINGS
@given(metric_sequences(direction="max", min_size=5, max_size=8, non_finite=True, missing=True))
def test_accuracy_like_sequences_lie_in_0_1_and_carry_what_was_asked(run: list[float | None]) -> None:
    assert 5 <= len(run) <= 8
    finite = [value for value in run if value is not None and math.isfinite(value)]
    assert all(0.0 <= value <= 1.0 for value in finite)


@SETTINGS
@given(metric_sequences(noise=0.0, plateaus=False, spikes=False, overfitting=False, min_size=2))
def test_a_smooth_curve_never_rises(run: list[float | None]) -> None:
    values = [value for value in run if value is not None]
    assert all(later <= earlier for earlier, later in itertools.pairwise(values))


@SETTINGS
@given(metric_sequences(non_finite=[math.inf], missing=True, max_size=12))
def test_only_the_non_finite_values_asked_for_are_injected(run: list[float | None]) -> None:
    assert all(value is None or value == math.inf or math.isfinite(value) for value in run)


@SETTINGS
@given(metric_sequences(values=st.sampled_from([0.25, 0.5]), max_size=4))
def test_values_draws_each_epoch_from_a_strategy(run: list[float | None]) -> None:
    assert set(run) <= {0.25, 0.5} and len(run) <= 4


def test_every_feature_of_a_curve_turns_up() -> None:
    seen: dict[str, bool] = {"nan": False, "inf": False, "-inf": False, "missing": False, "tie": False, "rise": False}

    @settings(max_examples=150, database=None, derandomize=True)
    @given(metric_sequences(non_finite=True, missing=True))
    def record(run: list[float | None]) -> None:
        seen["nan"] |= any(v is not None and math.isnan(v) for v in run)
        seen["inf"] |= math.inf in run
        seen["-inf"] |= -math.inf in run
        seen["missing"] |= None in run
        pairs = [(a, b) for a, b in itertools.pairwise(run) if a is not None and b is not None]
        seen["tie"] |= any(a == b and math.isfinite(a) for a, b in pairs)
        seen["rise"] |= any(math.isfinite(a) and math.isfinite(b) and b > a for a, b in pairs)

    record()
    assert all(seen.values()), seen


@SETTINGS
@given(logs(non_finite=True, missing=True, extra=["grad_norm"], max_size=15))
def test_logs_are_consistent_with_each_other(run: list[dict[str, float]]) -> None:
    for entry in run:
        assert set(entry) in ({"loss", "grad_norm"}, {"loss", "val_loss", "val_accuracy", "grad_norm"})
        assert math.isfinite(entry["loss"]) and entry["loss"] >= 0.0 and entry["grad_norm"] > 0.0
        if "val_loss" in entry and math.isfinite(entry["val_loss"]):
            assert 0.0 <= entry["val_accuracy"] <= 1.0 / (1.0 + entry["val_loss"]) + 1e-6
        elif "val_loss" in entry:
            assert math.isnan(entry["val_accuracy"])


@SETTINGS
@given(logs(noise=0.0, spikes=False, max_size=15))
def test_without_noise_accuracy_orders_the_epochs_as_the_loss_does(run: list[dict[str, float]]) -> None:
    for a in run:
        for b in run:
            if a["val_loss"] < b["val_loss"]:
                assert a["val_accuracy"] >= b["val_accuracy"]


@SETTINGS
@given(logs(names={"val_loss": "eval_loss", "loss": "train_loss"}, max_size=5))
def test_logs_use_the_names_asked_for(run: list[dict[str, float]]) -> None:
    assert all(set(entry) == {"train_loss", "eval_loss", "val_accuracy"} for entry in run)


@SETTINGS
@given(
    config=monitor_configs(non_finite=True, missing=True, beyond_keras=True),
    run=logs(non_finite=True, missing=True),
)
def test_monitor_configs_are_valid_and_run(config: dict[str, Any], run: list[dict[str, float]]) -> None:
    monitor = Monitor(**config)
    for entry in run:
        monitor.update(entry)
    low, high = config["stopping_threshold"], config["divergence_threshold"]
    if low is not None and high is not None:
        assert (low < high) == (config["mode"] == "min")


@SETTINGS
@given(monitor_configs(mode="max", rule=GL(5), stopping_threshold=False, values=st.just(0.5)))
def test_monitor_configs_take_a_rule_and_leave_out_what_was_asked(config: dict[str, Any]) -> None:
    assert config["rule"] == GL(5) and "patience" not in config and "check_finite" not in config
    assert config["mode"] == "max" and config["stopping_threshold"] is None
    assert config["baseline"] in (None, 0.5)
    Monitor(**config)


def test_the_strategies_refuse_what_they_cannot_draw() -> None:
    with pytest.raises(ValueError, match="direction must be 'min'"):
        metric_sequences(direction="up")
    with pytest.raises(ValueError, match=r"'noise' must be a number in \[0, 1\)"):
        metric_sequences(noise=1.5)
    with pytest.raises(ValueError, match="min_size"):
        metric_sequences(min_size=5, max_size=2)
    with pytest.raises(ValueError, match="non_finite takes non-finite values"):
        metric_sequences(non_finite=[1.0])
    with pytest.raises(ValueError, match="repeats 'loss'"):
        logs(extra=["loss"])
    with pytest.raises(TypeError, match="'extra' must be a list of metric names"):
        logs(extra="grad_norm")
    with pytest.raises(TypeError, match="'names' must map metric names"):
        logs(names={"val_loss": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="mode must be 'min', 'max' or None"):
        monitor_configs(mode="auto")
    with pytest.raises(TypeError, match="'rule' must be a Rule"):
        monitor_configs(rule="GL(5)")  # type: ignore[arg-type]


# -- check_monitor_loop ---------------------------------------------------------------------------------------------


def plain_loop(run: list[dict[str, float]], config: dict[str, Any]) -> dict[str, Any]:
    monitor = Monitor(**config)
    decisions = []
    for entry in run:
        decisions.append(monitor.update(entry))
        if decisions[-1].should_stop:
            break
    restored = monitor.best_epoch if monitor.finish().restore or (decisions and decisions[-1].restore) else None
    return {
        "decisions": decisions,
        "epochs": len(decisions),
        "stopped_epoch": monitor.stopped_epoch,
        "best_epoch": monitor.best_epoch,
        "restored_epoch": restored,
    }


def resuming_loop(run: list[dict[str, float]], config: dict[str, Any], resume_at: int) -> list[Decision]:
    monitor = Monitor(**config)
    decisions = []
    for epoch, entry in enumerate(run):
        if epoch == resume_at:
            saved = json.dumps(monitor.state_dict())
            monitor = Monitor(**config)
            monitor.load_state_dict(json.loads(saved))
        decisions.append(monitor.update(entry))
        if decisions[-1].should_stop:
            break
    return decisions


def test_a_faithful_loop_passes_with_every_outcome() -> None:
    check_monitor_loop(plain_loop)
    check_monitor_loop(resuming_loop, resume=True)
    check_monitor_loop(lambda run, config: plain_loop(run, config)["decisions"])


def test_a_loop_restarting_instead_of_resuming_is_caught() -> None:
    def restarting(run: list[dict[str, float]], config: dict[str, Any], resume_at: int) -> dict[str, Any]:
        monitor = Monitor(**config)
        for epoch, entry in enumerate(run):
            if epoch == resume_at:
                monitor = Monitor(**config)  # forgot load_state_dict
            if monitor.update(entry, epoch=epoch).should_stop:
                return {"stopped_epoch": epoch}
        return {"stopped_epoch": None}

    with pytest.raises(AssertionError) as error:
        check_monitor_loop(restarting, resume=True)
    message = str(error.value)
    assert message.startswith("check_monitor_loop(restarting): the loop's stopped_epoch is ")
    assert "resume_at:" in message and "config:" in message


def test_a_loop_off_by_one_epoch_is_caught() -> None:
    def late(run: list[dict[str, float]], config: dict[str, Any]) -> dict[str, Any]:
        monitor = Monitor(**config)
        for epoch, entry in enumerate(run):
            if monitor.update(entry).should_stop:
                return {"epochs": epoch + 2}  # runs one more epoch than it was told
        return {"epochs": len(run)}

    with pytest.raises(AssertionError, match=r"the loop's epochs is \d+, a plain Monitor's is \d+"):
        check_monitor_loop(late)


def test_a_loop_restoring_nothing_is_caught() -> None:
    def forgets_to_restore(run: list[dict[str, float]], config: dict[str, Any]) -> dict[str, Any]:
        return {**plain_loop(run, config), "restored_epoch": None}

    with pytest.raises(AssertionError, match="restored_epoch is None, a plain Monitor's is"):
        check_monitor_loop(forgets_to_restore)


def test_a_loop_must_say_what_it_did() -> None:
    with pytest.raises(TypeError, match="the loop must return a dict with some of decisions, epochs"):
        check_monitor_loop(lambda run, config: 3)
    with pytest.raises(TypeError, match="the loop must return a dict"):
        check_monitor_loop(lambda run, config: {"stop": 3})
    with pytest.raises(TypeError, match="'loop' must be a callable"):
        check_monitor_loop(3)  # type: ignore[arg-type]


def test_a_loop_that_raises_is_reported_with_the_logs() -> None:
    def fragile(run: list[dict[str, float]], config: dict[str, Any]) -> dict[str, Any]:
        for entry in run:
            if math.isnan(entry.get("val_loss", 0.0)):
                raise ValueError("NaN loss")
        return plain_loop(run, config)

    with pytest.raises(AssertionError, match=r"the loop raised ValueError: NaN loss(.|\n)*val_loss: +\[nan\]"):
        check_monitor_loop(fragile)


def test_check_monitor_loop_takes_configs_and_runs() -> None:
    seen: list[Mapping[str, Any]] = []

    def recording(run: list[dict[str, float]], config: dict[str, Any]) -> dict[str, Any]:
        seen.append(config)
        return plain_loop(run, config)

    check_monitor_loop(recording, configs=monitor_configs(rule=Patience(1) | GL(5), mode="min"), max_examples=5)
    assert seen and all(config["rule"] == Patience(1) | GL(5) for config in seen)


# -- an optional dependency ----------------------------------------------------------------------------------------


def test_importing_earlystop_core_does_not_import_hypothesis() -> None:
    code = "import sys, earlystop_core; import earlystop_core.adapters; assert 'hypothesis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_without_hypothesis_the_kit_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n    import earlystop_core.testing\nexcept ImportError as error:\n    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True).stdout
    assert 'pip install "earlystop[testing]"' in out


def test_the_extra_installs_hypothesis_and_the_kit_is_not_in_the_flat_api() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "earlystop"
    assert project["optional-dependencies"]["testing"] == ["hypothesis>=6.100"]
    assert any(r.startswith("hypothesis") for r in project["optional-dependencies"]["test"])
    import earlystop_core.testing as kit

    assert kit.__all__ == sorted(kit.__all__)
    assert "testing" not in earlystop_core.__all__ and "check_rule" not in earlystop_core.__all__
    assert PROPERTIES == ("deterministic", "json", "resume", "reset", "spec", "improved", "mode", "composition")


def test_logs_a_plain_monitor_refuses_must_be_refused_by_the_loop_too() -> None:
    weighted = st.just({"monitor": {"val_loss": 1.0, "val_accuracy": 1.0}, "patience": 2})  # on_missing="raise"
    check_monitor_loop(plain_loop, configs=weighted, max_examples=30)

    def lenient(run: list[dict[str, float]], config: dict[str, Any]) -> dict[str, Any]:
        return plain_loop([entry for entry in run if "val_loss" in entry], config)  # drops what it cannot read

    with pytest.raises(AssertionError, match="a plain Monitor raises MissingMetricError"):
        check_monitor_loop(lenient, configs=weighted)
