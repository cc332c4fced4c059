"""Cost of each rule and signal against plain fixed patience, in one run.

Run: python benchmarks/bench_rules.py [--epochs 2000] [--repeats 15]

Every configuration sees the same curve (a noisy decaying positive loss and a
training loss), with limits set so that nothing stops; repetitions are
interleaved and medians reported, and the garbage collector is paused while
timing, as ``timeit`` does. The target (issue 3): every rule at most 2x the
cost of fixed patience.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import partial

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

from timing import interleaved_medians, per_epoch_main, timed

NEVER = 10**9
#: The recommended policy, made never to stop: every epoch pays for all its features (edited: no checksum).
NEVER_STOPPING_POLICY = LearnedPolicy.from_json(
    {key: value for key, value in recommended_policy().to_json().items() if key != "checksum"}
    | {"max_wait": NEVER, "threshold": 1e-300}
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


def microseconds_per_epoch(make: Callable[[], Monitor], logs: list[dict[str, float]]) -> float:
    """One fresh monitor fed every epoch of ``logs`` (its making untimed); with a plateau, fed back its rate."""
    monitor = make()

    def feed() -> None:
        update = monitor.update
        for entry in logs:
            update(entry)

    def feed_back_the_rate() -> None:
        lr = 0.1
        for entry in logs:
            lr = monitor.update(entry, lr=lr).lr or lr

    return timed(feed if monitor.plateau is None else feed_back_the_rate) / len(logs) * 1e6


def measure(epochs: int, repeats: int) -> dict[str, float]:
    logs = make_logs(epochs)
    samplers = {name: partial(microseconds_per_epoch, make, logs) for name, make in CONFIGURATIONS.items()}
    return interleaved_medians(samplers, repeats)


def main() -> None:
    per_epoch_main(__doc__.splitlines()[0], measure, "configuration", "fixed patience (baseline)", "vs fixed")


if __name__ == "__main__":
    main()
