"""What ``keep_best_by="val_accuracy"`` changes on the dev curves: the tables of docs/rules/keep_best_by.md.

Run from anywhere (prints markdown; about 30 s):

    python docs/scripts/keep_best_by_evidence.py [--bank PATH]

Each fixed patience is replayed twice through the real Monitor (restoring the
best weights): keeping the lowest-val_loss epoch, and keeping the best
val_accuracy epoch (ties: the lower val_loss). Both stop at the same epoch;
only the weights kept differ. The oracle is the lowest-val_loss epoch of the
whole run in both, so the regrets are paired run by run (95% bootstrap
intervals, 2,000 resamples, seed 0).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from earlystop_core.formats.long_csv import load_curves
from earlystop_core.policy.fit import read_runs_meta
from earlystop_core.replay.bank import Bank
from earlystop_core.replay.engine import Evaluation, evaluate
from earlystop_core.replay.scalar import paired_bootstrap

DEFAULT_BANK = Path(__file__).resolve().parents[3] / "shared" / "curves" / "dev"
PATIENCES = (5, 8, 10, 15, 20, 30, 10**6)
KEEP = {"keep_best_by": "val_accuracy"}


def _replay(bank: Bank, patience: int, keep: bool) -> Evaluation:
    strategy = {"patience": patience, "restore_best_weights": True, **(KEEP if keep else {})}
    return evaluate(bank, strategy, target="test_accuracy", reference="val_loss")


def _interval(values: tuple[float, float, float]) -> str:
    mean, low, high = (100 * v for v in values)
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the two tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bank", type=Path, default=DEFAULT_BANK)
    args = parser.parse_args(argv)
    curves = load_curves(args.bank / "curves.csv.gz")
    problem = {run: meta["problem"] for run, meta in read_runs_meta(args.bank / "runs.csv").items()}
    bank = Bank.from_curves(curves)
    print("| patience | saved | regret, lowest val_loss kept (pp) | regret, best val_accuracy kept (pp) | Δ regret |")
    print("|---|--:|--:|--:|---|")
    full: tuple[Evaluation, Evaluation] | None = None
    for patience in PATIENCES:
        plain, keeping = _replay(bank, patience, False), _replay(bank, patience, True)
        assert plain.runs == keeping.runs and np.array_equal(plain.stop, keeping.stop)
        label = "none (train to the end)" if patience == PATIENCES[-1] else str(patience)
        print(
            f"| {label} | {100 * plain.saved.mean():.1f}% | {100 * plain.regret.mean():.2f} | "
            f"{100 * keeping.regret.mean():.2f} | {_interval(paired_bootstrap(keeping.regret, plain.regret))} |"
        )
        full = plain, keeping
    assert full is not None
    plain, keeping = full
    groups = np.array([problem[run] for run in plain.runs])
    print("\nPer problem, training to the end (Δ = best val_accuracy kept − lowest val_loss kept, pp):\n")
    print("| problem | runs | Δ regret |")
    print("|---|--:|---|")
    for name in sorted(set(groups)):
        mask = groups == name
        interval = paired_bootstrap(keeping.regret[mask], plain.regret[mask])
        print(f"| {name} | {int(mask.sum())} | {_interval(interval)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
