"""The Keras callback in a real ``keras.Model.fit`` (torch backend), beside Keras's own ``EarlyStopping``."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from earlystop_core import Monitor, ReduceLROnPlateau, StateError, StopReason  # noqa: E402
from earlystop_core.adapters.keras import EarlyStoppingCallback  # noqa: E402

EPOCHS = 25


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A small noisy regression problem that overfits quickly, so stopping matters."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, :1] + 0.5 * rng.normal(size=(64, 1))).astype("float32")
    return x[:32], y[:32], x[32:], y[32:]


def fit(callback: Any, seed: int = 0, epochs: int = EPOCHS, lr: float = 0.05) -> tuple[int, list[np.ndarray], Any]:
    """Train a fresh, identically initialised model; return epochs run, final weights, the model."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="mse", metrics=["mae"])
    x, y, xv, yv = data(seed)
    history = model.fit(
        x, y, validation_data=(xv, yv), epochs=epochs, batch_size=8, shuffle=False, callbacks=[callback], verbose=0
    )
    return len(history.history["loss"]), model.get_weights(), model


KERAS_ARGUMENTS = [
    {"patience": 2},
    {"patience": 3, "restore_best_weights": True},
    {"patience": 0, "min_delta": 0.01, "restore_best_weights": True},
    {"monitor": "val_mae", "mode": "min", "patience": 2, "restore_best_weights": True},
    {"patience": 4, "baseline": 0.3, "restore_best_weights": True},
    {"patience": 2, "start_from_epoch": 3, "restore_best_weights": True},
    {"monitor": "loss", "patience": 1, "restore_best_weights": True},
    {"patience": 50, "restore_best_weights": True},  # never stops: restores at the end anyway
]


@pytest.mark.parametrize("arguments", KERAS_ARGUMENTS, ids=[str(a) for a in KERAS_ARGUMENTS])
def test_drop_in_for_keras_early_stopping(arguments: dict[str, Any]) -> None:
    ran_keras, weights_keras, _ = fit(keras.callbacks.EarlyStopping(**arguments))
    ran_ours, weights_ours, _ = fit(EarlyStoppingCallback(**arguments))
    assert ran_ours == ran_keras
    for ours, theirs in zip(weights_ours, weights_keras, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_restores_when_another_callback_stops_training() -> None:
    class StopAtFive(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if epoch == 4:
                self.model.stop_training = True

    ours = EarlyStoppingCallback(patience=50, restore_best_weights=True)
    keras.utils.set_random_seed(0)
    x, y, xv, yv = data()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    snapshots: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    model.fit(x, y, validation_data=(xv, yv), epochs=20, callbacks=[record, ours, StopAtFive()], verbose=0)
    best = ours.core.best_epoch
    assert best is not None
    for restored, expected in zip(model.get_weights(), snapshots[best], strict=True):
        np.testing.assert_array_equal(restored, expected)


def test_keep_best_by_restores_the_best_epoch_of_another_metric() -> None:
    monitor = Monitor(patience=3, keep_best_by="val_mae", restore_best_weights=True)
    ours = EarlyStoppingCallback(monitor)
    keras.utils.set_random_seed(6)  # a run whose lowest val_mae and lowest val_loss are different epochs
    x, y, xv, yv = data(6)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse", metrics=["mae"])
    snapshots: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    history = model.fit(
        x, y, validation_data=(xv, yv), epochs=EPOCHS, batch_size=8, shuffle=False, callbacks=[record, ours], verbose=0
    ).history
    best = ours.core.best_epoch
    losses, maes = history["val_loss"], history["val_mae"]
    assert best == min(range(len(maes)), key=lambda t: (np.float32(maes[t]), losses[t], t))
    assert best != int(np.argmin(losses))  # so restoring the val_loss best would fail this test
    for restored, expected in zip(model.get_weights(), snapshots[best], strict=True):
        np.testing.assert_array_equal(restored, expected)


def test_the_recommended_policy_in_a_real_fit_stops_and_restores_the_most_accurate_epoch() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(192, 8)).astype("float32")
    y = (x[:, 0] + 0.8 * rng.normal(size=192) > 0).astype("float32")  # noisy labels: it overfits
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.03),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)],
    )
    ours = EarlyStoppingCallback(Monitor(policy="recommended", restore_best_weights=True))
    snapshots: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    history = model.fit(
        x[:128], y[:128], validation_data=(x[128:], y[128:]), epochs=200, batch_size=32, shuffle=False,
        callbacks=[record, ours], verbose=0,
    ).history  # fmt: skip
    ran = len(history["loss"])
    assert ours.core.stop_reason is not StopReason.NOT_STOPPED and ran < 200
    accuracy, losses = history["val_accuracy"], history["val_loss"]
    best = ours.core.best_epoch
    assert best == min(range(ran), key=lambda t: (-np.float32(accuracy[t]), np.float32(losses[t]), t))
    for restored, expected in zip(model.get_weights(), snapshots[best], strict=True):
        np.testing.assert_array_equal(restored, expected)


