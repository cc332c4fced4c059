"""Train a small Keras model on scikit-learn's bundled digits and stop early.

Run: KERAS_BACKEND=torch python examples/keras_digits.py [--epochs 200] [--patience 5 | --policy recommended]
(needs the ``keras`` and ``examples`` extras: ``pip install -e ".[keras,examples]"``)
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from earlystop_core import Monitor
from earlystop_core.adapters.keras import EarlyStoppingCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--policy", help="a learned policy instead of patience: 'recommended' or a saved policy's path")
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.2, random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.25, random_state=0)

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    if args.policy:  # it reads loss and val_accuracy too, and restores the most accurate epoch
        monitor = Monitor(policy=args.policy, restore_best_weights=True)
    else:
        monitor = Monitor(monitor="val_loss", patience=args.patience, restore_best_weights=True)
    history = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=args.epochs,
        batch_size=64,
        callbacks=[EarlyStoppingCallback(monitor)],
        verbose=0,
    )
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    ran = len(history.history["loss"])
    print(f"ran {ran} of {args.epochs} epochs; {monitor.stop_reason.name}; kept epoch {monitor.best_epoch}")
    print(f"test accuracy with the restored weights: {accuracy:.4f}")


if __name__ == "__main__":
    main()
