"""The scalar replay: FINDINGS figures on the dev bank, hand-computed cases, and agreement with Monitor.update."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop_core import GL, PQ, UP, Monitor, Patience, Rule, Stalled
from earlystop_core.curves import best_epoch
from earlystop_core.formats.long_csv import load_curves
from earlystop_core.replay.scalar import (
    RunResult,
    Summary,
    paired_bootstrap,
    replay,
    replay_run,
    summarize,
)

ROOT = Path(__file__).resolve().parent.parent
BANK = ROOT.parent / "shared" / "curves" / "dev"


# -- the FINDINGS protocol on the dev bank -------------------------------------


@pytest.fixture(scope="module")
def dev_curves() -> dict[str, dict[str, list[float]]]:
    path = BANK / "curves.csv.gz"
    if not path.exists():
        pytest.skip(f"the dev curve bank is not at {BANK}")
    return load_curves(path)


@pytest.mark.parametrize(
    ("patience", "saved", "regret"),
    [(10, "43.0%", "0.51"), (20, "32.5%", "0.07")],
)
def test_findings_figures_are_reproduced(
    dev_curves: dict[str, dict[str, list[float]]], patience: int, saved: str, regret: str
) -> None:
    results = replay(dev_curves, lambda: Monitor(monitor="val_loss", patience=patience, restore_best_weights=True))
    summary = summarize(results)
    assert summary.runs == 1200
    assert (f"{summary.saved:.1%}", f"{100 * summary.regret:.2f}") == (saved, regret)


# -- hand-computed cases ------------------------------------------------------------

CURVE = {
    "val_loss": [1.0, 0.8, 0.9, 0.95, 0.7],
    "test_accuracy": [0.50, 0.70, 0.65, 0.60, 0.80],
    "test_loss": [1.10, 0.75, 0.80, 0.90, 0.60],
}


def patience(p: int, restore: bool = True, **options: Any) -> Callable[[], Monitor]:
    return lambda: Monitor(monitor="val_loss", patience=p, restore_best_weights=restore, **options)


def test_a_max_target_regret_is_oracle_minus_kept_and_gain_is_kept_minus_last() -> None:
    r = replay_run(CURVE, patience(2))
    # best 0.8 at epoch 1; epochs 2 and 3 do not improve: stop at 3, keep 1; the oracle is epoch 4.
    assert (r.stop, r.stopped, r.kept, r.oracle, r.epochs) == (3, True, 1, 4, 5)
    assert r.saved == pytest.approx(1 / 5)
    assert r.regret == pytest.approx(0.80 - 0.70)  # positive: worse than the oracle
    assert r.gain == pytest.approx(0.70 - 0.80)  # negative: worse than the last epoch


def test_a_min_target_keeps_the_sign_conventions() -> None:
    r = replay_run(CURVE, patience(2), target="test_loss", target_mode="min")
    assert r.regret == pytest.approx(0.75 - 0.60)  # kept loss above the oracle's: positive regret
    assert r.gain == pytest.approx(0.60 - 0.75)  # kept loss above the last epoch's: negative gain


def test_a_kept_epoch_better_than_the_oracle_has_negative_regret_and_positive_gain() -> None:
    curve = {"val_loss": [1.0, 0.5, 0.6, 0.4, 0.9], "test_accuracy": [0.5, 0.9, 0.8, 0.7, 0.6]}
    r = replay_run(curve, patience(1))  # stops at 2 keeping 1; the oracle is epoch 3
    assert (r.stop, r.kept, r.oracle) == (2, 1, 3)
    assert r.regret == pytest.approx(-0.2)
    assert r.gain == pytest.approx(0.3)
    r = replay_run(curve, patience(1), target="test_accuracy", target_mode="auto")
    assert r.regret == pytest.approx(-0.2)


def test_a_run_that_never_stops_ends_with_finish() -> None:
    r = replay_run(CURVE, patience(10))
    assert (r.stopped, r.stop, r.kept, r.oracle, r.saved) == (False, 4, 4, 4, 0.0)
    assert (r.regret, r.gain) == (0.0, 0.0)
    early = {"val_loss": [0.5, 0.6, 0.7], "test_accuracy": [0.9, 0.8, 0.7]}
    r = replay_run(early, patience(10))
    assert (r.stopped, r.stop, r.kept, r.saved) == (False, 2, 0, 0.0)  # finish() restores epoch 0
    assert r.gain == pytest.approx(0.2)


def test_without_restore_the_stop_epoch_is_kept() -> None:
    r = replay_run(CURVE, patience(2, restore=False))
    assert (r.stop, r.kept) == (3, 3)
    assert r.regret == pytest.approx(0.80 - 0.60)
    never = replay_run(CURVE, patience(10, restore=False))
    assert (never.stopped, never.kept) == (False, 4)


def test_the_oracle_follows_the_monitored_quantity_and_its_mode() -> None:
    curve = {"val_accuracy": [0.5, 0.7, 0.7, 0.6], "test_accuracy": [0.4, 0.6, 0.65, 0.5]}
    r = replay_run(curve, lambda: Monitor(monitor="val_accuracy", patience=1, restore_best_weights=True))
    assert (r.stop, r.kept, r.oracle) == (2, 1, 1)  # first of the tied best epochs
    assert r.regret == 0.0


def test_a_weighted_monitor_oracle_is_the_best_epoch_of_its_score() -> None:
    curve = {
        "val_loss": [1.0, 0.8, 0.7, 0.75],
        "val_accuracy": [0.5, 0.6, 0.55, 0.9],
        "test_accuracy": [0.5, 0.6, 0.7, 0.8],
    }

    def make() -> Monitor:
        return Monitor(monitor={"val_loss": 1.0, "val_accuracy": 1.0}, patience=5)

    # score = val_accuracy - val_loss: -0.5, -0.2, -0.15, 0.15 -> epoch 3
    assert replay_run(curve, make).oracle == 3
    assert replay_run(curve, make, reference="val_loss").oracle == 2


def test_best_from_epoch_is_the_monitors_choice_of_kept_epoch() -> None:
    curve = {"val_loss": [0.1, 0.5, 0.4, 0.3, 0.35, 0.36], "test_accuracy": [0.9, 0.5, 0.6, 0.7, 0.6, 0.6]}
    r = replay_run(curve, patience(2, best_from_epoch=3))
    # Patience counts from epoch 3 on, but epoch 0 (the lowest) is still the one kept.
    assert (r.stop, r.kept, r.oracle) == (5, 0, 0)
    assert r.regret == pytest.approx(0.0)


def test_bad_curves_are_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="no epochs"):
        replay_run({"val_loss": [], "test_accuracy": []}, patience(1))
    with pytest.raises(ValueError, match="one value per epoch"):
        replay_run({"val_loss": [1.0], "test_accuracy": [0.5, 0.6]}, patience(1))
    with pytest.raises(KeyError, match="test_accuracy"):
        replay_run({"val_loss": [1.0]}, patience(1))
    with pytest.raises(KeyError, match="val_acc"):
        replay_run(CURVE, patience(1), reference="val_acc")
    with pytest.raises(ValueError, match="mode"):
        replay_run(CURVE, patience(1), target_mode="best")


def test_best_epoch_skips_non_finite_values_and_takes_the_first_tie() -> None:
    assert best_epoch([math.nan, 2.0, 1.0, 1.0, math.inf]) == 2
    assert best_epoch([0.1, 0.3, 0.3], "max") == 1
    with pytest.raises(ValueError, match="no finite value"):
        best_epoch([math.nan])


def test_replay_names_the_failing_run_or_skips_it() -> None:
    curves = {
        "ok": {"val_loss": [1.0, 0.9, 0.95], "test_accuracy": [0.5, 0.6, 0.55]},
        "negative": {"val_loss": [1.0, -0.5, 0.5], "test_accuracy": [0.5, 0.6, 0.55]},
    }

    def make() -> Monitor:
        return Monitor(rule=Patience(5) | Stalled(1, log=True))

    with pytest.raises(ValueError, match="log") as raised:
        replay(curves, make)
    assert any("'negative'" in note for note in getattr(raised.value, "__notes__", ["'negative'"]))
    results = replay(curves, make, on_error="skip")
    assert [r.run for r in results] == ["ok"]
    with pytest.raises(ValueError, match="on_error"):
        replay(curves, make, on_error="ignore")


def test_summarize_takes_means_over_runs() -> None:
    a = RunResult("a", epochs=10, stop=4, stopped=True, kept=2, oracle=3, saved=0.5, regret=0.02, gain=0.01)
    b = RunResult("b", epochs=20, stop=19, stopped=False, kept=19, oracle=19, saved=0.0, regret=0.0, gain=0.03)
    assert summarize([a, b]) == Summary(runs=2, epochs_run=12.5, saved=0.25, regret=0.01, gain=0.02)
    with pytest.raises(ValueError, match="no results"):
        summarize([])


def test_paired_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    a = [0.0, 0.1, 0.5, 0.0, 0.2, 0.0, 0.3]
    b = [0.0, 0.0, 0.1, 0.1, 0.0, 0.0, 0.1]
    mean, low, high = paired_bootstrap(a, b)
    assert mean == pytest.approx(sum(x - y for x, y in zip(a, b, strict=True)) / len(a))
    assert low <= mean <= high
    assert paired_bootstrap(a, b) == (mean, low, high)
    assert paired_bootstrap(a, b, seed=1) != (mean, low, high)
    assert paired_bootstrap([0.3, 0.3], [0.1, 0.1]) == pytest.approx((0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([0.1], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="'n'"):
        paired_bootstrap([0.1], [0.2], n=0)


# -- agreement with feeding Monitor.update by hand ---------------------------------------

VALUES = st.integers(0, 40).map(lambda k: k / 8)  # coarse: ties and plateaus are common
CURVES = st.integers(1, 30).flatmap(
    lambda n: st.fixed_dictionaries(
        {
            "val_loss": st.lists(VALUES, min_size=n, max_size=n),
            "loss": st.lists(VALUES.map(lambda v: v + 0.125), min_size=n, max_size=n),
            "test_accuracy": st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
        }
    )
)


def by_hand(curve: dict[str, list[float]], make: Callable[[], Monitor]) -> tuple[bool, int, int, int]:
    """The replay's definitions written out plainly: (stopped, stop, kept, oracle)."""
    monitor = make()
    n = len(curve["val_loss"])
    stopped, stop, restore, best = False, n - 1, False, None
    for epoch in range(n):
        decision = monitor.update({name: values[epoch] for name, values in curve.items()})
        if decision.should_stop:
            stopped, stop, restore, best = True, epoch, decision.restore, decision.best_epoch
            break
    else:
        final = monitor.finish()
        restore, best = final.restore, final.best_epoch
    kept = best if restore and best is not None else stop
    values: Sequence[float] = curve["val_loss"]
    oracle = min(range(n), key=lambda i: (values[i], i))
    return stopped, stop, kept, oracle


