"""The Optuna pruner in real studies: in memory, and on SQLite storage with two worker processes; pruned steps equal a
plain Monitor replay of the same reported values."""

from __future__ import annotations

import math
import multiprocessing
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

optuna = pytest.importorskip("optuna")

from earlystop_core import Monitor  # noqa: E402
from earlystop_core.adapters.optuna import MonitorPruner  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def curve(index: int) -> list[float]:
    """A scripted learning curve per trial: noisy, falling, some turning up (overfitting), one with a NaN."""
    values = []
    for step in range(30):
        wiggle = 0.03 * math.sin(1.7 * step + index) * (index % 2)  # odd curves are noisy
        turn = 0.004 * index * max(0, step - 8 - index)
        values.append(1.0 / (1 + 0.3 * step) + wiggle + turn)
    if index == 5:
        values[12] = math.nan
    return values


def objective(trial: Any) -> float:
    index = trial.suggest_int("curve", 0, 9)
    for step, value in enumerate(curve(index)):
        trial.report(value, step * 10)  # reported every 10 steps: patience counts reports
        if trial.should_prune():
            raise optuna.TrialPruned()
    return curve(index)[-1]


def stop_of(values: list[float], **options: Any) -> int | None:
    """The report a plain Monitor stops at, or None."""
    monitor = Monitor("value", **{"mode": "min", **options})
    return next((k for k, value in enumerate(values) if monitor.update({"value": value}).should_stop), None)


def check_against_replays(study: Any, **options: Any) -> int:
    pruned = 0
    for trial in study.trials:
        values = curve(trial.params["curve"])
        stop = stop_of(values, **options)
        if stop is None:
            assert trial.state == optuna.trial.TrialState.COMPLETE and trial.last_step == 290
        else:
            assert trial.state == optuna.trial.TrialState.PRUNED and trial.last_step == stop * 10, trial.number
            pruned += 1
    return pruned


def test_an_in_memory_study_prunes_where_a_monitor_stops() -> None:
    study = optuna.create_study(pruner=MonitorPruner(patience=3), sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=25)
    assert 0 < check_against_replays(study, patience=3) < 25
    nan_trials = [t for t in study.trials if t.params["curve"] == 5]
    assert nan_trials and all(t.last_step <= 120 for t in nan_trials)  # a NaN prunes (check_finite)


def run_worker(url: str, trials: int, seed: int) -> None:
    study = optuna.load_study(study_name="sweep", storage=url, sampler=optuna.samplers.RandomSampler(seed=seed))
    study.pruner = MonitorPruner(patience=3)
    study.optimize(objective, n_trials=trials)


def test_two_worker_processes_on_sqlite_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    optuna.create_study(study_name="sweep", storage=url)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=run_worker, args=(url, 6, seed)) for seed in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
        assert worker.exitcode == 0
    study = optuna.load_study(study_name="sweep", storage=url)
    assert len(study.trials) == 12
    assert check_against_replays(study, patience=3) > 0


def test_maximised_studies_follow_their_direction_and_a_wrapped_pruner_also_prunes() -> None:
    study = optuna.create_study(direction="maximize", pruner=MonitorPruner(patience=2))

    def accuracy(trial: Any) -> float:
        values = [0.5, 0.6, 0.7, 0.65, 0.66, 0.64, 0.8]
        for step, value in enumerate(values):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return values[-1]

    study.optimize(accuracy, n_trials=1)
    assert study.trials[0].last_step == 4  # two reports without a new high
    wrapped = MonitorPruner(patience=100, wrapped=optuna.pruners.ThresholdPruner(upper=0.9))
    study = optuna.create_study(pruner=wrapped)
    study.optimize(objective, n_trials=3)
    assert all(t.state == optuna.trial.TrialState.PRUNED and t.last_step == 0 for t in study.trials)


@pytest.mark.parametrize("complete", [True, False])
def test_finish_keeps_the_best_reported_value(complete: bool) -> None:
    pruner = MonitorPruner(patience=2)
    study = optuna.create_study(pruner=pruner)

    def stopped(trial: Any) -> float:
        for step, value in enumerate([1.0, 0.6, 0.8, 0.9, 0.95]):
            trial.report(value, step)
            if trial.should_prune():
                return pruner.finish(trial, complete=complete)
        return 0.95

    study.optimize(stopped, n_trials=1)
    trial = study.trials[0]
    assert trial.user_attrs == {"earlystop_best_value": 0.6, "earlystop_best_step": 1}
    if complete:
        assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.6
    else:
        assert trial.state == optuna.trial.TrialState.PRUNED


def test_settings_are_checked_at_once() -> None:
    with pytest.raises(ValueError, match="patience"):
        MonitorPruner(patience=-1)
    with pytest.raises(TypeError, match="not beside it"):
        MonitorPruner(Monitor("value", mode="min"), patience=3)
    with pytest.raises(TypeError, match="weighted"):
        MonitorPruner(Monitor({"val_loss": 0.5, "loss": 0.5}))
    with pytest.raises(TypeError, match="Optuna pruner"):
        MonitorPruner(patience=3, wrapped="median")


# -- reading a finished sweep back: earlystop replay / tune on an Optuna storage ----------------------------------


