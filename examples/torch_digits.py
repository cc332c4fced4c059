"""Train a small PyTorch model on scikit-learn's bundled digits and stop early.

Run: python examples/torch_digits.py [--epochs 200] [--patience 5] [--snapshot device|cpu|disk]
(needs the ``torch`` and ``examples`` extras: ``pip install -e ".[torch,examples]"``)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from earlystop_core.adapters.torch import EarlyStopper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--snapshot", choices=("device", "cpu", "disk"), default="device")
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.2, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.25, random_state=0)
    x_train, x_val, x_test = (torch.from_numpy(a) for a in (x_train, x_val, x_test))
    y_train, y_val, y_test = (torch.from_numpy(a).long() for a in (y_train, y_val, y_test))

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logits = model(x)
        return loss_fn(logits, y).item(), (logits.argmax(1) == y).float().mean().item()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "best.pt" if args.snapshot == "disk" else None
        stopper = EarlyStopper(
            model, "val_loss", patience=args.patience, restore_best_weights=True, snapshot=args.snapshot, path=path
        )
        with stopper:  # restores the best weights when the loop ends, by a stop or not
            for _ in range(args.epochs):
                model.train()
                for batch in torch.randperm(len(x_train)).split(64):
                    optimizer.zero_grad()
                    loss_fn(model(x_train[batch]), y_train[batch]).backward()
                    optimizer.step()
                val_loss, val_accuracy = evaluate(x_val, y_val)
                if stopper.step({"val_loss": val_loss, "val_accuracy": val_accuracy}).should_stop:
                    break

    _, accuracy = evaluate(x_test, y_test)
    monitor = stopper.monitor
    print(f"ran {monitor.epoch} of {args.epochs} epochs; {monitor.stop_reason.name}; kept epoch {monitor.best_epoch}")
    print(f"test accuracy with the restored weights: {accuracy:.4f}")


if __name__ == "__main__":
    main()
