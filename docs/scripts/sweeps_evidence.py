"""Sweep the curve banks through Optuna's and Ray Tune's own stopping options and ours; write the Sweeps table.

Run from anywhere (needs optuna and ray[tune]):

    python docs/scripts/sweeps_evidence.py [--page docs/sweeps.md]

It rewrites the tables between the page's ``<!-- sweeps-evidence:start -->``
and ``<!-- sweeps-evidence:end -->`` lines.

Each problem of a bank is one sweep: its runs are the trials, in run order,
each reporting its validation loss once per epoch. Optuna's pruners run in a
real in-memory study (``trial.report`` / ``trial.should_prune``, the pruner's
own code deciding); Ray Tune's stoppers are called as Tune's driver calls
them, with each result (``training_iteration`` included), without a Ray
instance (Tune calls a stopper in its driver process, so this is the same
code path minus the scheduling).

Every completed trial returns the lowest validation loss it reported (as if
it kept its best checkpoint); a pruned trial has no value. Per trial, as in
the rules evidence: the oracle is the lowest-val_loss epoch of the whole run,
the kept epoch the lowest-val_loss epoch up to the stop, regret =
``test_accuracy[oracle] - test_accuracy[kept]`` in percentage points, and
saved = ``(n - 1 - stop) / n`` pooled over the sweep's epochs. Per sweep: the
configuration the study would pick (Optuna's ``best_trial``; Tune's best result
over all reported results) against the one picked with no early stopping at
all, regret = the difference of their test accuracies at their kept epochs.
Deterministic; timings go to stderr.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from ray.tune.stopper import TrialPlateauStopper

from earlystop_core.adapters.optuna import MonitorPruner
from earlystop_core.adapters.ray import MonitorStopper
from earlystop_core.formats.long_csv import load_curves

ROOT = Path(__file__).resolve().parents[2]
BANKS = {
    "MLPs at a constant learning rate": ROOT.parent / "shared" / "curves" / "dev",
    "CNNs and MLPs under learning-rate schedules": ROOT.parent / "shared" / "curves" / "shift_dev",
}
DEFAULT_PAGE = ROOT / "docs" / "sweeps.md"
START, END = "<!-- sweeps-evidence:start -->", "<!-- sweeps-evidence:end -->"


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of a bank, as a sweep's trial."""

    id: str
    val_loss: list[float]
    test_accuracy: list[float]


@dataclasses.dataclass
class Outcome:
    """What one strategy did to one sweep."""

    stops: list[int]  # per trial, the last epoch it ran
    picked: int | None  # index of the trial the sweep picks (None: every trial pruned)
    completed: int


def kept_epoch(values: Sequence[float], stop: int) -> int:
    """The lowest finite validation loss up to ``stop`` (the first on ties; epoch 0 when none is finite)."""
    finite = [(value, k) for k, value in enumerate(values[: stop + 1]) if math.isfinite(value)]
    return min(finite)[1] if finite else 0


def best_value(values: Sequence[float], stop: int) -> float:
    finite = [value for value in values[: stop + 1] if math.isfinite(value)]
    return min(finite) if finite else math.inf


def optuna_sweep(trials: Sequence[Trial], pruner: Callable[[], optuna.pruners.BasePruner], complete: bool) -> Outcome:
    """A real study over the trials; with ``complete``, a trial our pruner stops completes at its best value."""
    made = pruner()
    study = optuna.create_study(direction="minimize", pruner=made, sampler=optuna.samplers.RandomSampler(seed=0))
    stops: list[int] = []
    for run in trials:
        trial = study.ask()
        stop, pruned = len(run.val_loss) - 1, False
        for epoch, value in enumerate(run.val_loss):
            trial.report(value, epoch)
            if trial.should_prune():
                stop, pruned = epoch, True
                break
        stops.append(stop)
        if pruned and not complete:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif pruned:
            assert isinstance(made, MonitorPruner)
            study.tell(trial, made.finish(trial, complete=True))
        else:
            study.tell(trial, best_value(run.val_loss, stop))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and math.isfinite(t.value or 0)]
    picked = min(done, key=lambda t: (t.value, t.number)).number if done else None
    return Outcome(stops, picked, len(done))


def ray_sweep(trials: Sequence[Trial], stopper: Callable[[], Any]) -> Outcome:
    """Each trial's results through a Tune stopper, as Tune's driver passes them; the best result over all."""
    made = stopper()
    stops: list[int] = []
    for run in trials:
        stop = len(run.val_loss) - 1
        for epoch, value in enumerate(run.val_loss):
            if made(run.id, {"val_loss": value, "training_iteration": epoch + 1}):
                stop = epoch
                break
        stops.append(stop)
    bests = [(best_value(run.val_loss, stop), k) for k, (run, stop) in enumerate(zip(trials, stops, strict=True))]
    return Outcome(stops, min(bests)[1] if math.isfinite(min(bests)[0]) else None, len(trials))


