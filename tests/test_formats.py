"""Curve file readers: each format, its detection, directories, and exact errors for malformed files."""

from __future__ import annotations

import gzip
import math
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from earlystop_core import Monitor
from earlystop_core.formats.long_csv import load_curves
from earlystop_core.formats.readers import (
    FormatError,
    detect_format,
    load_any,
    load_directory,
    load_jsonl,
    load_keras_csv,
    load_lightning_csv,
    load_long_csv,
)
from earlystop_core.replay.bank import Bank
from earlystop_core.replay.engine import evaluate
from earlystop_core.replay.scalar import replay

from helpers import fit_tiny_lightning_model, tiny_keras_regression

NAN = math.nan


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def same(actual: Any, expected: Any) -> None:
    """Equal, NaN equal to NaN (compared through repr: exact floats, ordered keys)."""
    assert repr(actual) == repr(expected)


def raises_at(where: str, match: str = "") -> Any:
    """pytest.raises for a FormatError whose message starts with ``where`` (file:line:column)."""
    return pytest.raises(FormatError, match=re.escape(where) + ".*" + match)


# -- long CSV -----------------------------------------------------------------------------

LONG = "run,epoch,val_loss,test_accuracy\na,0,1.0,0.5\na,1,0.8,0.6\nb,0,0.9,\n"


@pytest.mark.parametrize("name", ["curves.csv", "curves.csv.gz"])
def test_the_long_csv_is_read_by_load_curves(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, LONG)
    assert detect_format(path) == "long"
    expected = {
        "a": {"val_loss": [1.0, 0.8], "test_accuracy": [0.5, 0.6]},
        "b": {"val_loss": [0.9], "test_accuracy": [None]},  # an empty cell: not logged
    }
    same(load_any(path), expected)
    same(load_long_csv(path), load_curves(path))


def test_a_malformed_long_csv_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "curves.csv", "run,epoch,val_loss\na,0,1.0\na,1,abc\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:3:3: expected a number, got 'abc'")):
        load_any(path)


# -- Keras CSVLogger ----------------------------------------------------------------------


def test_a_keras_csv_is_one_run_named_after_its_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "training.log", "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.5,0.9,NA,nan\n\n1,0.6,0.8,0.55,\n"
    )
    assert detect_format(path) == "keras"
    expected = {
        "training": {"accuracy": [0.5, 0.6], "loss": [0.9, 0.8], "val_accuracy": [None, 0.55], "val_loss": [NAN, None]}
    }
    same(load_any(path), expected)
    same(load_keras_csv(path), expected)
    assert list(load_keras_csv(path, run="r7")) == ["r7"]
    gz = write(tmp_path / "run3.csv.gz", "epoch,loss\n0,1e-3\n1,inf\n")
    same(load_any(gz), {"run3": {"loss": [0.001, math.inf]}})


