"""The Lightning adapter in a real ``Trainer.fit`` (CPU), beside Lightning's own ``EarlyStopping``."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("pytorch_lightning")

from earlystop_core import Monitor, StopReason  # noqa: E402
from earlystop_core.adapters import lightning as adapter  # noqa: E402

# Lightning's two packages are distinct class hierarchies: these tests use pytorch_lightning's.
EarlyStopping = adapter.flavour(pl)

MAX_EPOCHS = 25


class Noisy(pl.LightningModule):
    """A small regression that overfits, so validation loss turns up; logs val_loss and train_loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=0.03)


def loaders() -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=generator)
    y = x[:, :1] + 0.5 * torch.randn(64, 1, generator=generator)
    train = torch.utils.data.TensorDataset(x[:32], y[:32])
    val = torch.utils.data.TensorDataset(x[32:], y[32:])
    return torch.utils.data.DataLoader(train, batch_size=8), torch.utils.data.DataLoader(val, batch_size=32)


class Weights(pl.Callback):
    """The module's weights at the end of every validation (after the early stopping check)."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, dict[str, Any]] = {}

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.by_epoch[trainer.current_epoch] = {k: v.clone() for k, v in pl_module.state_dict().items()}


def fit(callbacks: list[Any], folder: Path, ckpt_path: str | None = None, **trainer_args: Any) -> tuple[Any, Any]:
    pl.seed_everything(0, verbose=False)
    module = Noisy()
    settings = {"max_epochs": MAX_EPOCHS, "logger": False, "enable_checkpointing": False, **trainer_args}
    trainer = pl.Trainer(
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(folder),
        accelerator="cpu", deterministic=True, **settings,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
        train, val = loaders()
        trainer.fit(module, train, val, ckpt_path=ckpt_path)
    return trainer, module


CASES = [
    {"monitor": "val_loss", "patience": 1},
    {"monitor": "val_loss", "patience": 3, "min_delta": 0.01},
    {"monitor": "val_loss", "patience": 5, "stopping_threshold": 0.45},
    {"monitor": "val_loss", "patience": 9, "divergence_threshold": 0.6},
    {"monitor": "train_loss", "patience": 2, "mode": "min", "check_on_train_epoch_end": True},
]


@pytest.mark.parametrize("arguments", CASES, ids=[str(case) for case in CASES])
@pytest.mark.parametrize("every", [1, 2])
def test_stops_where_lightning_does(tmp_path: Path, arguments: dict[str, Any], every: int) -> None:
    theirs = pl.callbacks.EarlyStopping(**arguments)
    ours = EarlyStopping(**arguments)
    trainer_theirs, _ = fit([theirs], tmp_path, check_val_every_n_epoch=every)
    trainer_ours, _ = fit([ours], tmp_path, check_val_every_n_epoch=every)
    assert trainer_ours.early_stopping_callback is ours and isinstance(ours, pl.callbacks.EarlyStopping)
    assert trainer_theirs.current_epoch == trainer_ours.current_epoch
    assert (ours.stopped_epoch, ours.stopping_reason, ours.wait_count) == (
        theirs.stopped_epoch,
        theirs.stopping_reason,
        theirs.wait_count,
    )
    if ours.stopping_reason.name != "STOPPING_THRESHOLD":  # Lightning stops there without counting the epoch
        assert float(ours.best_score) == pytest.approx(float(theirs.best_score), rel=1e-6)


def test_restores_the_best_weights_however_training_ends(tmp_path: Path) -> None:
    for patience in (2, 50):  # an early stop, then training to max_epochs with no stop
        weights = Weights()
        callback = EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
        trainer, module = fit([callback, weights], tmp_path)
        best = callback.core.best_epoch
        assert best is not None and best < trainer.current_epoch - 1  # the last weights are not the best
        for name, tensor in module.state_dict().items():
            assert torch.equal(tensor, weights.by_epoch[best][name]), name
    assert callback.core.stop_reason is StopReason.NOT_STOPPED


def test_a_resumed_fit_decides_and_restores_as_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = EarlyStopping("val_loss", patience=3, restore_best_weights=True)
    trainer_whole, module_whole = fit([whole], tmp_path / "whole")
    assert whole.core.stop_reason is StopReason.PATIENCE_EXHAUSTED
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True, save_top_k=0)
    first = EarlyStopping("val_loss", patience=3, restore_best_weights=True)
    fit([first, checkpoint], tmp_path / "part", max_epochs=4, enable_checkpointing=True)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert any(key.startswith("EarlyStopping{") for key in saved["callbacks"])  # Lightning's state_key
    resumed = EarlyStopping("val_loss", patience=3, restore_best_weights=True)
    trainer, module = fit([resumed], tmp_path / "part", ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert trainer.current_epoch == trainer_whole.current_epoch
    assert (resumed.core.best_epoch, resumed.core.stopped_epoch) == (whole.core.best_epoch, whole.core.stopped_epoch)
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, module_whole.state_dict()[name]), name


def test_a_monitor_and_the_learned_policy_drive_it(tmp_path: Path) -> None:
    callback = EarlyStopping(Monitor("val_loss", patience=2))
    fit([callback], tmp_path)
    assert callback.core.stop_reason is StopReason.PATIENCE_EXHAUSTED and callback.monitor == "val_loss"
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping("val_loss", patience=-1)


def test_both_lightning_packages_get_their_own_class() -> None:
    """``lightning.pytorch`` (when installed) gets a class of its own hierarchy, stopping as Lightning's does there,
    and each flavour pickles back to itself (both are named EarlyStopping: Lightning's state_key reads the name)."""
    import pickle

    lightning = pytest.importorskip("lightning.pytorch")
    ours_class = adapter.flavour(lightning)
    assert issubclass(ours_class, lightning.callbacks.EarlyStopping) and ours_class is not EarlyStopping
    assert not issubclass(ours_class, pl.callbacks.EarlyStopping)
    for cls in (ours_class, EarlyStopping):
        callback = cls("val_loss", patience=2)
        copy = pickle.loads(pickle.dumps(callback))
        assert type(copy) is cls and vars(copy) == vars(callback)
        assert callback.state_key == "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"

    class Module(lightning.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = Noisy().net

        training_step = Noisy.training_step
        validation_step = Noisy.validation_step
        configure_optimizers = Noisy.configure_optimizers

    stops = []
    for callback in (lightning.callbacks.EarlyStopping("val_loss", patience=2), ours_class("val_loss", patience=2)):
        lightning.seed_everything(0, verbose=False)
        trainer = lightning.Trainer(
            callbacks=[callback], max_epochs=MAX_EPOCHS, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", deterministic=True,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(Module(), *loaders())
        assert trainer.early_stopping_callback is callback
        stops.append((trainer.current_epoch, callback.stopped_epoch, callback.stopping_reason.name))
    assert stops[0] == stops[1] and stops[0][2] == "PATIENCE_EXHAUSTED"
