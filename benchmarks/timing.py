"""What the benchmarks share: one timed call with the garbage collector paused, and interleaved medians.

Not a benchmark itself: ``bench_*.py`` import it (running a script puts its folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable, Mapping


def timed(run: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds one call of ``run`` takes by ``clock``, with the garbage collector paused as ``timeit`` does.

    A cyclic collection costs in proportion to every object the process holds
    (in a test run: Keras, torch, hypothesis...), not to the code timed.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        run()
        return clock() - start
    finally:
        if collecting:
            gc.enable()


def interleaved_medians(samplers: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """The median of ``repeats`` samples of each sampler, after one untimed call of each (imports, caches).

    Each sampler makes one measurement and returns it. Repetitions are
    interleaved (all samplers once, then all again...), so machine noise hits
    all of them alike.
    """
    for sample in samplers.values():
        sample()
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(repeats):
        for name, sample in samplers.items():
            samples[name].append(sample())
    return {name: statistics.median(values) for name, values in samples.items()}


def per_epoch_main(
    description: str, measure: Callable[[int, int], dict[str, float]], first_column: str, reference: str, versus: str
) -> dict[str, float] | None:
    """A per-epoch benchmark's command line: ``--epochs``, ``--repeats``, ``--json``; ``measure(epochs, repeats)``.

    Prints the medians (microseconds per epoch) as JSON and returns None, or
    as a table, each also as a multiple of ``reference``'s (the column headed
    ``versus``), and returns them.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    medians = measure(args.epochs, args.repeats)
    if args.json:
        print(json.dumps(medians))
        return None
    width = max(len(first_column), *map(len, medians))
    base = medians[reference]
    print(f"{first_column:{width}} {'us/epoch':>9} {versus:>13}")
    for name, micros in medians.items():
        print(f"{name:{width}} {micros:9.2f} {micros / base:12.2f}x")
    return medians