def test_a_keras_training_resumed_from_an_earlier_epoch_into_the_same_log_reads_as_its_weights_went_on(
    tmp_path: Path,
) -> None:
    """CSVLogger(append=True), training resumed from the checkpoint of epoch 4 after running to epoch 9: epochs 5
    to 9 are logged twice; the later rows are what the weights went on from, said in a warning."""
    keras = pytest.importorskip("keras")
    model, x, y = tiny_keras_regression(keras, rows=64, learning_rate=0.02)
    log = tmp_path / "training.log"
    first = model.fit(x, y, validation_split=0.25, epochs=10, verbose=0,
                      callbacks=[keras.callbacks.CSVLogger(str(log), append=True)])  # fmt: skip
    second = model.fit(x, y, validation_split=0.25, initial_epoch=5, epochs=12, verbose=0,
                       callbacks=[keras.callbacks.CSVLogger(str(log), append=True)])  # fmt: skip
    with pytest.warns(UserWarning, match=r"the epochs go back \(epoch 5 at line 12\): read as a training resumed"):
        (curve,) = load_any(log).values()
    expected = first.history["val_loss"][:5] + second.history["val_loss"]
    assert curve["val_loss"] == pytest.approx(expected, rel=1e-6) and len(curve["loss"]) == 12
    log.write_text(log.read_text() + "12,0.1,0.2,0.3\n")  # another training appended with another metric
    with pytest.raises(FormatError, match=r"expected 3 columns, got 4 \(another training appended with other"):
        load_any(log)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("epoch,loss\n0,0.5\n1,abc\n", ":3:2: ", "expected a number, got 'abc'"),
        ("epoch,loss\n0,0.5\n2,0.4\n", ":3:1: ", "expected epoch 1"),
        ("epoch,loss\n1,0.5\n", ":2:1: ", "expected epoch 0"),
        ("epoch,loss,acc\n0,0.5\n", ":2:3: ", "expected 3 columns, got 2"),
        ("epoch,loss\n0,0.5,0.6\n", ":2:3: ", "expected 2 columns, got 3"),
        ("epoch,loss,loss\n0,0.5,0.6\n", ":1:3: ", "column 'loss' again"),
        ("epoch,,loss\n0,0.5,0.6\n", ":1:2: ", "a column has no name"),
        ("epoch,loss\n-1,0.5\n", ":2:1: ", "the epoch must be an integer"),
        ("epoch,loss\n0.5,0.5\n", ":2:1: ", "the epoch must be an integer"),
        ('epoch,loss\n0,"[1, 2]"\n', ":2:2: ", "expected a number, got '[1, 2]'"),
        ("epoch\n0\n", ":1:1: ", "expected a header 'epoch,<metric>"),
    ],
)
def test_a_malformed_keras_csv_names_file_line_and_column(tmp_path: Path, text: str, where: str, problem: str) -> None:
    path = write(tmp_path / "run.csv", text)
    with raises_at(f"{path}{where}", re.escape(problem)):
        load_keras_csv(path)


def test_bytes_that_are_not_utf8_are_located(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_bytes(b"epoch,loss\n0,0.5\n1,0.\xff4\n")
    with raises_at(f"{path}:3:5: ", "not UTF-8"):
        load_any(path)


def test_a_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_bytes("\ufeffepoch,loss\n0,0.5\n".encode())
    assert load_any(path) == {"run": {"loss": [0.5]}}


# -- Lightning CSVLogger ------------------------------------------------------------------

LIGHTNING = """epoch,step,train_loss_epoch,train_loss_step,val_acc,val_loss
0,4,,0.95,,
0,9,,0.9,,
0,9,,,0.5,1.0
0,9,0.92,,,
1,14,,0.8,,
1,19,,0.7,,
1,19,0.75,,,
2,24,,0.6,,
2,29,,,0.7,0.6
2,29,0.62,,,
"""


def test_lightning_rows_are_merged_per_epoch_last_value_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "lightning_logs" / "version_3" / "metrics.csv", LIGHTNING)
    assert detect_format(path) == "lightning"
    expected = {
        "version_3": {
            "train_loss_epoch": [0.92, 0.75, 0.62],
            "train_loss_step": [0.9, 0.7, 0.6],
            "val_acc": [0.5, None, 0.7],  # validation every other epoch: not logged in between
            "val_loss": [1.0, None, 0.6],
        }
    }
    same(load_any(path), expected)
    same(load_lightning_csv(path), expected)


def test_lightning_epochs_with_nothing_logged_are_missing_and_order_does_not_matter(tmp_path: Path) -> None:
    text = "step,val_loss,epoch\n50,0.4,4.0\n10,0.9,0\n20,nan,1\n20,0.8,1\n"
    path = write(tmp_path / "metrics.csv", text)
    # A logged NaN is a value (the later 0.8 replaces it); epochs 2 and 3 logged nothing.
    same(load_lightning_csv(path, run="r"), {"r": {"val_loss": [0.9, 0.8, None, None, 0.4]}})


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("epoch,step,val_loss\n0,1,0.5\n1,2,x\n", ":3:3: ", "expected a number, got 'x'"),
        ("epoch,step,val_loss\n0,1,0.5\n,2,0.4\n", ":3:1: ", "the epoch is empty"),
        ("val_loss,step,epoch\n0.5,1,zero\n", ":2:3: ", "the epoch must be an integer"),
        ("epoch,step,val_loss\n0,one,0.5\n", ":2:2: ", "expected a number, got 'one'"),
        ("epoch,step,val_loss\n0,1,0.5,7\n", ":2:4: ", "expected 3 columns, got 4"),
        ("epoch,step,val_loss\n99999999999,1,0.5\n", ":2:1: ", "the epoch must be an integer from 0 to 10,000,000"),
    ],
)
def test_a_malformed_lightning_csv_names_file_line_and_column(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path / "metrics.csv", text)
    with raises_at(f"{path}{where}", re.escape(problem)):
        load_any(path)


