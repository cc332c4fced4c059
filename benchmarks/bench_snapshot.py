"""Milliseconds per best-weights snapshot of a ~100 MB model: EarlyStopper against the usual idiom.

Run: python benchmarks/bench_snapshot.py [--mb 100] [--repeats 15] [--modes device,cpu,disk] [--threads N] [--json]

Contenders, each timed as one snapshot of the same model (float32
``Linear(2048, 2048)`` layers), in one process with interleaved repetitions
(medians), so machine noise hits all alike:

- floor: one ``dst.copy_(src)`` of the same number of bytes, both preallocated;
- idiom: ``best = copy.deepcopy(model.state_dict())``, the previous best alive
  while the new copy is made (as in a training loop);
- naive: ``buf.copy_(t)`` per tensor into buffers preallocated per tensor;
- ours: ``EarlyStopper.step(logs)`` on an improving metric (so it snapshots
  every call), per snapshot mode. On a CPU-only machine ``device`` and ``cpu``
  are the same copy; ``disk`` writes, fsyncs and renames a file.

``--json`` prints the medians (ms) as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from earlystop_core.adapters.torch import EarlyStopper

from timing import interleaved_medians, timed


def make_model(megabytes: float, width: int = 2048) -> torch.nn.Module:
    """Float32 ``Linear(width, width)`` layers, as many as make about ``megabytes`` MB."""
    layer_bytes = (width * width + width) * 4
    layers = max(1, round(megabytes * 1e6 / layer_bytes))
    torch.manual_seed(0)
    return torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(layers)))


def contenders(
    model: torch.nn.Module, modes: list[str], folder: Path, chosen: dict[str, EarlyStopper]
) -> dict[str, Callable[[], Any]]:
    """One callable per contender, each making one snapshot of ``model``; the stoppers go to ``chosen``."""
    tensors = list(model.state_dict().values())
    total = sum(t.numel() for t in tensors)
    source, target = torch.randn(total), torch.empty(total)
    per_tensor = [torch.empty_like(t) for t in tensors]
    kept: list[Any] = [copy.deepcopy(model.state_dict())]

    def floor() -> None:
        target.copy_(source)

    def idiom() -> None:
        kept[0] = copy.deepcopy(model.state_dict())  # the old best is freed only once the new one exists

    def naive() -> None:
        for buffer, tensor in zip(per_tensor, model.state_dict().values(), strict=True):
            buffer.copy_(tensor)

    runs: dict[str, Callable[[], Any]] = {"floor: one flat copy": floor, "idiom: deepcopy(state_dict)": idiom}
    runs["naive: per-tensor copy_"] = naive
    for mode in modes:
        path = folder / "best.pt" if mode == "disk" else None
        stopper = EarlyStopper(model, patience=10**9, restore_best_weights=True, snapshot=mode, path=path)
        runs[f"ours: EarlyStopper snapshot={mode}"] = _improving(stopper)
        chosen[mode] = stopper
    return runs


def _improving(stopper: EarlyStopper) -> Callable[[], Any]:
    losses = iter(1.0 / (2 + n) for n in range(10**9))

    def run() -> None:
        decision = stopper.step({"val_loss": next(losses)})
        assert decision.improved

    return run


def measure(runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median milliseconds per call, repetitions interleaved, after one untimed call each.

    The untimed call matters: the first snapshot allocates, and steady state is what a training run pays.
    """
    return interleaved_medians({name: partial(milliseconds, run) for name, run in runs.items()}, repeats)


def milliseconds(run: Callable[[], Any]) -> float:
    return timed(run) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=100.0, help="model size in MB (default 100)")
    parser.add_argument("--width", type=int, default=2048, help="of the square Linear layers (default 2048)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--modes", default="device,cpu,disk", help="snapshot modes to time, comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON on the last line")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = make_model(args.mb, args.width)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    stoppers: dict[str, EarlyStopper] = {}
    with tempfile.TemporaryDirectory() as folder:
        medians = measure(contenders(model, args.modes.split(","), Path(folder), stoppers), args.repeats)
    floor, idiom = medians["floor: one flat copy"], medians["idiom: deepcopy(state_dict)"]
    print(
        f"{size:.1f} MB in {len(model.state_dict())} tensors, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.repeats} repeats"
    )
    print(f"| {'contender':<38} | {'ms':>8} | {'x floor':>7} | {'idiom / this':>12} |")
    print(f"|{'-' * 40}|{'-' * 9}:|{'-' * 8}:|{'-' * 13}:|")
    for name, ms in medians.items():
        print(f"| {name:<38} | {ms:8.2f} | {ms / floor:7.2f} | {idiom / ms:12.2f} |")
    copies = {mode: getattr(s._store, "_on_cpu", None) for mode, s in stoppers.items()}
    ways = ", ".join(f"{mode}: {copy.choice}" for mode, copy in copies.items() if copy is not None)
    print(f"CPU copy chosen at the end (see adapters/_copy.py): {ways or 'none'}")
    if args.json:
        print(json.dumps(medians))


if __name__ == "__main__":
    main()