def test_a_sweeps_storage_reads_back_as_curves_and_replays(tmp_path: Path) -> None:
    import contextlib
    import io
    import json

    from earlystop_core.cli import main
    from earlystop_core.formats.readers import load_any

    path = tmp_path / "sweep.db"
    study = optuna.create_study(
        study_name="sweep",
        storage=f"sqlite:///{path}",
        sampler=optuna.samplers.RandomSampler(0),
        pruner=optuna.pruners.NopPruner(),
    )
    study.optimize(objective, n_trials=6)  # no pruner: every trial reports its whole curve
    curves = load_any(path)
    assert sorted(curves, key=int) == [str(t.number) for t in study.trials]
    for trial in study.trials:  # repr: NaN equal to NaN (one curve reports one)
        assert repr(curves[str(trial.number)]) == repr({"value": curve(trial.params["curve"])})
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["replay", str(path), "--monitor", "value", "--mode", "min", "--json"]) == 0
    report = json.loads(printed.getvalue())
    rows = report["rows"] if isinstance(report, dict) else report
    assert rows and all(math.isfinite(row["regret"]) for row in rows)


def test_without_optuna_a_storage_is_refused_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from earlystop_core.errors import FormatError
    from earlystop_core.formats.readers import load_any

    path = tmp_path / "sweep.db"
    optuna.create_study(study_name="s", storage=f"sqlite:///{path}")
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(FormatError, match=r"earlystop\[optuna\]"):
        load_any(path)


def test_the_next_sweep_prunes_with_a_policy_learned_from_the_last(tmp_path: Path) -> None:
    """The loop the Sweeps page shows: a finished sweep's storage, `earlystop tune --learn`, then
    ``MonitorPruner(policy=...)`` pruning a new study with the fitted policy."""
    import contextlib
    import io

    from earlystop_core import LearnedPolicy
    from earlystop_core.cli import main

    def overfitting(trial: Any) -> float:
        rate, upturn = trial.suggest_float("rate", 0.05, 0.5), trial.suggest_float("upturn", 0.0, 0.02)
        value = 1.0
        for step in range(40):
            value = 0.2 + 0.8 * (1 - rate) ** step + upturn * max(0, step - 10) + 0.01 * math.sin(7 * rate * step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    path, policy = tmp_path / "sweep.db", tmp_path / "policy.json"
    sweep = optuna.create_study(
        study_name="last", storage=f"sqlite:///{path}", sampler=optuna.samplers.RandomSampler(0),
        pruner=optuna.pruners.NopPruner(),
    )  # fmt: skip
    sweep.optimize(overfitting, n_trials=30)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["tune", str(path), "--monitor", "value", "--mode", "min", "--learn", str(policy)]) == 0
    assert LearnedPolicy.load(policy).monitor == {"monitor": "value", "mode": "min"}
    pruner = MonitorPruner(policy=str(policy))
    study = optuna.create_study(pruner=pruner, sampler=optuna.samplers.RandomSampler(1))
    study.optimize(overfitting, n_trials=8)
    for trial in study.trials:  # each trial ends where a Monitor with that policy stops on its reports
        reports = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
        monitor = Monitor("value", mode="min", policy=str(policy))
        stop = next((k for k, value in enumerate(reports) if monitor.update({"value": value}).should_stop), None)
        pruned = trial.state == optuna.trial.TrialState.PRUNED
        assert pruned == (stop is not None) and (not pruned or stop == len(reports) - 1)
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)


def first_prune(pruner: Any, values: list[float]) -> int | None:
    study = optuna.create_study(pruner=pruner)
    trial = study.ask()
    for step, value in enumerate(values):
        trial.report(value, step)
        if trial.should_prune():
            return step
    return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(st.integers(0, 30), min_size=1, max_size=30, unique=True).map(lambda v: [x / 8 for x in v]),
    patience=st.integers(0, 5),
)
def test_optunas_patient_pruner_stops_where_monitor_pruner_with_one_more_patience_does(
    values: list[float], patience: int
) -> None:
    # The Sweeps page's before/after: PatientPruner(None, p) == MonitorPruner(patience=p + 1) but on exact ties.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        theirs = optuna.pruners.PatientPruner(None, patience=patience)
    assert first_prune(theirs, values) == first_prune(MonitorPruner(patience=patience + 1), values)


def test_only_complete_trials_are_read_and_a_storage_without_one_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pruned or failed trial's reports end where it was cut: left out, said once (as the command's own note);
    a storage whose trials never reported (a multi-objective study cannot) is an error, not an empty table."""
    from earlystop_core.cli import main
    from earlystop_core.errors import FormatError
    from earlystop_core.formats.readers import load_any

    def cut_short(trial: Any) -> float:
        index = trial.suggest_int("curve", 0, 9)
        for step, value in enumerate(curve(index)):
            trial.report(value, step)
            if trial.number % 3 == 1 and step == 5:
                raise optuna.TrialPruned()
            if trial.number % 3 == 2 and step == 7:
                raise RuntimeError("out of memory")
        return curve(index)[-1]

    path = tmp_path / "sweep.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(cut_short, n_trials=6, catch=(RuntimeError,))
    with pytest.warns(UserWarning, match=r"4 trial\(s\) left out as not complete \(2 failed, 2 pruned\)"):
        curves = load_any(path)
    assert sorted(curves, key=int) == ["0", "3"] and all(len(c["value"]) == 30 for c in curves.values())
    assert main(["replay", str(path), "--monitor", "value", "--mode", "min", "--strategy", "patience=3"]) == 0
    err = capsys.readouterr().err
    assert "earlystop: note: " in err and "left out as not complete" in err and "UserWarning" not in err

    silent = tmp_path / "multi.db"
    two = optuna.create_study(storage=f"sqlite:///{silent}", directions=["minimize", "maximize"])
    two.optimize(lambda trial: (trial.suggest_float("x", 0, 1), 1.0), n_trials=2)
    with pytest.raises(FormatError, match=r"no complete trial reported a value \(trial.report\(value, step\)\)"):
        load_any(silent)
    assert main(["replay", str(silent), "--monitor", "value", "--mode", "min"]) == 2
