"""Replaying a strategy over a curve bank: the scalar loop against the vectorised engine.

Run: python benchmarks/bench_replay.py [--runs 1000] [--epochs 200] [--repeats 7] [--json]

The bank is synthetic and seeded: noisy decaying validation losses (some
turning up again: overfitting), a matching accuracy and a test accuracy, every
run ``--epochs`` long. Each strategy is replayed by
``earlystop_core.replay.scalar.replay`` (a fresh ``Monitor`` per run, one
``update`` per epoch) and by ``earlystop_core.replay.engine.evaluate`` on a
``Bank`` packed once (packing is timed apart: a bank is packed once and
evaluated under many strategies). Both give identical per-run results (checked
here too). Repetitions are interleaved and medians reported, with the garbage
collector paused while timing, as ``timeit`` does; times are the process's
CPU time (on a shared machine, waiting for a core is not the code's). The
target (the replay issue): at least 50x on 1,000 runs x 200 epochs with fixed
patience; the other strategies are reported beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from earlystop_core.monitor import Monitor
from earlystop_core.replay.bank import Bank
from earlystop_core.replay.engine import evaluate
from earlystop_core.replay.scalar import replay

from timing import timed

#: The first is the headline (the FINDINGS protocol); the last, the learned policy (the recommended row), the slowest.
STRATEGIES: dict[str, dict[str, Any]] = {
    "patience 10": {"monitor": "val_loss", "patience": 10},
    "patience 20, best from epoch 3": {"monitor": "val_loss", "patience": 20, "best_from_epoch": 3},
    "patience 10, min_delta 1e-3": {"monitor": "val_loss", "patience": 10, "min_delta": 1e-3},
    "patience 10, min_delta 1% rel": {
        "monitor": "val_loss",
        "patience": 10,
        "min_delta": 0.01,
        "min_delta_mode": "rel",
    },
    "patience 10, EMA 0.5": {"monitor": "val_loss", "patience": 10, "smoothing": 0.5},
    "patience 10, min_delta 1% rel, EMA 0.5": {
        "monitor": "val_loss",
        "patience": 10,
        "min_delta": 0.01,
        "min_delta_mode": "rel",
        "smoothing": 0.5,
    },
    # The default row of `earlystop replay` and `tune`: 20 features per epoch, two logarithms.
    "recommended policy": {"policy": "recommended"},
}
HEADLINE = "patience 10"


def make_curves(runs: int, epochs: int, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Noisy decaying curves: a floor, a decay rate, an upturn and noise drawn per run."""
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    curves = {}
    for run in range(runs):
        rate = rng.uniform(0.02, 0.2)
        floor = rng.uniform(0.1, 0.6)
        upturn = rng.uniform(0.0, 0.004)
        noise = rng.uniform(0.002, 0.03)
        val_loss = floor + 1.0 / (1.0 + rate * t) + upturn * t + rng.normal(0.0, noise, epochs)
        accuracy = 1.0 - val_loss / 3.0
        curves[str(run)] = {
            "loss": (val_loss * 0.8 - upturn * t).round(6).tolist(),
            "val_loss": val_loss.round(6).tolist(),
            "val_accuracy": accuracy.round(4).tolist(),
            "test_accuracy": (accuracy + rng.normal(0.0, 0.01, epochs)).round(4).tolist(),
        }
    return curves


def cpu_seconds(run: Callable[[], object]) -> float:
    """CPU seconds of one call, with the garbage collector paused.

    CPU time of this process, not wall time: on a shared machine, time spent
    waiting for a core is not the code's.
    """
    return timed(run, clock=time.process_time)


def measure(runs: int, epochs: int, repeats: int, names: list[str] | None = None) -> dict[str, Any]:
    """Median CPU milliseconds of each path for each strategy, and the speed-ups."""
    curves = make_curves(runs, epochs)
    pack = [cpu_seconds(lambda: Bank.from_curves(curves)) for _ in range(3)]
    bank = Bank.from_curves(curves)
    figures: dict[str, Any] = {"runs": runs, "epochs": epochs, "bank_ms": 1e3 * statistics.median(pack)}
    strategies: dict[str, Any] = {}
    for name in names or list(STRATEGIES):
        options = STRATEGIES[name]
        monitor_options = {"restore_best_weights": True, **options}

        def scalar(options: dict[str, Any] = monitor_options) -> object:
            return replay(curves, lambda: Monitor(**options))

        def vectorised(options: dict[str, Any] = options) -> object:
            return evaluate(bank, options)

        result = evaluate(bank, options)
        if result.results() != scalar():
            raise AssertionError(f"{name}: the vectorised replay differs from the scalar one")
        slow, fast = [], []
        for _ in range(repeats):
            slow.append(cpu_seconds(scalar))
            fast.append(cpu_seconds(vectorised))
        slow_ms, fast_ms = 1e3 * statistics.median(slow), 1e3 * statistics.median(fast)
        strategies[name] = {
            "engine": result.engine,
            "mean_epochs_run": result.summary.epochs_run,
            "scalar_ms": slow_ms,
            "vectorized_ms": fast_ms,
            "speedup": slow_ms / fast_ms,
        }
    figures["strategies"] = strategies
    figures["speedup"] = strategies[HEADLINE]["speedup"] if HEADLINE in strategies else None
    figures["slowest_speedup"] = min(entry["speedup"] for entry in strategies.values())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--strategy", action="append", choices=list(STRATEGIES), help="only these (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = measure(args.runs, args.epochs, args.repeats, args.strategy)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.runs} runs x {args.epochs} epochs; packing the bank: {figures['bank_ms']:.1f} ms (once); CPU times")
    print(f"{'strategy':40} {'engine':6} {'epochs run':>10} {'scalar ms':>10} {'numpy ms':>9} {'speed-up':>9}")
    for name, entry in figures["strategies"].items():
        print(
            f"{name:40} {entry['engine']:6} {entry['mean_epochs_run']:10.1f} {entry['scalar_ms']:10.1f} "
            f"{entry['vectorized_ms']:9.2f} {entry['speedup']:8.0f}x"
        )
    if figures["speedup"] is not None:
        print(f"speed-up with {HEADLINE}: {figures['speedup']:.0f}x (target: 50x)")
    print(f"slowest speed-up: {figures['slowest_speedup']:.0f}x")


if __name__ == "__main__":
    main()