# -- JSON lines ---------------------------------------------------------------------------


def test_json_lines_with_runs(tmp_path: Path) -> None:
    lines = [
        '{"run": "a", "epoch": 0, "val_loss": 1.0, "acc": 0.5}',
        '{"run": 7, "epoch": 0, "val_loss": NaN}',
        "",
        '{"run": "a", "epoch": 1, "val_loss": 0.8, "acc": null}',
        '{"run": "a", "epoch": 1, "acc": 0.6}',
        '{"run": "a", "epoch": 3, "val_loss": "Infinity"}',
    ]
    path = write(tmp_path / "log.jsonl", "\n".join(lines) + "\n")
    assert detect_format(path) == "jsonl"
    expected = {"a": {"val_loss": [1.0, 0.8, None, math.inf], "acc": [0.5, 0.6, None, None]}, "7": {"val_loss": [NAN]}}
    same(load_any(path), expected)


def test_json_lines_without_runs_are_one_run_named_after_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "seed3.ndjson.gz", '{"epoch": 0, "loss": 2}\n{"epoch": 1.0, "loss": 1.5}\n')
    same(load_any(path), {"seed3": {"loss": [2.0, 1.5]}})
    same(load_jsonl(path, run="x"), {"x": {"loss": [2.0, 1.5]}})


@pytest.mark.parametrize(
    ("lines", "where", "problem"),
    [
        (['{"epoch": 0, "loss": 1.0}', '{"epoch": 1, "loss": 0.5'], ":2:25: ", "not JSON: Expecting ',' delimiter"),
        (['{"epoch": 0, "loss": 1.0}', "[1, 2]"], ":2:1: ", "expected an object"),
        (['{"epoch": 0, "loss": 1.0}', '{"loss": 0.5}'], ":2:1: ", "no 'epoch' key"),
        (['{"epoch": 0, "loss": "high"}'], ":1:14: ", "metric 'loss': expected a number, got 'high'"),
        (['{"epoch": 0, "loss": true}'], ":1:14: ", "expected a number, got True"),
        (['{"epoch": 0, "loss": [1]}'], ":1:14: ", "expected a number, got [1]"),
        (['{"epoch": -1, "loss": 1.0}'], ":1:2: ", "the epoch must be an integer"),
        (['{"epoch": "0", "loss": 1.0}'], ":1:2: ", "the epoch must be an integer"),
        (['{"run": "a", "epoch": 0}', '{"epoch": 1}'], ":2:1: ", "no 'run' key, unlike the lines before"),
        (['{"epoch": 0}', '{"run": "a", "epoch": 1}'], ":2:1: ", "has a 'run' key, unlike the lines before"),
        (['{"run": [1], "epoch": 0}'], ":1:2: ", "'run' must be a string or an integer"),
    ],
)
def test_malformed_json_lines_name_file_line_and_column(
    tmp_path: Path, lines: list[str], where: str, problem: str
) -> None:
    path = write(tmp_path / "log.jsonl", "\n".join(lines) + "\n")
    with raises_at(f"{path}{where}", re.escape(problem)):
        load_any(path)


# -- detection and directories --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [("loss,val_loss\n0.5,0.6\n", "cannot tell the format"), ("", "the file is empty"), ("\n\n", "the file is empty")],
)
def test_an_unknown_format_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path / "curves.csv", text)
    with pytest.raises(FormatError, match=re.escape(str(path)) + ".*" + problem):
        load_any(path)


