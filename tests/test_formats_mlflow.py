"""MLflow file stores written by the real client (mlflow.log_metric, Lightning's MLFlowLogger), read back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from earlystop_core.cli import main
from earlystop_core.errors import FormatError
from earlystop_core.formats.readers import load_any

from helpers import fit_tiny_lightning_model

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def file_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # recent MLflow keeps the file store behind a flag


def log_runs(store: Path) -> None:
    mlflow.set_tracking_uri(store.as_uri())
    mlflow.set_experiment("digits")
    for name, rate in (("fast", 0.3), ("slow", 0.1)):
        with mlflow.start_run(run_name=name):
            for epoch in range(30):
                val_loss = 1 / (1 + rate * epoch) + 0.004 * epoch
                mlflow.log_metric("val_loss", val_loss, step=epoch)
                mlflow.log_metric("train/loss", 0.9 / (1 + rate * epoch), step=epoch)
                if epoch % 2 == 1:  # validated every other epoch
                    mlflow.log_metric("val_accuracy", 1 - val_loss / 3, step=epoch)
    mlflow.set_experiment("other")
    with mlflow.start_run(run_name="fast"):
        mlflow.log_metric("val_loss", 0.5, step=0)


def test_runs_of_every_experiment_are_read_by_name(tmp_path: Path) -> None:
    log_runs(tmp_path / "mlruns")
    curves = load_any(tmp_path / "mlruns")
    assert sorted(curves) == ["digits/fast", "digits/slow", "other/fast"]
    fast = curves["digits/fast"]
    assert fast["val_loss"] == [1 / (1 + 0.3 * epoch) + 0.004 * epoch for epoch in range(30)]
    assert fast["val_accuracy"][0] is None and fast["val_accuracy"][1] is not None  # not logged at epoch 0
    assert curves["other/fast"] == {"val_loss": [0.5]}


def test_an_mlflow_store_replays_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_runs(tmp_path / "mlruns")
    status = main(["replay", str(tmp_path / "mlruns"), "--strategy", "patience=3", "--json"])
    out, err = capsys.readouterr()
    (row,) = json.loads(out)
    assert status == 0 and row["runs"] == 3 and math.isfinite(row["regret"]), err
    assert "reading train/loss as loss" in err


def test_a_lightning_mlflow_logger_maps_batch_steps_to_epochs(tmp_path: Path) -> None:
    lightning = pytest.importorskip("pytorch_lightning")
    logger = lightning.loggers.MLFlowLogger(experiment_name="tiny", tracking_uri=(tmp_path / "mlruns").as_uri())
    fit_tiny_lightning_model(logger, max_epochs=5)
    (run,) = load_any(tmp_path / "mlruns").values()
    assert len(run["val_loss"]) == 5 and len(run["train_loss"]) == 5
    assert all(value is not None and math.isfinite(value) for value in run["val_loss"])


def test_malformed_stores_are_refused_clearly(tmp_path: Path) -> None:
    run = tmp_path / "mlruns" / "1" / "abc"
    (run / "metrics").mkdir(parents=True)
    (tmp_path / "mlruns" / "1" / "meta.yaml").write_text("name: broken\n")
    (run / "metrics" / "val_loss").write_text("1700000000000 0.9\n")
    with pytest.raises(FormatError, match="expected '<timestamp> <value> <step>'"):
        load_any(tmp_path / "mlruns")
    with pytest.raises(FormatError, match="not an MLflow store"):
        load_any(run / "metrics", format="mlflow")


def test_deleted_runs_are_not_read_and_one_experiment_or_run_folder_reads_alone(tmp_path: Path) -> None:
    """mlflow.delete_run marks a run deleted in place (its folder stays): it is not read. An experiment's folder
    reads its runs, a run's folder that run, named as in the whole store."""
    log_runs(tmp_path / "mlruns")
    with mlflow.start_run(run_name="diverged") as gone:
        mlflow.log_metric("val_loss", 100.0, step=0)
    mlflow.delete_run(gone.info.run_id)
    everything = load_any(tmp_path / "mlruns")
    assert sorted(everything) == ["digits/fast", "digits/slow", "other/fast"]
    digits = mlflow.get_experiment_by_name("digits").experiment_id
    experiment = load_any(tmp_path / "mlruns" / digits)
    assert experiment == {name: everything[name] for name in ("digits/fast", "digits/slow")}
    (fast,) = [
        run.info.run_id for run in mlflow.search_runs([digits], output_format="list") if run.info.run_name == "fast"
    ]
    assert load_any(tmp_path / "mlruns" / digits / fast) == {"digits/fast": everything["digits/fast"]}


def test_a_metric_logged_without_a_step_is_read_in_the_order_logged_with_a_warning(tmp_path: Path) -> None:
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("nostep")
    with mlflow.start_run(run_name="r"):
        for epoch in range(5):
            mlflow.log_metric("val_loss", 1 / (1 + epoch))  # no step: MLflow records step 0 every time
    with pytest.warns(UserWarning, match="logged 'val_loss' several times without a step"):
        curves = load_any(tmp_path / "mlruns")
    assert curves == {"nostep/r": {"val_loss": [1 / (1 + epoch) for epoch in range(5)]}}


def test_the_sqlite_store_mlflow_3_writes_by_default_is_read_read_only(tmp_path: Path) -> None:
    pytest.importorskip("sqlalchemy")
    database = tmp_path / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{database}")
    mlflow.set_experiment("digits")
    for name, rate in (("fast", 0.3), ("slow", 0.1)):
        with mlflow.start_run(run_name=name):
            for epoch in range(10):
                mlflow.log_metrics({"val_loss": 1 / (1 + rate * epoch), "loss": 0.9 / (1 + rate * epoch)}, step=epoch)
    with mlflow.start_run(run_name="gone") as gone:
        mlflow.log_metric("val_loss", 100.0, step=0)
    mlflow.delete_run(gone.info.run_id)
    before = database.read_bytes()
    curves = load_any(database)
    assert sorted(curves) == ["digits/fast", "digits/slow"]
    assert curves["digits/slow"]["val_loss"] == [1 / (1 + 0.1 * epoch) for epoch in range(10)]
    assert database.read_bytes() == before
