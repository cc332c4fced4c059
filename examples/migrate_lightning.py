"""Moving from Lightning's ``EarlyStopping`` to earlystop, in the same ``Trainer``.

The same LightningModule (same initial weights, same batches) is trained twice on part of scikit-learn's
bundled digits: with Lightning's ``EarlyStopping``, then with a small Lightning callback around earlystop's
PyTorch ``EarlyStopper`` (same stop epoch; the best weights come back at the end).
docs/migrate-lightning.md shows the marked sections; tests/test_docs_code.py runs this file.

Run: python examples/migrate_lightning.py
(needs ``pytorch-lightning`` and the ``examples`` extra)
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

# --8<-- [start:callback]
from earlystop_core.adapters.torch import EarlyStopper


class EarlyStopping(pl.Callback):
    """Stop a Lightning fit on an earlystop Monitor's decision; restore the best weights when it ends."""

    def __init__(self, monitor: str = "val_loss", **options: Any) -> None:
        self.monitor, self.options = monitor, options  # options: the Monitor's and EarlyStopper's keywords
        self.stopper: EarlyStopper | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a new fit starts fresh; a checkpoint's state is loaded after this
            self.stopper = EarlyStopper(pl_module, self.monitor, **self.options)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stopper is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        decision = self.stopper.step(trainer.callback_metrics, epoch=trainer.current_epoch)
        trainer.should_stop = trainer.should_stop or decision.should_stop

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stopper is not None:
            self.stopper.finish()  # restores the best weights, unless the stop already did

    def state_dict(self) -> dict[str, Any]:
        return {} if self.stopper is None else self.stopper.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.stopper is not None and state_dict:
            self.stopper.load_state_dict(state_dict)


# --8<-- [end:callback]


class Digits(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


digits = load_digits()
x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
y = torch.tensor(digits.target)


def loaders() -> tuple[DataLoader, DataLoader]:
    train = DataLoader(TensorDataset(x[:500], y[:500]), batch_size=50, shuffle=True)
    return train, DataLoader(TensorDataset(x[500:800], y[500:800]), batch_size=300)


quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


def with_lightning() -> tuple[int, float]:
    pl.seed_everything(0, verbose=False)
    model = Digits()
    train_loader, val_loader = loaders()
    # --8<-- [start:before]
    from pytorch_lightning.callbacks import EarlyStopping

    early_stopping = EarlyStopping(monitor="val_loss", mode="min", patience=3)
    trainer = pl.Trainer(max_epochs=60, callbacks=[early_stopping], **quiet)
    trainer.fit(model, train_loader, val_loader)
    # the model holds the weights of the last epoch; keeping the best ones is ModelCheckpoint's job
    # --8<-- [end:before]
    return early_stopping.stopped_epoch, validation_loss(model, val_loader)


def with_earlystop() -> tuple[int, float]:
    pl.seed_everything(0, verbose=False)
    model = Digits()
    train_loader, val_loader = loaders()
    # --8<-- [start:after]
    early_stopping = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    trainer = pl.Trainer(max_epochs=60, callbacks=[early_stopping], **quiet)
    trainer.fit(model, train_loader, val_loader)
    # the model holds the weights of the best epoch
    monitor = early_stopping.stopper.monitor
    print(f"{monitor.stop_reason.name} at epoch {monitor.stopped_epoch}; restored epoch {monitor.best_epoch}")
    # --8<-- [end:after]
    assert monitor.stopped_epoch is not None
    return monitor.stopped_epoch, validation_loss(model, val_loader)


def validation_loss(model: Digits, loader: DataLoader) -> float:
    x_val, y_val = next(iter(loader))
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model.net(x_val), y_val).item()


def main() -> None:
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*small compared to the logging interval.*")
    lightning_stop, lightning_loss = with_lightning()
    ours_stop, ours_loss = with_earlystop()
    print(f"lightning: stopped at epoch {lightning_stop}; val_loss of the final weights {lightning_loss:.4f}")
    print(f"earlystop: stopped at epoch {ours_stop}; val_loss of the restored weights {ours_loss:.4f}")
    print("same stop epoch as Lightning:", lightning_stop == ours_stop)


if __name__ == "__main__":
    main()
