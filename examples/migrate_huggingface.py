"""What Hugging Face's ``EarlyStoppingCallback`` does, with an earlystop ``Monitor`` stepping once per evaluation.

A plain PyTorch loop on part of scikit-learn's bundled digits that evaluates every ``EVAL_STEPS`` optimizer
steps, as ``TrainingArguments(eval_strategy="steps", eval_steps=...)`` does, and asks a Monitor after each
evaluation. The Trainer version of the same callback is in examples/migrate_huggingface_trainer.py.txt (not
run: transformers is not a dependency). docs/migrate-huggingface.md shows the marked section;
tests/test_docs_code.py runs this file.

Run: python examples/migrate_huggingface.py
(needs the ``torch`` and ``examples`` extras: ``pip install -e ".[torch,examples]"``)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from sklearn.datasets import load_digits

from earlystop_core import Monitor

EVAL_STEPS = 5
MAX_STEPS = 400

digits = load_digits()
x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
x_train, y_train, x_eval, y_eval = x[:500], y[:500], x[500:800], y[500:800]

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)


def batches() -> Iterator[torch.Tensor]:
    """Shuffled batches of 50 indices, epoch after epoch."""
    while True:
        yield from torch.randperm(len(x_train)).split(50)


def training_step(batch: torch.Tensor) -> None:
    model.train()
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
    optimizer.step()


def evaluate() -> dict[str, float]:
    """The metrics, named as the Trainer names them (``eval_`` + the metric)."""
    model.eval()
    with torch.no_grad():
        logits = model(x_eval)
    loss = torch.nn.functional.cross_entropy(logits, y_eval).item()
    return {"eval_loss": loss, "eval_accuracy": (logits.argmax(1) == y_eval).float().mean().item()}


def main() -> None:
    # --8<-- [start:loop]
    # as EarlyStoppingCallback(early_stopping_patience=3, early_stopping_threshold=0.001) on "eval_loss"
    monitor = Monitor("eval_loss", patience=3, min_delta=0.001, restore_best_weights=True)
    best_weights = None
    stream = batches()  # shuffled batches of 50, epoch after epoch

    for step in range(1, MAX_STEPS + 1):  # max_steps=MAX_STEPS
        training_step(next(stream))
        if step % EVAL_STEPS != 0:  # eval_strategy="steps", eval_steps=EVAL_STEPS
            continue
        decision = monitor.update(evaluate())  # one update per evaluation: patience counts evaluations
        if decision.improved:
            best_weights = copy.deepcopy(model.state_dict())
        if decision.should_stop:  # the callback's control.should_training_stop = True
            break
    else:
        decision = monitor.finish()  # ran to max_steps: restore the best weights anyway?
    if decision.restore:
        model.load_state_dict(best_weights)
    print(decision.message)
    # --8<-- [end:loop]
    print(f"stopped after step {step}, evaluation {monitor.epoch - 1}")
    print(f"kept evaluation {monitor.best_epoch} (step {(monitor.best_epoch + 1) * EVAL_STEPS}): {evaluate()}")


if __name__ == "__main__":
    main()