OPTUNA: list[tuple[str, str, Callable[[], optuna.pruners.BasePruner], bool]] = [
    ("no pruning", "—", optuna.pruners.NopPruner, False),
    ("`MedianPruner()` (Optuna's default)", "pruned", optuna.pruners.MedianPruner, False),
    ("`PatientPruner(None, patience=10)`", "pruned", lambda: optuna.pruners.PatientPruner(None, patience=10), False),
    ("`PatientPruner(None, patience=20)`", "pruned", lambda: optuna.pruners.PatientPruner(None, patience=20), False),
    (
        "`PatientPruner(MedianPruner(), patience=10)`",
        "pruned",
        lambda: optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(), patience=10),
        False,
    ),
    ("`MonitorPruner(patience=10)`", "pruned", lambda: MonitorPruner(patience=10), False),
    ("`MonitorPruner(patience=10)`, `finish(complete=True)`", "completed", lambda: MonitorPruner(patience=10), True),
    ("`MonitorPruner(patience=20)`, `finish(complete=True)`", "completed", lambda: MonitorPruner(patience=20), True),
]
RAY: list[tuple[str, Callable[[], Any]]] = [
    ("`TrialPlateauStopper('val_loss')` (defaults)", lambda: TrialPlateauStopper("val_loss")),
    (
        "`TrialPlateauStopper('val_loss', std=0.001, num_results=10)`",
        lambda: TrialPlateauStopper("val_loss", std=0.001, num_results=10, grace_period=10),
    ),
    ("`MonitorStopper('val_loss', patience=10)`", lambda: MonitorStopper("val_loss", mode="min", patience=10)),
    ("`MonitorStopper('val_loss', patience=20)`", lambda: MonitorStopper("val_loss", mode="min", patience=20)),
]


def sweeps(bank: Path) -> dict[str, list[Trial]]:
    curves = load_curves(bank / "curves.csv.gz")
    by_problem: dict[str, list[Trial]] = defaultdict(list)
    with open(bank / "runs.csv", newline="") as stream:
        for row in csv.DictReader(stream):
            run = curves[row["run"]]
            values = [math.nan if v is None else v for v in run["val_loss"]]
            accuracy = [math.nan if v is None else v for v in run["test_accuracy"]]
            by_problem[row["problem"]].append(Trial(row["run"], values, accuracy))
    return dict(by_problem)


def measure(problems: dict[str, list[Trial]], run: Callable[[list[Trial]], Outcome]) -> dict[str, float]:
    saved_epochs = total_epochs = stopped = count = 0
    regrets: list[float] = []
    sweep_regrets: list[float] = []
    lost = 0
    for trials in problems.values():
        outcome = run(trials)
        everything = min((best_value(t.val_loss, len(t.val_loss) - 1), k) for k, t in enumerate(trials))[1]
        for trial, stop in zip(trials, outcome.stops, strict=True):
            n = len(trial.val_loss)
            saved_epochs += n - 1 - stop
            total_epochs += n
            stopped += stop < n - 1
            count += 1
            oracle = kept_epoch(trial.val_loss, n - 1)
            regrets.append(100 * (trial.test_accuracy[oracle] - trial.test_accuracy[kept_epoch(trial.val_loss, stop)]))
        best = trials[everything]
        reference = best.test_accuracy[kept_epoch(best.val_loss, len(best.val_loss) - 1)]
        if outcome.picked is None:
            sweep_regrets.append(100 * reference)
            lost += 1
            continue
        chosen = trials[outcome.picked]
        chosen_accuracy = chosen.test_accuracy[kept_epoch(chosen.val_loss, outcome.stops[outcome.picked])]
        sweep_regrets.append(100 * (reference - chosen_accuracy))
        lost += outcome.picked != everything
    return {
        "stopped": stopped / count,
        "saved": saved_epochs / total_epochs,
        "regret": sum(regrets) / len(regrets),
        "sweep_regret": sum(sweep_regrets) / len(sweep_regrets),
        "lost": lost,
        "sweeps": len(problems),
    }


def table(rows: list[tuple[str, str, dict[str, float]]]) -> list[str]:
    lines = [
        "| option | a stopped trial is | trials stopped | epochs saved | regret per trial (pp) "
        "| regret of the sweep's pick (pp) | sweeps whose pick changed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seen, m in rows:
        lines.append(
            f"| {name} | {seen} | {m['stopped']:.0%} | {m['saved']:.1%} | {m['regret']:.2f} "
            f"| {m['sweep_regret']:.2f} | {int(m['lost'])} of {int(m['sweeps'])} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=DEFAULT_PAGE)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out: list[str] = [START, "<!-- Generated by docs/scripts/sweeps_evidence.py: do not edit by hand. -->"]
    for label, bank in BANKS.items():
        started = time.perf_counter()
        problems = sweeps(bank)
        runs = sum(len(trials) for trials in problems.values())
        optuna_rows = [
            (name, seen, measure(problems, lambda trials, p=pruner, c=complete: optuna_sweep(trials, p, c)))
            for name, seen, pruner, complete in OPTUNA
        ]
        ray_rows = [
            (name, "stopped", measure(problems, lambda trials, s=stopper: ray_sweep(trials, s)))
            for name, stopper in RAY
        ]
        print(f"{label}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        out += ["", f"**{label}** ({runs:,} runs, {len(problems)} sweeps, one per problem). Optuna:", ""]
        out += table(optuna_rows)
        out += ["", "Ray Tune:", ""]
        out += table(ray_rows)
    page = args.page.read_text(encoding="utf-8")
    if page.count(START) != 1 or page.count(END) != 1 or page.index(START) > page.index(END):
        raise SystemExit(f"{args.page}: needs one {START} line and, after it, one {END} line")
    before, after = page[: page.index(START)], page[page.index(END) :]
    args.page.write_text(before + "\n".join([*out, ""]) + after, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