def test_the_recommended_policy_sees_the_learning_rate_schedule_of_a_real_fit() -> None:
    # No 'lr' in Keras's logs (the scheduler is listed after ours and logs 'learning_rate' only then): the
    # callback hands the policy the rate the optimizer trained each epoch with, and leaves the logs alone.
    ours = EarlyStoppingCallback(Monitor(policy="recommended"))
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch: 0.02 * 0.5**epoch)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy", metrics=["accuracy"])
    x, y, xv, yv = data()
    history = model.fit(
        x, (y > 0).astype("float32"), validation_data=(xv, (yv > 0).astype("float32")), epochs=4, batch_size=8,
        callbacks=[ours, schedule], verbose=0,
    ).history  # fmt: skip
    ran = len(history["loss"])
    levels = ours.core.state_dict()["state"]["rule"]["features"]["lr"]["levels"]
    expected = [float(np.log(np.float32(0.02 * 0.5**epoch))) for epoch in range(ran)]
    assert levels == pytest.approx(expected, rel=1e-6)
    assert "lr" not in history


def test_an_instance_is_reusable_across_fits() -> None:
    callback = EarlyStoppingCallback(patience=2, restore_best_weights=True)
    first = fit(callback)[0]
    second = fit(callback)[0]
    assert first == second < EPOCHS


def test_mode_auto_asks_the_model_for_metrics_it_cannot_name() -> None:
    callback = EarlyStoppingCallback(monitor="val_mean_absolute_percentage_error", patience=2)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=[keras.metrics.MeanAbsolutePercentageError()])
    x, y, xv, yv = data()
    model.fit(x, y, validation_data=(xv, yv), epochs=2, callbacks=[callback], verbose=0)
    assert callback.core.mode == "min"


def test_unknown_metric_name_without_a_model_direction_is_a_clear_error() -> None:
    callback = EarlyStoppingCallback(monitor="val_widget", patience=2)
    with pytest.raises(ValueError, match=r"mode='min'.*mode='max'"):
        fit(callback, epochs=1)


def test_missing_metric_warns_and_skips_like_keras() -> None:
    callback = EarlyStoppingCallback(monitor="val_acc", mode="max", patience=1)
    with pytest.warns(UserWarning, match="val_acc is not in the logs"):
        ran, _, _ = fit(callback, epochs=3)
    assert ran == 3


def test_learning_rate_is_lowered_on_plateau_before_stopping() -> None:
    monitor = Monitor(patience=2, plateau=ReduceLROnPlateau(patience=1, factor=0.5, min_lr=0.01), min_delta=1e-3)
    callback = EarlyStoppingCallback(monitor)
    _, _, model = fit(callback, epochs=40, lr=0.1)
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert monitor.plateau is not None
    assert monitor.stopped_epoch is not None, "40 epochs of this problem should end in a stop"
    assert monitor.plateau.exhausted(lr)  # the claim: stopping waits for the schedule to run out
    assert monitor.plateau.reductions >= 1
    assert lr < 0.1


def test_verbose_lines_and_logging(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="earlystop_core.adapters.keras"):
        ran, _, _ = fit(EarlyStoppingCallback(patience=1, verbose=1, restore_best_weights=True))
    out = capsys.readouterr().out
    assert ran < EPOCHS
    assert f"Epoch {ran}: early stopping" in out
    assert "Restoring model weights from the end of the best epoch" in out
    assert any("early stopping" in record.getMessage() for record in caplog.records)


def test_a_monitor_or_keyword_arguments_not_both() -> None:
    with pytest.raises(TypeError, match="patience"):
        EarlyStoppingCallback(Monitor(), patience=3)


