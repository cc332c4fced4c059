"""Replay every stopping rule of earlystop_core on the dev curve bank; write docs/rules-evidence.md.

Run from anywhere:

    python docs/scripts/rules_evidence.py [--bank PATH] [--out docs/rules-evidence.md] [--jobs 2] [--figure]

The bank (default: ``../shared/curves/dev`` relative to the repository root)
holds ``curves.csv.gz`` and ``runs.csv``. Every strategy is the library's own
``Monitor``, replayed on every run with :func:`earlystop_core.replay.scalar.replay_run`
and measured by the FINDINGS protocol: the oracle is the lowest ``val_loss``
epoch of the whole run for *every* strategy (one yardstick, so strategies
watching other quantities are comparable run by run), regret is
``test_accuracy[oracle] - test_accuracy[kept]`` and saved is
``(n - 1 - stop) / n``. Each strategy is compared with patience 20 and with
fixed patience at equal saving, run by run, with a 95% paired bootstrap
interval (2,000 resamples, seed 0).

With matplotlib installed (or with ``--figure``, which then requires it) the
script also draws ``figures/rules_pareto.png`` next to the markdown file. The
output is deterministic; timings go to stderr.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from command_outputs import printed  # a sibling script: the docs show what the command prints

from earlystop_core import GL, PQ, UP, DynamicPatience, Monitor, Patience, RelativePatience, Stalled, never
from earlystop_core.curves import best_epoch
from earlystop_core.formats.long_csv import load_curves
from earlystop_core.replay.scalar import paired_bootstrap, replay_run
from earlystop_core.rules.auto_patience import suggest_patience, volatility

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BANK = ROOT.parent / "shared" / "curves" / "dev"
DEFAULT_OUT = ROOT / "docs" / "rules-evidence.md"
FIGURE = Path("figures") / "rules_pareto.png"  # relative to the markdown file
TARGET = "test_accuracy"
REFERENCE = "val_loss"
BASELINE = "patience 20"
BOOTSTRAP = 2000
SEED = 0
#: Exceptions a rule may raise on a real curve; the run is then recorded as failed for that strategy.
RULE_ERRORS = (ValueError, KeyError, ArithmeticError)
Interval = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Run:
    """One run's metadata from runs.csv, and what patience='auto' would pick for it."""

    id: str
    problem: str
    epochs: int
    n_train: int
    auto_patience: int
    shuffled_patience: int
    volatility: float


