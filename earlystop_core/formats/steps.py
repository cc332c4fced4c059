"""Logs indexed by step (TensorBoard, MLflow): their values placed on an epoch axis."""

from __future__ import annotations

import bisect
from pathlib import Path

from earlystop_core.errors import FormatError

__all__ = ["MAX_EPOCH", "by_epoch"]

#: Epochs past this are refused: a typo or batch steps should not allocate gigabytes.
MAX_EPOCH = 10_000_000


def by_epoch(root: Path, run: str, series: dict[str, list[tuple[int, float]]]) -> dict[str, list[float | None]]:
    """``{metric: [(step, value), ...]}`` on one epoch axis: the step, or where the run logs an ``epoch`` series
    (Lightning does, against batch steps), the epoch logged at or before the step. Several values in one
    epoch: the last one; an epoch without a value: None.

    Examples:
        >>> by_epoch(Path("log"), "r", {"val_loss": [(0, 0.5), (2, 0.4)]})
        {'val_loss': [0.5, None, 0.4]}
        >>> by_epoch(Path("log"), "r", {"epoch": [(9, 0.0), (19, 1.0)], "val_loss": [(9, 0.5), (19, 0.4)]})
        {'val_loss': [0.5, 0.4]}
    """
    epochs = sorted(series.pop("epoch", []))
    steps = [step for step, _ in epochs]

    def epoch_of(step: int) -> int:
        if not epochs:
            return step
        at = bisect.bisect_right(steps, step) - 1
        return int(epochs[max(at, 0)][1])

    placed = {name: {epoch_of(step): value for step, value in points} for name, points in series.items()}
    last = max((epoch for values in placed.values() for epoch in values), default=-1)
    if last >= MAX_EPOCH or min((e for values in placed.values() for e in values), default=0) < 0:
        raise FormatError(root, None, None, f"run {run!r}: epochs must lie in 0..{MAX_EPOCH - 1}, got up to {last}")
    return {name: [values.get(epoch) for epoch in range(last + 1)] for name, values in placed.items()}
