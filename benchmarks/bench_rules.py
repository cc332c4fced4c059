"""Cost of each rule and signal against plain fixed patience, in one run.

Run: python benchmarks/bench_rules.py [--epochs 2000] [--repeats 15]

Every configuration sees the same curve (a noisy decaying positive loss and a
training loss), with limits set so that nothing stops; repetitions are
interleaved and medians reported, and the garbage collector is paused while
timing, as ``timeit`` does. The target (issue 3): every rule at most 2x the
cost of fixed patience.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import statistics
import time
from collections.abc import Callable

from earlystop_core import (
    GL,
    PQ,
    UP,
    DynamicPatience,
    LearnedPolicy,
    Monitor,
    Patience,
    ReduceLROnPlateau,
    RelativePatience,
    Stalled,
    recommended_policy,
)

NEVER = 10**9
#: The recommended policy, made never to stop: every epoch pays for all its features.
NEVER_STOPPING_POLICY = LearnedPolicy.from_json(
    recommended_policy().to_json() | {"max_wait": NEVER, "threshold": 1e-300}
)


def make_logs(epochs: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [
        {"val_loss": math.exp(-0.01 * t) * (1 + 0.02 * rng.random()), "loss": math.exp(-0.02 * t), "val_accuracy": 0.5}
        for t in range(epochs)
    ]


CONFIGURATIONS: dict[str, Callable[[], Monitor]] = {
    "fixed patience (baseline)": lambda: Monitor(patience=NEVER),
    "rule=Patience": lambda: Monitor(rule=Patience(NEVER)),
    "DynamicPatience": lambda: Monitor(rule=DynamicPatience(initial=NEVER, minimum=NEVER, maximum=NEVER)),
    "RelativePatience": lambda: Monitor(rule=RelativePatience(1.0, minimum=NEVER)),
    "GL": lambda: Monitor(rule=GL(NEVER)),
    "UP": lambda: Monitor(rule=UP(NEVER)),
    "PQ": lambda: Monitor(rule=PQ(NEVER)),
    "Stalled(log)": lambda: Monitor(rule=Stalled(NEVER, log=True)),
    "patience='auto'": lambda: Monitor(patience="auto", max_epochs=NEVER),
    "smoothing=0.9": lambda: Monitor(patience=NEVER, smoothing=0.9),
    "weighted (2 metrics)": lambda: Monitor({"val_loss": 0.5, "val_accuracy": 0.5}, patience=NEVER),
    "min_delta_mode='rel'": lambda: Monitor(patience=NEVER, min_delta=1e-3, min_delta_mode="rel"),
    "best_from_epoch=3": lambda: Monitor(patience=NEVER, best_from_epoch=3),
    "plateau": lambda: Monitor(patience=NEVER, plateau=ReduceLROnPlateau(patience=NEVER)),
    "keep_best_by='val_accuracy'": lambda: Monitor(patience=NEVER, keep_best_by="val_accuracy"),
    "policy='recommended'": lambda: Monitor(policy=NEVER_STOPPING_POLICY),
}


def run(make: Callable[[], Monitor], logs: list[dict[str, float]]) -> float:
    monitor = make()
    coordinated = monitor.plateau is not None
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        if coordinated:
            lr = 0.1
            for entry in logs:
                lr = monitor.update(entry, lr=lr).lr or lr
        else:
            update = monitor.update
            for entry in logs:
                update(entry)
        return (time.perf_counter() - start) / len(logs) * 1e6
    finally:
        if collecting:
            gc.enable()


def measure(epochs: int, repeats: int) -> dict[str, float]:
    logs = make_logs(epochs)
    samples: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    for make in CONFIGURATIONS.values():
        run(make, logs)
    for _ in range(repeats):
        for name, make in CONFIGURATIONS.items():
            samples[name].append(run(make, logs))
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    medians = measure(args.epochs, args.repeats)
    if args.json:
        print(json.dumps(medians))
        return
    base = medians["fixed patience (baseline)"]
    print(f"{'configuration':28} {'us/epoch':>9} {'vs fixed':>9}")
    for name, micros in medians.items():
        print(f"{name:28} {micros:9.2f} {micros / base:8.2f}x")


if __name__ == "__main__":
    main()