Factory = Callable[[Run], Callable[[], Monitor]]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A row of the evidence table: how to build the monitor for a run."""

    name: str
    group: str
    factory: Factory
    #: Also measure regret against the best epoch of the monitored quantity itself.
    own_oracle: bool = False


def _fixed(patience: int, **options: Any) -> Factory:
    return lambda run: lambda: Monitor(monitor="val_loss", patience=patience, restore_best_weights=True, **options)


def _rule(make_rule: Callable[[], Any], **options: Any) -> Factory:
    return lambda run: lambda: Monitor(monitor="val_loss", rule=make_rule(), restore_best_weights=True, **options)


def _combo() -> Any:
    return Patience(20) | (Patience(14) & Stalled(10, log=True))


WEIGHTED = {"val_loss": 0.5, "val_accuracy": 0.5}
#: Fixed patiences replayed: table rows, and the frontier other rules are held against at equal saved.
FIXED = (1, 2, 3, 5, 8, 10, 12, 15, 17, 20, 25, 30, 40, 50, 60)
#: Fixed patiences replayed with best_from_epoch=3: the frontier the combo's trend test is held against.
WARM = (10, 14, 15, 17, 20, 25)
COMBO = "combo: P(20) | (P(14) & Stalled(10, log)), bfe=3"
COMBO_COLD = "combo without warm-up (bfe=0)"
NO_ES = "no early stopping, restore best"
KEEP_LAST = "no early stopping, keep last epoch"
AUTO = 'patience="auto" (max_epochs, n_train)'
PLACEBO = "auto's patiences shuffled across runs (placebo) §"
WEIGHTED_NAME = "0.5 val_loss + 0.5 val_accuracy (initial), patience {}"
ACCURACY_NAME = "{{val_accuracy: 1}}, patience {}"
DYNAMIC = "DynamicPatience() (10 in [5, 20], +2/-1)"


def strategies() -> list[Strategy]:
    """Every row of the table, in order (rebuilt identically in each worker process)."""
    rows = [
        Strategy(KEEP_LAST, "baseline", lambda run: lambda: Monitor(rule=never)),
        Strategy(NO_ES, "baseline", lambda run: lambda: Monitor(rule=never, restore_best_weights=True)),
        Strategy("patience 20, restore off", "baseline", lambda run: lambda: Monitor(monitor="val_loss", patience=20)),
    ]
    rows += [Strategy(f"patience {p}", "fixed patience", _fixed(p)) for p in FIXED]
    rows += [
        Strategy(f"patience {p}, best_from_epoch=3", "warm-up and combo", _fixed(p, best_from_epoch=3)) for p in WARM
    ]
    rows += [
        Strategy(COMBO, "warm-up and combo", _rule(_combo, best_from_epoch=3)),
        Strategy(COMBO_COLD, "warm-up and combo", _rule(_combo)),
    ]
    rows += [
        Strategy(f"smoothing {s}, patience {p}", "EMA smoothing", _fixed(p, smoothing=s))
        for s in (0.5, 0.8, 0.9)
        for p in (10, 20)
    ]
    rows += [
        Strategy(DYNAMIC, "adaptive patience", _rule(DynamicPatience)),
        Strategy(
            "DynamicPatience(20 in [10, 30])",
            "adaptive patience",
            _rule(lambda: DynamicPatience(initial=20, minimum=10, maximum=30)),
        ),
        Strategy(
            "DynamicPatience(10 in [10, 30], grow only)",
            "adaptive patience",
            _rule(lambda: DynamicPatience(initial=10, minimum=10, maximum=30, shrink=0)),
        ),
        Strategy(
            "DynamicPatience(15 in [5, 25], significant 1%)",
            "adaptive patience",
            _rule(lambda: DynamicPatience(initial=15, minimum=5, maximum=25, significant=1e-2)),
        ),
        Strategy(
            "RelativePatience(0.25, minimum=5)",
            "adaptive patience",
            _rule(lambda: RelativePatience(0.25, minimum=5)),
        ),
        Strategy(
            "RelativePatience(0.33, minimum=10)",
            "adaptive patience",
            _rule(lambda: RelativePatience(0.33, minimum=10)),
        ),
    ]
    rows += [Strategy(f"GL({a})", "Prechelt", _rule(lambda a=a: GL(a))) for a in (1, 2, 5)]
    rows += [Strategy(f"UP({k}, strip 5)", "Prechelt", _rule(lambda k=k: UP(k, strip=5))) for k in (2, 3, 4)]
    rows += [
        Strategy(f"PQ({a}, strip 5, loss)", "Prechelt", _rule(lambda a=a: PQ(a, strip=5, train_monitor="loss")))
        for a in (0.5, 1, 2)
    ]
    rows += [Strategy("GL(5) | patience 20", "Prechelt", _rule(lambda: GL(5) | Patience(20)))]
    rows += [
        Strategy(f"patience 20, min_delta {d:g} rel", "min_delta", _fixed(20, min_delta=d, min_delta_mode="rel"))
        for d in (1e-3, 1e-2)
    ]
    rows += [
        Strategy(
            WEIGHTED_NAME.format(p),
            "multi-metric",
            lambda run, p=p: (
                lambda: Monitor(monitor=WEIGHTED, normalize="initial", patience=p, restore_best_weights=True)
            ),
            own_oracle=True,
        )
        for p in (10, 20)
    ]
    rows += [
        Strategy(
            ACCURACY_NAME.format(p),
            "multi-metric",
            lambda run, p=p: lambda: Monitor(monitor={"val_accuracy": 1.0}, patience=p, restore_best_weights=True),
            own_oracle=True,
        )
        for p in (10, 20)
    ]
    rows += [
        Strategy(
            AUTO,
            "patience heuristics",
            lambda run: (
                lambda: Monitor(
                    patience="auto", max_epochs=run.epochs, n_samples=run.n_train, restore_best_weights=True
                )
            ),
        ),
        Strategy(
            "suggest_patience(max_epochs, n_train), no volatility",
            "patience heuristics",
            lambda run: _fixed(suggest_patience(run.epochs, run.n_train))(run),
        ),
        Strategy(PLACEBO, "patience heuristics", lambda run: _fixed(run.shuffled_patience)(run)),
    ]
    rows += [
        Strategy(
            f"patience {share:.0%} of max_epochs",
            "patience heuristics",
            lambda run, share=share: _fixed(max(1, round(share * run.epochs)))(run),
        )
        for share in (0.10, 0.15, 0.20)
    ]
    return rows


# -- replaying (in worker processes) ------------------------------------------

_CURVES: dict[str, dict[str, list[float]]] = {}
_RUNS: dict[str, Run] = {}


def load_bank(bank: Path) -> tuple[dict[str, dict[str, list[float]]], dict[str, Run]]:
    """The bank's curves and run metadata (with auto patience and a seeded placebo shuffle of it)."""
    curves = load_curves(bank / "curves.csv.gz")
    with open(bank / "runs.csv", encoding="utf-8", newline="") as stream:
        rows = {row["run"]: row for row in csv.DictReader(stream)}
    missing = sorted(set(curves) - set(rows), key=int)
    if missing:
        raise ValueError(f"runs.csv lacks runs {missing[:5]}")
    ids = list(curves)
    auto: dict[str, int] = {}
    vols: dict[str, float] = {}
    for run in ids:
        epochs, n_train = int(rows[run]["epochs"]), int(rows[run]["n_train"])
        if len(curves[run][REFERENCE]) != epochs:
            raise ValueError(f"run {run}: {len(curves[run][REFERENCE])} epochs recorded, runs.csv says {epochs}")
        probe = min(10, max(3, epochs // 10))  # AutoPatience's default probe
        vols[run] = volatility(curves[run][REFERENCE][:probe])
        auto[run] = suggest_patience(epochs, n_train, vols[run])
    order = np.random.default_rng(SEED).permutation(len(ids))
    shuffled = {run: auto[ids[j]] for run, j in zip(ids, order, strict=True)}
    runs = {
        run: Run(
            run,
            rows[run]["problem"],
            int(rows[run]["epochs"]),
            int(rows[run]["n_train"]),
            auto[run],
            shuffled[run],
            vols[run],
        )
        for run in ids
    }
    return curves, runs


def _init(bank: Path) -> None:
    global _CURVES, _RUNS
    _CURVES, _RUNS = load_bank(bank)


def smoothed_best_epoch(values: Sequence[float], smoothing: float, stop: int, tracked: float) -> int:
    """The epoch whose smoothed value is the Monitor's tracked best, ``tracked`` (what restoring it would keep).

    The Monitor restores the best *raw* epoch and does not report the epoch of
    its smoothed best; this recomputes its EMA (same formula, same float
    operations) over epochs ``0..stop`` and returns the first epoch equal to
    the tracked best from ``Monitor.state_dict()`` (the first, as a later equal
    value is no improvement).
    """
    ema: float | None = None
    for epoch, value in enumerate(values[: stop + 1]):
        ema = value if ema is None else smoothing * ema + (1.0 - smoothing) * value
        if ema == tracked:
            return epoch
    raise AssertionError(f"no epoch of 0..{stop} has the tracked smoothed best {tracked!r}")


@dataclasses.dataclass
class Outcome:
    """Per-run figures of one strategy, in bank order; NaN where the replay raised."""

    saved: list[float]
    regret: list[float]
    gain: list[float]
    stop: list[float]
    kept: list[float]
    #: Regret against the best epoch of the monitored quantity itself (rows with ``own_oracle``).
    own_regret: list[float] | None
    #: Regret had the best *smoothed* epoch been restored, and that epoch (rows with smoothing).
    smoothed_regret: list[float] | None
    smoothed_kept: list[float] | None
    failures: list[tuple[str, str]]
    seconds: float


def replay_strategy(index: int) -> Outcome:
    """Replay strategy ``index`` of :func:`strategies` on every run of the loaded bank."""
    strategy = strategies()[index]
    started = time.perf_counter()
    nan = math.nan
    columns: dict[str, list[float]] = {
        key: [] for key in ("saved", "regret", "gain", "stop", "kept", "own", "smooth", "skept")
    }
    failures = []
    smoothing = 0.0
    for run_id, curve in _CURVES.items():
        make = strategy.factory(_RUNS[run_id])
        built: list[Monitor] = []

        def make_and_keep(make: Callable[[], Monitor] = make, built: list[Monitor] = built) -> Monitor:
            monitor = make()
            built.append(monitor)
            return monitor

        try:
            if strategy.own_oracle:
                # One replay for both oracles: its own (the monitored quantity's best), then the reference's.
                result = replay_run(curve, make_and_keep, TARGET, "max", run=run_id)
                own, oracle = result.regret, best_epoch(curve[REFERENCE])
                regret = curve[TARGET][oracle] - curve[TARGET][result.kept]
                result = dataclasses.replace(result, oracle=oracle, regret=regret)
            else:
                result = replay_run(curve, make_and_keep, TARGET, "max", reference=REFERENCE, run=run_id)
                own = nan
        except RULE_ERRORS as error:
            failures.append((run_id, f"{type(error).__name__}: {error}"))
            for column in columns.values():
                column.append(nan)
            continue
        target = curve[TARGET]
        config = built[0].config
        smoothing = config.smoothing
        smooth = smoothed_kept = nan
        if smoothing > 0:
            assert isinstance(config.monitor, str) and config.mode == "min", "smoothed restore: one minimised metric"
            tracked = built[0].state_dict()["state"]["tracked"]
            epoch = smoothed_best_epoch(curve[config.monitor], smoothing, result.stop, tracked)
            smooth, smoothed_kept = target[result.oracle] - target[epoch], float(epoch)
        for key, value in (
            ("saved", result.saved),
            ("regret", result.regret),
            ("gain", result.gain),
            ("stop", float(result.stop)),
            ("kept", float(result.kept)),
            ("own", own),
            ("smooth", smooth),
            ("skept", smoothed_kept),
        ):
            columns[key].append(value)
    return Outcome(
        columns["saved"],
        columns["regret"],
        columns["gain"],
        columns["stop"],
        columns["kept"],
        columns["own"] if strategy.own_oracle else None,
        columns["smooth"] if smoothing > 0 else None,
        columns["skept"] if smoothing > 0 else None,
        failures,
        time.perf_counter() - started,
    )


# -- the comparisons -------------------------------------------------------------


def _pp(x: float, signed: bool = False) -> str:
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _interval(diff: Interval | None) -> str:
    if diff is None:
        return "—"
    mean, low, high = diff
    return f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def _compared(diff: Interval | None) -> str:
    """``better than``, ``worse than`` or ``no different from`` (for prose)."""
    if diff is None:
        return "not comparable with"
    return {"better": "better than", "worse": "worse than", "no difference": "no different from"}[_verdict(diff)]


def _verdict(diff: Interval) -> str:
    _, low, high = diff
    return "better" if high < 0 else "worse" if low > 0 else "no difference"


@dataclasses.dataclass
class Row:
    """One strategy's figures: means over the runs it handled, and its paired comparisons."""

    strategy: Strategy
    outcome: Outcome
    ok: np.ndarray
    saved: float
    regret: float
    gain: float
    d_saved: Interval | None
    d_regret: Interval | None
    d_frontier: Interval | None
    frontier: str

    @property
    def name(self) -> str:
        return self.strategy.name

    def array(self, field: str = "regret") -> np.ndarray:
        return np.array(getattr(self.outcome, field), dtype=float)


Frontier = list[tuple[str, np.ndarray, np.ndarray]]


def frontier_of(rows: Sequence[Row], names: Sequence[str], short: Callable[[str], str]) -> Frontier:
    """Fixed-patience rows as (label, saved, regret) per run: what other rules are held against."""
    by = {row.name: row for row in rows}
    return [(short(name), by[name].array("saved"), by[name].array()) for name in names]


def against_frontier(row: Row, frontier: Frontier) -> tuple[Interval | None, str]:
    """Regret minus that of fixed patience mixed to the same mean saved, run by run (paired bootstrap).

    The two fixed patiences whose mean saved brackets the strategy's are mixed
    per run with weights that give exactly its mean saved (as if a patience
    between the two were used); outside the frontier's range there is no comparison.
    """
    ok = row.ok
    saved, regret = row.array("saved"), row.array()
    target = float(saved[ok].mean())
    levels = sorted(((float(s[ok].mean()), label, r) for label, s, r in frontier), key=lambda p: p[0])
    for (low_saved, low_label, low_regret), (high_saved, high_label, high_regret) in itertools.pairwise(levels):
        if low_saved <= target <= high_saved:
            w = 0.0 if high_saved == low_saved else (target - low_saved) / (high_saved - low_saved)
            mix = (1.0 - w) * low_regret[ok] + w * high_regret[ok]
            label = high_label if w == 1.0 else low_label if w == 0.0 else f"{high_label}–{low_label}"
            return paired_bootstrap(regret[ok], mix, BOOTSTRAP, SEED), label
    return None, "out of range"


def build_rows(rules: Sequence[Strategy], outcomes: Sequence[Outcome]) -> list[Row]:
    """Means over the runs each strategy handled, and paired differences with patience 20 and the frontier."""
    rows = []
    for strategy, outcome in zip(rules, outcomes, strict=True):
        regret = np.array(outcome.regret)
        ok = ~np.isnan(regret)
        rows.append(
            Row(
                strategy,
                outcome,
                ok,
                float(np.array(outcome.saved)[ok].mean()),
                float(regret[ok].mean()),
                float(np.array(outcome.gain)[ok].mean()),
                None,
                None,
                None,
                "",
            )
        )
    base = next(row for row in rows if row.name == BASELINE)
    frontier = frontier_of(rows, [f"patience {p}" for p in FIXED] + [NO_ES], _short)
    for row in rows:
        if row.name != BASELINE:
            both = row.ok & base.ok
            row.d_saved = paired_bootstrap(row.array("saved")[both], base.array("saved")[both], BOOTSTRAP, SEED)
            row.d_regret = paired_bootstrap(row.array()[both], base.array()[both], BOOTSTRAP, SEED)
        if row.strategy.group == "fixed patience" or row.name == NO_ES:
            row.frontier = "is the frontier"
        else:
            row.d_frontier, row.frontier = against_frontier(row, frontier)
    return rows


def _short(name: str) -> str:
    return "no ES" if name == NO_ES else name.replace("patience ", "P").replace(", best_from_epoch=3", " bfe3")


def table(rows: Sequence[Row], total: int) -> str:
    """The evidence table in markdown."""
    lines = [
        "| strategy | runs | saved | regret (pp) | gain (pp) | Δ saved vs P20 (pp) | Δ regret vs P20 (pp) "
        "| Δ regret vs fixed patience at equal saved (pp) |",
        "|---|--:|--:|--:|--:|---|---|---|",
    ]
    group = None
    for row in rows:
        if row.strategy.group != group:
            group = row.strategy.group
            lines.append(f"| **{group}** | | | | | | | |")
        runs = int(row.ok.sum())
        count = f"{runs:,}" if runs == total else f"{runs:,} of {total:,}"
        if row.d_frontier is None:
            frontier = "(frontier)" if row.frontier == "is the frontier" else "—"
        else:
            frontier = f"{_verdict(row.d_frontier)}: {_interval(row.d_frontier)} ({row.frontier})"
            if _verdict(row.d_frontier) == "better":
                frontier = f"**{frontier}**"
        name = row.name.replace("|", "\\|")
        lines.append(
            f"| {name} | {count} | {100 * row.saved:.1f}% | {_pp(row.regret)} | {_pp(row.gain, True)} "
            f"| {_interval(row.d_saved)} | {_interval(row.d_regret)} | {frontier} |"
        )
    return "\n".join(lines)


# -- the figure --------------------------------------------------------------------

#: Rows named on the zoomed panel: label, and where: ``(x, y)`` in data units with an arrow (the crowded
#: knee), or an offset in points from the marker with a horizontal alignment.
LABELLED: dict[str, tuple[str, tuple[float, float] | tuple[float, float, str]]] = {
    COMBO: ("combo", (41.5, 0.03)),
    COMBO_COLD: ("combo, no warm-up", (41.5, 0.17)),
    "patience 15, best_from_epoch=3": ("P15 bfe3", (41.5, 0.10)),
    WEIGHTED_NAME.format(20): ("weighted, P20", (41.5, -0.05)),
    "patience 20, best_from_epoch=3": ("P20 bfe3", (29.5, -0.11)),
    AUTO: ('patience="auto"', (34.0, -0.11)),
    DYNAMIC: ("DynamicPatience()", (-6, 2, "right")),
    "smoothing 0.8, patience 10": ("EMA 0.8, P10", (-6, 4, "right")),
    "RelativePatience(0.33, minimum=10)": ("RelativePatience(0.33)", (-6, -10, "right")),
    "UP(2, strip 5)": ("UP(2)", (5, -2, "left")),
    "PQ(0.5, strip 5, loss)": ("PQ(0.5)", (5, -2, "left")),
    "patience 20, restore off": ("P20, no restore", (0, 6, "center")),
}
#: (colour, marker) per group; fixed patience is drawn as a line.
STYLE = {
    "baseline": ("tab:gray", "s"),
    "warm-up and combo": ("tab:red", "D"),
    "EMA smoothing": ("tab:orange", "v"),
    "adaptive patience": ("tab:green", "^"),
    "Prechelt": ("tab:purple", "P"),
    "min_delta": ("tab:brown", "X"),
    "multi-metric": ("tab:blue", "o"),
    "patience heuristics": ("tab:cyan", "h"),
}


def draw_pareto(rows: Sequence[Row], path: Path) -> None:
    """Epochs saved against regret for every strategy: the whole range, and a zoom on the knee."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fixed = sorted((row for row in rows if row.strategy.group == "fixed patience"), key=lambda row: row.saved)
    warm = sorted(
        (row for row in rows if row.name.endswith("best_from_epoch=3") and row.name.startswith("patience")),
        key=lambda row: row.saved,
    )
    # Stacked and with large type: the page shows it about 700 px wide, and each label must stay readable.
    figure, axes = plt.subplots(2, 1, figsize=(9, 12), dpi=110)
    zoom = ((20.0, 48.0), (-0.15, 1.05))
    for ax, zoomed in zip(axes, (False, True), strict=True):
        ax.axhline(0.0, color="0.8", linewidth=0.8, zorder=0)
        ax.plot(
            [100 * r.saved for r in fixed],
            [100 * r.regret for r in fixed],
            "-o",
            color="black",
            markersize=4,
            linewidth=1.2,
            label="fixed patience",
            zorder=2,
        )
        ax.plot(
            [100 * r.saved for r in warm],
            [100 * r.regret for r in warm],
            "--",
            color="tab:red",
            linewidth=1.0,
            alpha=0.7,
            label="fixed patience, best_from_epoch=3",
            zorder=2,
        )
        for row in fixed:
            x, y = 100 * row.saved, 100 * row.regret
            if not zoomed or (zoom[0][0] + 2 <= x <= zoom[0][1] and zoom[1][0] <= y <= zoom[1][1]):
                ax.annotate(
                    _short(row.name), (x, y), textcoords="offset points", xytext=(-3, 5), fontsize=9, ha="right"
                )
        seen: set[str] = set()
        for row in rows:
            group = row.strategy.group
            if group == "fixed patience":
                continue
            colour, marker = STYLE[group]
            x, y = 100 * row.saved, 100 * row.regret
            ax.scatter(
                x,
                y,
                color=colour,
                marker=marker,
                s=16 if row in warm else 34,
                edgecolors="black",
                linewidths=0.4,
                label=None if group in seen else group,
                zorder=3,
            )
            seen.add(group)
            if not (zoomed and row.name in LABELLED):
                continue
            text, where = LABELLED[row.name]
            if len(where) == 2:
                ax.annotate(
                    text,
                    (x, y),
                    xytext=where,
                    fontsize=10,
                    color=colour,
                    va="center",
                    arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.6},
                )
            else:
                dx, dy, ha = where  # type: ignore[misc]
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=10, color=colour, ha=ha)
        ax.set_xlabel("epochs saved (%, mean over runs)", fontsize=12)
        ax.set_ylabel("regret (pp of test accuracy, mean over runs)", fontsize=12)
        ax.tick_params(labelsize=10)
        ax.grid(True, color="0.92")
        if zoomed:
            ax.set_xlim(*zoom[0])
            ax.set_ylim(*zoom[1])
            ax.set_title("zoom: 20–48% saved, regret under 1 pp", fontsize=13)
        else:
            ax.set_title(f"all {len(rows)} strategies on {int(rows[0].ok.size):,} runs", fontsize=13)
            ax.legend(fontsize=10, loc="upper left")
    figure.suptitle("Epochs saved against regret: down and to the right is better", fontsize=14)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


# -- the command -------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Replay, write the markdown report (and the figure) and print the report; timings go to stderr."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--bank", type=Path, default=DEFAULT_BANK, help=f"curve bank directory (default {DEFAULT_BANK})"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1: replay in this process)")
    parser.add_argument(
        "--figure",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"draw {FIGURE} next to the markdown (default: if matplotlib is installed)",
    )
    args = parser.parse_args(argv)
    draw = args.figure
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if draw:
            parser.error("--figure needs matplotlib (pip install matplotlib)")
        if draw is None:
            print("[figure] matplotlib is not installed: no figure drawn (pip install matplotlib)", file=sys.stderr)
        draw = False
    else:
        draw = draw is not False
    started = time.perf_counter()
    rules = strategies()
    _init(args.bank)
    loaded = time.perf_counter()
    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.jobs, initializer=_init, initargs=(args.bank,)) as pool:
            outcomes = pool.map(replay_strategy, range(len(rules)), chunksize=1)
    else:
        outcomes = [replay_strategy(i) for i in range(len(rules))]
    replayed = time.perf_counter()
    rows = build_rows(rules, outcomes)
    figure = args.out.parent / FIGURE
    if draw:
        draw_pareto(rows, figure)
    text = report(rows, figure.exists())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    work = sum(o.seconds for o in outcomes)
    print(
        f"[timing] load {loaded - started:.1f} s; replay {replayed - loaded:.1f} s wall "
        f"({work:.1f} s of replay work, {len(rules)} strategies x {len(_CURVES)} runs, {args.jobs} process(es)); "
        f"report{' and figure' if draw else ''} {time.perf_counter() - replayed:.1f} s; "
        f"total {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


# -- the report --------------------------------------------------------------------


def report(rows: Sequence[Row], with_figure: bool) -> str:
    """The whole markdown document."""
    by = {row.name: row for row in rows}
    ids = list(_CURVES)
    total = len(ids)
    curves = [_CURVES[run] for run in ids]
    meta = [_RUNS[run] for run in ids]

    def paired(a: str, b: str, field: str = "regret", mask: np.ndarray | None = None) -> Interval:
        x, y = by[a].array(field), by[b].array(field)
        ok = ~np.isnan(x) & ~np.isnan(y)
        if mask is not None:
            ok &= mask
        return paired_bootstrap(x[ok], y[ok], BOOTSTRAP, SEED)

    def mean_ci(values: np.ndarray) -> Interval:
        values = values[~np.isnan(values)]
        return paired_bootstrap(values, np.zeros_like(values), BOOTSTRAP, SEED)

    def brief(row: Row) -> str:
        return f"{100 * row.saved:.1f}% / {_pp(row.regret)} pp"

    def against(row: Row) -> str:
        """The verdict of the equal-saved comparison with fixed patience, with its figures."""
        diff = row.d_frontier
        if diff is None:
            return "not comparable with fixed patience (saves more than patience 1)"
        word = {
            "better": "beats fixed patience",
            "worse": "worse than fixed patience",
            "no difference": "no measurable difference from fixed patience",
        }[_verdict(diff)]
        return f"{word} at equal saved: {_interval(diff)} pp ({row.frontier})"

    def significance(diff: Interval) -> str:
        _, low, high = diff
        return "interval below 0" if high < 0 else "interval above 0" if low > 0 else "interval includes 0"

    p10, p15, p20 = by["patience 10"], by["patience 15"], by[BASELINE]
    bfe = by["patience 20, best_from_epoch=3"]
    combo, cold = by[COMBO], by[COMBO_COLD]
    dyn = by[DYNAMIC]
    weighted10, weighted20 = by[WEIGHTED_NAME.format(10)], by[WEIGHTED_NAME.format(20)]
    acc10, acc20 = by[ACCURACY_NAME.format(10)], by[ACCURACY_NAME.format(20)]
    auto = by[AUTO]
    keep_last, no_es = by[KEEP_LAST], by[NO_ES]
    smooth_rows = [row for row in rows if row.strategy.group == "EMA smoothing"]
    dyn_rows = [row for row in rows if row.name.startswith("DynamicPatience")]
    rel_rows = [row for row in rows if row.name.startswith("RelativePatience")]
    judged = [row for row in rows if row.d_frontier is not None and row.strategy.group != "baseline"]
    beating = [row for row in judged if _verdict(row.d_frontier) == "better"]  # type: ignore[arg-type]
    worse = [row for row in judged if _verdict(row.d_frontier) == "worse"]  # type: ignore[arg-type]
    warm_frontier = frontier_of(rows, [f"patience {p}, best_from_epoch=3" for p in WARM], _short)
    combo_vs_warm, combo_warm_label = against_frontier(combo, warm_frontier)
    p15w = by["patience 15, best_from_epoch=3"]
    combo_vs_p15w = paired(COMBO, p15w.name)
    combo_vs_p15w_saved = paired(COMBO, p15w.name, "saved")
    families = [g for g in dict.fromkeys(row.strategy.group for row in rows) if g not in ("baseline", "fixed patience")]
    beaten_by = {g: [r for r in beating if r.strategy.group == g] for g in families}
    never_better = [g for g in families if not beaten_by[g]]
    warm_like = all("best_from_epoch=3" in r.name or r.name.startswith("combo") for r in beating)

    def untrained(p: int) -> tuple[int, float, float, float]:
        """Runs where plain patience p keeps one of epochs 0-2; their share of its mean regret, with and
        without the warm-up; and the warm-up's regret change in all the other runs."""
        plain, warm = by[f"patience {p}"], by[f"patience {p}, best_from_epoch=3"]
        mask = plain.array("kept") <= 2
        diff = warm.array() - plain.array()
        return (
            int(mask.sum()),
            plain.array()[mask].sum() / total,
            warm.array()[mask].sum() / total,
            diff[~mask].sum() / total,
        )

    # Stalled(10) needs two windows of history: the combo cannot stop before epoch 19.
    stall_floor = 2 * 10 - 1
    early15 = p15.array("stop") < stall_floor
    combo_first = int(min(np.nanmin(combo.array("stop")), np.nanmin(cold.array("stop"))))

    out: list[str] = []
    add = out.append
    add("# Stopping rules on real learning curves: the evidence\n")
    add(
        "What each stopping rule of earlystop does on real learning curves: "
        f"{total:,} runs of small fully connected networks (MLPs) on ten classification problems (Proben1, "
        "scikit-learn digits and breast cancer) that we trained for a fixed 100 or 200 epochs with no early "
        "stopping and recorded epoch by epoch, so that any rule can be replayed on them offline. Every rule below "
        "is the library's own `Monitor`, fed one epoch at a time exactly as a training loop would feed it (as "
        "`earlystop replay` does); no row of the table is a variant written for this page (the one exception, "
        "restoring the best *smoothed* epoch, is marked as such). You can rerun a part of it on 120 of these "
        "runs, which come with the package: see [Try it yourself](#try-it-yourself).\n"
    )
    add(
        "**Protocol.** A rule sees one epoch at a time (val_loss, val_accuracy, training "
        "loss; never the future) and stops after epoch *s* of an *n*-epoch run; the run ends with the weights the "
        "Monitor restores (`restore_best_weights=True` in every row unless said: the lowest raw val_loss of the "
        "epochs run, also with smoothing or a warm-up). The oracle is the lowest-val_loss epoch of the whole run, "
        "the same for every row, so rules that watch other quantities are measured with the same yardstick. Per "
        "run: **saved** = (n − 1 − s) / n; **regret** = test_accuracy[oracle] − test_accuracy[kept] in "
        "percentage points (pp; positive = worse than the oracle, negative = luckier); **gain** = "
        "test_accuracy[kept] − test_accuracy[last epoch] (what the rule earns over training to the end and "
        "keeping the last weights). Means over runs.\n"
    )
    add(
        "**Comparisons are paired.** Regret is heavy-tailed (below), so a difference of means between two rows "
        "means little; the Δ columns difference two rules run by run, with a 95% bootstrap interval "
        f"({BOOTSTRAP:,} resamples of the runs, seed {SEED}). *Δ regret vs fixed patience at equal saved* mixes, "
        "run by run, the two fixed patiences whose saved brackets the rule's (weights chosen to match its saved "
        "exactly): **better** (interval below 0) means the rule buys a lower regret than fixed patience for the "
        "same compute, i.e. it beats the fixed-patience trade-off; *no difference* means the interval includes "
        "0; *worse* means it is above 0.\n"
    )

    # -- in short
    n_beat, n_worse = len(beating), len(worse)
    add("## In short\n")
    add(
        "- **The checkpoint matters more than the rule.** Every row here restores the lowest-val_loss epoch. "
        'Restoring the most accurate epoch instead (`keep_best_by="val_accuracy"`) changes no stop and is worth '
        "about 0.5 pp of test accuracy at every patience — more than any rule below gains; see "
        "[keep_best_by](rules/keep_best_by.md), and the [learned policy](policy.md) that builds on it.\n"
    )
    add(
        f"- **Fixed patience is hard to beat.** Of the {len(judged)} strategies held against fixed patience at "
        f"equal epochs saved, {n_worse} are measurably worse, {len(judged) - n_beat - n_worse} indistinguishable "
        f"and {n_beat} better: {'; '.join(r.name for r in beating) or 'none'}."
        + (
            " Every one of these keeps the first epochs from ending a run: the warm-up `best_from_epoch=3`, or the "
            "combo's trend test, which needs 20 epochs of history before it can fire."
            if beating and warm_like
            else ""
        )
        + "\n"
        f"- **Use patience 15–20 with `best_from_epoch=3`.** Patience 20 with the warm-up: {brief(bfe)}, "
        f"{against(bfe)}; patience 15 with it: {brief(p15w)}, {against(p15w)}. Plain patience 20: {brief(p20)}.\n"
        f"- **The combo of our first study** reproduces ({brief(combo)}) and beats plain fixed patience at its saving "
        f"({_interval(combo.d_frontier)} pp), but not fixed patience with the same warm-up "
        f"({_interval(combo_vs_warm)} pp, {combo_warm_label}): on this bank its trend test adds nothing measurable "
        "to the warm-up.\n"
        f"- **No rule of the other families beats fixed patience at equal saving:** {', '.join(never_better)} "
        f"({len([r for r in judged if r.strategy.group in never_better])} rules; "
        f"{len([r for r in worse if r.strategy.group in never_better])} of them measurably worse).\n"
        f"- **Popular claims do not hold here.** Dynamic patience saves {100 * dyn.saved:.1f}% (not 44%) "
        f"and is {_compared(dyn.d_frontier)} fixed patience at equal saving ({_interval(dyn.d_frontier)} pp); "  # type: ignore[arg-type]
        f"multi-metric monitoring gains {_interval(mean_ci(weighted20.array('gain')))} pp of test accuracy over the "
        "last epoch (not 2 points), no more than val_loss alone.\n"
        f"- **Patience heuristics:** 8–15 for small datasets is too short on these noisy curves (patience 15: "
        f"{_pp(p15.regret)} pp regret; 20: {_pp(p20.regret)} pp); 10–20% of the budget is neither better nor worse "
        "than fixed patience at equal saving; more patience for volatile early curves "
        f'(`patience="auto"`, {brief(auto)}) points the right way, at the limit of what can be measured.\n'
        "- **Caveats.** With this many comparisons, about one rule in 40 that is truly no better than fixed "
        "patience lands below 0 by chance; the warm-up and the combo were found on these same curves (our first "
        "study of them), "
        "so their edges are in-sample and need confirming on fresh curves; and all runs are small MLPs on small "
        "tabular and image problems.\n"
    )

    # -- reproduction
    add("## Agreement with our first study of these curves\n")
    add(
        "A first study of these curves, with its own replay code, found the figures on the left; the library's "
        "`Monitor` gives those on the right.\n"
    )
    add("| rule (on val_loss) | first study: saved | first study: regret | measured saved | measured regret |")
    add("|---|--:|--:|--:|--:|")
    findings = {3: ("57.3%", "2.03 pp"), 5: ("51.9%", "1.19 pp"), 10: ("43.0%", "0.51 pp"), 20: ("32.5%", "0.07 pp")}
    for patience, (f_saved, f_regret) in findings.items():
        row = by[f"patience {patience}"]
        add(f"| Keras patience {patience} | {f_saved} | {f_regret} | {100 * row.saved:.1f}% | {_pp(row.regret)} pp |")
    measured = f"{100 * bfe.saved:.1f}% | {_pp(bfe.regret)} pp"
    add(f"| patience 20, best tracked from epoch 3 on | ~33% | 0.03 pp | {measured} |")
    add(f"| combo (below) | 36.5% | 0.06 pp | {100 * combo.saved:.1f}% | {_pp(combo.regret)} pp |")
    add("")
    add(
        'Keras patience 3/5/10/20 (`Monitor(monitor="val_loss", patience=p, restore_best_weights=True)`) and '
        "the Monitor's `best_from_epoch=3` reproduce the first study to the digit: the warm-up delays only the best "
        "that patience counts from, and the epochs before it stay restorable, which is what it measured (the "
        "weights of the lowest val_loss of epochs 0..s). The combo's saved is "
        f"{100 * combo.saved:.2f}% against the first study's 36.5%, a difference of about one epoch in one run in ten "
        "that we could not trace (strict and non-strict trend tests, windows over epochs 0.. or 3.., float32 "
        "or float64 comparisons tried); its regret matches.\n"
    )

    # -- noise
    p10_regret = p10.array()
    worst = np.sort(p10_regret)[::-1][:10].sum() / p10_regret.sum()
    draws = np.random.default_rng(SEED).integers(0, total, size=(BOOTSTRAP, total))
    se10 = float(p10_regret[draws].mean(axis=1).std())
    se20 = float(p20.array()[draws].mean(axis=1).std())
    add("## Noise\n")
    add(
        f"Regret is heavy-tailed: the 10 worst runs carry {worst:.0%} of patience 10's total regret, and the "
        f"bootstrap standard error of a mean regret is {100 * se10:.2f} pp (patience 10) and {100 * se20:.2f} pp "
        "(patience 20). Two rows whose regrets differ by less than ~0.15 pp are not distinguishable by their means; "
        "read the paired Δ columns instead, which cancel the run-to-run variation the two rules share.\n"
    )

    # -- the figure and the table
    if with_figure:
        add("## Saved against regret\n")
        add(
            f"[![Epochs saved against regret for every strategy]({FIGURE.as_posix()})]({FIGURE.as_posix()})\n\n"
            "Each point is a strategy of the table below (means over the runs); fixed patience is the black line, "
            "fixed patience with `best_from_epoch=3` the dashed red one. A point below the black line at the same "
            "saving has a lower regret than fixed patience, though only the paired intervals of the table say "
            "whether the difference is more than noise.\n"
        )
    add("## The evidence table\n")
    add(table(rows, total))
    add("")
    add(
        "Δ columns: mean difference, run by run, with its 95% bootstrap interval in brackets, in percentage "
        "points; the fixed patiences mixed for the equal-saved comparison are in parentheses (P15–P17: a mix of "
        'patience 15 and 17). § Each run gets the patience `patience="auto"` chose for another run (a seeded '
        "permutation): the same mix of patiences, not targeted by volatility.\n"
    )

    # -- findings per family
    n15, plain15, warm15, rest15 = untrained(15)
    n20, plain20, warm20, _ = untrained(20)
    add("## What the table shows\n")
    add("Saved / regret are written `saved% / regret pp` below.\n")
    add(
        f"- **Fixed patience is a clean trade-off.** Each step up in patience saves fewer epochs and regrets less: "
        f"patience 10: {brief(p10)}, 15: {brief(p15)}, 20: {brief(p20)}, 30: {brief(by['patience 30'])}; from "
        "about 25–30 on, regret is at the oracle's level and only the saving shrinks. Restoring the best weights "
        f"matters: patience 20 without restore regrets {_interval(by['patience 20, restore off'].d_regret)} pp "
        "more.\n"
        f"- **Rules that beat fixed patience at equal saved** (interval below 0): "
        + ("; ".join(f"{r.name}: {_interval(r.d_frontier)} pp ({r.frontier})" for r in beating) or "none")
        + ". Every other rule is either indistinguishable from fixed patience or worse.\n"
        "- **Warm-up for best-tracking** (`best_from_epoch=3`). In some runs (about 20, mostly too-high "
        "learning rates) val_loss spikes after epoch 0, so that plain patience counts from the untrained epoch 0 "
        "and ends the run keeping it. The "
        "warm-up delays the best that patience counts from to epoch 3, while the weights of epochs 0–2 stay "
        f"restorable. Plain patience 15 ends {n15} runs keeping one of epochs 0–2, and those runs carry "
        f"{_pp(plain15)} pp of its {_pp(p15.regret)} pp mean regret; with the warm-up they carry {_pp(warm15)} pp "
        f"(the other runs are unaffected: {_pp(rest15, True)} pp). At patience 20, {n20} runs carry {_pp(plain20)} pp, "
        f"{_pp(warm20)} pp with the warm-up: most of those runs recover before a longer patience runs out. Against "
        "the same patience without warm-up: "
        + "; ".join(
            f"{p}: {_interval(paired(f'patience {p}, best_from_epoch=3', f'patience {p}'))} pp" for p in WARM if p != 14
        )
        + f" of regret; at patience 20, {_interval(bfe.d_saved)} pp of saving and {against(bfe)}. A small "
        "improvement, largest at patience 14–17, where plain patience still ends those runs, and it never hurts "
        "at equal saving.\n"
        f"- **The combo of our first study** `Patience(20) | (Patience(14) & Stalled(10, log=True))` with "
        f"`best_from_epoch=3`: {brief(combo)}, saving {_interval(combo.d_saved)} pp more than patience 20 at "
        f"{_interval(combo.d_regret)} pp of regret; {against(combo)}. Is that the trend test? Against fixed "
        f"patience *with the same warm-up* at equal saved it is {_interval(combo_vs_warm)} pp ({combo_warm_label}; "
        f"{significance(combo_vs_warm) if combo_vs_warm else 'out of range'}); patience 15 with the warm-up "
        f"({brief(p15w)}) is as good: the combo against it, {_interval(combo_vs_p15w_saved)} pp of saving and "
        f"{_interval(combo_vs_p15w)} pp of regret. Without the warm-up the combo is {brief(cold)}, "
        f"{against(cold)}, for the same reason as the warm-up: `Stalled(10)` needs two windows of history, so "
        f"the combo cannot stop before epoch {stall_floor} (its earliest stop here: epoch {combo_first}). Plain "
        f"patience 15 stops before epoch {stall_floor} in {int(early15.sum())} runs, which carry "
        f"{_pp(float(p15.array()[early15].sum() / total))} pp of its mean regret. On this bank, what the combo "
        "gains over fixed patience is what not ending runs in their first epochs gains; the trend test itself "
        "adds nothing measurable (a few hundredths of a point at most), and `patience=15, best_from_epoch=3` is "
        "the simpler way to get the same.\n"
        "- **Dynamic and relative patience** do not beat fixed patience: "
        + "; ".join(f"{row.name}: {brief(row)}, {against(row)}" for row in dyn_rows + rel_rows)
        + ".\n"
        f"- **Prechelt's criteria.** GL alone stops far too early (GL(5): {brief(by['GL(5)'])}; "
        f"{against(by['GL(5)'])}): a val_loss a few percent above its best is routine on these small validation "
        "sets, and `GL(5) | patience 20` inherits it. UP and PQ at best match fixed patience: "
        + "; ".join(f"{row.name}: {against(row)}" for row in rows if row.name.startswith(("UP", "PQ")))
        + ".\n"
        f"- **Relative `min_delta`** at patience 20: 1e-3: {brief(by['patience 20, min_delta 0.001 rel'])}, "
        f"{against(by['patience 20, min_delta 0.001 rel'])}; 1e-2: {brief(by['patience 20, min_delta 0.01 rel'])}, "
        f"{against(by['patience 20, min_delta 0.01 rel'])}. A relative threshold acts as a shorter patience.\n"
        f'- **Multi-metric monitoring.** `{{val_loss: 0.5, val_accuracy: 0.5}}` with `normalize="initial"` at '
        f"patience 20: {brief(weighted20)}; against patience 20 on val_loss alone, Δ saved "
        f"{_interval(weighted20.d_saved)} pp and Δ regret {_interval(weighted20.d_regret)} pp; "
        f"{against(weighted20)}. Its regret interval is wide "
        f"(±{50 * (weighted20.d_regret[2] - weighted20.d_regret[1]):.2f} pp): it may save epochs at no cost, "  # type: ignore[index]
        "but that is not established. At patience 10 it stops much earlier than val_loss at 10 "
        f"({brief(weighted10)} against {brief(p10)}; paired Δ regret "
        f"{_interval(paired(weighted10.name, 'patience 10'))} pp), which is the fixed-patience trade-off "
        f"again: {against(weighted10)}. val_accuracy alone is the worst signal in the table: {brief(acc20)} at "
        f"patience 20 and {brief(acc10)} at 10. With validation sets of 54 to 1,800 examples accuracy moves "
        "in coarse steps and plateaus, and a strict improvement test stops on the first plateau.\n"
        "- **Their own oracles are better; online rules do not reach them.** Measured against the best epoch of "
        "what they monitor instead of the best val_loss epoch, the regrets are "
        f"{_pp(_own(weighted20))} pp (weighted, 20), {_pp(_own(weighted10))} pp (weighted, 10), "
        f"{_pp(_own(acc20))} and {_pp(_own(acc10))} pp (val_accuracy, 20 and 10). In hindsight the best epoch "
        "of the weighted score is better on test accuracy than the best val_loss epoch by "
        f"{_pp(_own(weighted20) - weighted20.regret, True)} pp, and the best val_accuracy epoch by "
        f"{_pp(_own(acc20) - acc20.regret, True)} pp: accuracy-aware selection has something to offer, but "
        "patience on these signals stops before collecting it.\n"
        f'- **`patience="auto"`**: {brief(auto)}; against patience 20, Δ saved {_interval(auto.d_saved)} pp and '
        f"Δ regret {_interval(auto.d_regret)} pp; {against(auto)} (see the heuristics below).\n"
    )

    # -- EMA smoothing, with the smoothed-restore figures
    add("### EMA smoothing, and which best to restore\n")
    add(
        "Smoothing delays the stop and never buys a lower regret than fixed patience: "
        + "; ".join(f"{row.name}: {brief(row)}, {against(row)}" for row in smooth_rows)
        + ".\n"
    )
    restore_diffs = {}
    for row in smooth_rows:
        smoothed, raw = row.array("smoothed_regret"), row.array()
        ok = ~np.isnan(smoothed) & ~np.isnan(raw)
        restore_diffs[row.name] = paired_bootstrap(smoothed[ok], raw[ok], BOOTSTRAP, SEED)
    measurably = [name for name, d in restore_diffs.items() if d[1] > 0]
    all_worse = all(d[0] > 0 for d in restore_diffs.values())
    add(
        "The Monitor tracks the smoothed value for patience but restores the best *raw* epoch. Restoring the "
        "best *smoothed* epoch instead, at the same stop (so the same epochs saved; computed by the script), "
        + ("raises the regret in every setting" if all_worse else "changes the regret")
        + (f", measurably so for {' and for '.join(measurably)}" if measurably else "")
        + ":\n"
    )
    add(
        "| smoothing, patience | saved | regret, raw best restored (the Monitor) | regret, smoothed best restored "
        "| Δ regret, smoothed − raw (pp) | smoothed best later than raw | mean lag (epochs) |"
    )
    add("|---|--:|--:|--:|---|--:|--:|")
    for row in smooth_rows:
        smoothed, raw = row.array("smoothed_regret"), row.array()
        lag = row.array("smoothed_kept") - row.array("kept")
        ok = ~np.isnan(smoothed) & ~np.isnan(raw)
        add(
            f"| {row.name.removeprefix('smoothing ')} | {100 * row.saved:.1f}% | {_pp(row.regret)} pp "
            f"| {_pp(float(smoothed[ok].mean()))} pp "
            f"| {_interval(restore_diffs[row.name])} "
            f"| {float((lag[ok] > 0).mean()):.0%} of runs | {float(lag[ok].mean()):.1f} |"
        )
    add("")
    add(
        "The EMA lags the raw curve, so its minimum tends to come after the raw minimum, on epochs already sliding "
        "into overfitting, and the more so the heavier the smoothing: the smoothed value is a signal for *when* "
        "to stop, not for *what* to keep. (The smoothed "
        "best epoch is recomputed by the script from the Monitor's tracked best, `state_dict()['state']"
        "['tracked']`, since the Monitor does not report it.)\n"
    )

    # -- heuristics
    budgets = np.array([m.epochs for m in meta])
    vols = np.array([m.volatility for m in meta])
    add("## Patience heuristics\n")
    add(
        "A common rule of thumb (that of the practitioners' guide earlystop grew from): start from 10–20% of "
        "the planned epochs; 8–15 for datasets under 10k samples, "
        "5–10 over 100k; more when the validation metric is volatile. `suggest_patience` implements it (15% of "
        'the budget, clamped to 8–15 under 10k samples), and `patience="auto"` adds up to 100% more in '
        "proportion to the share of the first 10 epochs whose val_loss got worse. Every run here has under 10k "
        f"training samples (at most {max(m.n_train for m in meta):,}), so the guide says 8–15 for all of them, and "
        "`suggest_patience` gives 15 for both budgets (15% of 200 is 30, clamped to 15).\n"
    )
    heuristics = [
        "patience 8",
        "patience 10",
        "patience 15",
        "patience 20",
        "patience 30",
        "patience 40",
        "patience 10% of max_epochs",
        "patience 15% of max_epochs",
        "patience 20% of max_epochs",
        AUTO,
    ]
    add("Saved / regret by planned budget:\n")
    add("| rule | " + " | ".join(f"{b} epochs ({int((budgets == b).sum()):,} runs)" for b in (100, 200)) + " |")
    add("|---|--:|--:|")
    for name in heuristics:
        saved, regret = by[name].array("saved"), by[name].array()
        cells = [
            f"{100 * saved[budgets == b].mean():.1f}% / {_pp(float(regret[budgets == b].mean()))} pp"
            for b in (100, 200)
        ]
        add(f"| {name} | {' | '.join(cells)} |")
    add("")
    groups = [
        ("none (0)", vols == 0),
        ("low (0, 1/3]", (vols > 0) & (vols <= 1 / 3 + 1e-9)),
        ("high (> 1/3)", vols > 1 / 3 + 1e-9),
    ]
    add("Saved / regret by early volatility (the share of the first 10 val_loss steps that got worse):\n")
    add("| rule | " + " | ".join(f"{label}: {int(mask.sum()):,} runs" for label, mask in groups) + " |")
    add("|---|--:|--:|--:|")
    for name in ["patience 15", "patience 20", "patience 30", AUTO]:
        saved, regret = by[name].array("saved"), by[name].array()
        cells = [f"{100 * saved[mask].mean():.1f}% / {_pp(float(regret[mask].mean()))} pp" for _, mask in groups]
        add(f"| {name} | {' | '.join(cells)} |")
    add("")
    auto_vs_placebo = paired(AUTO, PLACEBO)
    auto_vs_placebo_saved = paired(AUTO, PLACEBO, "saved")
    p20_vs_p15 = paired("patience 20", "patience 15")
    long = budgets == 200
    p40_vs_p20_long = paired("patience 40", "patience 20", mask=long)
    mean_auto = float(np.mean([m.auto_patience for m in meta]))
    high = groups[2][1]
    add(
        f"- **Which of 10, 15, 20 is best on regret? 20**, clearly: {_pp(p10.regret)} / {_pp(p15.regret)} / "
        f"{_pp(p20.regret)} pp (20 against 15, paired: {_interval(p20_vs_p15)} pp), for "
        f"{100 * (p15.saved - p20.saved):.1f} points less saving than 15. On the 200-epoch runs, where 10–20% of "
        f"the budget means 20–40, patience 40 against 20 is {_interval(p40_vs_p20_long)} pp of regret "
        f"({significance(p40_vs_p20_long)}, {int(long.sum())} runs) for "
        f"{_interval(paired('patience 40', 'patience 20', 'saved', long))} pp of saving. Regret keeps falling "
        "until a patience of about 25–30.\n"
        "- **8–15 for datasets under 10k samples does not hold here**: all 1,200 runs are small, and patience 8 "
        f"and 15 regret {_pp(by['patience 8'].regret)} and {_pp(p15.regret)} pp where 20 regrets "
        f"{_pp(p20.regret)}. Small validation sets make noisy curves, which calls for more patience, not less. "
        "(The over-100k advice cannot be tested on this bank.)\n"
        "- **10–20% of the budget** holds in that scaling patience with the budget neither helps nor hurts at "
        "equal saving: "
        + "; ".join(f"{n.removeprefix('patience ')}: {brief(by[n])}, {against(by[n])}" for n in heuristics[6:9])
        + ". Its lower end (10%) is on the costly side of regret; the upper end (20%) is the safe choice.\n"
        f'- **More patience when volatile: the direction holds.** `patience="auto"` gives the '
        f"{int((vols == 0).sum()):,} runs whose first 10 epochs all improved the base 15, and the others up to "
        f"30 (mean {mean_auto:.1f}). The volatile runs are where short patience fails: on the "
        f"{int(high.sum())} most volatile, patience 15 regrets {_pp(float(p15.array()[high].mean()))} pp "
        f"and auto {_pp(float(auto.array()[high].mean()))} pp, while on the smooth runs patience 15 "
        f"already regrets only {_pp(float(p15.array()[vols == 0].mean()))} pp. Against plain "
        f"`suggest_patience` (15) auto regrets {_interval(paired(AUTO, 'patience 15'))} "
        f"pp for {_interval(paired(AUTO, 'patience 15', 'saved'))} pp of saving. Is it the "
        "targeting or just more patience on average? Handing the same patiences to random runs (§) regrets "
        f"more: auto against the placebo {_interval(auto_vs_placebo)} pp of regret ({significance(auto_vs_placebo)}) "
        f"for {_interval(auto_vs_placebo_saved)} pp of saving; against fixed patience at equal saving auto is "
        f"{_interval(auto.d_frontier)} pp ({significance(auto.d_frontier)}). The extension helps in the expected "  # type: ignore[arg-type]
        "direction, but its edge over an equally costly fixed patience is at the limit of what 1,200 runs can "
        "measure.\n"
    )

    # -- the seed's claims
    test_ceiling = float(np.mean([max(c[TARGET]) - c[TARGET][-1] for c in curves]))
    weighted_oracle_gain = _own(weighted20) + weighted20.gain
    p8 = by["patience 8"]
    add("## Popular claims, against this data\n")
    add(
        "The practitioners' guide earlystop grew from promises that early stopping raises validation accuracy "
        "by 5–15% and saves 30–50% of "
        "training time, and its CIFAR-10 table reports, against 50 epochs without early stopping (78.2% best "
        "validation accuracy): patience 8 at 79.1% saving 36%, dynamic patience at 79.5% saving 44%, multi-metric "
        "monitoring at 80.2% (+2 points) saving 30%. One run of one model, no interval. On 1,200 real runs, "
        "measuring test accuracy (gain = against the last epoch, as in the guide's table, with its 95% "
        "bootstrap interval):\n"
    )
    add(
        "- **Dynamic patience does not save 44% with better accuracy.** The guide has it beat patience 8 on both "
        f"axes. `DynamicPatience()` (bounds 5–20 as in the guide) saves {100 * dyn.saved:.1f}% against patience "
        f"8's {100 * p8.saved:.1f}% (paired: {_interval(paired(DYNAMIC, 'patience 8', 'saved'))} pp) for a "
        f"regret lower by {_pp(p8.regret - dyn.regret)} pp (paired: {_interval(paired(DYNAMIC, 'patience 8'))} "
        "pp): it is a longer patience, not a better one. Its gain "
        f"over the last epoch is {_interval(mean_ci(dyn.array('gain')))} pp, patience 20's "
        f"{_interval(mean_ci(p20.array('gain')))} pp for {100 * p20.saved:.1f}% saved; against fixed patience at "
        f"its own saving it is {_interval(dyn.d_frontier)} pp ({significance(dyn.d_frontier)}). None of the "  # type: ignore[arg-type]
        "four settings tried beats fixed patience, and none saves 44% (the settings that save more than patience "
        "20 regret more). The guide's own sketch never stops at all: when `wait` reaches the patience it adjusts "
        "the patience and resets `wait`.\n"
        "- **Multi-metric monitoring does not gain 2 points.** The weighted score at patience 20 gains "
        f"{_interval(mean_ci(weighted20.array('gain')))} pp over the last epoch, against "
        f"{_interval(mean_ci(p20.array('gain')))} pp for val_loss alone (paired Δ regret "
        f"{_interval(weighted20.d_regret)} pp: {significance(weighted20.d_regret)}), while saving "  # type: ignore[arg-type]
        f"{_interval(weighted20.d_saved)} pp more epochs: a possible saving, not an accuracy gain. At patience 10 "
        f"its gain is {_pp(weighted10.gain, True)} pp. 2 points is out of reach on these curves: restoring the best "
        f"val_loss epoch of the whole run gains {_pp(no_es.gain, True)} pp, the best weighted-score epoch in "
        f"hindsight {_pp(weighted_oracle_gain, True)} pp, and even each run's best *test* epoch, picked by "
        f"peeking, {_pp(test_ceiling, True)} pp. Monitoring val_accuracy, as the guide recommends in section 2.1, "
        f"has a gain of {_pp(acc20.gain, True)} pp at patience 20: worse than not stopping at all.\n"
        f"- **What early stopping does deliver**: patience 20 with restore saves {100 * p20.saved:.1f}% of the "
        f"epochs (patience 10: {100 * p10.saved:.1f}%), inside the guide's 30–50%, and gains "
        f"{_pp(p20.gain, True)} pp of test accuracy over the last epoch, {_pp(p20.regret)} pp short of the best "
        f"val_loss epoch — not 5–15%: on these curves the last epoch is on average only "
        f"{_pp(keep_last.regret)} pp worse than the best val_loss epoch.\n"
    )

    # -- robustness
    add("## Robustness\n")
    failures = {row.name: row.outcome.failures for row in rows if row.outcome.failures}
    zero_loss = [run for run, c in zip(ids, curves, strict=True) if 0.0 in c[REFERENCE]]
    zero_accuracy = [run for run, c in zip(ids, curves, strict=True) if c["val_accuracy"][0] == 0.0]
    diverged = [run for run, c in zip(ids, curves, strict=True) if any(math.isnan(v) for v in c[REFERENCE])]
    if failures:
        add("Runs that raised, by strategy (left out of that row, and of its paired comparisons):\n")
        for name, failed in failures.items():
            add(f"- {name}: " + "; ".join(f"run {run}: {message}" for run, message in failed))
        add("")
    else:
        awkward = [
            (zero_loss, "val_loss reaches exactly 0.0", "`Stalled(log=True)` reads it as log 0 = −∞"),
            (zero_accuracy, "val_accuracy starts at 0", '`normalize="initial"` leaves that metric unscaled'),
            (diverged, "val_loss becomes NaN", "the Monitor stops there"),
        ]
        cases = [f"{_runs(found)} whose {what} ({how})" for found, what, how in awkward if found]
        add(
            f"Every strategy replayed all {total:,} runs"
            + (f", including the awkward cases real curves contain: {'; '.join(cases)}" if cases else "")
            + ".\n"
        )

    add("## Try it yourself\n")
    add(
        "120 of these runs come with the package as `sample`. Replaying a few of the rules above on them "
        "(regret here in accuracy units, 0.01 = 1 pp; the sample is small, so expect its figures to differ from "
        "the full table's by a few tenths of a point):\n"
    )
    add(f"```bash\n{SAMPLE_COMMAND}\n```\n")
    add(f"<!-- output of: {SAMPLE_COMMAND} -->\n```text\n{printed(SAMPLE_COMMAND)}\n```\n")
    add(
        "The same command reads your own logs in place of `sample` ([Replay and tune](replay.md)). This page is "
        "written by `docs/scripts/rules_evidence.py` in the repository, from the full set of 1,200 runs; it is "
        "deterministic (the bootstrap and the placebo shuffle are seeded) and takes about a minute with two "
        "processes.\n"
    )
    return "\n".join(out)


SAMPLE_COMMAND = (
    "earlystop replay sample --strategy patience=20 --strategy patience=20,best_from_epoch=3 --strategy combo"
    " --strategy rule=GL(5)"
)


def _runs(ids: Sequence[str]) -> str:
    """``run 659`` or ``runs 3, 5 and 8``."""
    if len(ids) == 1:
        return f"run {ids[0]}"
    return f"runs {', '.join(ids[:-1])} and {ids[-1]}"


def _own(row: Row) -> float:
    """Mean regret of a row against the best epoch of what it monitors (rows with ``own_oracle``)."""
    values = np.array(row.outcome.own_regret if row.outcome.own_regret is not None else [math.nan])
    return float(np.nanmean(values))


if __name__ == "__main__":
    raise SystemExit(main())
