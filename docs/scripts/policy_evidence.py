"""Cross-validate learned stopping policies on the dev curve bank; write docs/policy.md's dev-bank study.

Run from anywhere:

    python docs/scripts/policy_evidence.py [--bank PATH] [--jobs 2] [--out docs/policy.md] [--write-default]

Leave-one-problem-out: for each of the bank's 10 problems, a policy is fitted
with :func:`earlystop_core.policy.fit.fit_recorded` on the runs of the other 9
(which itself picks the threshold and waits by leave-one-problem-out
cross-validation inside those 9), then every run of the held-out problem is
replayed through a real ``Monitor(rule=policy, restore_best_weights=True)``
with :func:`earlystop_core.replay.scalar.replay_run`. So every figure for a learned
policy is for problems it never saw, and its threshold was never tuned on
them. Baselines are replayed the same way. Protocol as in FINDINGS: the oracle
is the lowest-val_loss epoch of the whole run, regret = test_accuracy[oracle] −
test_accuracy[kept], saved = (n − 1 − stop) / n; comparisons are paired run by
run with 95% bootstrap intervals (2,000 resamples, seed 0).

This study found the configuration the project recommended until issue 16
(``RECOMMENDED`` here: fitted on the dev bank alone). The recommended policy
is now fitted on the dev and shift_dev banks together, with learning-rate
features, by ``docs/scripts/policy_schedules.py``, which writes the default
and its own section at the top of the page; this script keeps that section
(and the hand-written discussion) when it regenerates the rest. The output is
deterministic; timings go to stderr (and a summary line into the report).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from earlystop_core import Monitor, Patience, Stalled
from earlystop_core.formats.long_csv import load_curves
from earlystop_core.policy.features import FAMILIES, FeatureTracker
from earlystop_core.policy.fit import RunRecord, fit_recorded, group_folds, read_runs_meta, record_runs, simulate
from earlystop_core.policy.learned import LearnedPolicy
from earlystop_core.replay.scalar import paired_bootstrap, replay_run

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BANK = ROOT.parent / "shared" / "curves" / "dev"
DEFAULT_OUT = ROOT / "docs" / "policy.md"
FIGURE = Path("figures") / "policy_pareto.png"  # relative to the markdown file
#: Fixed patiences drawn as the two trade-off curves of the figure.
CURVE_PATIENCES = (5, 8, 10, 12, 15, 20, 25, 30, 40)
TARGET = "test_accuracy"
BOOTSTRAP = 2000
SEED = 0
TRAIN, ACCURACY = "loss", "val_accuracy"
V, B, T, A = FAMILIES["value"], FAMILIES["budget"], FAMILIES["train"], FAMILIES["accuracy"]
#: The accuracy feature FINDINGS' policy had: the val_accuracy wait.
A_FINDINGS = ("acc_log_wait",)
#: Restore the epoch of the best val_accuracy (ties: the lower val_loss) instead of the lowest val_loss.
KEEP_ACCURACY = (("keep_best_by", "val_accuracy"),)


@dataclasses.dataclass(frozen=True)
class Variant:
    """A learned-policy configuration, cross-validated out of problem."""

    name: str
    features: tuple[str, ...]
    monitor: tuple[tuple[str, Any], ...] = ()  # Monitor settings fitted under, e.g. (("keep_best_by", ...),)
    options: tuple[tuple[str, Any], ...] = ()  # fit_recorded arguments


VARIANTS = (
    Variant("value features only (9)", V),
    Variant("FINDINGS' kinds of feature (16)", V + B + T + A_FINDINGS),
    Variant("all 20 features", V + B + T + A),
    Variant("all but budget (17)", V + T + A),
    Variant("all 20, budget = patience 20's regret", V + B + T + A, options=(("match_patience", 20),)),
    Variant("all 20, best_from_epoch=3", V + B + T + A, monitor=(("best_from_epoch", 3),)),
    Variant("all but budget (17), keeping the best val_accuracy", V + T + A, monitor=KEEP_ACCURACY),
    Variant(
        "all but budget (17), keeping the best val_accuracy, CV budget -0.05 pp",
        V + T + A,
        monitor=KEEP_ACCURACY,
        options=(("max_regret", -0.0005),),
    ),
)
#: The configuration ``recommended_policy()`` was fitted with until issue 16 (on the dev bank alone).
RECOMMENDED = "all but budget (17), keeping the best val_accuracy, CV budget -0.05 pp"


BASELINES: dict[str, Callable[[], Monitor]] = {
    "patience 20": lambda: Monitor(patience=20, restore_best_weights=True),
    "patience 15": lambda: Monitor(patience=15, restore_best_weights=True),
    "patience 10": lambda: Monitor(patience=10, restore_best_weights=True),
    "patience 8": lambda: Monitor(patience=8, restore_best_weights=True),
    "patience 20, best_from_epoch=3": lambda: Monitor(patience=20, best_from_epoch=3, restore_best_weights=True),
    "patience 20, keeping the best val_accuracy": lambda: Monitor(
        patience=20, keep_best_by="val_accuracy", restore_best_weights=True
    ),
    "patience 10, keeping the best val_accuracy": lambda: Monitor(
        patience=10, keep_best_by="val_accuracy", restore_best_weights=True
    ),
    "patience 8, keeping the best val_accuracy": lambda: Monitor(
        patience=8, keep_best_by="val_accuracy", restore_best_weights=True
    ),
    "combo (FINDINGS)": lambda: Monitor(
        rule=Patience(20) | (Patience(14) & Stalled(10, log=True)), best_from_epoch=3, restore_best_weights=True
    ),
}
COMBO = "combo (FINDINGS)"

# -- state shared with worker processes (fork: inherited, not pickled) --------------------------------------------

_CURVES: dict[str, dict[str, list[float]]] = {}
_META: dict[str, dict[str, str]] = {}
_RECORDS: dict[tuple[tuple[str, Any], ...], list[RunRecord]] = {}
_NAMES = FeatureTracker(True, 1, TRAIN, ACCURACY).names


def load(bank: Path) -> None:
    """Load the bank and record every run (features, waits, regrets) under each variant's Monitor settings."""
    _CURVES.update(load_curves(bank / "curves.csv.gz"))
    _META.update(read_runs_meta(bank / "runs.csv"))
    groups = {run: _META[run]["problem"] for run in _CURVES}
    budgets = {run: int(_META[run]["epochs"]) for run in _CURVES}
    for settings in sorted({v.monitor for v in VARIANTS}):
        _RECORDS[settings] = record_runs(
            _CURVES,
            train_metric=TRAIN,
            accuracy_metric=ACCURACY,
            budgets=budgets,
            groups=groups,
            monitor_options=dict(settings),
        )


