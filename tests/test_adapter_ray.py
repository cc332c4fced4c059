"""The Ray Tune stopper in a real ``tune.Tuner`` run on a local Ray instance (2 CPUs, several trials): each trial stops
at the result a plain Monitor replay of its reports stops at."""

from __future__ import annotations

import json
import math
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
tune = pytest.importorskip("ray.tune")

from earlystop_core import FormatError, Monitor, StopReason  # noqa: E402
from earlystop_core.adapters.ray import MonitorStopper  # noqa: E402

CURVES = 6


def curve(index: int) -> list[float]:
    """A scripted validation loss per trial: falling, and for odd trials turning up (overfitting) early."""
    return [1.0 / (1 + 0.4 * step) + (0.02 * index * max(0, step - 4) if index % 2 else 0.0) for step in range(25)]


def accuracy(epoch: int) -> float | None:
    """A metric reported every other epoch, from the second on: Tune's progress.csv, whose columns are the first
    result's, has none of it; result.json has it all."""
    return 0.5 + epoch / 100 if epoch % 2 else None


def trainable(config: dict[str, Any]) -> None:
    for epoch, value in enumerate(curve(config["curve"])):
        tune.report({"val_loss": value} if accuracy(epoch) is None else {"val_loss": value, "acc": accuracy(epoch)})


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
        ran = result.metrics["training_iteration"]
        assert trial == {"val_loss": curve(result.config["curve"])[:ran], "acc": [accuracy(k) for k in range(ran)]}
    assert main(["replay", results.experiment_path, "--strategy", "patience=3", "--json"]) == 0
    # Tune's storage folder (~/ray_results) holds experiment folders: each trial named <experiment>/<trial>
    experiment = Path(results.experiment_path)
    assert load_any(experiment.parent) == {f"{experiment.name}/{name}": c for name, c in curves.items()}
    # progress.csv, read where there is no result.json, has the columns of the first result only.
    for results_json in Path(results.experiment_path).glob("*/result.json"):
        results_json.unlink()
    assert load_any(results.experiment_path) == {name: {"val_loss": c["val_loss"]} for name, c in curves.items()}


def resumable(config: dict[str, Any]) -> None:
    """Reports ``curve(config["curve"])`` with a checkpoint every other epoch, and fails once at epoch 5 when told to:
    Tune restores it from its last checkpoint (epoch 4), so epoch 5 is reported twice."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "epoch.json").read_text())["epoch"] + 1
    for epoch in range(start, 25):
        if epoch == 6 and config["fail"] and not os.path.exists(os.path.join(config["fail"], str(config["curve"]))):
            Path(config["fail"], str(config["curve"])).write_text("failed once")
            raise RuntimeError("interrupted")
        saved = None
        if epoch % 2 == 0:
            folder = tempfile.mkdtemp()
            (Path(folder) / "epoch.json").write_text(json.dumps({"epoch": epoch}))
            saved = tune.Checkpoint.from_directory(folder)
        tune.report({"val_loss": curve(config["curve"])[epoch]}, checkpoint=saved)


def test_a_restored_experiment_stops_each_trial_where_an_uninterrupted_replay_stops(
    local_ray: Any, tmp_path: Path
) -> None:
    # Each trial fails after reporting epoch 5; Tune saved the stopper (its Monitors) with the experiment, and
    # Tuner.restore resumes the trials from their checkpoint at epoch 4: they report epoch 5 again, which the
    # Monitor must not count twice.
    failed = tmp_path / "failed"
    failed.mkdir()
    tuner = tune.Tuner(
        resumable,
        param_space={"curve": tune.grid_search(list(range(4))), "fail": str(failed)},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            stop=MonitorStopper("val_loss", mode="min", patience=3),
            storage_path=str(tmp_path / "store"),
            name="interrupted",
            verbose=0,
        ),
    )
    first = tuner.fit()
    assert all(result.error is not None for result in first)
    assert all(result.metrics["training_iteration"] == 6 for result in first)

    results = tune.Tuner.restore(str(tmp_path / "store" / "interrupted"), resumable, resume_errored=True).fit()
    assert not results.errors
    for result in results:
        values = curve(result.config["curve"])
        stop = replay_stop(values, patience=3)
        assert result.metrics["training_iteration"] == (len(values) if stop is None else stop + 1), result.config
    assert any(replay_stop(curve(index), patience=3) is not None for index in range(4))

    # Read back, each trial's reports are those of an uninterrupted run (the reports it went back over replaced),
    # from result.json and from progress.csv alike.
    from earlystop_core.formats.readers import load_any

    expected = sorted(
        (result.config["curve"], curve(result.config["curve"])[: result.metrics["training_iteration"]])
        for result in results
    )
    by_json = load_any(results.experiment_path)
    assert (
        sorted((int(name.split("curve=")[1].split("_")[0]), c["val_loss"]) for name, c in by_json.items()) == expected
    )
    # Tune appends a restored trial's rows to its progress.csv under the old header, one value short: a clear error.
    for results_json in Path(results.experiment_path).glob("*/result.json"):
        results_json.unlink()
    with pytest.raises(FormatError, match=r"read its result\.json instead"):
        load_any(results.experiment_path)


def test_a_trial_that_reports_again_from_a_checkpoint_is_decided_as_if_it_never_went_back() -> None:
    stopper = MonitorStopper("val_loss", mode="min", patience=2)
    values = [1.0, 0.8, 0.9, 0.95, 0.7]
    for iteration, value in enumerate(values[:4], start=1):
        decided = stopper("t", {"val_loss": value, "training_iteration": iteration})
    assert decided  # patience 2 ran out at the 4th report
    # Restored from a checkpoint taken at iteration 2: iterations 3 and 4 are reported again, then a better one.
    assert not stopper("t", {"val_loss": 0.9, "training_iteration": 3})
    assert stopper.monitor_of("t").wait == 1
    assert stopper("t", {"val_loss": 0.95, "training_iteration": 4})
    # A value the Monitor refuses raises and changes nothing, the going back included.
    with pytest.raises((TypeError, ValueError)):
        stopper("t", {"val_loss": "diverged", "training_iteration": 2})
    assert stopper.monitor_of("t").stopped_epoch == 3
    # From a checkpoint at iteration 1 with other values (a changed trainable): decided on what it now reports.
    assert not stopper("t", {"val_loss": 0.5, "training_iteration": 2})
    assert stopper.monitor_of("t").best_epoch == 1 and stopper.monitor_of("t").stopped_epoch is None


def test_stop_all_ends_the_experiment_once_every_trial_has_stopped() -> None:
    stopper = MonitorStopper("val_loss", mode="min", patience=1, stop_all="all_stopped")
    assert not stopper.stop_all()
    for trial in ("a", "b"):
        for iteration, value in enumerate((1.0, 0.5, 0.7), start=1):
            stopper(trial, {"val_loss": value, "training_iteration": iteration, "config": {"x": 1}})
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
