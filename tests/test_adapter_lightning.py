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

from helpers import RateSeen  # noqa: E402

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


def test_keep_best_by_reads_its_metric_from_the_trainer(tmp_path: Path) -> None:
    """Every metric the Monitor reads comes from the Trainer's metrics, not only the monitored one."""
    weights = Weights()
    callback = EarlyStopping("val_loss", patience=2, keep_best_by="train_loss", restore_best_weights=True)
    _, module = fit([callback, weights], tmp_path)
    kept = callback.core.best_epoch
    assert kept is not None and callback.core.stop_reason is StopReason.PATIENCE_EXHAUSTED
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, weights.by_epoch[kept][name]), name


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


@pytest.mark.parametrize("snapshot", ["cpu", "disk"])
def test_the_best_weights_come_back_from_cpu_and_disk_snapshots(tmp_path: Path, snapshot: str) -> None:
    weights = Weights()
    path = str(tmp_path / "best.pt") if snapshot == "disk" else None
    callback = EarlyStopping("val_loss", patience=2, restore_best_weights=True, snapshot=snapshot, path=path)
    trainer, module = fit([callback, weights], tmp_path)
    best = callback.core.best_epoch
    assert best is not None and best < trainer.current_epoch - 1
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, weights.by_epoch[best][name]), name


def test_a_checkpoint_of_lightnings_own_callback_loads(tmp_path: Path) -> None:
    """Same state_key: a checkpoint written with Lightning's EarlyStopping resumes with ours (its books only)."""
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True, save_top_k=0)
    fit(
        [pl.callbacks.EarlyStopping("val_loss", patience=3), checkpoint],
        tmp_path,
        max_epochs=3,
        enable_checkpointing=True,
    )
    ours = EarlyStopping("val_loss", patience=3)
    trainer, _ = fit([ours], tmp_path, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"), max_epochs=5)
    assert trainer.current_epoch == 5 and ours.core.epoch == 2  # two checks after the resume, its own from there


def test_mid_epoch_validation_counts_checks_as_lightning_does(tmp_path: Path) -> None:
    stops = []
    for callback in (pl.callbacks.EarlyStopping("val_loss", patience=2), EarlyStopping("val_loss", patience=2)):
        trainer, _ = fit([callback], tmp_path, val_check_interval=0.5)
        stops.append((trainer.global_step, callback.stopped_epoch, callback.wait_count))
    assert stops[0] == stops[1] and stops[0][0] < MAX_EPOCHS * 4


class Diverging(pl.LightningModule):
    """Logs a scripted val_loss; from epoch 3 on, rank 1 sees it rise (its data went bad), rank 0 does not."""

    losses = (8.0, 4.0, 2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6)

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.folder = folder

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def on_train_end(self) -> None:  # each spawned rank writes where it ended (the parent's Trainer does not see it)
        Path(self.folder, f"rank{self.global_rank}").write_text(str(self.current_epoch))

    def teardown(self, stage: str) -> None:
        # Lightning leaves a gloo group to the interpreter's exit, where its threads are torn down in no set order:
        # a rank then aborts ("terminate called without an active exception") about one fit in ten, after it has
        # trained. The last hook of a fit, after its last collective: every rank ends the group here, together.
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        epoch = self.current_epoch
        value = 10.0 + epoch if self.global_rank == 1 and epoch >= 3 else self.losses[epoch]
        self.log("val_loss", value)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.slow
def test_under_ddp_every_rank_stops_together_as_with_lightnings_callback(tmp_path: Path) -> None:
    """Two processes on gloo (ddp_spawn): rank 1's metric stops improving, so it says stop; the strategy's reduce
    stops both ranks at that epoch, as Lightning's own callback does."""
    stops = []
    for index, callback in enumerate(
        (pl.callbacks.EarlyStopping("val_loss", patience=1), EarlyStopping("val_loss", patience=1))
    ):
        folder = tmp_path / str(index)
        folder.mkdir()
        trainer = pl.Trainer(
            callbacks=[callback], max_epochs=len(Diverging.losses), strategy="ddp_spawn", devices=2,
            accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=str(tmp_path),
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train, val = loaders()
            trainer.fit(Diverging(str(folder)), train, val)
        stops.append([int((folder / f"rank{rank}").read_text()) for rank in (0, 1)])
    # Rank 1's epoch 3 is worse (wait 1 = patience): it says stop, and both ranks end there, with either callback.
    assert stops[0] == stops[1] == [4, 4]


def test_a_rule_reading_the_learning_rate_gets_the_trainers_optimizers(tmp_path: Path) -> None:
    early_stopping = adapter.EarlyStopping(Monitor("val_loss", rule=RateSeen()))
    trainer, _ = fit([early_stopping], tmp_path, max_epochs=3)
    assert early_stopping.core.rule.seen == [0.03] * trainer.current_epoch  # Noisy's Adam, every validation
