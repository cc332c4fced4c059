"""Monitor(names=...): the library's names read under the logged ones, decisions unchanged."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from earlystop_core import Monitor, Patience, ReduceLROnPlateau, Rule
from earlystop_core.curves import epochs, sample_curves_path
from earlystop_core.formats.long_csv import load_curves
from earlystop_core.formats.names import rename
from earlystop_core.replay.engine import evaluate

HF = {"val_loss": "eval_loss", "val_accuracy": "eval_accuracy", "loss": "train_loss"}


def decisions(monitor: Monitor, curve: Mapping[str, list[float | None]]) -> list[Any]:
    if monitor.config.plateau is None:
        return [monitor.update(logs) for logs in epochs(curve)]
    return [monitor.update(logs, lr=0.1 if epoch == 0 else None) for epoch, logs in enumerate(epochs(curve))]


@pytest.mark.parametrize(
    "options",
    [
        {"policy": "recommended"},
        {"patience": 5, "keep_best_by": "val_accuracy", "smoothing": 0.5},
        {"monitor": {"val_loss": 1.0, "val_accuracy": 2.0}, "mode": {"val_loss": "min", "val_accuracy": "max"}},
        {"patience": 30, "plateau": ReduceLROnPlateau("val_loss", patience=2, factor=0.5)},
    ],
)
def test_renamed_logs_give_the_same_decisions(options: dict[str, Any]) -> None:
    curves = load_curves(sample_curves_path())
    for run in list(curves)[:5]:
        curve = curves[run]
        logged = rename({run: curve}, HF)[run]
        expected = decisions(Monitor(**options), curve)
        got = decisions(Monitor(**options, names=HF), logged)
        assert [d.should_stop for d in got] == [d.should_stop for d in expected]
        assert [d.best_epoch for d in got] == [d.best_epoch for d in expected]
        assert [d.lr for d in got] == [d.lr for d in expected]


def test_the_engine_replays_renamed_logs_as_the_monitor_does() -> None:
    curves = rename(load_curves(sample_curves_path()), HF)
    fast = evaluate(curves, {"policy": "recommended", "names": HF}, reference="eval_loss")
    slow = evaluate(curves, {"policy": "recommended", "names": HF}, reference="eval_loss", engine="scalar")
    assert fast.engine == "scan" and fast.results() == slow.results()


class Reads(Rule):
    requires = frozenset({"loss"})

    def check(self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Any) -> bool:
        return math.isnan(float(logs["loss"]))

    def spec(self) -> dict[str, Any]:
        return {"rule": "Reads"}


def test_what_cannot_be_renamed_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="reads 'loss' itself and cannot read it as 'train_loss'"):
        Monitor(rule=Patience(3) | Reads(), names=HF)
    assert Monitor(rule=Patience(3) | Reads(), names={"val_loss": "eval_loss"}).config.monitor == "eval_loss"
    with pytest.raises(TypeError, match="'names' must map metric names"):
        Monitor(names=["val_loss"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two metrics one logged name"):
        Monitor(names={"val_loss": "x", "loss": "x"})
