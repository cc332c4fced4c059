"""Reading a large curve bank: earlystop's long-CSV reader against pandas.read_csv, and the default comparison.

Run: python benchmarks/bench_read.py [--runs 20000] [--epochs 200] [--repeats 3] [--json]

A long CSV of ``--runs`` x ``--epochs`` rows and 7 metrics is generated once
(seeded). Each measurement runs in a fresh process, so its peak memory
(its resident high-water mark, less the one after its imports; Linux only) is its own:

* ``earlystop``: ``Bank.load(path)``, straight into arrays with pyarrow;
* ``pandas``: ``pandas.read_csv(path)`` (a DataFrame, not yet a bank);
* ``replay``: ``earlystop replay PATH --json``, the default comparison
  (reading included), timed once.

Repetitions alternate and medians are reported (wall time: the readers use
threads). The targets (the "own runs" issue): reading at least as fast as
pandas, and peak memory at most 2x the float64 size of the file's numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

METRICS = ("loss", "val_loss", "accuracy", "val_accuracy", "test_loss", "test_accuracy", "lr")
# The peak is the process's high-water mark of resident memory, VmHWM: getrusage's ru_maxrss would do on its
# own, but Linux carries it over from the parent across exec, and this parent has just written a large file.
MEASURE = """
import sys, time

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

{imports}
before = peak()
start = time.perf_counter()
{call}
seconds = time.perf_counter() - start
print(seconds, peak() - before)
"""
READERS = {
    # Each library imported before the clock starts: pyarrow is what earlystop reads a long CSV with.
    "earlystop": (
        "import pyarrow.csv, pyarrow.compute\nfrom earlystop_core.replay.bank import Bank",
        "Bank.load(sys.argv[1])",
    ),
    "pandas": ("import pandas", "pandas.read_csv(sys.argv[1])"),
}


def write_bank(path: Path, runs: int, epochs: int, seed: int = 0) -> int:
    """A long CSV of decaying, noisy curves; returns the count of numbers in it (metrics only)."""
    import pyarrow as pa
    import pyarrow.csv as pv

    rng = np.random.default_rng(seed)
    t = np.tile(np.arange(epochs), runs)
    rate = np.repeat(rng.uniform(0.02, 0.2, runs), epochs)
    val_loss = 0.3 + 1 / (1 + rate * t) + rng.normal(0, 0.02, runs * epochs)
    columns = {
        "run": np.repeat([f"run{r}" for r in range(runs)], epochs),
        "epoch": t,
        "loss": val_loss * 0.8,
        "val_loss": val_loss,
        "accuracy": 1 - val_loss / 3 + 0.05,
        "val_accuracy": 1 - val_loss / 3,
        "test_loss": val_loss + rng.normal(0, 0.01, runs * epochs),
        "test_accuracy": 1 - val_loss / 3 + rng.normal(0, 0.01, runs * epochs),
        "lr": np.full(runs * epochs, 1e-3),
    }
    pv.write_csv(pa.table(columns), str(path))
    return runs * epochs * len(METRICS)


def measure(path: Path, repeats: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in READERS}
    for _ in range(repeats):
        for name, (imports, call) in READERS.items():
            code = MEASURE.format(imports=imports, call=call)
            out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
            seconds, peak = map(float, out.stdout.split())
            samples[name].append((seconds, peak))
    return {
        name: {
            "seconds": statistics.median(s for s, _ in values),
            "peak_bytes": statistics.median(p for _, p in values),
        }
        for name, values in samples.items()
    }


def replay_seconds(path: Path) -> tuple[float, float]:
    code = MEASURE.format(imports="from earlystop_core.cli import main", call="main(['replay', sys.argv[1], '--json'])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    seconds, peak = map(float, out.stdout.split()[-2:])
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bank.csv"
        numbers = write_bank(path, args.runs, args.epochs)
        readers = measure(path, args.repeats)
        replay, replay_peak = replay_seconds(path)
        figures = {
            "runs": args.runs,
            "epochs": args.epochs,
            "file_mb": path.stat().st_size / 1e6,
            "numbers_float64_mb": numbers * 8 / 1e6,
            "readers": readers,
            "speedup_vs_pandas": readers["pandas"]["seconds"] / readers["earlystop"]["seconds"],
            "peak_over_numbers": readers["earlystop"]["peak_bytes"] / (numbers * 8),
            "replay_seconds": replay,
            "replay_peak_over_numbers": replay_peak / (numbers * 8),
        }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.runs} runs x {args.epochs} epochs: {figures['file_mb']:.0f} MB of CSV, "
          f"{figures['numbers_float64_mb']:.0f} MB as float64")  # fmt: skip
    for name, entry in readers.items():
        print(f"{name:10} {entry['seconds']:7.2f} s   peak +{entry['peak_bytes'] / 1e6:7.0f} MB")
    print(f"earlystop reads {figures['speedup_vs_pandas']:.2f}x as fast as pandas (target: >= 1); peak memory "
          f"{figures['peak_over_numbers']:.2f}x the numbers' float64 size (target: <= 2)")  # fmt: skip
    print(f"earlystop replay (default comparison, reading included): {replay:.1f} s, "
          f"peak {figures['replay_peak_over_numbers']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