def fit(variant: Variant, records: Sequence[RunRecord]) -> LearnedPolicy:
    """Fit ``variant`` on ``records`` (inner leave-one-problem-out picks threshold and waits)."""
    options: dict[str, Any] = dict(variant.options)
    if "match_patience" in options:
        options["max_regret"] = None
    monitor: dict[str, Any] = {"monitor": "val_loss", "mode": "min"}
    monitor.update(variant.monitor)
    return fit_recorded(
        records,
        _NAMES,
        features=variant.features,
        train_metric=TRAIN,
        accuracy_metric=ACCURACY,
        monitor=monitor,
        **options,
    )


@dataclasses.dataclass
class Outcome:
    """Per-run figures of one strategy on some runs (bank order within them); NaN where the replay raised."""

    runs: list[str]
    saved: list[float]
    regret: list[float]
    stop: list[int]
    simulated_stop: list[int]
    failures: list[tuple[str, str]]
    chosen: list[tuple[str, int, int, float, float, float]]  # (problem, min_wait, max_wait, threshold, cv saved/regret)
    seconds: float


def _replay(run: str, make: Callable[[], Monitor]) -> tuple[float, float, int]:
    result = replay_run(_CURVES[run], make, TARGET, "max", run=run)
    return result.saved, result.regret, result.stop


