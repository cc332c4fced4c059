"""The ``earlystop`` command as a user runs it (in-process through ``main``, and once as a real process)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from earlystop_core import __version__
from earlystop_core.cli import PRESETS, main, pareto_front
from earlystop_core.curves import sample_curves_path

from helpers import tiny_keras_regression


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_replay_with_no_path_uses_the_bundled_sample_and_shows_the_recommended_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "replay")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("120 runs")
    assert lines[1].split()[:3] == ["strategy", "runs", "epochs"]
    assert any(line.startswith("recommended ") for line in lines)


def test_replay_json_has_the_documented_keys_as_fractions(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "replay", "--strategy", "patience=10", "--strategy", "recommended", "--json")
    assert status == 0
    rows = json.loads(out)
    assert [row["strategy"] for row in rows] == ["patience=10", "recommended"]
    assert all(set(row) == {"strategy", "runs", "epochs_saved", "regret", "gain"} for row in rows)
    assert all(0.0 <= row["epochs_saved"] < 1.0 and row["runs"] == 120 for row in rows)


def test_replay_equals_the_scalar_monitor_loop(capsys: pytest.CaptureFixture[str]) -> None:
    from earlystop_core import Monitor
    from earlystop_core.formats.long_csv import load_curves
    from earlystop_core.replay.scalar import replay, summarize

    _, out, _ = run(capsys, "replay", "--strategy", "patience=7,min_delta=0.001", "--json")
    (row,) = json.loads(out)
    scalar = summarize(
        replay(
            load_curves(sample_curves_path()),
            lambda: Monitor(patience=7, min_delta=0.001, restore_best_weights=True),
            reference="val_loss",
        )
    )
    assert row["epochs_saved"] == pytest.approx(scalar.saved, abs=1e-12)
    assert row["regret"] == pytest.approx(scalar.regret, abs=1e-12)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("patience", "unknown strategy 'patience': name a preset (recommended, warmup, combo) or give Monitor"),
        ("recomended", "unknown strategy 'recomended' (did you mean 'recommended'?)"),
        ("pateince=10", "'pateince' is not a Monitor setting. Did you mean 'patience'?"),
        ("patience=-1", "'patience' must be >= 0"),
        ("rule=open('x')", "not a rule"),
    ],
)
def test_bad_strategies_are_clear_errors(capsys: pytest.CaptureFixture[str], spec: str, message: str) -> None:
    status, _, err = run(capsys, "replay", "--strategy", spec)
    assert status == 2
    assert message in err


def test_malformed_curves_name_file_line_and_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "curves.csv"
    bad.write_text("run,epoch,val_loss,test_accuracy\n0,0,0.5,0.7\n0,1,abc,0.7\n")
    status, _, err = run(capsys, "replay", str(bad))
    assert status == 2
    assert "curves.csv:3:3" in err


def test_tune_prints_a_front_and_a_recommendation(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "tune", str(sample_curves_path()), "--json")
    assert status == 0
    result = json.loads(out)
    front = result["front"]
    assert front == pareto_front(front)
    assert result["recommended"] in {row["strategy"] for row in front}


def test_plot_writes_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out_file = tmp_path / "run.png"
    status, out, _ = run(capsys, "plot", str(sample_curves_path()), "--run", "7", "-o", str(out_file))
    assert status == 0
    assert out_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "run 7: stop" in out


def test_presets_parse_into_the_monitors_they_name() -> None:
    from earlystop_core import LearnedPolicy, Monitor, Patience, Stalled, recommended_policy
    from earlystop_core.replay.strategy import parse_strategy

    recommended = Monitor(**parse_strategy(PRESETS["recommended"]))
    assert recommended.rule == recommended_policy() and isinstance(recommended.rule, LearnedPolicy)
    assert recommended.keep_best_by == "val_accuracy"  # the policy's fitted setting fills the default
    warmup = Monitor(**parse_strategy(PRESETS["warmup"]))
    assert (warmup.patience, warmup.best_from_epoch, warmup.rule) == (15, 3, None)
    combo = Monitor(**parse_strategy(PRESETS["combo"]))
    assert combo.rule == Patience(20) | (Patience(14) & Stalled(10, log=True))
    assert combo.best_from_epoch == 3


def test_the_installed_command_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "earlystop_core.cli", "replay", "--strategy", "recommended"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "recommended" in result.stdout


def test_a_strategy_no_run_can_replay_is_an_error_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["run,epoch,val_loss,val_accuracy,test_accuracy"]  # no training loss: the default policy needs one
    rows += [f"{r},{t},{1 / (1 + t) + 0.01 * t},{0.5 + 0.01 * t},{0.5 + 0.01 * t}" for r in range(3) for t in range(30)]
    path = tmp_path / "curves.csv"
    path.write_text("\n".join(rows) + "\n")
    status, out, err = run(
        capsys, "replay", str(path), "--strategy", "recommended", "--strategy", "patience=5", "--json"
    )
    assert status == 2 and out == ""
    assert "recommended: none of the 3 runs can be replayed (the strategy reads 'loss', which these logs lack" in err
    assert "runs '0', '1', '2': metric 'loss' is not in the logs" in err and "Error" not in err
    status, out, err = run(capsys, "replay", str(path), "--strategy", "patience=5", "--target", "test_acc")
    assert status == 2 and "no metric 'test_acc' in the logs to judge the kept epoch by" in err
    assert "Name another with --target (--target test_accuracy)" in err
    status, _, err = run(capsys, "replay", str(path), "--target", "test_acc")  # the built-in comparison: the same
    assert status == 2 and "(--target test_accuracy)" in err and "left out" not in err
    status, out, err = run(capsys, "replay", str(path), "--strategy", "patience=5", "--monitor", "eval_loss")
    assert status == 2 and "no metric 'eval_loss' in the logs" in err and "(--monitor val_loss)" in err


def test_some_runs_skipped_are_counted_and_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["run,epoch,loss,val_loss,val_accuracy,test_accuracy"]
    rows += [f"0,{t},{0.9 / (1 + t)},{1 / (1 + t) + 0.01 * t},{0.5 + 0.01 * t},0.5" for t in range(30)]
    rows += [f"1,{t},{0.9 / (1 + t)},{-0.1 * t},{0.5 + 0.01 * t},0.5" for t in range(30)]  # a negative loss
    path = tmp_path / "curves.csv"
    path.write_text("\n".join(rows) + "\n")
    status, out, err = run(capsys, "replay", str(path), "--strategy", "recommended", "--json")
    assert status == 0 and [row["runs"] for row in json.loads(out)] == [1]
    assert "recommended: 1 of 2 runs skipped; run '1': " in err and "takes logarithms" in err
    assert "ValueError" not in err


def keras_log(path: Path, test: bool = False) -> Path:
    """What a Keras CSVLogger writes for one run of model.fit (with a test metric when ``test``)."""
    lines = ["epoch,accuracy,loss,val_accuracy,val_loss" + (",test_accuracy" if test else "")]
    for t in range(60):
        val_loss = 1 / (1 + 0.1 * t) + 0.003 * t + 0.01 * ((t * 7919) % 13 - 6) / 6
        accuracy = min(0.95, 0.5 + 0.008 * t - 0.00005 * t * t)
        line = f"{t},{min(0.99, 0.5 + 0.01 * t):.4f},{0.9 / (1 + 0.15 * t):.5f},{accuracy:.4f},{val_loss:.5f}"
        lines.append(line + (f",{accuracy - 0.01:.4f}" if test else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_training_log_without_test_metrics_replays_on_validation_data_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = keras_log(tmp_path / "keras_log.csv")
    status, out, err = run(capsys, "replay", str(log), "--json")
    rows = json.loads(out)
    assert status == 0 and rows and all(row["runs"] == 1 for row in rows)
    assert all(math.isfinite(row[key]) for row in rows for key in ("epochs_saved", "regret", "gain"))
    assert err.count("regret is measured on val_accuracy, validation data") == 1
    status, out, err = run(capsys, "replay", str(keras_log(tmp_path / "with_test.csv", test=True)))
    assert status == 0 and "in test_accuracy units" in out and "validation data" not in err
    status, out, err = run(capsys, "demo", str(log), "--quiet")
    assert status == 0 and "val_accuracy" in out


def test_comparison_rows_that_do_not_fit_the_logs_are_left_out_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["epoch,val_loss"] + [f"{t},{1 / (1 + 0.1 * t) + 0.003 * t}" for t in range(50)]
    path = tmp_path / "only_val_loss.csv"
    path.write_text("\n".join(lines) + "\n")
    status, out, err = run(capsys, "replay", str(path), "--json")
    strategies = [row["strategy"] for row in json.loads(out)]
    assert status == 0 and "patience=10" in strategies
    assert "recommended" not in strategies and "patience=20,keep_best_by=val_accuracy" not in strategies
    assert "earlystop: recommended: left out, it does not fit these logs" in err
    assert "regret is measured on val_loss" in err


def test_json_output_is_strict_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["epoch,val_loss,score"] + [
        f"{t},{1 / (1 + 0.1 * t) + 0.03 * t},{'inf' if t == 39 else 0.5}" for t in range(40)
    ]
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    status, out, _ = run(
        capsys, "replay", str(path), "--strategy", "patience=3", "--target", "score", "--target-mode", "max", "--json"
    )
    (row,) = json.loads(out, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    assert status == 0 and row["regret"] == 0.0 and row["gain"] is None  # -inf: the last epoch's score is inf


def test_sample_names_the_bundled_curves_for_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "tune", "sample", "--json")
    assert status == 0 and json.loads(out)["recommended"]
    status, out, _ = run(capsys, "plot", "sample", "--run", "0", "-o", str(tmp_path / "run.png"))
    assert status == 0 and (tmp_path / "run.png").stat().st_size > 0
    status, out, _ = run(capsys, "demo", "sample", "--quiet", "--strategy", "recommended")
    assert status == 0 and out.startswith("run 0: ran ")
    status, out, _ = run(capsys, "replay", "sample", "--strategy", "patience=10")
    assert status == 0 and out.startswith("120 runs")


def test_plot_needs_no_run_for_one_run_and_lists_the_runs_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = keras_log(tmp_path / "keras_log.csv")
    status, out, _ = run(capsys, "plot", str(log), "-o", str(tmp_path / "one.png"))
    assert status == 0 and out.startswith("run keras_log: ")
    status, _, err = run(capsys, "plot", "sample", "-o", str(tmp_path / "two.png"))
    assert status == 2 and "holds 120 runs: name one with --run (runs: '0', '1'," in err and "and 110 more" in err
    status, _, err = run(capsys, "plot", "sample", "--run", "x", "-o", str(tmp_path / "two.png"))
    assert status == 2 and "no run 'x' in sample; runs: '0', '1'," in err


def test_help_shows_defaults_and_version_is_there(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["replay", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # help wraps lines
    assert exit_.value.code == 0 and "(default: val_loss)" in out and "(default: auto)" in out
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"earlystop {__version__}"


def test_the_table_ends_with_what_to_do_next(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "replay", "--strategy", "recommended")
    assert status == 0 and out.rstrip().splitlines()[-1].startswith(
        'In your training loop: Monitor(policy="recommended"'
    )
    status, out, _ = run(capsys, "replay", "--strategy", "patience=10")
    assert out.rstrip().splitlines()[-1].startswith("`earlystop tune PATH` picks")


def test_names_map_logged_metrics_to_the_library_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["epoch,train_loss,my_val,val_acc"]
    lines += [f"{t},{0.9 / (1 + t)},{1 / (1 + 0.2 * t) + 0.01 * t},{0.5 + 0.01 * t}" for t in range(40)]
    log = tmp_path / "lightning_like.csv"
    log.write_text("\n".join(lines) + "\n")
    status, out, err = run(capsys, "replay", str(log), "--names", "my_val=val_loss", "--strategy", "recommended")
    assert status == 2 and "none of the 1 runs can be replayed" in err  # an explicit mapping replaces auto
    status, out, err = run(
        capsys, "replay", str(log), "--names", "my_val=val_loss,train_loss=loss,val_acc=val_accuracy",
        "--strategy", "recommended", "--json",
    )  # fmt: skip
    (row,) = json.loads(out)
    assert status == 0 and row["runs"] == 1 and "reading" not in err
    status, out, err = run(capsys, "replay", str(log), "--monitor", "my_val", "--mode", "min", "--json")
    assert status == 0 and "reading val_acc as val_accuracy, train_loss as loss" in err
    status, out, err = run(capsys, "replay", str(log), "--names", "my_val=val_acc")
    assert status == 2 and "logs 'val_acc' already" in err
    status, out, err = run(capsys, "replay", str(log), "--names", "my_val")
    assert status == 2 and "is not LOGGED=NAME" in err


def test_comparisons_fit_the_monitored_metric(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "replay", "--monitor", "val_accuracy", "--json")
    strategies = [row["strategy"] for row in json.loads(out)]
    assert status == 0 and "patience=10" in strategies and "patience=20,keep_best_by=val_accuracy" not in strategies
    assert "recommended: left out, it does not apply here: the policy was fitted with monitor='val_loss'" in err
    assert "`earlystop tune PATH --learn policy.json` fits one with these settings" in err and "drop" not in err
    status, out, err = run(capsys, "tune", "--monitor", "val_accuracy", "--json")
    assert status == 0 and json.loads(out)["front"] and "keep_best_by" not in err


def test_a_drawn_run_shows_what_was_decided() -> None:
    pytest.importorskip("matplotlib")
    from earlystop_core import Monitor
    from earlystop_core.replay.drawing import draw_run
    from earlystop_core.replay.scalar import replay_run

    curve = {
        "val_loss": [10.0, 5.0, 1.0, 0.5, 0.6, None, 0.8, 0.9],  # an unvalidated epoch: a gap
        "loss": [9.0, 4.0, 1.0, 0.4, 0.3, 0.25, 0.2, 0.15],
        "val_accuracy": [0.1, 0.3, 0.6, 0.7, 0.75, None, 0.7, 0.7],
    }
    options = {"patience": 2, "keep_best_by": "val_accuracy", "on_missing": "skip", "restore_best_weights": True}
    result = replay_run(curve, lambda: Monitor(**options), "val_accuracy", "max", reference="val_loss")
    figure = draw_run(curve, result, Monitor(**options).config, "run")
    axes, other = figure.axes
    assert axes.get_ylabel() == "val_loss" and other.get_ylabel() == "val_accuracy" and axes.get_xlabel() == "epoch"
    assert axes.get_yscale() == "log"  # the loss spans 20x
    marks = {
        line.get_label(): line.get_xdata()[0] for line in axes.lines if line.get_label().startswith(("kept", "stop"))
    }
    assert marks == {f"kept: epoch {result.kept} (best val_accuracy until the stop)": result.kept,
                     f"stopped: epoch {result.stop}": result.stop}  # fmt: skip
    assert result.kept == 4 and result.stop == 6  # epoch 5 was not validated: no patience counted there
    (accuracy,) = other.lines  # drawn through the epochs it was logged at, marked: never a line of gaps
    assert list(accuracy.get_xdata()) == [0, 1, 2, 3, 4, 6, 7] and accuracy.get_marker() == "."


def test_a_run_validated_every_other_epoch_is_drawn_through_its_checks() -> None:
    pytest.importorskip("matplotlib")
    from earlystop_core import Monitor
    from earlystop_core.replay.drawing import draw_run
    from earlystop_core.replay.scalar import replay_run

    every2 = [None if epoch % 2 == 0 else 1 / (1 + epoch) + 0.02 * epoch for epoch in range(20)]
    curve = {"val_loss": every2, "val_accuracy": [None if v is None else 1 - v / 2 for v in every2]}
    options = {"patience": 3, "keep_best_by": "val_accuracy", "on_missing": "skip", "restore_best_weights": True}
    result = replay_run(curve, lambda: Monitor(**options), "val_accuracy", "max", reference="val_loss")
    axes, other = draw_run(curve, result, Monitor(**options).config, "run").axes
    for line in (*[line for line in axes.lines if line.get_label() == "val_loss"], *other.lines):
        assert list(line.get_xdata()) == list(range(1, 20, 2)) and line.get_marker() == "."


@pytest.mark.slow
def test_a_keras_csvlogger_from_a_real_fit_replays_with_finite_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keras = pytest.importorskip("keras")
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :2].sum(axis=1) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)])  # fmt: skip
    log = tmp_path / "training.log"
    model.fit(x, y, validation_split=0.25, epochs=40, verbose=0, callbacks=[keras.callbacks.CSVLogger(str(log))])
    status, out, err = run(capsys, "replay", str(log), "--json")
    rows = json.loads(out)
    assert status == 0 and "recommended" in [row["strategy"] for row in rows], err
    assert all(math.isfinite(row[key]) for row in rows for key in ("epochs_saved", "regret", "gain"))
    assert "regret is measured on val_accuracy, validation data" in err


def test_a_metric_of_unknown_direction_replays_with_mode_and_is_a_clear_error_without(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--mode`` is the monitored metric's direction, also as the oracle's and the default target's; without it,
    a name that tells no direction leaves every row out, which is an error saying so, not a crash."""
    path = tmp_path / "runs.csv"
    rows = [
        f"r{run},{epoch},{1 / (1 + epoch) + 0.01 * run * max(0, epoch - 5)}" for run in range(3) for epoch in range(12)
    ]
    path.write_text("run,epoch,score\n" + "\n".join(rows) + "\n")
    assert main(["replay", str(path), "--monitor", "score", "--mode", "min", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table and all(math.isfinite(row["regret"]) for row in table)
    assert main(["replay", str(path), "--monitor", "score"]) == 2
    assert "none of the strategies applies to these logs" in capsys.readouterr().err


def test_a_run_without_the_monitored_metric_is_skipped_alone_and_sparse_runs_still_skip_unvalidated_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One run of a folder never logs val_loss (another validation set's name, a parent run): it is left out,
    named with its reason; the others, validated every other epoch, replay as validation checks."""
    folder = tmp_path / "runs"
    folder.mkdir()
    sparse = ["epoch,loss,val_loss"] + [f"{t},0.5,{0.02 * t + 1 / (1 + t) if t % 2 else ''}" for t in range(30)]
    (folder / "every2.csv").write_text("\n".join(sparse) + "\n")
    (folder / "other.csv").write_text("\n".join(["epoch,loss,val_loss_b"] + [f"{t},0.5,0.5" for t in range(10)]) + "\n")
    status, out, err = run(capsys, "replay", str(folder), "--strategy", "patience=3", "--json")
    assert status == 0, err
    (row,) = json.loads(out)
    assert row["runs"] == 1 and math.isfinite(row["regret"]) and math.isfinite(row["gain"])
    assert "patience=3: 1 of 2 runs skipped; run 'other': no 'val_loss' logged" in err and "Error" not in err


def test_a_run_that_diverged_from_the_start_is_skipped_with_its_metric_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["run,epoch,val_loss"] + [f"ok,{t},{1 / (1 + t)}" for t in range(10)] + [f"nan,{t},nan" for t in range(10)]
    (tmp_path / "bank.csv").write_text("\n".join(rows) + "\n")
    status, _, err = run(capsys, "replay", str(tmp_path / "bank.csv"), "--strategy", "patience=3")
    assert status == 0, err
    assert "1 of 2 runs skipped; run 'nan': 'val_loss' has no finite value in 10 epoch(s)" in err


def test_a_monitor_no_run_logs_is_refused_at_once_naming_the_metric_meant_and_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two validation sets (Lightning's dataloader_idx names), an Optuna-like 'value': the fix is --monitor."""
    two = tmp_path / "two.csv"
    two.write_text("epoch,loss,val_loss/dataloader_idx_0,val_loss/dataloader_idx_1\n0,1,1,1\n1,0.9,0.8,0.85\n")
    value = tmp_path / "value.csv"
    value.write_text("run,epoch,value\na,0,1\na,1,0.5\n")
    for command in ("replay", "tune", "plot", "demo"):
        extra = ["-o", str(tmp_path / "p.png")] if command == "plot" else []
        status, _, err = run(capsys, command, str(two), *extra)
        assert status == 2 and "no metric 'val_loss' in the logs" in err, (command, err)
        assert "(--monitor val_loss/dataloader_idx_0)" in err and "--names LOGGED=val_loss" in err
        status, _, err = run(capsys, command, str(value), *extra)
        assert status == 2 and "(--monitor value --mode min, or max)" in err, (command, err)
    status, _, err = run(
        capsys, "replay", str(value), "--monitor", "value", "--mode", "min", "--strategy", "patience=1"
    )
    assert status == 0, err


def test_logs_without_a_run_are_an_error_not_an_empty_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = tmp_path / "header.csv"
    header.write_text("run,epoch,loss,val_loss\n")
    for command in ("replay", "tune", "plot", "demo"):
        extra = ["-o", str(tmp_path / "p.png")] if command == "plot" else []
        status, out, err = run(capsys, command, str(header), *extra)
        assert status == 2 and out == "" and "no run with a logged epoch in it: nothing to replay" in err, err


def test_demo_judges_by_the_monitored_metric_when_the_logs_have_no_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(f'{{"epoch": {t}, "val_loss": {1 / (1 + t) + 0.05 * t}}}\n' for t in range(20)))
    status, out, err = run(capsys, "demo", str(path), "--strategy", "patience=3", "--quiet")
    assert status == 0, err
    assert "kept the weights of epoch 3: val_loss" in out and "regret is measured on val_loss" in err


def test_tune_judges_every_candidate_on_the_same_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One run of three logs val_accuracy: no candidate keeping the best accuracy (it would replay one run and
    be judged on it alone), and the front holds candidates replayed on every run."""
    rows = ["run,epoch,loss,val_loss,val_accuracy"]
    for index in range(3):
        for t in range(40):
            val_loss = 1 / (1 + 0.2 * t) + 0.005 * t + 0.01 * index
            accuracy = f"{1 - val_loss / 3}" if index == 0 else ""
            rows.append(f"{index},{t},{0.8 * val_loss},{val_loss},{accuracy}")
    (tmp_path / "bank.csv").write_text("\n".join(rows) + "\n")
    status, out, err = run(capsys, "tune", str(tmp_path / "bank.csv"), "--json")
    assert status == 0, err
    front = json.loads(out)["front"]
    assert front and all(row["runs"] == 3 for row in front)
    assert not any("keep_best_by" in row["strategy"] or row["strategy"] == "recommended" for row in front)


def test_plot_draws_the_recommended_policy_where_it_applies_else_a_patience_rule_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "log.jsonl"
    path.write_text(
        "".join(f'{{"epoch": {t}, "loss": 0.5, "val_loss": {1 / (1 + t) + 0.02 * t}}}\n' for t in range(30))
    )
    status, _, err = run(capsys, "plot", str(path), "-o", str(tmp_path / "a.png"))
    assert status == 0 and (tmp_path / "a.png").stat().st_size > 0, err
    assert "recommended does not apply to this run (metric 'val_accuracy' is not in the logs" in err
    assert "drawing patience=10 (--strategy to choose)" in err
    status, _, err = run(capsys, "plot", str(path), "--strategy", "recommended", "-o", str(tmp_path / "b.png"))
    assert status == 2 and "val_accuracy" in err  # named by the user: an error, not a substitute
    status, _, err = run(capsys, "plot", "-o", str(tmp_path / "c.png"), "--run", "0")
    assert status == 0 and "does not apply" not in err  # the sample logs what the policy reads


@pytest.mark.parametrize(("separator", "name"), [(";", "training.csv"), ("\t", "training.tsv")])
def test_a_keras_csvlogger_with_another_separator_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], separator: str, name: str
) -> None:
    keras = pytest.importorskip("keras")
    model, x, y = tiny_keras_regression(keras, rows=128, learning_rate=0.05)
    log = tmp_path / "logs" / name
    log.parent.mkdir()
    logger = keras.callbacks.CSVLogger(str(log), separator=separator)
    model.fit(x, y, validation_split=0.25, epochs=8, verbose=0, callbacks=[logger])
    assert log.read_text().startswith(f"epoch{separator}")
    for path in (log, log.parent):  # the file, or its folder
        status, out, err = run(capsys, "replay", str(path), "--strategy", "patience=2", "--json")
        (row,) = json.loads(out)
        assert status == 0 and row["runs"] == 1 and math.isfinite(row["regret"]), err


def test_runs_spelling_a_metric_differently_are_each_read_by_their_own_spelling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder of Lightning runs, one logging train_loss, another train_loss_step and train_loss_epoch: each
    run's training loss is read as loss, so the recommended policy replays both."""
    folder = tmp_path / "lightning_logs"
    for version, names in enumerate((["train_loss"], ["train_loss_step", "train_loss_epoch"])):
        rows = ["epoch,step," + ",".join([*names, "val_loss", "val_acc"])]
        for t in range(30):
            val_loss = 1 / (1 + 0.2 * t) + 0.01 * t
            rows.append(
                f"{t},{t}," + ",".join([f"{0.8 * val_loss}"] * len(names) + [f"{val_loss}", f"{1 - val_loss / 3}"])
            )
        (folder / f"version_{version}").mkdir(parents=True)
        (folder / f"version_{version}" / "metrics.csv").write_text("\n".join(rows) + "\n")
    status, out, err = run(capsys, "replay", str(folder), "--strategy", "recommended", "--json")
    assert status == 0, err
    assert [row["runs"] for row in json.loads(out)] == [2]
    assert "train_loss_epoch as loss, train_loss as loss" in err
    status, out, err = run(capsys, "demo", str(folder), "--run", "version_0", "--strategy", "recommended", "--quiet")
    assert status == 0, err


def test_when_no_strategy_applies_the_hint_fits_the_cause(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value = tmp_path / "value.csv"
    value.write_text("run,epoch,value\na,0,1\na,1,0.5\n")
    status, _, err = run(capsys, "replay", str(value), "--monitor", "value")
    assert status == 2 and "give the direction of 'value' with --mode min or --mode max" in err
    diverged = tmp_path / "diverged.csv"
    diverged.write_text("run,epoch,loss,val_loss\n" + "".join(f"a,{t},nan,nan\n" for t in range(5)))
    status, _, err = run(capsys, "replay", str(diverged))
    assert status == 2 and "pick strategies with --strategy" in err and "--mode" not in err.splitlines()[-1]
    assert "'val_loss' has no finite value in 5 epoch(s)" in err


def test_a_metric_named_as_logged_is_kept_and_the_name_the_strategies_read_is_suggested(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("".join(f'{{"epoch": {t}, "loss": 0.5, "eval_loss": {1 / (1 + t)}, "eval_accuracy": 0.5}}\n'
                            for t in range(20)))  # fmt: skip
    status, _, err = run(capsys, "replay", str(path), "--target", "eval_accuracy", "--strategy", "patience=3")
    assert status == 0, err
    assert "reading eval_loss as val_loss" in err
    assert (
        "eval_accuracy kept as named by --target; the built-in strategies read val_accuracy: --target val_accuracy"
        in err
    )


def test_tune_learns_a_policy_from_runs_validated_every_other_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The policy is asked at the validation checks alone while fitted, as when it runs (it keeps on_missing)."""
    import random

    from earlystop_core import LearnedPolicy

    rng = random.Random(0)
    rows = ["run,epoch,loss,val_loss,val_accuracy"]
    for index in range(16):
        rate, upturn = rng.uniform(0.1, 0.4), rng.uniform(0.0, 0.01)
        for t in range(60):
            val_loss = 0.3 + 1 / (1 + rate * t) + upturn * max(0, t - 15) + rng.gauss(0, 0.01)
            validated = t % 2 == 1
            cells = [f"{val_loss}", f"{1 - val_loss / 3}"] if validated else ["", ""]
            rows.append(f"r{index},{t},{0.8 / (1 + rate * t)}," + ",".join(cells))
    (tmp_path / "bank.csv").write_text("\n".join(rows) + "\n")
    policy = tmp_path / "policy.json"
    status, out, err = run(capsys, "tune", str(tmp_path / "bank.csv"), "--learn", str(policy), "--json")
    assert status == 0, err
    assert LearnedPolicy.load(policy).monitor["on_missing"] == "skip" and "learned policy saved to" in err
    status, out, err = run(capsys, "replay", str(tmp_path / "bank.csv"), "--strategy", f"policy={str(policy)!r}",
                           "--json")  # fmt: skip
    assert status == 0 and [row["runs"] for row in json.loads(out)] == [16], err


def test_files_are_named_in_errors_and_a_missing_output_folder_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "replay", str(tmp_path / "nope.csv"))
    assert status == 2 and err.strip() == f"earlystop: error: {tmp_path / 'nope.csv'}: No such file or directory"
    missing = tmp_path / "no" / "p.json"
    status, _, err = run(capsys, "tune", "sample", "--learn", str(missing))
    assert status == 2 and f"--learn {missing}: no folder" in err and ".tmp" not in err
    status, _, err = run(capsys, "plot", "sample", "--run", "0", "-o", str(tmp_path / "no" / "x.png"))
    assert status == 2 and "-o " in err and "no folder" in err
    from earlystop_core._files import write_atomically

    with pytest.raises(FileNotFoundError, match=r"no folder .* to write 'p\.json' in"):
        write_atomically(missing, lambda file: file.write(b"{}"))


def test_tune_learn_on_the_sample_groups_its_runs_by_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "tune", "sample", "--learn", str(tmp_path / "p.json"), "--json")
    assert status == 0 and "folds of 10 group(s)" in err, err  # the sample's 10 problems, 12 runs each


def test_tune_plots_the_front_with_each_point_labelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from earlystop_core.replay.drawing import draw_front

    status, out, err = run(capsys, "tune", "sample", "--plot", str(tmp_path / "front.png"), "--json")
    assert status == 0 and (tmp_path / "front.png").stat().st_size > 0 and "front plotted to" in err
    front = json.loads(out)["front"]
    (axes,) = draw_front(front, front, front[0]).axes
    assert [text.get_text() for text in axes.texts] == [row["strategy"] for row in front]
    assert axes.get_xlabel() == "epochs saved (%)" and axes.get_ylabel() == "regret (target units)"


def test_a_target_logged_less_often_than_the_monitored_metric_gives_no_row_of_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by a fuzzer of the command line: val_accuracy every other check, test_accuracy at the end alone."""
    sparse = tmp_path / "sparse.csv"
    sparse.write_text("epoch,val_loss,val_accuracy\n0,1.0,0.5\n1,0.5,\n2,0.6,0.7\n")
    status, out, err = run(capsys, "replay", str(sparse), "--strategy", "patience=1", "--json")
    assert status == 0 and "regret is measured on val_loss" in err, err  # auto: not the sparse val_accuracy
    (row,) = json.loads(out)
    assert row["regret"] == 0.0 and row["gain"] == pytest.approx(0.1)
    status, _, err = run(capsys, "replay", str(sparse), "--strategy", "patience=1", "--target", "val_accuracy")
    assert status == 2 and "no run has a finite val_accuracy at its kept and best epochs" in err
    partial = tmp_path / "partial.csv"  # run b leaves test_accuracy blank throughout
    partial.write_text("run,epoch,loss,val_loss,test_accuracy\na,0,1,1.0,0.5\na,1,1,0.5,0.6\na,2,1,0.6,0.7\n"
                       "b,0,1,1.0,\nb,1,1,0.5,\nb,2,1,0.6,\n")  # fmt: skip
    status, out, err = run(capsys, "replay", str(partial), "--strategy", "patience=1", "--json")
    (row,) = json.loads(out)
    assert status == 0 and "regret is measured on val_loss" in err and math.isfinite(row["regret"]), err
    status, out, err = run(capsys, "replay", str(partial), "--strategy", "patience=1", "--target", "test_accuracy")
    assert status == 0 and "1 of 2 runs have no finite test_accuracy at the kept or the best epoch" in err
    assert "nan" not in out


def test_fuzzed_command_lines_get_the_right_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sparse = tmp_path / "sa.csv"
    sparse.write_text("epoch,loss,val_loss,val_accuracy\n0,1.0,1.0,0.5\n1,0.8,0.8,\n2,0.6,0.7,0.6\n3,0.5,0.75,\n")
    status, _, err = run(capsys, "replay", str(sparse), "--strategy", "patience=1,keep_best_by=val_accuracy")
    assert status == 2 and "and some of those lack it (logged less often)" in err and "these logs lack" not in err
    header = tmp_path / "header.csv"
    header.write_text("epoch,loss,val_loss\n")
    status, _, err = run(capsys, "replay", str(header))
    assert status == 2 and "no run with a logged epoch in it" in err
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal
        main(["tune", str(sparse), "--max-regret", "nan"])
    assert exited.value.code == 2 and "--max-regret: must be a finite number" in capsys.readouterr().err


def test_small_fixes_the_flag_fuzzer_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full.csv"
    full.write_text("epoch,loss,val_loss\n" + "".join(f"{t},{1 / (1 + t)},{1 / (1 + t)}\n" for t in range(10)))
    status, _, err = run(capsys, "replay", str(full), "--monitor", "value", "--names", "loss=value",
                         "--strategy", "patience=2")  # fmt: skip
    assert status == 2 and "Pass --mode min if lower is better" in err and "mode='min'" not in err
    status, _, err = run(capsys, "replay", str(full), "--names", "a=b=c")
    assert status == 2 and "'a=b=c' is not LOGGED=NAME" in err
    blank = tmp_path / "blank.csv"
    blank.write_text("run,epoch,loss,val_loss\n" + "".join(f"a,{t},1,{1 / (1 + t)}\n" for t in range(30))
                     + "".join(f"b,{t},1,\n" for t in range(30)))  # fmt: skip
    status, _, err = run(capsys, "tune", str(blank), "--learn", str(tmp_path / "p.json"))
    assert status == 2 and "run 'b': 'val_loss' has no finite value in 30 epoch(s)" in err
    status, _, err = run(capsys, "tune", str(full), "--learn", str(tmp_path / "q.json"), "--keep-best-by", "acc")
    assert status == 2 and "does not log it" in err and "0 more" not in err