def test_a_format_can_be_forced_and_is_validated(tmp_path: Path) -> None:
    path = write(tmp_path / "odd.txt", "epoch,step,loss\n0,0,1.0\n")
    assert load_any(path, format="keras") == {"odd": {"step": [0.0], "loss": [1.0]}}
    assert load_any(path) == {"odd": {"loss": [1.0]}}
    with pytest.raises(ValueError, match="format must be one of"):
        load_any(path, format="csv")
    with pytest.raises(ValueError, match="is a directory"):
        load_any(tmp_path, format="keras")


def test_a_directory_holds_one_run_per_file_in_any_format(tmp_path: Path) -> None:
    write(tmp_path / "keras" / "seed0.csv", "epoch,val_loss\n0,1.0\n1,0.9\n")
    write(tmp_path / "keras" / "seed1.log.gz", "epoch,val_loss\n0,0.8\n")
    write(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", "epoch,step,val_loss\n0,1,0.7\n")
    write(tmp_path / "lightning_logs" / "version_0" / "hparams.yaml", "lr: 0.1\n")
    write(
        tmp_path / "more.jsonl",
        '{"run": "j1", "epoch": 0, "val_loss": 0.6}\n{"run": "j2", "epoch": 0, "val_loss": 0.5}\n',
    )
    write(tmp_path / "runs.csv", "run,problem\nj1,digits\n")  # metadata beside the curves: skipped
    write(tmp_path / "notes.log", "started training\n")  # some other log: skipped
    write(tmp_path / ".hidden" / "x.csv", "garbage")
    write(tmp_path / "config.json", '{"epoch": 3}')  # .json files are not curve files in a directory
    curves = load_any(tmp_path)
    assert curves == {
        "keras/seed0": {"val_loss": [1.0, 0.9]},
        "keras/seed1": {"val_loss": [0.8]},
        "lightning_logs/version_0": {"val_loss": [0.7]},
        "j1": {"val_loss": [0.6]},
        "j2": {"val_loss": [0.5]},
    }
    assert load_directory(tmp_path) == curves
    assert Bank.load(tmp_path).runs == tuple(curves)


def test_a_directory_like_the_dev_bank_reads_its_long_csv(tmp_path: Path) -> None:
    write(tmp_path / "curves.csv.gz", LONG)
    write(tmp_path / "runs.csv", "run,problem,epochs\na,cancer1,2\nb,card1,1\n")
    write(tmp_path / "README.md", "# bank\n")
    assert sorted(load_any(tmp_path)) == ["a", "b"]


def test_directory_errors(tmp_path: Path) -> None:
    with raises_at(f"{tmp_path}: ", "no curve files"):
        load_directory(tmp_path)
    write(tmp_path / "a.csv", "epoch,loss\n0,1.0\n")
    write(tmp_path / "b.jsonl", '{"run": "a", "epoch": 0, "loss": 2.0}\n')
    with raises_at(f"{tmp_path / 'b.jsonl'}: ", "run 'a' is also in"):
        load_directory(tmp_path)
    (tmp_path / "b.jsonl").unlink()
    write(tmp_path / "sub" / "c.csv", "epoch,loss\n0,x\n")
    with raises_at(f"{tmp_path / 'sub' / 'c.csv'}:2:2: ", "expected a number"):
        load_directory(tmp_path)
    with pytest.raises(NotADirectoryError):
        load_directory(tmp_path / "a.csv")


# -- end to end -------------------------------------------------------------------------------


def test_curves_read_from_files_replay_as_the_scalar_replay_does(tmp_path: Path) -> None:
    runs = {
        "r0": [1.0, 0.8, 0.85, 0.7, 0.75, 0.76, 0.9],
        "r1": [0.5, 0.6, 0.7],
        "r2": [2.0, 1.0, 0.5, 0.25, 0.3, 0.31, 0.32, 0.33],
    }
    for run, losses in runs.items():
        rows = "".join(f"{epoch},{loss},{1 - loss / 3:.4f}\n" for epoch, loss in enumerate(losses))
        write(tmp_path / f"{run}.csv", "epoch,val_loss,test_accuracy\n" + rows)
    curves = load_any(tmp_path)
    options: dict[str, Any] = {"patience": 2, "restore_best_weights": True}
    expected = replay(curves, lambda: Monitor(**options))
    assert evaluate(Bank.load(tmp_path), options).results() == expected
    assert [r.stop for r in expected] == [5, 2, 5]


# -- the real loggers' files ------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_keras_csvlogger_file(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    path = tmp_path / "training.log"
    logger = keras.callbacks.CSVLogger(str(path))
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.9, "accuracy": 0.5})  # no validation yet: Keras adds val_ columns
    logger.on_epoch_end(1, {"loss": 0.7, "accuracy": 0.6, "val_loss": 0.8, "val_accuracy": 0.55})
    logger.on_train_end()
    expected = {"accuracy": [0.5, 0.6], "loss": [0.9, 0.7], "val_accuracy": [None, 0.55], "val_loss": [None, 0.8]}
    same(load_any(path), {"training": expected})


