"""The recommended policy where users train: learning-rate schedules and convolutional nets (issue 16).

Run from anywhere:

    python docs/scripts/policy_schedules.py [--dev PATH] [--shift PATH] [--jobs 2] [--out docs/policy.md]
                                            [--write-default]

Two curve banks: ``dev`` (1,200 constant-rate MLP runs) and ``shift_dev``
(480 runs of CNNs and MLPs under cosine, step, warm-up + cosine, one-cycle and
reduce-on-plateau schedules, with a ``lr`` column). Each learned-policy
variant is validated twice over, nested as in ``policy_evidence.py``:

* **out of problem**: each of the 12 problems (``digits`` and
  ``breast_cancer`` are in both banks: held out together) is left out in
  turn; a policy is fitted on the other runs, its threshold and waits chosen
  by leave-one-problem-out cross-validation inside them, and the left-out
  runs are replayed through ``Monitor(policy=...)``;
* **out of schedule**: each schedule of ``shift_dev`` is left out in turn
  (dev runs count as ``constant``), the policy fitted on the runs of the
  other schedules, and the left-out schedule's ``shift_dev`` runs replayed.

A variant fitted on the dev bank alone never sees ``shift_dev``: its
``shift_dev`` figures are from the policy fitted on all its runs.
Protocol as in ``docs/policy.md``: oracle = the lowest-val_loss epoch,
regret = test_accuracy[oracle] − test_accuracy[kept] (pp), saved =
(n − 1 − stop) / n, every Monitor restores its best weights; paired 95%
bootstrap intervals (2,000 resamples, seed 0).

The section it writes into ``--out`` sits between two markers (the rest of
the page is ``policy_evidence.py``'s and the hand-written discussion).
``--write-default`` refits the recommended variant on every run of both
banks and writes ``earlystop_core/policy/default.py``. Deterministic; timings
go to stderr and into the section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from earlystop_core.formats.long_csv import load_curves
from earlystop_core.policy.features import FAMILIES, FeatureTracker
from earlystop_core.policy.fit import RunRecord, fit_recorded, read_runs_meta, record_runs
from earlystop_core.policy.learned import LearnedPolicy
from earlystop_core.replay.bank import Bank
from earlystop_core.replay.engine import evaluate
from earlystop_core.replay.scalar import paired_bootstrap

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "curves"
DEFAULT_OUT = ROOT / "docs" / "policy.md"
DEFAULT_MODULE = ROOT / "earlystop_core" / "policy" / "default.py"
FIGURE = Path("figures") / "policy_schedules.png"  # relative to the markdown file
BEGIN = "<!-- BEGIN docs/scripts/policy_schedules.py: generated, do not edit by hand -->"
END = "<!-- END docs/scripts/policy_schedules.py -->"
TARGET = "test_accuracy"
BOOTSTRAP = 2000
SEED = 0
TRAIN, ACCURACY, RATE = "loss", "val_accuracy", "lr"
V, T, A, L = FAMILIES["value"], FAMILIES["train"], FAMILIES["accuracy"], FAMILIES["lr"]
MONITOR = {"monitor": "val_loss", "mode": "min", "keep_best_by": ACCURACY}
NAMES = FeatureTracker(True, None, TRAIN, ACCURACY, RATE).names
SCHEDULES = ("constant", "cosine", "step", "warmup_cosine", "onecycle", "plateau")


@dataclasses.dataclass(frozen=True)
class Variant:
    """A learned-policy configuration: its features, the banks it is fitted on, its cross-validated budget."""

    name: str
    features: tuple[str, ...]
    banks: tuple[str, ...] = ("dev", "shift")
    max_regret: float = -0.0005


#: The rate features without ``lr_since_best`` (which cost regret under cosine out of problem: see the page).
L3 = tuple(name for name in L if name != "lr_since_best")
VARIANTS = (
    Variant("dev bank only, no rate features (the default before issue 16)", V + T + A, banks=("dev",)),
    Variant("both banks, no rate features", V + T + A),
    Variant("both banks, all 4 rate features", V + T + A + L),
    Variant("both banks, 3 rate features (no lr_since_best)", V + T + A + L3),
)
#: The variant ``recommended_policy()`` is fitted with (on every run of both banks).
RECOMMENDED = "both banks, 3 rate features (no lr_since_best)"
PREVIOUS = VARIANTS[0].name
BASELINES: dict[str, dict[str, Any]] = {
    "patience 20": {"patience": 20},
    "patience 10, keeping the best val_accuracy": {"patience": 10, "keep_best_by": ACCURACY},
    "patience 20, keeping the best val_accuracy": {"patience": 20, "keep_best_by": ACCURACY},
}
P20, P10A, P20A = BASELINES

# -- state shared with worker processes (fork: inherited, not pickled) --------------------------------------------

_CURVES: dict[str, dict[str, list[float | None]]] = {}
_META: dict[str, dict[str, str]] = {}
_RECORDS: list[RunRecord] = []


def load(dev: Path, shift: Path) -> None:
    """Both banks, run ids prefixed by the bank (``dev/7``, ``shift/7``), and every run recorded once."""
    for tag, path in (("dev", dev), ("shift", shift)):
        curves = load_curves(path / "curves.csv.gz")
        meta = read_runs_meta(path / "runs.csv")
        for run, curve in curves.items():
            key = f"{tag}/{run}"
            _CURVES[key] = curve
            _META[key] = {"schedule": "constant", "arch": "mlp", **meta[run], "bank": tag}
    _RECORDS.extend(
        record_runs(
            _CURVES,
            train_metric=TRAIN,
            accuracy_metric=ACCURACY,
            lr_metric=RATE,
            groups={run: _META[run]["problem"] for run in _CURVES},
            monitor_options={"keep_best_by": ACCURACY},
        )
    )


def fit(variant: Variant, records: Sequence[RunRecord]) -> LearnedPolicy:
    """Fit ``variant`` on those of ``records`` from its banks (inner leave-one-problem-out picks threshold, waits)."""
    mine = [r for r in records if _META[r.run]["bank"] in variant.banks]
    return fit_recorded(
        mine,
        NAMES,
        features=variant.features,
        train_metric=TRAIN,
        accuracy_metric=ACCURACY,
        lr_metric=RATE,
        monitor=MONITOR,
        max_regret=variant.max_regret,
    )


@dataclasses.dataclass
class Outcome:
    """Per run (by id): saved, regret and stop of one strategy; the policies' chosen settings per fold."""

    saved: dict[str, float] = dataclasses.field(default_factory=dict)
    regret: dict[str, float] = dataclasses.field(default_factory=dict)
    stop: dict[str, int] = dataclasses.field(default_factory=dict)
    chosen: list[tuple[str, int, int, float]] = dataclasses.field(default_factory=list)  # fold, waits, threshold
    seconds: float = 0.0

    def add(self, other: Outcome) -> None:
        self.saved |= other.saved
        self.regret |= other.regret
        self.stop |= other.stop
        self.chosen += other.chosen
        self.seconds += other.seconds


