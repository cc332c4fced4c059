"""TensorBoard event files written by the real writers (PyTorch's SummaryWriter, Lightning's logger), read back."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from earlystop_core.cli import main
from earlystop_core.errors import FormatError
from earlystop_core.formats.readers import load_any
from earlystop_core.formats.tensorboard import load_tensorboard

from helpers import fit_tiny_lightning_model

pytest.importorskip("tensorboard")
torch = pytest.importorskip("torch")
from torch.utils.tensorboard import SummaryWriter  # noqa: E402


def f32(value: float) -> float:
    return float(torch.tensor(value, dtype=torch.float32))


def curve(epoch: int) -> dict[str, float]:
    return {"val_loss": 1 / (1 + 0.2 * epoch) + 0.01 * epoch, "loss": 0.9 / (1 + 0.3 * epoch)}


def write_run(folder: Path, epochs: int = 12) -> None:
    with SummaryWriter(str(folder)) as writer:
        for epoch in range(epochs):
            for name, value in curve(epoch).items():
                writer.add_scalar(name, value, epoch)
            writer.add_scalars("acc", {"train": 0.5 + 0.01 * epoch, "val": 0.4 + 0.01 * epoch}, epoch)


def test_summary_writer_runs_read_as_one_run_per_log_dir(tmp_path: Path) -> None:
    write_run(tmp_path / "runs" / "a")
    write_run(tmp_path / "runs" / "b", epochs=8)
    curves = load_any(tmp_path / "runs")
    assert sorted(curves) == ["a", "b"]
    assert set(curves["a"]) == {"val_loss", "loss", "acc_train", "acc_val"}
    assert curves["a"]["val_loss"] == [f32(curve(e)["val_loss"]) for e in range(12)]
    assert len(curves["b"]["acc_val"]) == 8
    (event_file,) = (tmp_path / "runs" / "a").glob("events.out.tfevents.*")
    assert load_any(event_file) == {"a": {k: v for k, v in curves["a"].items() if not k.startswith("acc")}}


def test_keras_train_and_validation_folders_take_the_csv_logger_names(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs" / "fit"
    for part, offset in (("train", 0.0), ("validation", 0.1)):
        with SummaryWriter(str(log_dir / part)) as writer:
            for epoch in range(5):
                writer.add_scalar("epoch_loss", 1.0 / (epoch + 1) + offset, epoch)
                writer.add_scalar("epoch_accuracy", 0.5 + 0.1 * epoch - offset, epoch)
                # Keras 3 also logs these against optimizer iterations (7 a epoch here): not epochs
                iterations = 7 * (epoch + 1)
                if part == "validation":
                    writer.add_scalar("evaluation_loss_vs_iterations", 1.0 / (epoch + 1) + offset, iterations)
                else:
                    writer.add_scalar("batch_loss", 1.0 / (epoch + 1), iterations)
    (run,) = load_any(tmp_path / "logs").values()
    assert set(run) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert run["val_loss"][0] == f32(1.1) and all(len(values) == 5 for values in run.values())


def test_scalars_written_as_tensors_are_read(tmp_path: Path) -> None:
    """TensorFlow 2's tf.summary.scalar writes rank-0 tensors, not simple values."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util.tensor_util import make_tensor_proto

    writer = EventFileWriter(str(tmp_path / "tf2"))
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    for epoch in range(4):
        value = Summary.Value(tag="val_loss", tensor=make_tensor_proto(0.5 - 0.1 * epoch), metadata=metadata)
        writer.add_event(Event(step=epoch, wall_time=0.0, summary=Summary(value=[value])))
    writer.close()
    assert load_any(tmp_path / "tf2") == {"tf2": {"val_loss": [f32(0.5 - 0.1 * e) for e in range(4)]}}


def test_a_lightning_run_maps_batch_steps_to_its_epochs(tmp_path: Path) -> None:
    """Lightning logs against batch steps, and logs the epoch beside: the values land on their epochs."""
    lightning = pytest.importorskip("pytorch_lightning")
    logger = lightning.loggers.TensorBoardLogger(str(tmp_path), name="lightning_logs")
    fit_tiny_lightning_model(logger, max_epochs=5)
    (run,) = load_any(tmp_path / "lightning_logs").values()
    assert len(run["val_loss"]) == 5 and len(run["train_loss"]) == 5  # 4 batches an epoch: steps 3, 7, ... 19
    assert all(math.isfinite(value) for value in run["val_loss"] + run["train_loss"])
    assert run["val_loss"][-1] < run["val_loss"][0]


def test_tensorboard_logs_replay_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "runs" / "a", epochs=40)
    status = main(["replay", str(tmp_path / "runs"), "--strategy", "patience=3", "--json"])
    out, err = capsys.readouterr()
    (row,) = json.loads(out)
    assert status == 0 and row["runs"] == 1 and math.isfinite(row["regret"]) and row["epochs_saved"] > 0
    assert "reading acc_val as val_accuracy" in err  # add_scalars("acc", {"train": ..., "val": ...})
    assert "regret is measured on val_accuracy" in err


def test_what_cannot_be_read_is_refused_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no TensorBoard event files"):
        load_any(tmp_path / "empty", format="tensorboard")
    with SummaryWriter(str(tmp_path / "text_only")) as writer:
        writer.add_text("note", "no scalars here", 0)
    with pytest.raises(FormatError, match="its event files hold no scalars"):
        load_any(tmp_path / "text_only")
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_accumulator", None)
    with pytest.raises(ImportError, match=r"pip install 'earlystop\[tensorboard\]'"):
        load_tensorboard(tmp_path / "text_only")


def test_event_files_beside_csv_logs_are_not_silently_ignored(tmp_path: Path) -> None:
    write_run(tmp_path / "mixed" / "tb")
    (tmp_path / "mixed" / "run.csv").write_text("epoch,val_loss\n0,0.5\n1,0.4\n")
    with pytest.warns(UserWarning, match="TensorBoard event files beside other logs"):
        curves = load_any(tmp_path / "mixed")
    assert list(curves) == ["run"]