def test_a_real_lightning_run_logging_validation_steps_reads_its_epoch_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """self.log(..., on_step=True, on_epoch=True) in validation_step: Lightning writes each step's own row with no
    epoch (val_loss_step); those rows are skipped, val_loss_epoch read (as val_loss), and the run replays."""
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.loggers import CSVLogger

    from earlystop_core.cli import main

    fit_tiny_lightning_model(CSVLogger(str(tmp_path), name="tiny"), max_epochs=6, val_on_step=True)
    (path,) = tmp_path.rglob("metrics.csv")
    assert any(line.startswith(",") for line in path.read_text().splitlines())  # a step's row: no epoch
    (curve,) = load_any(path).values()
    assert "val_loss_step" not in curve and len(curve["val_loss_epoch"]) == 6
    assert all(value is not None and math.isfinite(value) for value in curve["val_loss_epoch"])
    assert main(["replay", str(path), "--strategy", "patience=2", "--json"]) == 0
    assert "reading val_loss_epoch as val_loss" in capsys.readouterr().err


def test_a_real_lightning_run_validated_twice_an_epoch_reads_the_last_check_with_a_warning(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.loggers import CSVLogger

    fit_tiny_lightning_model(CSVLogger(str(tmp_path), name="tiny"), max_epochs=3, val_check_interval=0.5)
    (path,) = tmp_path.rglob("metrics.csv")
    with pytest.warns(UserWarning, match=r"'val_loss' validated several times within an epoch \(val_check_interval"):
        (curve,) = load_any(path).values()
    assert len(curve["val_loss"]) == 3
    fit_tiny_lightning_model(CSVLogger(str(tmp_path), name="once"), max_epochs=3)
    (once,) = (tmp_path / "once").rglob("metrics.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # validated once an epoch: nothing to say
        load_any(once)


@pytest.mark.slow
def test_a_real_lightning_csvlogger_file(tmp_path: Path) -> None:
    csv_logs = pytest.importorskip("lightning_fabric.loggers.csv_logs")
    logger = csv_logs.CSVLogger(str(tmp_path), name="exp", version=2)
    for epoch in range(3):
        for step in range(2):
            logger.log_metrics(
                {"train_loss_step": 1.0 - 0.1 * (2 * epoch + step), "epoch": epoch}, step=4 * epoch + step
            )
        if epoch % 2 == 0:
            logger.log_metrics({"val_loss": 1.0 - 0.2 * epoch, "epoch": epoch}, step=4 * epoch + 1)
        logger.log_metrics({"train_loss_epoch": 0.95 - 0.2 * epoch, "epoch": epoch}, step=4 * epoch + 1)
    logger.save()
    curves = load_any(tmp_path)
    assert list(curves) == ["exp/version_2"]
    same(
        curves["exp/version_2"],
        {
            "train_loss_epoch": [0.95 - 0.2 * epoch for epoch in range(3)],
            "train_loss_step": [1.0 - 0.1 * (2 * epoch + 1) for epoch in range(3)],
            "val_loss": [1.0, None, 1.0 - 0.2 * 2],
        },
    )


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (b"run,epoch,val_loss\na,0,0.5\na,2,0.4\n", ":3:2: run 'a' jumps to epoch 2"),
        (b"run,epoch,val_loss\na,0,abc\n", ":2:3: expected a number"),
        (b"run,epoch,val_loss\na,0,0.5,9\n", ":2: expected 3 columns"),
        (b"run,epoch,val_loss\na,0,\xff\xfe\n", ": not UTF-8 text"),
    ],
)
def test_a_bad_long_csv_is_a_format_error_naming_where(tmp_path: Path, content: bytes, where: str) -> None:
    from earlystop_core import FormatError as Exported

    path = tmp_path / "curves.csv"
    path.write_bytes(content)
    for read in (load_any, load_long_csv, load_curves):
        with pytest.raises(Exported, match=re.escape(where)):
            read(path)


