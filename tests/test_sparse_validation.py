"""Validation every few epochs is not divergence: an epoch without the monitored metric is not validated, skipped.

The readers keep such an epoch missing (None), never NaN; the Monitor skips it
(``on_missing="skip"``: patience counts validation checks, as Lightning's
does); the replay engine gives the same results as the Monitor; the command
line replays such logs with finite numbers, epochs counted on the training axis.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop_core import Monitor
from earlystop_core.cli import main
from earlystop_core.formats.readers import load_any
from earlystop_core.replay.bank import Bank
from earlystop_core.replay.engine import evaluate
from earlystop_core.replay.scalar import replay_run

from helpers import fit_tiny_lightning_model, same


@st.composite
def sparse_banks(draw: st.DrawFn) -> dict[str, dict[str, list[float | None]]]:
    """Runs validated every k-th epoch (or at random epochs), trained every epoch."""
    curves: dict[str, dict[str, list[float | None]]] = {}
    for run in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 30))
        every = draw(st.integers(1, 4))
        validated = [epoch % every == every - 1 or (draw(st.booleans()) and every == 4) for epoch in range(n)]
        values = draw(st.lists(st.floats(0.01, 2.0) | st.just(math.nan), min_size=n, max_size=n))
        accuracy = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
        curves[f"r{run}"] = {
            "val_loss": [v if ok else None for v, ok in zip(values, validated, strict=True)],
            "val_accuracy": [a if ok else None for a, ok in zip(accuracy, validated, strict=True)],
            "loss": draw(st.lists(st.floats(0.01, 2.0), min_size=n, max_size=n)),
            "test_accuracy": [a if ok else None for a, ok in zip(accuracy, validated, strict=True)],
        }
    return curves


OPTIONS = st.fixed_dictionaries(
    {
        "patience": st.integers(0, 4),
        "on_missing": st.just("skip"),
        "check_finite": st.booleans(),
        "best_from_epoch": st.integers(0, 3),
    },
    optional={"keep_best_by": st.just("val_accuracy"), "smoothing": st.sampled_from([0.3, 0.8])},
)


@given(sparse_banks(), OPTIONS | st.just({"policy": "recommended", "on_missing": "skip"}))
@settings(max_examples=120, deadline=None)
def test_the_engine_replays_sparse_validation_as_the_monitor_does(
    curves: dict[str, dict[str, list[float | None]]], options: dict[str, Any]
) -> None:
    bank = Bank.from_curves(curves)
    assert bank.curves() == curves or any(math.isnan(v) for c in curves.values() for v in c["val_loss"] if v)
    result = evaluate(bank, options, on_error="skip")
    expected = [replay_run(curve, lambda: Monitor(**{"restore_best_weights": True, **options}), run=run)
                for run, curve in curves.items() if _replays(curve, options)]  # fmt: skip
    same(result.results(), expected)
    sparse = bank.missing.get("val_loss") is not None and bank.missing["val_loss"].any()
    checks_alone = not options.get("best_from_epoch") and "policy" not in options  # nothing counts epochs
    if sparse and not checks_alone:
        assert result.engine == "scalar" and "not logged at every epoch" in (result.reason or "")
    elif sparse:
        assert result.engine in ("scan", "loop")  # the validation checks alone, vectorised


CHECKS = st.fixed_dictionaries(
    {"patience": st.integers(0, 4), "on_missing": st.just("skip"), "check_finite": st.booleans()},
    optional={
        "keep_best_by": st.just("val_accuracy"),
        "smoothing": st.sampled_from([0.3, 0.8]),
        "min_delta": st.sampled_from([1e-3, 0.05]),
        "min_delta_mode": st.sampled_from(["abs", "rel"]),
        "baseline": st.floats(0.1, 1.5),
        "stopping_threshold": st.floats(0.0, 0.3),
        "divergence_threshold": st.floats(1.5, 3.0),
    },
)


@given(sparse_banks(), CHECKS)
@settings(max_examples=250, deadline=None)
def test_the_validation_checks_alone_are_vectorised_and_exact(
    curves: dict[str, dict[str, list[float | None]]], options: dict[str, Any]
) -> None:
    bank = Bank.from_curves(curves)
    result = evaluate(bank, options, on_error="skip")
    assert result.engine in ("scan", "loop")
    expected = [replay_run(curve, lambda: Monitor(**{"restore_best_weights": True, **options}), run=run)
                for run, curve in curves.items() if _replays(curve, options)]  # fmt: skip
    same(result.results(), expected)


def _replays(curve: dict[str, list[float | None]], options: dict[str, Any]) -> bool:
    try:
        replay_run(curve, lambda: Monitor(**{"restore_best_weights": True, **options}))
    except (KeyError, ValueError, ArithmeticError):
        return False
    return True


def test_a_sparse_target_stays_vectorised_and_equal(tmp_path: Path) -> None:
    curves = {
        "a": {"val_loss": [1.0, 0.8, 0.7, 0.75, 0.8], "test_accuracy": [None, 0.5, None, 0.6, 0.55]},
        "b": {"val_loss": [1.0, 0.9, 0.95, 1.0, 1.1], "test_accuracy": [0.4, None, 0.5, None, 0.45]},
    }
    result = evaluate(curves, {"patience": 1})
    assert result.engine == "scan"
    same(result.results(), [replay_run(c, lambda: Monitor(patience=1, restore_best_weights=True), run=r)
                            for r, c in curves.items()])  # fmt: skip


def test_a_real_lightning_run_validated_every_other_epoch_replays_with_finite_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    lightning = pytest.importorskip("pytorch_lightning")
    logger = lightning.loggers.CSVLogger(str(tmp_path), name="logs")
    fit_tiny_lightning_model(logger, max_epochs=30, check_val_every_n_epoch=2)
    (run,) = load_any(tmp_path / "logs").values()
    assert len(run["val_loss"]) == 30 and run["val_loss"][0] is None and run["val_loss"][1] is not None
    status = main(["replay", str(tmp_path / "logs"), "--strategy", "patience=2", "--strategy", "patience=5", "--json"])
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert status == 0 and [row["runs"] for row in rows] == [1, 1], err
    assert all(math.isfinite(row[key]) for row in rows for key in ("epochs_saved", "regret", "gain"))
    assert rows[0]["epochs_saved"] < 0.9  # not "stopped at epoch 0": the skipped epochs are no divergence


def test_a_missing_metric_is_reported_with_the_keys_logged_where_the_monitor_raises() -> None:
    # 'lr' is logged from epoch 1 on: at epoch 0, where the Monitor finds val_accuracy missing, it is not a key.
    bank = Bank.from_curves({"r0": {"val_loss": [1.0, 0.9, 0.8], "test_accuracy": [0.5] * 3, "lr": [None, 0.1, 0.1]}})
    strategy = {"patience": 1, "keep_best_by": "val_accuracy"}
    errors = []
    for engine in ("auto", "scalar"):
        with pytest.raises(KeyError) as raised:
            evaluate(bank, strategy, engine=engine)
        errors.append(str(raised.value))
    assert errors[0] == errors[1] and "logged: 'val_loss', 'test_accuracy'." in errors[0]


def test_a_run_ending_on_an_epoch_without_the_target_gains_against_the_last_epoch_it_was_logged_at() -> None:
    """Validation every other epoch, or a trial cut short: the last epoch has no target; training to the end is
    judged at the last epoch that has one, never NaN (by the Monitor's replay and the engine alike)."""
    curves = {
        "a": {"val_loss": [1.0, None, 0.7, None, 0.8, None], "test_accuracy": [0.5, None, 0.7, None, 0.6, None]},
        "b": {"val_loss": [1.0, None, 0.9, None, 0.8, 0.85], "test_accuracy": [0.4, None, 0.5, None, 0.6, 0.58]},
    }
    options = {"patience": 5, "on_missing": "skip"}
    result = evaluate(curves, options)
    expected = [replay_run(c, lambda: Monitor(restore_best_weights=True, **options), run=r) for r, c in curves.items()]
    same(result.results(), expected)
    assert [round(r.gain, 6) for r in expected] == [0.1, 0.02]  # a: kept 2 (0.7) against 4 (0.6); b: 4 against 5
