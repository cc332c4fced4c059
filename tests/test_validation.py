"""Every bad argument is refused in the constructor with an exact message."""

from __future__ import annotations

import re
from typing import Any

import pytest

from earlystop_core import MissingMetricError, Monitor, infer_mode


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"patience": -1}, ValueError, "'patience' must be >= 0, got -1"),
        ({"patience": 2.5}, TypeError, "'patience' must be an int, got float (2.5)"),
        ({"patience": True}, TypeError, "'patience' must be an int, got bool (True)"),
        ({"start_from_epoch": -3}, ValueError, "'start_from_epoch' must be >= 0, got -3"),
        ({"mode": "mni"}, ValueError, "mode must be one of 'auto', 'min', 'max', got 'mni'"),
        ({"min_delta": float("nan")}, ValueError, "'min_delta' must be finite, got nan"),
        ({"min_delta": "0.1"}, TypeError, "'min_delta' must be a number, got str ('0.1')"),
        ({"baseline": float("inf")}, ValueError, "'baseline' must be finite, got inf"),
        ({"baseline": "high"}, TypeError, "'baseline' must be a number or None, got str ('high')"),
        ({"restore_best_weights": 1}, TypeError, "'restore_best_weights' must be True or False, got int (1)"),
        ({"check_finite": None}, TypeError, "'check_finite' must be True or False, got NoneType (None)"),
        ({"stopping_threshold": float("nan")}, ValueError, "'stopping_threshold' must be finite, got nan"),
        ({"on_missing": "ignore"}, ValueError, "on_missing must be one of 'raise', 'skip', got 'ignore'"),
        ({"monitor": ""}, TypeError, "'monitor' must be a metric name or a dict of metric: weight, got ''"),
        (
            {"stopping_threshold": 1.0, "divergence_threshold": 0.5},
            ValueError,
            "stopping_threshold (1) must be below divergence_threshold (0.5) in mode 'min'",
        ),
    ],
)
def test_constructor_rejects(arguments: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Monitor(**arguments)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("val_loss", "min"),
        ("loss", "min"),
        ("val_mean_squared_error", "min"),
        ("val_rmse", "min"),
        ("eval_perplexity", "min"),
        ("val_dice_loss", "min"),
        ("val_categorical_crossentropy", "min"),
        ("val_accuracy", "max"),
        ("val_acc", "max"),
        ("val_sparse_categorical_accuracy", "max"),
        ("val_auc_1", "max"),
        ("val_f1", "max"),
        ("val_precision", "max"),
        ("val/recall", "max"),
        ("val_mean_io_u", "max"),
        ("val_dice", "max"),
        ("val_r2_score", "max"),
    ],
)
def test_auto_mode_from_name(name: str, mode: str) -> None:
    assert infer_mode(name) == mode
    assert Monitor(monitor=name).mode == mode


def test_auto_mode_refuses_to_guess() -> None:
    with pytest.raises(ValueError, match=r"mode='min'.*mode='max'"):
        Monitor(monitor="val_false_positives")


def test_settings_are_read_only() -> None:
    monitor = Monitor(patience=3)
    assert monitor.patience == 3
    with pytest.raises(AttributeError, match="build a new Monitor with patience=5"):
        monitor.patience = 5  # type: ignore[misc]


def test_missing_metric_names_the_logged_keys() -> None:
    monitor = Monitor(monitor="val_los", mode="min")
    with pytest.raises(MissingMetricError) as caught:
        monitor.update({"loss": 1.0, "val_loss": 2.0})
    assert isinstance(caught.value, KeyError)
    assert "'loss', 'val_loss'" in str(caught.value)
    assert "Did you mean 'val_loss'?" in str(caught.value)


def test_logs_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="logs must be a mapping"):
        Monitor().update(0.3)  # type: ignore[arg-type]


@pytest.mark.parametrize("epoch", [-1, 1.5, True, "3"])
def test_bad_epoch(epoch: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="'epoch' must be"):
        Monitor().update({"val_loss": 1.0}, epoch=epoch)


def test_explicit_epoch_sets_the_counter() -> None:
    monitor = Monitor(patience=1)
    assert monitor.update({"val_loss": 1.0}, epoch=7).epoch == 7
    assert monitor.update({"val_loss": 2.0}).epoch == 8
    assert monitor.epoch == 9