def outer_fold(task: tuple[int, str]) -> Outcome:
    """Fit variant ``task[0]`` without problem ``task[1]``, replay that problem's runs through a Monitor."""
    started = time.perf_counter()
    variant = VARIANTS[task[0]]
    problem = task[1]
    records = _RECORDS[variant.monitor]
    train = [r for r in records if r.group != problem]
    test = [r for r in records if r.group == problem]
    policy = fit(variant, train)
    bound = {epochs: policy.bind(epochs) for epochs in {r.epochs for r in test}}
    cut = math.log(policy.threshold / (1.0 - policy.threshold))
    columns = [_NAMES.index(name) for name in policy.features]
    means, scales, weights = np.array(policy.means), np.array(policy.scales), np.array(policy.weights)
    logits = [policy.bias + ((r.features[:, columns] - means) / scales) @ weights for r in test]
    _, _, simulated = simulate(test, logits, policy.min_wait, policy.max_wait, [cut])
    out = Outcome([], [], [], [], [], [], [], 0.0)
    for record, sim in zip(test, simulated[:, 0], strict=True):
        rule = bound[record.epochs]

        def make(rule: LearnedPolicy = rule) -> Monitor:
            return Monitor(policy=rule, restore_best_weights=True)

        saved, regret, stop = _replay(record.run, make)
        out.runs.append(record.run)
        out.saved.append(saved)
        out.regret.append(regret)
        out.stop.append(stop)
        out.simulated_stop.append(int(sim))
    cv = policy.info["cv"]
    out.chosen.append((problem, policy.min_wait, policy.max_wait, policy.threshold, cv["saved"], cv["regret"]))
    out.seconds = time.perf_counter() - started
    return out


def baseline(name: str) -> Outcome:
    """Replay a baseline Monitor on every run."""
    started = time.perf_counter()
    out = Outcome([], [], [], [], [], [], [], 0.0)
    for run in _CURVES:
        try:
            saved, regret, stop = _replay(run, BASELINES[name])
        except (ValueError, KeyError, ArithmeticError) as error:
            out.failures.append((run, f"{type(error).__name__}: {error}"))
            saved, regret, stop = math.nan, math.nan, -1
        out.runs.append(run)
        out.saved.append(saved)
        out.regret.append(regret)
        out.stop.append(stop)
    out.seconds = time.perf_counter() - started
    return out


