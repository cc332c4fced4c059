"""The Ray Tune stopper in a real ``tune.Tuner`` run on a local Ray instance (2 CPUs, several trials): each trial stops
at the result a plain Monitor replay of its reports stops at."""

from __future__ import annotations

import math
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")

from earlystop_core import Monitor, StopReason  # noqa: E402
from earlystop_core.adapters.ray import MonitorStopper  # noqa: E402

CURVES = 6


def curve(index: int) -> list[float]:
    """A scripted validation loss per trial: falling, and for odd trials turning up (overfitting) early."""
    return [1.0 / (1 + 0.4 * step) + (0.02 * index * max(0, step - 4) if index % 2 else 0.0) for step in range(25)]


def trainable(config: dict[str, Any]) -> None:
    for value in curve(config["curve"]):
        tune.report({"val_loss": value})


def replay_stop(values: list[float], **options: Any) -> int | None:
    monitor = Monitor("val_loss", mode="min", **options)
    return next((k for k, value in enumerate(values) if monitor.update({"val_loss": value}).should_stop), None)


@pytest.fixture(scope="module")
def local_ray() -> Any:
    # The workers cannot import this test module: its functions travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_each_trial_stops_where_a_monitor_replay_stops(local_ray: Any, tmp_path: Path) -> None:
    stopper = MonitorStopper("val_loss", mode="min", patience=3)
    tuner = tune.Tuner(
        trainable,
        param_space={"curve": tune.grid_search(list(range(CURVES)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(stop=stopper, storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    stopped = 0
    for result in results:
        values = curve(result.config["curve"])
        stop = replay_stop(values, patience=3)
        ran = result.metrics["training_iteration"]
        assert ran == (len(values) if stop is None else stop + 1), result.config
        stopped += stop is not None
    assert 0 < stopped < CURVES

    # The results folder reads back for replay and tune: each trial's reports, up to where it stopped.
    from earlystop_core.cli import main
    from earlystop_core.formats.readers import load_any

    curves = load_any(results.experiment_path)
    assert sorted(len(c["val_loss"]) for c in curves.values()) == sorted(
        r.metrics["training_iteration"] for r in results
    )
    for result in results:
        trial = next(c for name, c in curves.items() if result.metrics["trial_id"] in name)
        assert trial == {"val_loss": curve(result.config["curve"])[: result.metrics["training_iteration"]]}
    assert main(["replay", results.experiment_path, "--strategy", "patience=3", "--json"]) == 0


def test_stop_all_ends_the_experiment_once_every_trial_has_stopped() -> None:
    stopper = MonitorStopper("val_loss", mode="min", patience=1, stop_all="all_stopped")
    assert not stopper.stop_all()
    for trial in ("a", "b"):
        for value in (1.0, 0.5, 0.7):
            stopper(trial, {"val_loss": value, "training_iteration": 1, "config": {"x": 1}})
        assert stopper.monitor_of(trial).stop_reason is StopReason.PATIENCE_EXHAUSTED
    assert stopper.stop_all()
    assert stopper("a", {"val_loss": 0.1})  # a late result of a stopped trial: still stopping


def test_its_state_travels_with_the_experiment_and_nan_stops() -> None:
    stopper = MonitorStopper("val_loss", mode="min", patience=3)
    stopper("t", {"val_loss": 1.0})
    stopper("t", {"val_loss": 0.9})
    restored = pickle.loads(pickle.dumps(stopper))  # as Tune saves a stopper with the experiment
    assert restored.monitor_of("t").state_dict() == stopper.monitor_of("t").state_dict()
    assert restored("t", {"val_loss": math.nan})
    assert restored.monitor_of("t").stop_reason is StopReason.NON_FINITE_METRIC
    assert not restored("u", {"accuracy": 0.5})  # a result without the metric is skipped


def test_settings_are_checked_at_once() -> None:
    with pytest.raises(TypeError, match="one of them"):
        MonitorStopper()
    with pytest.raises(TypeError, match="not beside it"):
        MonitorStopper(monitor=Monitor("val_loss"), patience=2)
    with pytest.raises(ValueError, match="stop_all"):
        MonitorStopper("val_loss", stop_all="sometimes")
    with pytest.raises(ValueError, match="patience"):
        MonitorStopper("val_loss", patience=-1)
