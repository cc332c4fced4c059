"""Moving from ``keras.callbacks.EarlyStopping`` and ``ReduceLROnPlateau`` to earlystop, on one small model.

The same model (same initial weights) is trained three times on part of scikit-learn's bundled digits:
with Keras's own callbacks, with earlystop's drop-in (the same epochs and the same restored weights), and
with the learning-rate schedule coordinated with stopping (stop only once lowering the rate stops helping).
docs/migrate-keras.md shows the marked sections (``fit`` after each run's callbacks); tests/test_docs_code.py
runs this file.

Run: KERAS_BACKEND=torch python examples/migrate_keras.py
(needs the ``keras`` and ``examples`` extras: ``pip install -e ".[keras,examples]"``)
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
from sklearn.datasets import load_digits

digits = load_digits()
x = (digits.data / 16.0).astype("float32")
x_train, y_train = x[:500], digits.target[:500]
x_val, y_val = x[500:800], digits.target[500:800]


def new_model() -> keras.Model:
    keras.utils.set_random_seed(0)  # the same initial weights for every run
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy")
    return model


def fit(model: keras.Model, callbacks: list[keras.callbacks.Callback]) -> keras.callbacks.History:
    """The training all three runs share: only the callbacks differ (the guide shows it after each set)."""
    # --8<-- [start:fit]
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=60,
        batch_size=50,
        callbacks=callbacks,
        verbose=0,
    )
    # --8<-- [end:fit]
    return history


def with_keras(model: keras.Model) -> keras.callbacks.History:
    # --8<-- [start:before]
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    reduce_lr = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.00125)
    callbacks = [early_stopping, reduce_lr]
    # --8<-- [end:before]
    return fit(model, callbacks)


def with_earlystop(model: keras.Model) -> keras.callbacks.History:
    # --8<-- [start:after]
    from earlystop_core.adapters.keras import EarlyStoppingCallback

    early_stopping = EarlyStoppingCallback(monitor="val_loss", patience=3, restore_best_weights=True)
    reduce_lr = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.00125)
    callbacks = [early_stopping, reduce_lr]
    # --8<-- [end:after]
    history = fit(model, callbacks)
    # --8<-- [start:after-outcome]
    print(early_stopping.core.stop_reason.name, "at epoch", early_stopping.core.stopped_epoch)
    # --8<-- [end:after-outcome]
    return history


def coordinated(model: keras.Model) -> keras.callbacks.History:
    # --8<-- [start:coordinated]
    from earlystop_core import Monitor, ReduceLROnPlateau
    from earlystop_core.adapters.keras import EarlyStoppingCallback

    monitor = Monitor(
        monitor="val_loss",
        patience=3,
        restore_best_weights=True,
        plateau=ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.00125),
    )
    callbacks = [EarlyStoppingCallback(monitor)]
    # --8<-- [end:coordinated]
    history = fit(model, callbacks)
    # --8<-- [start:coordinated-outcome]
    print(f"{monitor.stop_reason.name} at epoch {monitor.stopped_epoch}, the learning rate at {monitor.lr:.3g}")
    # --8<-- [end:coordinated-outcome]
    return history


def main() -> None:
    results, losses = {}, {}
    for name, train in [("keras", with_keras), ("earlystop", with_earlystop), ("coordinated", coordinated)]:
        model = new_model()
        history = train(model)
        val_loss = losses[name] = model.evaluate(x_val, y_val, verbose=0)
        results[name] = (len(history.history["loss"]), model.get_weights())
        print(f"{name}: ran {results[name][0]} epochs; val_loss with the restored weights {val_loss:.4f}")
    (ran_keras, keras_weights), (ran_ours, our_weights) = results["keras"], results["earlystop"]
    same = ran_keras == ran_ours and all(np.array_equal(a, b) for a, b in zip(keras_weights, our_weights, strict=True))
    print("drop-in: same epochs and bitwise the same restored weights as Keras:", same)
    print("coordinated: kept an epoch with a lower val_loss:", losses["coordinated"] < losses["keras"])


if __name__ == "__main__":
    main()