@settings(deadline=None, max_examples=200)
@given(
    curve=CURVES,
    p=st.integers(0, 6),
    restore=st.booleans(),
    min_delta=st.sampled_from([0.0, 0.125, 0.3]),
    warm_up=st.integers(0, 3),
    smoothing=st.sampled_from([0.0, 0.5]),
    rule=st.sampled_from([None, "GL", "UP", "PQ"]),
)
def test_replay_run_agrees_with_feeding_monitor_update(
    curve: dict[str, list[float]],
    p: int,
    restore: bool,
    min_delta: float,
    warm_up: int,
    smoothing: float,
    rule: str | None,
) -> None:
    rules: dict[str | None, Rule | None] = {
        None: None,
        "GL": GL(5) | Patience(p),
        "UP": UP(2, strip=2),
        "PQ": PQ(1, strip=2, train_monitor="loss"),
    }

    def make() -> Monitor:
        return Monitor(
            patience=0 if rule else p,
            restore_best_weights=restore,
            min_delta=min_delta,
            best_from_epoch=warm_up,
            smoothing=smoothing,
            rule=rules[rule],
        )

    r = replay_run(curve, make)
    stopped, stop, kept, oracle = by_hand(curve, make)
    n = len(curve["val_loss"])
    target = curve["test_accuracy"]
    assert (r.stopped, r.stop, r.kept, r.oracle, r.epochs) == (stopped, stop, kept, oracle, n)
    assert r.saved == (n - 1 - stop) / n
    assert r.regret == target[oracle] - target[kept]
    assert r.gain == target[kept] - target[-1]