def test_resuming_a_fit_continues_the_same_decisions() -> None:
    """Two fits (state saved and loaded between them, initial_epoch set) stop as one uninterrupted fit."""
    ran_whole, weights_whole, _ = fit(EarlyStoppingCallback(patience=2))

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse", metrics=["mae"])
    x, y, xv, yv = data(0)
    half = 3
    first = EarlyStoppingCallback(patience=2)
    model.fit(x, y, validation_data=(xv, yv), epochs=half, batch_size=8, shuffle=False, callbacks=[first], verbose=0)
    assert first.core.stopped_epoch is None
    second = EarlyStoppingCallback(patience=2)
    second.load_state_dict(first.state_dict())
    history = model.fit(
        x,
        y,
        validation_data=(xv, yv),
        epochs=EPOCHS,
        initial_epoch=half,
        batch_size=8,
        shuffle=False,
        callbacks=[second],
        verbose=0,
    )
    assert half + len(history.history["loss"]) == ran_whole < EPOCHS
    for resumed, whole in zip(model.get_weights(), weights_whole, strict=True):
        np.testing.assert_array_equal(resumed, whole)


def test_plateau_learning_rate_is_logged_in_the_history() -> None:
    monitor = Monitor(patience=50, plateau=ReduceLROnPlateau(patience=1, factor=0.5))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse")
    x, y, xv, yv = data()
    history = model.fit(x, y, validation_data=(xv, yv), epochs=3, callbacks=[EarlyStoppingCallback(monitor)], verbose=0)
    assert history.history["learning_rate"][0] == pytest.approx(0.01)


# -- a resumed state is checked when it is loaded (issue 11) -------------------


def test_a_state_that_does_not_fit_is_refused_at_load_not_at_the_next_fit() -> None:
    first = EarlyStoppingCallback(patience=2, restore_best_weights=True)
    fit(first, epochs=3)
    good = first.state_dict()
    second = EarlyStoppingCallback(patience=2, restore_best_weights=True)
    with pytest.raises(StateError):
        second.load_state_dict({**good, "monitor": {**good["monitor"], "config": {"patience": 7}}})
    with pytest.raises(StateError, match="learning rate"):  # no plateau: a rate could only be corrupt
        second.load_state_dict(
            {**good, "monitor": {**good["monitor"], "state": {**good["monitor"]["state"], "lr": "nan"}}}
        )
    with pytest.raises(StateError, match="'best_weights' must be None or a list of numpy arrays"):
        second.load_state_dict({**good, "best_weights": "weights.h5"})
    with pytest.raises(
        StateError, match=r"array 0 is float32 of shape \(4, 32\) there, float32 of shape \(8, 32\) here"
    ):
        first.load_state_dict({**good, "best_weights": [np.zeros((4, 32), "float32"), *good["best_weights"][1:]]})
    assert first.state_dict()["monitor"] == good["monitor"] and first._resume_from is None  # nothing changed


def test_best_weights_for_another_model_are_refused_when_fit_begins_before_anything_changes() -> None:
    callback = EarlyStoppingCallback(patience=2, restore_best_weights=True)  # no model yet: checked at fit
    first = EarlyStoppingCallback(patience=2, restore_best_weights=True)
    fit(first, epochs=3)
    state = first.state_dict()
    callback.load_state_dict({**state, "best_weights": [w[:1] for w in state["best_weights"]]})
    with pytest.raises(StateError, match="do not fit this model: array 0"):
        fit(callback, epochs=2)


def test_weights_that_cannot_be_copied_leave_the_monitor_on_the_epoch_it_kept() -> None:
    """Out of memory while copying a new best: the Monitor goes back to before that epoch (issue 11, finding 4)."""
    failed: list[int] = []
    current = [0]

    class OutOfMemoryAfterTheFirstEpoch(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            current[0] = epoch
            if epoch == 1:

                def get_weights() -> list[np.ndarray]:
                    failed.append(current[0])
                    raise MemoryError("injected: cannot copy the weights")

                object.__setattr__(self.model, "get_weights", get_weights)

    callback = EarlyStoppingCallback(monitor="val_loss", patience=100, restore_best_weights=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse")
    x, y, xv, yv = data(0)
    with pytest.raises(MemoryError, match="injected"):
        model.fit(
            x,
            y,
            validation_data=(xv, yv),
            epochs=EPOCHS,
            batch_size=8,
            callbacks=[OutOfMemoryAfterTheFirstEpoch(), callback],
            verbose=0,
        )
    assert failed, "no epoch after the first improved: the fault was never injected"
    monitor = callback.core
    assert callback.best_weights is not None
    assert monitor.best_epoch == 0  # the only epoch whose weights were copied
    assert monitor.epoch == failed[0]  # the epoch that could not be kept is undone: it is the next one again
    state = callback.state_dict()  # and a checkpoint taken now is consistent
    assert state["monitor"]["state"]["best_epoch"] == 0
