"""Microseconds per epoch decision: Monitor.update against Keras and Lightning.

Run: KERAS_BACKEND=torch python benchmarks/bench_update.py [--epochs 2000] [--repeats 15]

All three see the same curve (a noisy decaying loss) with patience large enough
never to stop, in one process; repetitions are interleaved and medians are
reported, so machine noise hits all three alike. Keras is timed through
``EarlyStopping.on_epoch_end`` (what ``fit`` calls each epoch) and Lightning
through ``EarlyStopping._evaluate_stopping_criteria`` (its decision alone,
without the trainer around it), each fed what its framework feeds it: Python
floats for Keras, float32 tensors for Lightning.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from functools import partial

from timing import interleaved_medians, per_epoch_main, timed

os.environ.setdefault("KERAS_BACKEND", "torch")
OURS = "earlystop Monitor.update"


def make_curve(epochs: int, seed: int = 0) -> list[float]:
    """A noisy decaying validation loss: improvements early, plateaus later."""
    rng = random.Random(seed)
    return [1.0 / (1 + 0.05 * t) + rng.gauss(0, 0.01) for t in range(epochs)]


def earlystop_runner(curve: list[float]) -> Callable[[], None]:
    from earlystop_core import Monitor

    logs = [{"val_loss": v, "loss": v} for v in curve]

    def run() -> None:
        monitor = Monitor(monitor="val_loss", patience=10**9)
        update = monitor.update
        for entry in logs:
            update(entry)

    return run


def keras_runner(curve: list[float]) -> Callable[[], None] | None:
    try:
        import keras
    except ImportError:
        return None

    class Model:
        stop_training = False

        def get_weights(self) -> list[float]:
            return []

    logs = [{"val_loss": v, "loss": v} for v in curve]

    def run() -> None:
        callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=10**9)
        callback.set_model(Model())
        callback.on_train_begin()
        for epoch, entry in enumerate(logs):
            callback.on_epoch_end(epoch, entry)

    return run


def lightning_runner(curve: list[float]) -> Callable[[], None] | None:
    try:
        import torch
        from pytorch_lightning.callbacks import EarlyStopping
    except ImportError:
        return None
    values = [torch.tensor(v, dtype=torch.float32) for v in curve]

    def run() -> None:
        callback = EarlyStopping(monitor="val_loss", mode="min", patience=10**9)
        evaluate = callback._evaluate_stopping_criteria
        for value in values:
            evaluate(value)

    return run


def measure(epochs: int, repeats: int) -> dict[str, float]:
    """Median microseconds per decision for each stopper that is installed."""
    curve = make_curve(epochs)
    runners = {
        OURS: earlystop_runner(curve),
        "Keras EarlyStopping.on_epoch_end": keras_runner(curve),
        "Lightning EarlyStopping criteria": lightning_runner(curve),
    }
    samplers = {name: partial(microseconds_per_epoch, run, epochs) for name, run in runners.items() if run is not None}
    return interleaved_medians(samplers, repeats)


def microseconds_per_epoch(run: Callable[[], None], epochs: int) -> float:
    return timed(run) / epochs * 1e6


def main() -> None:
    medians = per_epoch_main(__doc__.splitlines()[0], measure, "stopper", OURS, "vs earlystop")
    peers = [micros for name, micros in (medians or {}).items() if name != OURS]
    if medians and peers:
        print(f"earlystop is {min(peers) / medians[OURS]:.1f}x cheaper than the faster peer")


if __name__ == "__main__":
    main()
