"""Hugging Face's ``EarlyStoppingCallback`` and earlystop's drop-in, each stopping a real ``Trainer``.

A tiny BERT built from a config (no download) on made-up data stands in for
your model and data. Run: python examples/migrate_huggingface_trainer.py
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
import transformers

config = transformers.BertConfig(
    vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    num_labels=2, max_position_embeddings=16,
)  # fmt: skip
ids = torch.randint(1, 32, (80, 8), generator=torch.Generator().manual_seed(0))
examples = [{"input_ids": row, "labels": int(row[0] > 16)} for row in ids]
train_dataset, eval_dataset = examples[:48], examples[48:]
folder = tempfile.mkdtemp()
common: dict[str, Any] = {"num_train_epochs": 30, "learning_rate": 5e-3, "report_to": [], "use_cpu": True}


def fresh_model() -> Any:
    transformers.set_seed(0)
    return transformers.BertForSequenceClassification(config)


def with_hugging_face(model: Any) -> Any:
    # --8<-- [start:before]
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=folder,
        eval_strategy="steps",
        eval_steps=5,
        save_steps=5,  # the Trainer keeps the best checkpoint and reloads it at the end
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        **common,
    )
    early_stopping = EarlyStoppingCallback(early_stopping_patience=2)
    trainer = Trainer(model, args, train_dataset=train_dataset, eval_dataset=eval_dataset, callbacks=[early_stopping])
    trainer.train()
    # --8<-- [end:before]
    return trainer


def with_earlystop(model: Any) -> Any:
    # --8<-- [start:after]
    from transformers import Trainer, TrainingArguments

    from earlystop_core.adapters.huggingface import EarlyStoppingCallback

    args = TrainingArguments(output_dir=folder, eval_strategy="steps", eval_steps=5, **common)  # no checkpoints
    early_stopping = EarlyStoppingCallback(early_stopping_patience=2)  # the best weights are kept in memory
    trainer = Trainer(model, args, train_dataset=train_dataset, eval_dataset=eval_dataset, callbacks=[early_stopping])
    trainer.train()
    monitor = early_stopping.core
    print(monitor.stop_reason.name, "at evaluation", monitor.stopped_epoch, "- restored evaluation", monitor.best_epoch)
    # --8<-- [end:after]
    return trainer


if __name__ == "__main__":
    theirs, ours = with_hugging_face(fresh_model()), with_earlystop(fresh_model())
    same_step = ours.state.global_step == theirs.state.global_step
    kept = theirs.model.state_dict()
    same_weights = all(torch.equal(value, kept[name]) for name, value in ours.model.state_dict().items())
    print(f"same stop step as Hugging Face's callback: {same_step}")
    print(f"bitwise the weights of Hugging Face's best checkpoint: {same_weights}")
