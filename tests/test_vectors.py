"""SEMANTICS.md's test vectors (checked against Keras 3.15), as a table.

Each row: Monitor arguments, the sequence, the epoch training stops at (None:
it runs to the end) and the epoch whose weights are best / restored.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from earlystop_core import Monitor

NAN = math.nan
V1 = [10, 9, 8, 9, 8.9, 8.8, 8.7, 8.6, 8.5]

VECTORS: list[tuple[str, dict[str, Any], list[float], int | None, int]] = [
    ("V1 p0", {"patience": 0}, V1, 3, 2),
    ("V1 p1", {"patience": 1}, V1, 3, 2),
    ("V1 p2", {"patience": 2}, V1, 4, 2),
    ("V1 p3", {"patience": 3}, V1, 5, 2),
    ("V2", {"patience": 2, "restore_best_weights": True}, [0.2, 0.15, 0.1, 0.11, 0.12], 4, 2),
    ("V3", {"patience": 5, "baseline": 0.5, "restore_best_weights": True}, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73], 4, 2),
    ("V5 +", {"patience": 1, "min_delta": 0.5}, [2, 1.5, 1, 0.75], 1, 0),
    ("V5 -", {"patience": 1, "min_delta": -0.5}, [2, 1.5, 1, 0.75], 1, 0),
    ("V6", {"mode": "max", "patience": 1, "min_delta": 0.25}, [0.5, 0.75, 1], 1, 0),
    ("V7", {"patience": 3, "restore_best_weights": True}, [0.5, 0.4, 0.3, 0.35, 0.2, 0.25], None, 4),
    ("V8", {"patience": 2, "restore_best_weights": True}, [1, 1, 1], 2, 0),
    ("V9", {"patience": 2, "min_delta": 0.05, "restore_best_weights": True}, [1, 0.96, 0.89, 0.885, 0.88], 4, 2),
    ("V10", {"mode": "max", "patience": 2, "restore_best_weights": True}, [0.5, 0.6, 0.6, 0.55, 0.7], 3, 1),
    (
        "V11",
        {"start_from_epoch": 2, "patience": 2, "restore_best_weights": True},
        [0.1, 0.2, 5, 4, 4.5, 4.2, 3],
        5,
        3,
    ),
    ("V12", {"start_from_epoch": 2, "patience": 0}, [3, 2, 1, 1.5], 3, 2),
    ("V13", {"patience": 2, "baseline": 0.5, "restore_best_weights": True}, [0.9, 0.8, 0.4, 0.45, 0.46, 0.47], 4, 2),
    ("V14", {"patience": 5, "baseline": 0.5, "restore_best_weights": True}, [0.9, 0.8, 0.85, 0.7], None, 3),
    ("V15", {"patience": 2, "baseline": 0.5}, [0.9, 0.8, 0.7, 0.6, 0.55, 0.56], 5, 4),
    ("V16", {"mode": "max", "patience": 0, "baseline": 0.6}, [0.5, 0.55, 0.7, 0.65], 3, 2),
    ("V17", {"patience": 2, "restore_best_weights": True, "check_finite": False}, [NAN, 1, 0.5, 0.4], 2, 0),
    ("V18", {"patience": 2, "restore_best_weights": True, "check_finite": False}, [1, NAN, 0.9, NAN, NAN], 4, 2),
]


def run(arguments: dict[str, Any], sequence: list[float]) -> tuple[Monitor, int | None, int | None]:
    """Feed ``sequence`` until a stop; return the monitor, stop epoch and restored epoch."""
    monitor = Monitor(monitor="val_loss" if arguments.get("mode") != "max" else "val_accuracy", **arguments)
    key = monitor.monitor
    for value in sequence:
        decision = monitor.update({key: value})
        if decision.should_stop:
            return monitor, decision.epoch, decision.best_epoch if decision.restore else None
    final = monitor.finish()
    return monitor, None, final.best_epoch if final.restore else None


@pytest.mark.parametrize(("name", "arguments", "sequence", "stop", "best"), VECTORS, ids=[v[0] for v in VECTORS])
def test_keras_vectors(
    name: str, arguments: dict[str, Any], sequence: list[float], stop: int | None, best: int
) -> None:
    monitor, stopped_at, restored = run(arguments, sequence)
    assert stopped_at == stop
    assert monitor.stopped_epoch == stop
    assert monitor.best_epoch == best
    if arguments.get("restore_best_weights"):
        assert restored == best
    else:
        assert restored is None


def test_patience_zero_and_one_are_the_same() -> None:
    assert run({"patience": 0}, V1)[1] == run({"patience": 1}, V1)[1]


def test_nan_stops_by_default_and_restores_the_best() -> None:
    monitor = Monitor(patience=5, restore_best_weights=True)
    monitor.update({"val_loss": 0.5})
    decision = monitor.update({"val_loss": NAN})
    assert decision.should_stop and decision.restore
    assert decision.reason.name == "NON_FINITE_METRIC"
    assert decision.best_epoch == 0
    assert "nan" in decision.message and "epoch 1" in decision.message


@pytest.mark.parametrize(
    ("arguments", "sequence", "stop", "reason"),
    [
        ({"stopping_threshold": 0.3, "patience": 9}, [0.5, 0.4, 0.29, 0.2], 2, "STOPPING_THRESHOLD"),
        ({"divergence_threshold": 2.0, "patience": 9}, [0.5, 1.9, 2.1, 0.2], 2, "DIVERGENCE_THRESHOLD"),
        ({"stopping_threshold": 0.3, "divergence_threshold": 2.0}, [float("inf")], 0, "NON_FINITE_METRIC"),
        ({"stopping_threshold": 0.3, "patience": 1}, [0.5, 0.6, 0.2], 1, "PATIENCE_EXHAUSTED"),
    ],
)
def test_lightning_guards(arguments: dict[str, Any], sequence: list[float], stop: int, reason: str) -> None:
    monitor = Monitor(**arguments)
    for value in sequence:
        decision = monitor.update({"val_loss": value})
        if decision.should_stop:
            break
    assert (decision.epoch, decision.reason.name) == (stop, reason)


def test_reaching_the_goal_keeps_the_goal_epoch_as_best() -> None:
    monitor = Monitor(stopping_threshold=0.3, patience=9, restore_best_weights=True)
    for value in [0.5, 0.4]:
        monitor.update({"val_loss": value})
    decision = monitor.update({"val_loss": 0.25})
    assert decision.should_stop and decision.improved and decision.restore
    assert decision.best_epoch == 2


def test_divergence_is_never_the_best() -> None:
    monitor = Monitor(divergence_threshold=1.0, restore_best_weights=True)
    monitor.update({"val_loss": 0.5})
    decision = monitor.update({"val_loss": 0.1 + 5})
    assert decision.should_stop and not decision.improved and decision.best_epoch == 0


def test_finish_restores_once() -> None:
    monitor = Monitor(patience=1, restore_best_weights=True)
    for value in [1.0, 2.0]:
        decision = monitor.update({"val_loss": value})
    assert decision.should_stop and decision.restore
    assert not monitor.finish().restore


def test_a_decision_is_not_a_boolean() -> None:
    decision = Monitor().update({"val_loss": 1.0})
    with pytest.raises(TypeError, match=r"decision\.should_stop"):
        bool(decision)
