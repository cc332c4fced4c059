"""Moving a hand-written PyTorch early-stopping loop (and ``torch.optim.lr_scheduler.ReduceLROnPlateau``) to earlystop.

The same model (same initial weights, same batches) is trained three times on part of scikit-learn's bundled
digits: with the usual hand-written loop, with earlystop's ``EarlyStopper`` (the same stop epoch and the same
restored weights), and with the learning-rate schedule coordinated with stopping.
docs/migrate-pytorch.md shows the marked sections; tests/test_docs_code.py runs this file.

Run: python examples/migrate_pytorch.py
(needs the ``torch`` and ``examples`` extras: ``pip install -e ".[torch,examples]"``)
"""

from __future__ import annotations

import copy

import torch
from sklearn.datasets import load_digits

digits = load_digits()
x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)
x_train, y_train, x_val, y_val = x[:500], y[:500], x[500:800], y[500:800]


def new_model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)  # the same initial weights and batches for every run
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    model.train()
    for batch in torch.randperm(len(x_train)).split(50):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
        optimizer.step()


def evaluate(model: torch.nn.Module) -> float:
    model.eval()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x_val), y_val).item()


def by_hand(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    # --8<-- [start:before]
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
    patience, best_loss, best_epoch, best_state, bad_epochs = 3, float("inf"), None, None, 0

    for epoch in range(60):
        train_one_epoch(model, optimizer)
        val_loss = evaluate(model)
        scheduler.step(val_loss)
        if val_loss < best_loss:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= patience:
                break
    model.load_state_dict(best_state)
    print(f"stopped at epoch {epoch}; restored the weights of epoch {best_epoch}")
    # --8<-- [end:before]
    return epoch


def with_stopper(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    # --8<-- [start:after]
    from earlystop_core.adapters.torch import EarlyStopper

    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)

    with EarlyStopper(model, monitor="val_loss", patience=3, restore_best_weights=True) as stopper:
        for _ in range(60):
            train_one_epoch(model, optimizer)
            val_loss = evaluate(model)
            scheduler.step(val_loss)
            if stopper.step({"val_loss": val_loss}).should_stop:
                break
    # here the model holds the weights of the best epoch, whether the loop stopped early or ran out
    # --8<-- [end:after]
    return stopper.monitor.epoch - 1


def coordinated(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    # --8<-- [start:coordinated]
    from earlystop_core import Monitor, ReduceLROnPlateau
    from earlystop_core.adapters.torch import EarlyStopper

    monitor = Monitor(
        monitor="val_loss",
        patience=3,
        restore_best_weights=True,
        # torch's patience=2 reduces after 3 bad epochs, as patience=3 does here
        plateau=ReduceLROnPlateau(factor=0.5, patience=3, min_lr=0.00125, min_delta=1e-4, min_delta_mode="rel"),
    )
    with EarlyStopper(model, monitor, optimizer=optimizer) as stopper:
        for _ in range(60):
            train_one_epoch(model, optimizer)
            if stopper.step({"val_loss": evaluate(model)}).should_stop:
                break
    print(f"{monitor.stop_reason.name} at epoch {monitor.stopped_epoch}, the learning rate at {monitor.lr:.3g}")
    # --8<-- [end:coordinated]
    return monitor.epoch - 1


def main() -> None:
    results = {}
    for name, train in [("by hand", by_hand), ("EarlyStopper", with_stopper), ("coordinated", coordinated)]:
        model, optimizer = new_model()
        stopped = train(model, optimizer)
        results[name] = (stopped, copy.deepcopy(model.state_dict()))
        print(f"{name}: stopped at epoch {stopped}; val_loss with the restored weights {evaluate(model):.4f}")
    (hand_epoch, hand_weights), (our_epoch, our_weights) = results["by hand"], results["EarlyStopper"]
    same = hand_epoch == our_epoch and all(torch.equal(hand_weights[k], our_weights[k]) for k in hand_weights)
    print("same stop epoch and bitwise the same restored weights as the hand-written loop:", same)


if __name__ == "__main__":
    main()
