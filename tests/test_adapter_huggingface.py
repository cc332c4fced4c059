"""The Hugging Face callback in a real ``transformers.Trainer`` (a tiny BERT built from a config, on a CPU),
beside Hugging Face's own ``EarlyStoppingCallback``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from earlystop_core import Monitor, StateError, StopReason  # noqa: E402
from earlystop_core.adapters.huggingface import BEST_FILE, EarlyStoppingCallback  # noqa: E402

from helpers import RateSeen, tiny_bert_config  # noqa: E402

EPOCHS = 12


def examples(count: int, seed: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 32, (count, 8), generator=generator)
    labels = ((ids[:, 0] > 16) ^ (torch.rand(count, generator=generator) < 0.2)).long()  # a fifth mislabelled
    mask = torch.ones(8, dtype=torch.long)
    return [{"input_ids": i, "attention_mask": mask, "labels": label} for i, label in zip(ids, labels, strict=True)]


def train(folder: Path, callbacks: list[Any], resume: bool = False, **arguments: Any) -> Any:
    """A seeded Trainer run (overfits within a few epochs); returns the trainer."""
    transformers.set_seed(0)
    config = tiny_bert_config(transformers)
    settings = {
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "logging_strategy": "epoch",
        "num_train_epochs": EPOCHS,
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-3,
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        **arguments,
    }
    args = transformers.TrainingArguments(output_dir=str(folder), **settings)
    trainer = transformers.Trainer(
        model=transformers.BertForSequenceClassification(config),
        args=args,
        train_dataset=examples(48, 1),
        eval_dataset=examples(32, 2),
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=True if resume else None)
    return trainer


def evaluations(trainer: Any) -> list[float]:
    return [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]


def weights(trainer: Any) -> dict[str, Any]:
    return {name: tensor.detach().clone() for name, tensor in trainer.model.state_dict().items()}


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


CASES = [
    {"patience": 1, "strategy": "epoch"},
    {"patience": 2, "strategy": "steps"},
]


@pytest.mark.parametrize("case", CASES, ids=[str(case) for case in CASES])
def test_stops_where_hugging_face_does_and_keeps_its_best_weights_without_checkpoints(
    tmp_path: Path, case: dict[str, Any]
) -> None:
    strategy = {
        "eval_strategy": case["strategy"],
        "eval_steps": 3,
        "logging_steps": 3,
        "logging_strategy": case["strategy"],
    }
    theirs = train(
        tmp_path / "hf",
        [transformers.EarlyStoppingCallback(early_stopping_patience=case["patience"])],
        metric_for_best_model="eval_loss",
        load_best_model_at_end=True,
        save_strategy=case["strategy"],
        save_steps=3,
        **strategy,
    )
    callback = EarlyStoppingCallback(early_stopping_patience=case["patience"])
    ours = train(tmp_path / "ours", [callback], **strategy)  # no checkpoint, no metric_for_best_model
    assert theirs.state.global_step < EPOCHS * 6, "Hugging Face's callback never stopped: the case tests nothing"
    assert ours.state.global_step == theirs.state.global_step
    assert evaluations(ours) == evaluations(theirs)
    assert callback.core.stop_reason is StopReason.PATIENCE_EXHAUSTED
    same_weights(weights(ours), weights(theirs))  # ours from memory, theirs from the best checkpoint
    losses = evaluations(ours)
    assert callback.core.best_epoch == losses.index(min(losses))  # epochs here are evaluations


def test_metric_for_best_model_and_its_direction_are_read_from_the_arguments(tmp_path: Path) -> None:
    callback = EarlyStoppingCallback(early_stopping_patience=2)
    train(tmp_path, [callback], metric_for_best_model="loss", greater_is_better=False)
    assert callback.core.config.monitor == "eval_loss" and callback.core.mode == "min"
    callback = EarlyStoppingCallback(early_stopping_patience=2)
    train(tmp_path, [callback], metric_for_best_model="eval_runtime", greater_is_better=True, num_train_epochs=2)
    assert callback.core.config.monitor == "eval_runtime" and callback.core.mode == "max"


@pytest.mark.parametrize("rebuilt", [False, True], ids=["kept", "rebuilt by the Trainer"])
def test_a_resumed_training_decides_and_restores_as_an_uninterrupted_one(tmp_path: Path, rebuilt: bool) -> None:
    """Also when the Trainer rebuilds its callbacks from the checkpoint (``restore_callback_states_from_checkpoint``:
    a new instance from the saved ``args``, given the saved ``attributes``)."""
    whole_callback = EarlyStoppingCallback(early_stopping_patience=2)
    whole = train(tmp_path / "whole", [whole_callback], save_strategy="epoch")

    class Crash(transformers.TrainerCallback):  # type: ignore[misc]
        """The process dies after the third epoch's checkpoint (once ours has written its file)."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.epoch >= 3:
                raise KeyboardInterrupt

    folder = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(folder, [EarlyStoppingCallback(early_stopping_patience=2), Crash()], save_strategy="epoch")
    saved = json.loads((folder / "checkpoint-18" / "trainer_state.json").read_text())
    assert (
        saved["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]["earlystop_state"]["state"]["next_epoch"]
        == 3
    )
    assert (folder / "checkpoint-18" / BEST_FILE).is_file()
    callback = EarlyStoppingCallback(early_stopping_patience=2)
    resumed = train(
        folder, [callback], resume=True, save_strategy="epoch", restore_callback_states_from_checkpoint=rebuilt
    )
    if rebuilt:
        (callback,) = [c for c in resumed.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
    assert resumed.state.global_step == whole.state.global_step < EPOCHS * 6
    assert callback.core.best_epoch == whole_callback.core.best_epoch
    assert callback.core.stopped_epoch == whole_callback.core.stopped_epoch
    same_weights(weights(resumed), weights(whole))


def test_a_checkpoint_without_the_best_weights_is_refused_on_resume(tmp_path: Path) -> None:
    class Crash(transformers.TrainerCallback):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.epoch >= 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, [EarlyStoppingCallback(early_stopping_patience=2), Crash()], save_strategy="epoch")
    (tmp_path / "checkpoint-12" / BEST_FILE).unlink()
    with pytest.raises(StateError, match=BEST_FILE):
        train(tmp_path, [EarlyStoppingCallback(early_stopping_patience=2)], resume=True, save_strategy="epoch")


def test_settings_are_checked_at_once() -> None:
    with pytest.raises(TypeError, match="early_stopping_patience"):
        EarlyStoppingCallback(patience=3)
    with pytest.raises(TypeError, match="not beside it"):
        EarlyStoppingCallback(2, monitor=Monitor("eval_loss"))
    with pytest.raises(ValueError, match="patience"):
        EarlyStoppingCallback(-1)
    with pytest.raises(RuntimeError, match="when training begins"):
        _ = EarlyStoppingCallback(2).core


def test_evaluating_after_training_decides_nothing(tmp_path: Path) -> None:
    callback = EarlyStoppingCallback(early_stopping_patience=1)
    trainer = train(tmp_path, [callback], num_train_epochs=3)
    before = callback.core.state_dict()
    trainer.evaluate()
    assert callback.core.state_dict() == before


def test_a_rule_reading_the_learning_rate_gets_the_trainers_rate_at_each_evaluation(tmp_path: Path) -> None:
    callback = EarlyStoppingCallback(monitor=Monitor("eval_loss", rule=RateSeen(), restore_best_weights=True))
    train(tmp_path, [callback], num_train_epochs=3)  # linear decay from 5e-3 to 0 over the run
    seen = callback.core.rule.seen
    assert len(seen) == 3 and all(rate is not None for rate in seen) and seen == sorted(seen, reverse=True)
    assert 0 <= seen[-1] < seen[0] < 5e-3  # the rate of the step each evaluation came after