def test_a_long_csv_that_is_not_gzip_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "curves.csv.gz"
    path.write_bytes(b"run,epoch,val_loss\n")
    with pytest.raises(FormatError, match="unreadable"):
        load_curves(path)


def ray_trial(folder: Path, results: list[str]) -> Path:
    write(folder / "params.json", "{}")
    return write(folder / "result.json", "".join(line + "\n" for line in results))


def test_a_ray_trial_reads_its_numbers_nested_as_tune_spells_them_and_keeps_nan(tmp_path: Path) -> None:
    ray_trial(
        tmp_path / "trial_a",
        [
            '{"training_iteration": 1, "val_loss": NaN, "eval": {"acc": 0.5}, "status": "ok", "config": {"lr": 1}}',
            '{"training_iteration": 2, "val_loss": 0.5, "eval": {"acc": 0.6}, "status": "ok", "done": true}',
        ],
    )
    curves = load_any(tmp_path)
    assert list(curves) == ["trial_a"] and curves["trial_a"]["eval/acc"] == [0.5, 0.6]
    assert math.isnan(curves["trial_a"]["val_loss"][0]) and set(curves["trial_a"]) == {"val_loss", "eval/acc"}


@pytest.mark.parametrize(
    ("results", "message"),
    [
        (['{"training_iteration": 1, "loss": 1}', '{"training_iteration": 3, "loss": 1}'], r":2: report 3 follows"),
        (['{"training_iteration": 2, "loss": 1}'], r":1: report 2 follows report 0"),
        (['{"loss": 1}'], r":1: not a Tune result"),
        (['{"training_iteration": "one", "loss": 1}'], r":1: training_iteration 'one' is not a report number"),
        (['{"training_iteration": 1, "loss": 1', ""], r":1:\d+: not JSON"),
    ],
)
def test_a_bad_ray_result_is_a_format_error_naming_where(tmp_path: Path, results: list[str], message: str) -> None:
    ray_trial(tmp_path / "trial_a", results)
    with pytest.raises(FormatError, match=message):
        load_any(tmp_path)


def test_a_json_lines_metric_logged_twice_in_an_epoch_is_read_last_with_a_warning(tmp_path: Path) -> None:
    """Lines of one epoch merge (training and validation logged apart); the same metric twice is a conflict,
    most often a training resumed from an earlier epoch: the later value is read, and said."""
    lines = ['{"epoch": 0, "loss": 1.0}', '{"epoch": 0, "val_loss": 0.9}', '{"epoch": 1, "val_loss": 0.9}',
             '{"epoch": 1, "val_loss": 0.1}', '{"epoch": 1, "val_loss": 0.2}']  # fmt: skip
    path = write(tmp_path / "log.jsonl", "\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"log.jsonl:4: 'val_loss' logged again at epoch 1 \(2 value\(s\)"):
        assert load_any(path) == {"log": {"loss": [1.0, None], "val_loss": [0.9, 0.2]}}


def test_a_csv_syntax_error_names_its_line_in_either_reader(tmp_path: Path) -> None:
    """A cell over the csv module's 128 KiB field limit: the long CSV's list reader and the Keras reader alike."""
    long = write(tmp_path / "bank.csv", "run,epoch,loss\na,0,1\n" + "r" * 131073 + ",1,1\n")
    with raises_at(f"{long}:3: ", re.escape("unreadable CSV (field larger than field limit (131072))")):
        load_curves(long)
    keras = write(tmp_path / "run.csv", "epoch,loss\n0,1\n1," + "1" * 131073 + "\n")
    with raises_at(f"{keras}:3: ", re.escape("unreadable CSV (field larger than field limit (131072))")):
        load_any(keras)
