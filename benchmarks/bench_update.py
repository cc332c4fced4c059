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

import argparse
import gc
import json
import os
import random
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "torch")


def make_curve(epochs: int, seed: int = 0) -> list[float]:
    """A noisy decaying validation loss: improvements early, plateaus later."""
    rng = random.Random(seed)
    return [1.0 / (1 + 0.05 * t) + rng.gauss(0, 0.01) for t in range(epochs)]


def time_per_call(run: Callable[[], None], calls: int) -> float:
    """Microseconds per call, with the garbage collector paused as ``timeit`` does.

    A cyclic collection costs in proportion to every object the process holds
    (in a test run: Keras, torch, hypothesis...), not to the stopper timed.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) / calls * 1e6
    finally:
        if collecting:
            gc.enable()


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
        "earlystop Monitor.update": earlystop_runner(curve),
        "Keras EarlyStopping.on_epoch_end": keras_runner(curve),
        "Lightning EarlyStopping criteria": lightning_runner(curve),
    }
    available = {name: run for name, run in runners.items() if run is not None}
    samples: dict[str, list[float]] = {name: [] for name in available}
    for run in available.values():  # warm-up: imports, caches
        run()
    for _ in range(repeats):
        for name, run in available.items():
            samples[name].append(time_per_call(run, epochs))
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    medians = measure(args.epochs, args.repeats)
    if args.json:
        print(json.dumps(medians))
        return
    ours = medians["earlystop Monitor.update"]
    print(f"{'stopper':36} {'us/epoch':>9} {'vs earlystop':>13}")
    for name, micros in medians.items():
        print(f"{name:36} {micros:9.2f} {micros / ours:12.1f}x")
    peers = [m for name, m in medians.items() if not name.startswith("earlystop")]
    if peers:
        print(f"earlystop is {min(peers) / ours:.1f}x cheaper than the faster peer")


if __name__ == "__main__":
    main()