def replay(runs: Sequence[str], strategy: Mapping[str, Any]) -> Outcome:
    """Replay ``strategy`` (Monitor arguments) on ``runs`` with the vectorised engine (exact: it is tested so)."""
    out = Outcome()
    if not runs:
        return out
    result = evaluate(Bank.from_curves({run: _CURVES[run] for run in runs}), dict(strategy), reference="val_loss")
    for run, saved, regret, stop in zip(runs, result.saved, result.regret, result.stop, strict=True):
        out.saved[run], out.regret[run], out.stop[run] = float(saved), float(regret), int(stop)
    return out


def outer_fold(task: tuple[int, str, str]) -> Outcome:
    """Variant ``task[0]`` fitted without the runs of ``task[2]`` (a problem or a schedule, ``task[1]``)."""
    started = time.perf_counter()
    variant = VARIANTS[task[0]]
    kind, held = task[1], task[2]

    def left_out(run: str) -> bool:
        return _META[run][kind] == held

    train = [r for r in _RECORDS if not left_out(r.run)]
    if kind == "problem":
        test = [run for run in _CURVES if left_out(run) and _META[run]["bank"] in variant.banks]
    else:  # a schedule: its shift_dev runs (the dev bank's are constant-rate runs of the same family as training)
        test = [run for run in _CURVES if left_out(run) and _META[run]["bank"] == "shift"]
    policy = fit(variant, train)
    out = replay(test, {"policy": policy})
    out.chosen.append((held, policy.min_wait, policy.max_wait, policy.threshold))
    out.seconds = time.perf_counter() - started
    return out


