"""Draw one figure per stopping rule: where it stops on three real runs of the dev bank.

Each figure ``docs/figures/rule_<name>.png`` shows the validation loss of the same
three runs (a smooth one, a noisy one, and one whose learning rate is too high, so
its validation loss spikes after epoch 0), replayed through the library's own
``Monitor`` with ``earlystop_core.replay.scalar.replay_run``: a vertical line where the rule
stops, a marker at the epoch it keeps (restores), and a star at the best
validation-loss epoch in hindsight. The pages ``docs/rules/<name>.md`` show them.

Deterministic; takes a few seconds::

    python docs/scripts/rule_plots.py                   # default bank: ../shared/curves/dev
    python docs/scripts/rule_plots.py --bank PATH --out docs/figures
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from earlystop_core import GL, PQ, UP, DynamicPatience, Monitor, Patience, RelativePatience, Stalled  # noqa: E402
from earlystop_core.curves import best_epoch  # noqa: E402
from earlystop_core.formats.long_csv import load_curves  # noqa: E402
from earlystop_core.replay.scalar import replay_run  # noqa: E402

DEFAULT_BANK = ROOT.parent / "shared" / "curves" / "dev"

# The three runs, fixed once by simple criteria on the dev bank (100-epoch runs, all val_loss finite):
# - smooth: none of its first 10 val_loss steps got worse, best epoch between 30 and 70, fewest worsening steps;
# - noisy: best epoch between 40 and 75, the largest share of worsening steps before its best epoch;
# - high learning rate: val_loss jumps more than 1.5x after epoch 0 and fixed patience 10 stops keeping epoch 0.
RUNS = {
    "974": "smooth",
    "17": "noisy",
    "52": "learning rate too high",
}

Factory = Callable[[int, int], Callable[[], Monitor]]


def _rule(make: Callable[[], object], **options: object) -> Factory:
    return lambda epochs, n_train: (
        lambda: Monitor(monitor="val_loss", rule=make(), restore_best_weights=True, **options)
    )


def _patience(patience: int, **options: object) -> Factory:
    return lambda epochs, n_train: (
        lambda: Monitor(monitor="val_loss", patience=patience, restore_best_weights=True, **options)
    )


def _auto(epochs: int, n_train: int) -> Callable[[], Monitor]:
    return lambda: Monitor(
        monitor="val_loss", patience="auto", max_epochs=epochs, n_samples=n_train, restore_best_weights=True
    )


def _weighted(epochs: int, n_train: int) -> Callable[[], Monitor]:
    return lambda: Monitor(
        monitor={"val_loss": 0.5, "val_accuracy": 0.5}, normalize="initial", patience=10, restore_best_weights=True
    )


# name: (title, monitor factory given the run's length and training-set size, EMA smoothing to draw)
RULES: dict[str, tuple[str, Factory, float]] = {
    "patience": ("Patience(10)", _rule(lambda: Patience(10)), 0.0),
    "best_from_epoch": ("patience=15, best_from_epoch=3", _patience(15, best_from_epoch=3), 0.0),
    "dynamic_patience": ("DynamicPatience()", _rule(DynamicPatience), 0.0),
    "relative_patience": ("RelativePatience(0.25, minimum=5)", _rule(lambda: RelativePatience(0.25, minimum=5)), 0.0),
    "gl": ("GL(5)", _rule(lambda: GL(5)), 0.0),
    "pq": ("PQ(1)", _rule(lambda: PQ(1)), 0.0),
    "up": ("UP(3)", _rule(lambda: UP(3)), 0.0),
    "stalled": (
        "Patience(20) | (Patience(14) & Stalled(10, log=True)), best_from_epoch=3",
        _rule(lambda: Patience(20) | (Patience(14) & Stalled(10, log=True)), best_from_epoch=3),
        0.0,
    ),
    "auto_patience": ('patience="auto" (max_epochs, n_samples)', _auto, 0.0),
    "smoothing": ("smoothing=0.8, patience=10", _patience(10, smoothing=0.8), 0.8),
    "weighted": ('{"val_loss": 0.5, "val_accuracy": 0.5}, normalize="initial", patience=10', _weighted, 0.0),
}


def ema(values: list[float], smoothing: float) -> list[float]:
    out: list[float] = []
    for value in values:
        out.append(value if not out else smoothing * out[-1] + (1.0 - smoothing) * value)
    return out


def draw(name: str, curves: dict, meta: dict, out: Path) -> list[str]:
    title, factory, smoothing = RULES[name]
    fig, axes = plt.subplots(1, len(RUNS), figsize=(9, 3), dpi=90)
    lines = []
    for ax, (run, kind) in zip(axes, RUNS.items(), strict=True):
        curve = curves[run]
        values = curve["val_loss"]
        epochs, n_train = len(values), int(meta[run]["n_train"])
        result = replay_run(curve, factory(epochs, n_train), reference="val_loss", run=run)
        oracle = best_epoch(values)
        ax.plot(range(epochs), values, color="0.35", lw=1.0, label="val_loss")
        if smoothing:
            ax.plot(range(epochs), ema(values, smoothing), color="tab:blue", lw=1.0, alpha=0.7, label="EMA")
        if result.stopped:
            ax.axvline(result.stop, color="tab:red", ls="--", lw=1.2, label="stop")
        ax.plot(oracle, values[oracle], "*", color="gold", mec="k", mew=0.5, ms=11, label="best (hindsight)")
        ax.plot(result.kept, values[result.kept], "o", color="tab:green", ms=5, label="kept")
        ax.set_yscale("log")
        stop = f"stop {result.stop}" if result.stopped else "never stops"
        ax.set_title(f"run {run} ({kind})\n{stop}, kept {result.kept}, best {oracle}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        lines.append(
            f"{name}: run {run}: {stop}, kept {result.kept}, best {oracle}, regret {100 * result.regret:+.2f} pp"
        )
    axes[0].set_ylabel("val_loss (log)", fontsize=8)
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out / f"rule_{name}.png", metadata={"Software": None})
    plt.close(fig)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=DEFAULT_BANK, help="a curve bank folder (curves.csv.gz, runs.csv)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures", help="where to write the PNGs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    bank = args.bank if args.bank.is_dir() else args.bank.parent
    curves = load_curves(bank / "curves.csv.gz")
    with open(bank / "runs.csv", newline="", encoding="utf-8") as stream:
        meta = {row["run"]: row for row in csv.DictReader(stream)}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in RULES:
        for line in draw(name, curves, meta, args.out):
            print(line)
    print(f"{len(RULES)} figures in {args.out} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
