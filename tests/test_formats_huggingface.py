"""Hugging Face ``trainer_state.json``: read from a real ``Trainer`` run, replayed through the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from earlystop_core.cli import main
from earlystop_core.errors import FormatError
from earlystop_core.formats.huggingface import load_trainer_state
from earlystop_core.formats.readers import detect_format, load_any

from helpers import tiny_bert_config


def write_state(path: Path, history: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"log_history": history, "global_step": 0}, indent=2))  # as the Trainer writes it
    return path


@pytest.fixture(scope="module")
def trainer_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Trainer run: a tiny BERT built from a config (no download), evaluated and saved every epoch."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import numpy as np

    torch.manual_seed(0)
    config = tiny_bert_config(transformers)
    generator = torch.Generator().manual_seed(0)

    def examples(count: int) -> list[dict[str, Any]]:
        ids = torch.randint(1, 32, (count, 8), generator=generator)
        labels = (ids[:, 0] > 16).long()
        mask = torch.ones(8, dtype=torch.long)
        return [{"input_ids": i, "attention_mask": mask, "labels": label} for i, label in zip(ids, labels, strict=True)]

    def accuracy(prediction: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

    output = tmp_path_factory.mktemp("hf") / "tiny-bert"
    arguments = transformers.TrainingArguments(
        output_dir=str(output),
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        num_train_epochs=6,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        report_to=["tensorboard"],  # its event files beside, out of the output folder (below)
        use_cpu=True,
        disable_tqdm=True,
    )
    model = transformers.BertForSequenceClassification(config)
    with pytest.MonkeyPatch.context() as patch:  # the Trainer's TensorBoard callback reads it as it is made
        patch.setenv("TENSORBOARD_LOGGING_DIR", str(output.parent / "tensorboard"))
        trainer = transformers.Trainer(
            model=model, args=arguments, train_dataset=examples(64), eval_dataset=examples(32), compute_metrics=accuracy
        )
        trainer.train()
    trainer.save_state()  # as Hugging Face's example scripts do: the whole run's state beside the checkpoints
    return output


def test_a_real_trainer_run_reads_one_epoch_per_evaluation(trainer_output: Path) -> None:
    checkpoints = sorted(trainer_output.glob("checkpoint-*/trainer_state.json"))
    assert len(checkpoints) == 6
    curves = load_any(trainer_output)  # the folder: only the last checkpoint's state, which holds the whole run
    assert list(curves) == ["tiny-bert"]
    curve = curves["tiny-bert"]
    assert {"eval_loss", "eval_accuracy", "loss", "lr"} <= set(curve)
    assert all(len(values) == 6 for values in curve.values())
    assert all(math.isfinite(value) for values in curve.values() for value in values)
    last = max(checkpoints, key=lambda path: int(path.parent.name.removeprefix("checkpoint-")))
    state = json.loads(last.read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_loss" in entry]
    assert curve["eval_loss"] == [entry["eval_loss"] for entry in evaluations]
    trained = [entry for entry in state["log_history"] if "loss" in entry]
    assert curve["loss"] == [entry["loss"] for entry in trained]
    assert detect_format(last) == "huggingface"
    assert load_any(last) == curves


def test_a_real_trainers_tensorboard_logs_read_as_its_trainer_state(
    trainer_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """report_to="tensorboard": train/* and eval/* tags by global step, train/epoch beside; read one epoch per
    evaluation under the Trainer's names, the same curve as its trainer_state.json (to float32)."""
    pytest.importorskip("tensorboard")
    (from_events,) = load_any(trainer_output.parent / "tensorboard").values()
    (from_state,) = load_any(trainer_output).values()
    assert sorted(from_events) == sorted(from_state)
    for name, values in from_state.items():
        assert from_events[name] == pytest.approx(values, rel=1e-6), name
    status = main(["replay", str(trainer_output.parent / "tensorboard"), "--strategy", "patience=2", "--json"])
    out, err = capsys.readouterr()
    (row,) = json.loads(out)
    assert status == 0 and math.isfinite(row["regret"]) and "reading eval_loss as val_loss" in err


def test_of_an_output_folders_own_state_and_its_checkpoints_the_one_saved_later_is_read(tmp_path: Path) -> None:
    """trainer.save_state() at the end holds the whole run; one saved early is superseded by a later checkpoint."""
    early = [{"epoch": 1.0, "step": 5, "eval_loss": 0.9}]
    late = [*early, {"epoch": 2.0, "step": 10, "eval_loss": 0.7}]
    for own, checkpoint, read in ((late, early, [0.9, 0.7]), (early, late, [0.9, 0.7]), (early, early, [0.9])):
        output = tmp_path / f"run{len(own)}{len(checkpoint)}"
        for path, history in ((output / "trainer_state.json", own), (output / "checkpoint-5" / "trainer_state.json",
                                                                     checkpoint)):  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"log_history": history, "global_step": history[-1]["step"]}, indent=2))
        assert load_any(output) == {output.name: {"eval_loss": read}}


def test_a_real_trainer_run_replays_with_finite_numbers(
    trainer_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["replay", str(trainer_output), "--json"])
    out, err = capsys.readouterr()
    rows = json.loads(out)
    assert status == 0 and rows and all(row["runs"] == 1 for row in rows)
    assert all(math.isfinite(row[key]) for row in rows for key in ("epochs_saved", "regret", "gain"))
    assert "reading eval_loss as val_loss, eval_accuracy as val_accuracy" in err
    assert "regret is measured on val_accuracy, validation data" in err
    assert "recommended" in [row["strategy"] for row in rows]  # the learned policy runs on the Trainer's names
    status = main(["replay", str(trainer_output), "--monitor", "eval_loss", "--names", "none", "--json"])
    out, err = capsys.readouterr()
    assert status == 0 and "regret is measured on eval_loss" in err and "reading" not in err


def test_training_logs_between_evaluations_give_the_last_value_and_summaries_are_skipped(tmp_path: Path) -> None:
    history = [
        {"loss": 0.9, "learning_rate": 1e-3, "epoch": 0.25, "step": 5},
        {"loss": 0.8, "learning_rate": 9e-4, "epoch": 0.5, "step": 10},
        {"eval_loss": 0.85, "eval_runtime": 1.0, "eval_samples_per_second": 9.0, "epoch": 0.5, "step": 10},
        {"eval_other_loss": 0.95, "epoch": 0.5, "step": 10},  # a second evaluation set at the same step
        {"loss": 0.7, "learning_rate": 8e-4, "epoch": 0.75, "step": 15},
        {"eval_loss": 0.82, "epoch": 1.0, "step": 20},
        {"train_runtime": 9.0, "train_loss": 0.8, "total_flos": 1.0, "epoch": 1.0, "step": 20},
    ]
    path = write_state(tmp_path / "run" / "trainer_state.json", history)
    (curve,) = load_trainer_state(path).values()
    other = curve.pop("eval_other_loss")
    assert other == [0.95, None]  # not evaluated at the second step
    assert curve == {"eval_loss": [0.85, 0.82], "loss": [0.8, 0.7], "lr": [9e-4, 8e-4]}


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([{"loss": 0.9, "epoch": 1.0, "step": 5}], "holds no evaluation (eval_* metrics): train with an eval_strategy"),
        ([{"eval_loss": "x", "epoch": 1.0, "step": 5}], "log_history[0]: 'eval_loss' is not a number: 'x'"),
        ([{"eval_loss": 0.5, "epoch": 1.0}], "log_history[0] has no integer 'step'"),
        (["text"], "log_history[0] is not an object: 'text'"),
    ],
)
def test_malformed_trainer_states_are_refused_clearly(tmp_path: Path, history: list[Any], message: str) -> None:
    path = write_state(tmp_path / "trainer_state.json", history)
    with pytest.raises(FormatError) as error:
        load_any(path)
    assert message in str(error.value)


def test_an_indented_json_object_that_is_no_trainer_state_is_not_taken_for_one(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{\n  "epoch": 0\n}\n')
    with pytest.raises(FormatError, match="not JSON"):
        load_any(path)