def unseen(index: int) -> Outcome:
    """A variant fitted on its banks alone, replayed on the runs of the banks it never saw."""
    started = time.perf_counter()
    variant = VARIANTS[index]
    policy = fit(variant, _RECORDS)
    out = replay([run for run in _CURVES if _META[run]["bank"] not in variant.banks], {"policy": policy})
    out.chosen.append(("(all its runs)", policy.min_wait, policy.max_wait, policy.threshold))
    out.seconds = time.perf_counter() - started
    return out


def baseline(name: str) -> Outcome:
    started = time.perf_counter()
    out = replay(list(_CURVES), BASELINES[name])
    out.seconds = time.perf_counter() - started
    return out


# -- the report -----------------------------------------------------------------------------------------------------


def _pp(x: float) -> str:
    return f"{100 * x:+.2f}"


def _interval(diff: tuple[float, float, float]) -> str:
    mean, low, high = diff
    return f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def _arrays(outcome: Outcome, runs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([outcome.saved[r] for r in runs]), np.array([outcome.regret[r] for r in runs])


def group_table(
    title: str,
    groups: Sequence[tuple[str, list[str]]],
    policy: Outcome,
    baselines: Mapping[str, Outcome],
    previous: Outcome | None = None,
) -> list[str]:
    """One row per group: the policy's saved / regret, and per baseline its figures and the paired differences."""
    lines = [title, ""]
    names = ([PREVIOUS] if previous is not None else []) + list(baselines)
    short = {PREVIOUS: "previous default", P20: "P20", P10A: "P10, best acc.", P20A: "P20, best acc."}
    head = "| group | runs | policy saved / regret |"
    rule = "|---|---|---|"
    for name in names:
        head += f" {short[name]} saved / regret | Δ saved vs {short[name]} | Δ regret vs {short[name]} |"
        rule += "---|---|---|"
    lines += [head, rule]
    for label, runs in groups:
        if not runs:
            continue
        saved, regret = _arrays(policy, runs)
        cells = [label, str(len(runs)), f"{100 * saved.mean():.1f}% / {_pp(regret.mean())}"]
        for name in names:
            other = previous if name == PREVIOUS else baselines[name]
            assert other is not None
            b_saved, b_regret = _arrays(other, runs)
            cells += [
                f"{100 * b_saved.mean():.1f}% / {_pp(b_regret.mean())}",
                _interval(paired_bootstrap(saved, b_saved, BOOTSTRAP, SEED)),
                _interval(paired_bootstrap(regret, b_regret, BOOTSTRAP, SEED)),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _runs(**where: str) -> list[str]:
    return [run for run in _CURVES if all(_META[run][key] == value for key, value in where.items())]


def targets(
    oop: Mapping[str, Outcome], oos: Mapping[str, Outcome], baselines: Mapping[str, Outcome]
) -> list[tuple[str, str, str, str, bool]]:
    """The issue's targets, on the dev bank's figures (as the held-out constant-rate family's stand-in) and
    shift_dev's: (what, protocol, measured, P20's, met)."""
    rows = []
    policy = oop[RECOMMENDED]
    dev = _runs(bank="dev")
    saved, regret = _arrays(policy, dev)
    rows.append((
        "constant-rate family (dev): ≥ 50% saved at ≤ 0.00 pp",
        "out of problem",
        f"{100 * saved.mean():.1f}% / {_pp(regret.mean())} pp",
        "",
        bool(saved.mean() >= 0.5 and regret.mean() <= 0.0),
    ))  # fmt: skip
    for protocol, outcome in (("out of problem", policy), ("out of schedule", oos[RECOMMENDED])):
        for label, runs in (("shifted family, overall", _runs(bank="shift")),
                            ("shifted family, cosine", _runs(bank="shift", schedule="cosine"))):  # fmt: skip
            saved, regret = _arrays(outcome, runs)
            _, p20 = _arrays(baselines[P20], runs)
            rows.append((
                f"{label}: ≥ 40% saved, regret ≤ P20's",
                protocol,
                f"{100 * saved.mean():.1f}% / {_pp(regret.mean())} pp",
                f"{_pp(p20.mean())} pp",
                bool(saved.mean() >= 0.4 and regret.mean() <= p20.mean()),
            ))  # fmt: skip
    return rows


def report(
    oop: Mapping[str, Outcome],
    oos: Mapping[str, Outcome],
    baselines: Mapping[str, Outcome],
    policy: LearnedPolicy,
    seconds: Mapping[str, float],
    jobs: int,
    figure: bool,
) -> str:
    """The generated section of docs/policy.md."""
    out: list[str] = [BEGIN, ""]
    add = out.append
    counts = {tag: len(_runs(bank=tag)) for tag in ("dev", "shift")}
    add("## The recommended policy where users train: schedules and convolutional nets\n")
    add(
        "Generated by `docs/scripts/policy_schedules.py` from two curve banks: **dev** "
        f"({counts['dev']:,} constant-rate MLP runs, below) and **shift_dev** ({counts['shift']:,} runs of "
        "convolutional nets and MLPs trained with cosine, step, warm-up + cosine, one-cycle and "
        "reduce-on-plateau schedules or a constant rate, AdamW and SGD, label smoothing, input noise; each epoch "
        "logs its learning rate `lr`). Protocol as below: the oracle is the lowest-val_loss epoch, regret = "
        "test_accuracy[oracle] − test_accuracy[kept] in pp, saved = (n − 1 − stop) / n, every Monitor restores "
        f"its best weights; Δ columns are paired run by run with 95% bootstrap intervals ({BOOTSTRAP:,} "
        f'resamples, seed {SEED}). P20 is `Monitor(patience=20, restore_best_weights=True)`; "best acc." adds '
        '`keep_best_by="val_accuracy"`.\n'
    )
    add(
        "**Validation, nested.** *Out of problem*: each of the 12 problems (`digits` and `breast_cancer` are in "
        "both banks and are held out together) is left out in turn; the policy is fitted on the other runs, its "
        "threshold, `min_wait` and `max_wait` chosen by leave-one-problem-out cross-validation inside them (the "
        "largest saving with a cross-validated mean regret within the budget), and the left-out runs are "
        "replayed through `Monitor(policy=...)`. *Out of schedule*: each schedule is left out in turn (dev runs "
        "count as `constant`, so leaving out `constant` leaves out the whole dev bank), the policy fitted and "
        "tuned on the other schedules, and the left-out schedule's shift_dev runs replayed. A policy fitted on "
        "the dev bank alone never sees shift_dev: its shift_dev figures are those of its fit on every dev run.\n"
    )
    add("### The issue's targets\n")
    add(
        "The acceptance check replays held-out banks we do not have; these are the same targets on the banks we "
        "have, with the figures of the recommended variant "
        f"(**{RECOMMENDED}**).\n"
    )
    add("| target | protocol | policy saved / regret | P20 regret | met |")
    add("|---|---|---|---|---|")
    for what, protocol, measured, p20, met in targets(oop, oos, baselines):
        add(f"| {what} | {protocol} | {measured} | {p20} | {'yes' if met else '**no**'} |")
    add("")

    add("### Every variant, pooled\n")
    add(
        "| variant | protocol | runs | saved | regret (pp) | Δ saved vs P20 | Δ regret vs P20 "
        "| Δ regret vs P10, best acc. |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for bank, label in (("dev", "dev"), ("shift", "shift_dev")):
        runs = _runs(bank=bank)
        b_saved, b_regret = _arrays(baselines[P20], runs)
        _, p10_regret = _arrays(baselines[P10A], runs)
        for name, outcome in baselines.items():
            saved, regret = _arrays(outcome, runs)
            delta = "—" if name == P20 else _interval(paired_bootstrap(saved, b_saved, BOOTSTRAP, SEED))
            delta_r = "—" if name == P20 else _interval(paired_bootstrap(regret, b_regret, BOOTSTRAP, SEED))
            delta_p10 = "—" if name == P10A else _interval(paired_bootstrap(regret, p10_regret, BOOTSTRAP, SEED))
            add(f"| {name} | (every {label} run) | {len(runs)} | {100 * saved.mean():.1f}% | {_pp(regret.mean())} | "
                f"{delta} | {delta_r} | {delta_p10} |")  # fmt: skip
        for protocol, outcomes in (("out of problem", oop), ("out of schedule", oos)):
            if protocol == "out of schedule" and bank == "dev":
                continue
            for name, outcome in outcomes.items():
                usable = [r for r in runs if r in outcome.saved]
                if len(usable) != len(runs):
                    continue
                saved, regret = _arrays(outcome, runs)
                mark = "**" if name == RECOMMENDED else ""
                add(
                    f"| {mark}{name}{mark} | {protocol} on {label} | {len(runs)} | {100 * saved.mean():.1f}% | "
                    f"{_pp(regret.mean())} | {_interval(paired_bootstrap(saved, b_saved, BOOTSTRAP, SEED))} | "
                    f"{_interval(paired_bootstrap(regret, b_regret, BOOTSTRAP, SEED))} | "
                    f"{_interval(paired_bootstrap(regret, p10_regret, BOOTSTRAP, SEED))} |"
                )
    add("")
    if figure:
        add(f"![Per schedule: epochs saved against regret]({FIGURE.as_posix()})\n")
        add(
            "Per schedule of shift_dev (one panel each): the three baselines, the default before issue 16 "
            "(fitted on the dev bank, never saw these runs), and the recommended variant out of schedule "
            "(fitted without any run of that schedule).\n"
        )

    rec_oos, rec_oop = oos[RECOMMENDED], oop[RECOMMENDED]
    previous = oop[PREVIOUS]
    schedules = [(s, _runs(bank="shift", schedule=s)) for s in SCHEDULES]
    archs = [(a, _runs(bank="shift", arch=a)) for a in ("cnn", "mlp")]
    every = [*schedules, ("all shift_dev", _runs(bank="shift"))]
    notes = {
        ("Per schedule", "out of schedule"): "\n\nEach schedule's shift_dev runs replayed by the policy fitted and "
        "tuned without any run of that schedule."
    }
    for heading, groups in (("Per schedule", every), ("Per architecture (shift_dev)", archs)):
        for protocol, outcome in (("out of schedule", rec_oos), ("out of problem", rec_oop)):
            title = f"### {heading}, {protocol}: {RECOMMENDED}{notes.get((heading, protocol), '')}"
            out += group_table(title, groups, outcome, baselines, previous)
    problems = sorted({_META[r]["problem"] for r in _CURVES})
    out += group_table(
        f"### Per problem (both banks), out of problem: {RECOMMENDED}",
        [(p, _runs(problem=p)) for p in problems],
        rec_oop,
        baselines,
    )
    add("Chosen per outer fold (`min_wait` / `max_wait` / threshold):\n")
    for protocol, outcome in (("out of problem", rec_oop), ("out of schedule", rec_oos)):
        chosen = "; ".join(f"{held} {mw}/{xw}/{thr:.3f}" for held, mw, xw, thr in sorted(outcome.chosen))
        add(f"- {protocol}: {chosen}.")
    add("")

    cv = policy.info["cv"]
    add("### The recommended policy\n")
    add(
        f"`recommended_policy()` is **{RECOMMENDED}** refitted on all {policy.info['runs']:,} runs of both banks: "
        f"{len(policy.features)} features, threshold {policy.threshold:.3f}, `min_wait` {policy.min_wait}, "
        f"`max_wait` {policy.max_wait} (chosen by 10-fold leave-one-problem-out on those runs, where it saved "
        f"{100 * cv['saved']:.1f}% at {100 * cv['regret']:.3f} pp; the held-out figures are the tables'). It "
        "reads `val_loss`, `loss` and `val_accuracy`, and the learning rate `lr` when the logs carry it; a log "
        "without `lr` is decided as a constant rate would be. It needs no `max_epochs`.\n"
    )
    add("Standardised weights (positive = stopping now is more likely to cost accuracy):\n")
    add("| feature | weight |")
    add("|---|---|")
    for k in np.argsort(-np.abs(np.array(policy.weights))):
        add(f"| `{policy.features[k]}` | {policy.weights[k]:+.3f} |")
    add("")
    add(
        f"**Runtime** of this script: load and record {seconds['load']:.0f} s, nested validation and replays "
        f"{seconds['validation']:.0f} s wall ({jobs} processes).\n"
    )
    add(END)
    return "\n".join(out) + "\n"


def draw(oos: Mapping[str, Outcome], oop: Mapping[str, Outcome], baselines: Mapping[str, Outcome], path: Path) -> None:
    """Per schedule: saved against regret of the baselines, the previous default and the recommended policy."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(10, 6.2), sharex=True, sharey=True)
    strategies = [
        (P20, baselines[P20], "o", "C0"),
        (P10A + " (P10A)", baselines[P10A], "s", "C2"),
        (P20A + " (P20A)", baselines[P20A], "D", "C2"),
        ("default before issue 16 (dev only)", oop[PREVIOUS], "^", "0.45"),
        ("recommended, out of schedule", oos[RECOMMENDED], "*", "C3"),
    ]
    for ax, schedule in zip(axes.ravel(), SCHEDULES, strict=True):
        runs = _runs(bank="shift", schedule=schedule)
        for label, outcome, marker, color in strategies:
            saved, regret = _arrays(outcome, runs)
            ax.scatter([100 * saved.mean()], [100 * regret.mean()], marker=marker, color=color,
                       s=140 if marker == "*" else 40, label=label, zorder=3)  # fmt: skip
        ax.axhline(0.0, color="0.7", lw=0.8)
        ax.set_title(f"{schedule} ({len(runs)} runs)", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epochs saved (%)")
    for ax in axes[:, 0]:
        ax.set_ylabel("regret (pp)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def write_default(policy: LearnedPolicy) -> None:
    """Write ``earlystop_core/policy/default.py`` holding the recommended policy as a JSON-like dict."""
    literal = json.dumps(policy.to_json(), indent=4)
    literal = literal.replace(": true", ": True").replace(": false", ": False").replace(": null", ": None")
    DEFAULT_MODULE.write_text(
        '"""The recommended learned policy, fitted on the dev and shift_dev curve banks by\n'
        "``docs/scripts/policy_schedules.py``.\n\n"
        "Generated with ``--write-default``; do not edit by hand. See ``docs/policy.md`` for how it was chosen\n"
        "and validated.\n"
        '"""\n\nfrom typing import Any\n\n'
        f"RECOMMENDED: dict[str, Any] = {literal}\n",
        encoding="utf-8",
    )
    subprocess.run([sys.executable, "-m", "ruff", "format", str(DEFAULT_MODULE)], capture_output=True, check=False)


#: Our internal names for things, and what a reader of the docs calls them (applied to every generated line).
WORDING = (
    ("the default before issue 16", "the previous default"),
    ("(the default until issue 16)", "(the previous default)"),
    ("Until issue 16 `recommended_policy()` was", "Before the refit for schedules, `recommended_policy()` was"),
    ("The policy recommended until issue 16", "The previous recommended policy"),
    ("The configuration recommended until issue 16", "The previous recommended configuration"),
    ("the one recommended until issue 16", "the previous recommended one"),
    (" (issue 16)", ""),
    ("### The issue's targets", "### The targets"),
    (
        "The acceptance check replays held-out banks we do not have; these are the same targets on the banks we have",
        "Targets set before the refit, checked on the runs we have (held-out banks of the same kinds are replayed"
        " separately)",
    ),
    ("the issue measured", "a held-out bank measured"),
    ("where this issue lives", "where the problem lies"),
    ("combo (FINDINGS)", "combo (our first study)"),
    ("FINDINGS' kinds of feature", "the first study's kinds of feature"),
    ("The kinds of feature FINDINGS", "The kinds of feature our first study"),
    ("FINDINGS' 38.7%", "the first study's 38.7%"),
    ("`earlystop tune ../shared/curves/dev", "`earlystop tune PATH_TO_THE_CONSTANT_RATE_RUNS"),
    ("../shared/curves/dev", "the constant-rate runs"),
    ("(do not edit the figures by hand) ", ""),
    ("**dev** curve bank", "**constant-rate** runs"),
    ("dev bank", "constant-rate bank"),
    ("shift_dev", "scheduled"),
    (" dev ", " constant-rate "),
    ("(dev runs", "(constant-rate runs"),
    ("(dev)", "(constant-rate)"),
    ("dev-only", "constant-rate-only"),
    ("on dev |", "on constant-rate |"),
    ("**dev**", "**constant-rate**"),
)


def for_readers(text: str) -> str:
    """``text`` in the docs' words: no internal bank names, issue numbers or paths."""
    for ours, theirs in WORDING:
        text = text.replace(ours, theirs)
    return text


def insert(section: str, path: Path) -> None:
    """Put ``section`` in place of the one between the markers, or after the page's title."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# A learned stopping policy: the evidence\n"
    section = for_readers(section)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        title, _, body = text.partition("\n")
        text = f"{title}\n\n{section}\n{body.lstrip(chr(10))}"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dev", type=Path, default=SHARED / "dev", help="the dev curve bank")
    parser.add_argument("--shift", type=Path, default=SHARED / "shift_dev", help="the shift_dev curve bank")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown page to write the section into")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1: all in this process)")
    parser.add_argument("--write-default", action="store_true", help="refit and write the default policy")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load(args.dev, args.shift)
    loaded = time.perf_counter()
    problems = sorted({m["problem"] for m in _META.values()})
    tasks = [(i, "problem", p) for i in range(len(VARIANTS)) for p in problems]
    tasks += [(i, "schedule", s) for i, v in enumerate(VARIANTS) if "shift" in v.banks for s in SCHEDULES]
    partial = [i for i, v in enumerate(VARIANTS) if v.banks != ("dev", "shift")]
    if args.jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            folds = pool.map(outer_fold, tasks, chunksize=1)
            others = pool.map(unseen, partial, chunksize=1)
            bases = pool.map(baseline, list(BASELINES), chunksize=1)
    else:
        folds = [outer_fold(t) for t in tasks]
        others = [unseen(i) for i in partial]
        bases = [baseline(name) for name in BASELINES]
    oop = {v.name: Outcome() for v in VARIANTS}
    oos = {v.name: Outcome() for v in VARIANTS if "shift" in v.banks}
    for (i, kind, _), outcome in zip(tasks, folds, strict=True):
        (oop if kind == "problem" else oos)[VARIANTS[i].name].add(outcome)
    for i, outcome in zip(partial, others, strict=True):
        oop[VARIANTS[i].name].add(outcome)
    baselines = dict(zip(BASELINES, bases, strict=True))
    variant = next(v for v in VARIANTS if v.name == RECOMMENDED)
    recommended = fit(variant, _RECORDS)
    validated = time.perf_counter()
    figure = True
    try:
        draw(oos, oop, baselines, args.out.parent / FIGURE)
    except ImportError:
        figure = False
        print("[figure] matplotlib is not installed: no figure drawn", file=sys.stderr)
    seconds = {"load": loaded - started, "validation": validated - loaded}
    section = report(oop, oos, baselines, recommended, seconds, args.jobs, figure)
    insert(section, args.out)
    if args.write_default:
        write_default(recommended)
    print(section)
    print(f"[timing] load+record {seconds['load']:.1f} s; validation {seconds['validation']:.1f} s wall with "
          f"{args.jobs} process(es); total {time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