def frontier(variant: Variant) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One-level leave-one-problem-out: per-run saved and regret over a grid of thresholds (min/max wait fixed).

    Each problem's logits come from a model fitted on the other 9; the cut is
    then swept over all runs at once — the most favourable way to ask what a
    given saving costs (the cut is picked with every problem in view).
    """
    records = _RECORDS[variant.monitor]
    policy = fit(variant, records)
    columns = [_NAMES.index(name) for name in policy.features]
    logits: list[np.ndarray] = [np.zeros(0)] * len(records)
    for held in group_folds([r.group for r in records]):
        train = [r for i, r in enumerate(records) if i not in set(held.tolist())]
        model = fit(variant, train)
        means, scales, weights = np.array(model.means), np.array(model.scales), np.array(model.weights)
        for i in held:
            logits[i] = model.bias + ((records[i].features[:, columns] - means) / scales) @ weights
    cuts = np.linspace(-8.0, 8.0, 641)
    saved, regret, _ = simulate(records, logits, policy.min_wait, policy.max_wait, list(cuts))
    return cuts, saved, regret, np.array([policy.min_wait, policy.max_wait])


# -- the report -----------------------------------------------------------------------------------------------------


def _interval(diff: tuple[float, float, float]) -> str:
    mean, low, high = diff
    return f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def _ordered(outcome: Outcome, runs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    saved = dict(zip(outcome.runs, outcome.saved, strict=True))
    regret = dict(zip(outcome.runs, outcome.regret, strict=True))
    return np.array([saved[r] for r in runs]), np.array([regret[r] for r in runs])


def _merge(parts: Sequence[Outcome]) -> Outcome:
    merged = Outcome([], [], [], [], [], [], [], 0.0)
    for part in parts:
        merged.runs += part.runs
        merged.saved += part.saved
        merged.regret += part.regret
        merged.stop += part.stop
        merged.simulated_stop += part.simulated_stop
        merged.failures += part.failures
        merged.chosen += part.chosen
        merged.seconds += part.seconds
    return merged


def time_update(make: Callable[[], Monitor], curve: Mapping[str, Sequence[float]], repeats: int = 30) -> float:
    """Fastest microseconds per ``Monitor.update`` over a whole curve, CPU time (the monitor is reset, not rebuilt)."""
    logs = [dict(zip(curve, values, strict=True)) for values in zip(*curve.values(), strict=True)]
    monitor = make()
    best = math.inf
    for _ in range(repeats):
        monitor.reset()
        update = monitor.update
        started = time.process_time()
        for entry in logs:
            update(entry)
        best = min(best, (time.process_time() - started) / len(logs) * 1e6)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    """Cross-validate, write the markdown report (and optionally the default policy); timings to stderr."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bank", type=Path, default=DEFAULT_BANK, help=f"curve bank (default {DEFAULT_BANK})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1: all in this process)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load(args.bank)
    loaded = time.perf_counter()
    problems = sorted({m["problem"] for m in _META.values()})
    tasks = [(i, p) for i in range(len(VARIANTS)) for p in problems]
    if args.jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            folds = pool.map(outer_fold, tasks, chunksize=1)
            bases = pool.map(baseline, list(BASELINES), chunksize=1)
            fronts = pool.map(frontier, [v for v in VARIANTS if v.name == RECOMMENDED], chunksize=1)
    else:
        folds = [outer_fold(t) for t in tasks]
        bases = [baseline(name) for name in BASELINES]
        fronts = [frontier(v) for v in VARIANTS if v.name == RECOMMENDED]
    evaluated = time.perf_counter()
    learned = {
        v.name: _merge([f for (i, _), f in zip(tasks, folds, strict=True) if i == k]) for k, v in enumerate(VARIANTS)
    }
    baselines = dict(zip(BASELINES, bases, strict=True))
    variant = next(v for v in VARIANTS if v.name == RECOMMENDED)
    recommended = fit(variant, _RECORDS[variant.monitor])
    curve = _CURVES[next(iter(_CURVES))]
    no_stop = {key: value for key, value in recommended.to_json().items() if key != "checksum"}  # changed below
    no_stop |= {"max_wait": 10**9, "threshold": 1e-300}
    timing = {
        "patience": time_update(lambda: Monitor(patience=10**9), curve),
        "combo": time_update(
            lambda: Monitor(rule=Patience(10**9) | (Patience(10**9) & Stalled(10, log=True)), best_from_epoch=3), curve
        ),
        "learned policy": time_update(lambda: Monitor(policy=LearnedPolicy.from_json(no_stop)), curve),
    }
    seconds = {"load and record": loaded - started, "cross-validation and replays": evaluated - loaded}
    text = _keep_discussion(report(learned, baselines, fronts[0], recommended, timing, seconds, args.jobs), args.out)
    text = _keep_schedules(text, args.out)
    from policy_schedules import for_readers

    text = for_readers(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    try:
        draw_pareto(learned, args.out.parent / FIGURE)
    except ImportError:
        print("[figure] matplotlib is not installed: no figure drawn (pip install matplotlib)", file=sys.stderr)
    print(text)
    print(
        f"[timing] load+record {seconds['load and record']:.1f} s; cross-validation and replays "
        f"{seconds['cross-validation and replays']:.1f} s wall with {args.jobs} process(es); "
        f"total {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


def draw_pareto(learned: Mapping[str, Outcome], path: Path) -> None:
    """Epochs saved against regret: fixed patience with either checkpoint, and the learned policies out of problem."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from earlystop_core.replay.bank import Bank
    from earlystop_core.replay.engine import evaluate

    bank = Bank.from_curves(_CURVES)
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for keep, label, color in ((None, "lowest val_loss", "C0"), ("val_accuracy", "best val_accuracy", "C2")):
        points = []
        for patience in CURVE_PATIENCES:
            strategy: dict[str, Any] = {"patience": patience, "restore_best_weights": True}
            if keep:
                strategy["keep_best_by"] = keep
            result = evaluate(bank, strategy, target=TARGET, reference="val_loss")
            points.append((100 * result.saved.mean(), 100 * result.regret.mean()))
        xs, ys = zip(*points, strict=True)
        span = f"{CURVE_PATIENCES[0]}–{CURVE_PATIENCES[-1]}"
        axes.plot(xs, ys, "o-", color=color, ms=4, label=f"fixed patience {span}, keeping the {label} epoch")
        for patience, x, y in zip(CURVE_PATIENCES, xs, ys, strict=True):
            if patience in (8, 20):
                axes.annotate(f"P{patience}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for name, outcome in learned.items():
        recommended = name == RECOMMENDED
        axes.scatter(
            [100 * float(np.nanmean(outcome.saved))],
            [100 * float(np.nanmean(outcome.regret))],
            marker="*" if recommended else "s",
            s=160 if recommended else 30,
            color="C3" if recommended else "0.45",
            zorder=3,
            label="recommended policy (out of problem)" if recommended else None,
        )
    axes.scatter([], [], marker="s", s=30, color="0.45", label="other learned policies (out of problem)")
    axes.axhline(0.0, color="0.7", lw=0.8)
    axes.set_xlabel("epochs saved (%)")
    axes.set_ylabel("regret (pp of test accuracy; lower is better)")
    axes.set_title("1,200 dev runs: epochs saved against regret")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def report(
    learned: Mapping[str, Outcome],
    baselines: Mapping[str, Outcome],
    front: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    policy: LearnedPolicy,
    timing: Mapping[str, float],
    seconds: Mapping[str, float],
    jobs: int,
) -> str:
    """The whole markdown document."""
    runs = list(_CURVES)
    p20_saved, p20_regret = _ordered(baselines["patience 20"], runs)
    combo_saved, combo_regret = _ordered(baselines[COMBO], runs)
    out: list[str] = []
    add = out.append
    add("# A learned stopping policy: the evidence\n")
    add("## How the policy was found: the dev bank alone\n")
    add(
        "Generated by `docs/scripts/policy_evidence.py` (do not edit the figures by hand) from the **dev** curve "
        f"bank: {len(runs):,} real runs of small MLPs on ten problems, each trained for a fixed 100 or 200 epochs. "
        "Protocol as in [the rules evidence](rules-evidence.md): the oracle is the lowest-val_loss epoch of the whole "
        "run; regret = test_accuracy[oracle] − test_accuracy[kept] in percentage points (pp); saved = (n − 1 − "
        "stop) / n; every Monitor restores its best weights. Δ columns are paired run by run, with 95% bootstrap "
        f"intervals ({BOOTSTRAP:,} resamples, seed {SEED}).\n"
    )
    add("### How it is validated\n")
    add(
        "**Out of problem, twice over.** For each of the 10 problems, a policy is fitted on the runs of the other 9 "
        "— and its threshold, `min_wait` and `max_wait` are chosen by leave-one-problem-out cross-validation *inside "
        "those 9* (the largest saving whose cross-validated mean regret is at most 0.07 pp) — then every run of the "
        "held-out problem is replayed through a real `Monitor(policy=policy, restore_best_weights=True)` "
        "(set as the policy was fitted, e.g. with `keep_best_by`). No figure "
        "below for a learned policy comes from a run of a problem it was fitted or tuned on. The fitted models "
        "differ per held-out problem; the report pools the 1,200 held-out replays.\n"
    )
    add("### Results\n")
    add(
        "| strategy | saved | regret (pp) | Δ saved vs P20 (pp) | Δ regret vs P20 (pp) | Δ saved vs combo (pp) "
        "| Δ regret vs combo (pp) |"
    )
    add("|---|---|---|---|---|---|---|")

    def row(name: str, outcome: Outcome) -> tuple[np.ndarray, np.ndarray]:
        saved, regret = _ordered(outcome, runs)
        ok = ~np.isnan(regret)
        count = "" if ok.all() else f" ({int(ok.sum()):,} of {len(runs):,} runs)"
        cells = [f"{100 * saved[ok].mean():.1f}%", f"{100 * regret[ok].mean():.2f}"]
        for base_saved, base_regret, is_self in (
            (p20_saved, p20_regret, name == "patience 20"),
            (combo_saved, combo_regret, name == COMBO),
        ):
            if is_self:
                cells += ["—", "—"]
            else:
                cells.append(_interval(paired_bootstrap(saved[ok], base_saved[ok], BOOTSTRAP, SEED)))
                cells.append(_interval(paired_bootstrap(regret[ok], base_regret[ok], BOOTSTRAP, SEED)))
        label = name.replace("|", "\\|")
        add(f"| {label}{count} | " + " | ".join(cells) + " |")
        return saved, regret

    add("| **baselines** (same Monitor, every run) | | | | | | |")
    for name, outcome in baselines.items():
        row(name, outcome)
    add("| **learned policy, out of problem** | | | | | | |")
    figures = {}
    for name, outcome in learned.items():
        figures[name] = row(name, outcome)
    add("")
    add(
        "The combo is `Monitor(rule=Patience(20) | (Patience(14) & Stalled(10, log=True)), best_from_epoch=3, "
        "restore_best_weights=True)`; patience rows are `Monitor(patience=p, restore_best_weights=True)`, and "
        '"keeping the best val_accuracy" adds `keep_best_by="val_accuracy"`: the same stop, but the weights '
        "restored are those of the epoch with the best val_accuracy (ties: the lower val_loss), while the oracle "
        "stays the lowest-val_loss epoch."
        + "".join(
            f" {name} raised on {len(o.failures)} run(s) ({'; '.join(f'{r}: {m}' for r, m in o.failures)}), left out "
            "of its row."
            for name, o in baselines.items()
            if o.failures
        )
        + "\n"
    )
    rec_saved, rec_regret = figures[RECOMMENDED]
    rec = learned[RECOMMENDED]
    mismatches = sum(a != b for a, b in zip(rec.stop, rec.simulated_stop, strict=True))
    total_mismatch = sum(sum(a != b for a, b in zip(o.stop, o.simulated_stop, strict=True)) for o in learned.values())
    add(
        "The vectorised simulation `fit_policy` tunes with (`earlystop_core.policy.fit.simulate`) and the real "
        f"Monitor replay agree on the stop epoch of {len(runs) * len(learned) - total_mismatch:,} of "
        f"{len(runs) * len(learned):,} held-out replays ({mismatches} differences for the recommended configuration).\n"
    )

    # per problem
    add(
        f"![Epochs saved against regret: fixed patience with either checkpoint, learned policies]({FIGURE.as_posix()})"
        "\n"
    )
    add(
        "Fixed patience 5 to 40 traces one trade-off curve per checkpoint rule (the P8 and P20 points are labelled); "
        "keeping the most accurate epoch shifts the whole curve down by about half a point. Squares are the learned "
        "policies of the table, the star the recommended one, each replayed out of problem.\n"
    )
    add(f"#### Per held-out problem: {RECOMMENDED}\n")
    add(
        "| held-out problem | runs | chosen min_wait / max_wait / threshold | inner CV saved / regret | "
        "saved | regret (pp) | P20 saved | P20 regret (pp) |"
    )
    add("|---|---|---|---|---|---|---|---|")
    problem_of = {run: _META[run]["problem"] for run in runs}
    chosen = {c[0]: c for c in rec.chosen}
    for problem in sorted(chosen):
        mask = np.array([problem_of[r] == problem for r in runs])
        _, mw, xw, thr, cv_saved, cv_regret = chosen[problem]
        add(
            f"| {problem} | {int(mask.sum())} | {mw} / {xw} / {thr:.3f} | {100 * cv_saved:.1f}% / "
            f"{100 * cv_regret:.3f} | {100 * rec_saved[mask].mean():.1f}% | {100 * rec_regret[mask].mean():.2f} | "
            f"{100 * p20_saved[mask].mean():.1f}% | {100 * p20_regret[mask].mean():.2f} |"
        )
    add("")

    # 46%?
    _, saved, regret, waits = front
    mean_saved, mean_regret = saved.mean(axis=0), regret.mean(axis=0)
    lines = []
    for goal in (0.40, 0.42, 0.44, 0.46, 0.48, 0.50):
        k = int(np.argmin(np.abs(mean_saved - goal)))
        d = paired_bootstrap(regret[:, k].tolist(), p20_regret.tolist(), BOOTSTRAP, SEED)
        lines.append(f"| {100 * mean_saved[k]:.1f}% | {100 * mean_regret[k]:.3f} | {_interval(d)} |")
    add("#### Can anything reach 46% saved at patience 20's regret?\n")
    add(
        f"The most favourable test: one level of leave-one-problem-out (each problem's scores from a model fitted "
        f"on the other 9), `min_wait` {waits[0]} and `max_wait` {waits[1]} as chosen on all runs, and the threshold "
        "swept over every run at once — picking a point on this curve uses all 10 problems, so it flatters the "
        f"policy. Recommended features ({RECOMMENDED}):\n"
    )
    add("| saved | regret (pp) | Δ regret vs P20 (pp) [95% CI] |")
    add("|---|---|---|")
    out.extend(lines)
    add("")

    # timing and the default
    cv = policy.info["cv"]
    add("### The dev-only policy (the default until issue 16)\n")
    add(
        f"Until issue 16 `recommended_policy()` was **{RECOMMENDED}** refitted on all {policy.info['runs']:,} dev "
        "runs: "
        f"{len(policy.features)} features, threshold {policy.threshold:.3f}, `min_wait` {policy.min_wait}, "
        f"`max_wait` {policy.max_wait} (chosen by 10-fold leave-one-problem-out on those runs, where it saved "
        f"{100 * cv['saved']:.1f}% at {100 * cv['regret']:.3f} pp; the out-of-problem figures are the table's). "
        "It needs `loss` and `val_accuracy` in the logs besides `val_loss`, and no `max_epochs`.\n"
    )
    add("Standardised weights (positive = stopping now is more likely to cost accuracy):\n")
    add("| feature | weight |")
    add("|---|---|")
    order = np.argsort(-np.abs(np.array(policy.weights)))
    for k in order:
        add(f"| `{policy.features[k]}` | {policy.weights[k]:+.3f} |")
    add("")
    add(
        "**Cost per epoch** (fastest of 30 passes, CPU µs per `Monitor.update` over a 100-epoch curve of the bank, "
        "never stopping, the Monitor's own work included): "
        + ", ".join(f"{name} {value:.2f} µs" for name, value in timing.items())
        + ".\n"
    )
    add(
        f"**Runtime** of this script: load and record {seconds['load and record']:.0f} s, cross-validation and "
        f"replays {seconds['cross-validation and replays']:.0f} s wall ({jobs} processes).\n"
    )
    add(DISCUSSION_MARKER)
    return "\n".join(out)


#: The hand-written discussion in docs/policy.md starts after this line and is kept across regenerations.
DISCUSSION_MARKER = "<!-- figures above are generated; the discussion below is kept when regenerating -->\n"


def _keep_schedules(text: str, path: Path) -> str:
    """Keep the section ``policy_schedules.py`` wrote (between its markers) right after the page's title."""
    from policy_schedules import BEGIN, END

    if not path.exists():
        return text
    old = path.read_text(encoding="utf-8")
    if BEGIN not in old or END not in old:
        return text
    section = BEGIN + old.split(BEGIN, 1)[1].split(END, 1)[0] + END
    title, _, body = text.partition("\n")
    return f"{title}\n\n{section}\n\n{body.lstrip(chr(10))}"


def _keep_discussion(text: str, path: Path) -> str:
    if not path.exists():
        return text
    old = path.read_text(encoding="utf-8")
    if DISCUSSION_MARKER not in old:
        return text
    return text + old.split(DISCUSSION_MARKER, 1)[1]


if __name__ == "__main__":
    raise SystemExit(main())
