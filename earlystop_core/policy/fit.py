"""Fitting a [`LearnedPolicy`][earlystop_core.LearnedPolicy] on recorded runs (numpy; not on any hot path).

Three steps:

1. `record_runs` replays every run through a real
   [`Monitor`][earlystop_core.Monitor] (``restore_best_weights=True``) whose rule
   records the policy's features at each epoch — the very code the policy
   runs online — together with the epoch the Monitor would keep if training
   stopped there, and the regret of keeping it (target at the run's oracle
   minus target at the kept epoch; positive = worse).
2. A cost-weighted, L2-regularised logistic regression (Newton/IRLS) predicts
   whether stopping at an epoch costs more than ``tolerance``: epochs where it
   does weigh their regret (in units of ``cost_scale``, capped at
   ``cost_cap``), the others 1, so the model cares most about the few runs where
   an early stop is expensive — regret is heavy-tailed.
3. The threshold, ``min_wait`` and ``max_wait`` are chosen by grouped
   cross-validation (whole groups of runs — problems — held out): the
   combination that saves the most epochs out of fold with a mean regret
   within the budget. The model is then refitted on every run.

`simulate` replays a fitted score on the records exactly as the Monitor
would (the same stop conditions), vectorised over thresholds. (Replaying a
fitted policy over a curve bank, features and all, is
`earlystop_core.policy.simulate.first_stops`.)
"""

from __future__ import annotations

import csv
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from earlystop_core._validate import check_int, check_positive, check_real
from earlystop_core.curves import best_epoch, epochs
from earlystop_core.modes import resolve_mode
from earlystop_core.monitor import Monitor
from earlystop_core.policy.features import FEATURES, FeatureTracker, check_metric_name
from earlystop_core.policy.learned import LearnedPolicy
from earlystop_core.rules.base import Rule

__all__ = [
    "DEFAULT_MAX_WAITS",
    "DEFAULT_MIN_WAITS",
    "LEFT_OUT",
    "Choice",
    "Model",
    "RunRecord",
    "choose",
    "fit_logistic",
    "fit_policy",
    "fit_recorded",
    "group_folds",
    "patience_outcome",
    "read_runs_meta",
    "record_runs",
    "simulate",
]

Array = npt.NDArray[np.float64]
#: ``min_wait`` values tried by cross-validation.
DEFAULT_MIN_WAITS = (2, 3, 5, 8)
#: Features a fit leaves out unless named: ``lr_since_best`` cost regret under cosine schedules out of problem
#: (the learned-policy evidence), and the recommended policy goes without it.
LEFT_OUT = frozenset({"lr_since_best"})
#: ``max_wait`` values tried by cross-validation.
DEFAULT_MAX_WAITS = (20, 30, 40, 60)
#: Logit cut-offs tried: stop when the model's logit is below one of these.
CUTS = tuple(float(x) for x in np.linspace(-8.0, 8.0, 321))
#: Monitor settings a recording may not change (they would change what the rule is asked, or when).
#: ``on_missing="skip"`` may be set: the rule is then asked at the validation checks alone, as it is when the
#: fitted policy (which keeps the setting) runs on logs validated every few epochs.
_FORBIDDEN = ("rule", "patience", "restore_best_weights", "plateau", "start_from_epoch")


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run replayed through a recording Monitor: one row per epoch the rule was asked about.

    Attributes:
        run: The run's id.
        group: The run's group (its problem), for cross-validation.
        epochs: The run's length ``n``.
        features: ``(rows, features)``: the tracker's features at each row.
        epoch: The epoch of each row.
        wait: The Monitor's ``wait`` at each row.
        improved: Whether the row's epoch improved the (tracked) best.
        has_best: Whether a tracked best existed (the Monitor lets a rule stop only then).
        regret: Per row, the regret if training stopped at that row's epoch.
        end: The last epoch run when no rule stops (``n - 1``, or a guard's stop).
        end_regret: The regret when training runs to ``end``.
    """

    run: str
    group: str
    epochs: int
    features: Array
    epoch: npt.NDArray[np.int64]
    wait: npt.NDArray[np.int64]
    improved: npt.NDArray[np.bool_]
    has_best: npt.NDArray[np.bool_]
    regret: Array
    end: int
    end_regret: float

    def stoppable(self) -> npt.NDArray[np.bool_]:
        """Rows where the policy may stop: a best exists, no improvement, not epoch 0, ``wait >= 1``."""
        return self.has_best & ~self.improved & (self.epoch > 0) & (self.wait >= 1)


@dataclasses.dataclass(frozen=True)
class Model:
    """A fitted logistic model on standardised features."""

    features: tuple[str, ...]
    means: Array
    scales: Array
    weights: Array
    bias: float

    def logits(self, features: Array) -> Array:
        """The logit for each row of ``features`` (columns in the tracker's order, selected by ``columns``)."""
        return self.bias + ((features - self.means) / self.scales) @ self.weights


@dataclasses.dataclass(frozen=True)
class Choice:
    """A stopping configuration and its cross-validated figures.

    Attributes:
        cut: Stop when the logit is below this (the threshold is its sigmoid).
        min_wait: The policy's ``min_wait``.
        max_wait: The policy's ``max_wait``.
        saved: Mean share of epochs saved, out of fold.
        regret: Mean regret, out of fold.
        feasible: Whether the regret is within the budget.
    """

    cut: float
    min_wait: int
    max_wait: int
    saved: float
    regret: float
    feasible: bool


class _Recorder(Rule):
    """A rule that never stops and records the tracker's features and the Monitor's view at each epoch."""

    def __init__(self, tracker: FeatureTracker) -> None:
        self.tracker = tracker
        self.takes_log = tracker.log
        self.requires = frozenset(k for k in (tracker.train_metric, tracker.accuracy_metric) if k is not None)
        self.optional = frozenset(() if tracker.lr_metric is None else (tracker.lr_metric,))
        self.reset()

    def reset(self) -> None:
        self.tracker.reset()
        self.rows: list[list[float]] = []
        self.seen: list[tuple[int, int, bool, bool]] = []

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        self.rows.append(self.tracker.step(epoch, value, best, wait, improved, logs))
        self.seen.append((epoch, wait, improved, best is not None))
        return False

    def spec(self) -> dict[str, Any]:
        return {"rule": "_Recorder"}


def read_runs_meta(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a ``runs.csv`` (one row per run, a ``run`` column) into ``{run: {column: value}}``.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "runs.csv")
        >>> _ = open(path, "w").write("run,problem,epochs\\n0,a,100\\n1,b,200\\n")
        >>> read_runs_meta(path)["1"]
        {'run': '1', 'problem': 'b', 'epochs': '200'}
    """
    with open(path, encoding="utf-8-sig", newline="") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames is None or "run" not in reader.fieldnames:
            raise ValueError(f"{path}: expected a header with a 'run' column, got {reader.fieldnames!r}")
        return {row["run"]: dict(row) for row in reader}


def record_runs(
    curves: Mapping[str, Mapping[str, Sequence[float | None]]],
    *,
    monitor: str = "val_loss",
    mode: str = "auto",
    target: str = "test_accuracy",
    target_mode: str = "auto",
    log: bool = True,
    train_metric: str | None = None,
    accuracy_metric: str | None = None,
    lr_metric: str | None = None,
    budgets: Mapping[str, int] | None = None,
    groups: Mapping[str, str] | None = None,
    monitor_options: Mapping[str, Any] | None = None,
) -> list[RunRecord]:
    """Replay every run through a recording Monitor (see the module docstring).

    Args:
        curves: ``{run: {metric: values by epoch}}``, as `load_curves` returns.
        monitor: The monitored metric.
        mode: Its direction (``"auto"`` infers it from the name).
        target: The metric regret is measured on (e.g. test accuracy).
        target_mode: The target's direction.
        log: Whether the features take the log of the monitored value.
        train_metric: Training-loss key for the ``train`` features (None: none).
        accuracy_metric: Validation-accuracy key for the ``accuracy`` features (None: none).
        lr_metric: Learning-rate key for the ``lr`` features (None: none); runs may lack it.
        budgets: ``{run: max_epochs}`` for the ``budget`` features (None: none).
        groups: ``{run: group}`` (None: each run is its own group).
        monitor_options: Further Monitor settings, e.g. ``{"best_from_epoch": 3}``.

    Examples:
        >>> curve = {"val_loss": [1.0, 0.5, 0.6, 0.7], "test_accuracy": [0.5, 0.8, 0.7, 0.7]}
        >>> [r] = record_runs({"a": curve})
        >>> r.epoch.tolist(), r.wait.tolist(), r.regret.tolist()
        ([0, 1, 2, 3], [0, 0, 1, 2], [0.30000000000000004, 0.0, 0.0, 0.0])
    """
    options = dict(monitor_options or {})
    for name in _FORBIDDEN:
        if name in options:
            raise ValueError(f"monitor_options may not set {name!r}: the policy fitted here is the rule")
    goal = resolve_mode(target_mode, target)
    records = []
    for run, curve in curves.items():
        if target not in curve or monitor not in curve:
            missing = target if target not in curve else monitor
            raise KeyError(f"run {run!r} has no metric {missing!r}; metrics: {', '.join(curve)}")
        budget = None if budgets is None else budgets[run]
        tracker = FeatureTracker(log, budget, train_metric, accuracy_metric, lr_metric)
        mon = Monitor(monitor=monitor, mode=mode, rule=_Recorder(tracker), restore_best_weights=True, **options)
        recorder = mon.rule
        assert isinstance(recorder, _Recorder)
        values = [math.nan if value is None else value for value in curve[target]]  # None: not logged
        n = len(values)
        kept: list[int] = []
        decision = None
        for logs in epochs(curve):
            decision = mon.update(logs)
            if decision.should_stop:  # a guard (non-finite value, threshold): the run ends here
                break
            if len(kept) < len(recorder.rows):
                kept.append(decision.best_epoch if decision.best_epoch is not None else decision.epoch)
        if decision is None:
            raise ValueError(f"run {run!r} has no epochs")
        if not decision.should_stop:
            decision = mon.finish()
        end = decision.epoch
        end_kept = decision.best_epoch if decision.best_epoch is not None else end
        try:
            oracle = best_epoch(curve[monitor], mon.config.mode)
        except ValueError:
            raise ValueError(
                f"run {run!r}: {monitor!r} has no finite value in {n} epoch(s) (NaN, infinite or not logged "
                "throughout): no best epoch to learn from; leave the run out of the logs"
            ) from None
        sign = 1.0 if goal == "max" else -1.0
        best_target = values[oracle]
        regret = np.array([sign * (best_target - values[k]) for k in kept], dtype=float)
        rows = recorder.rows[: len(kept)]
        seen = recorder.seen[: len(kept)]
        width = len(tracker.names)
        records.append(
            RunRecord(
                run=run,
                group=run if groups is None else str(groups[run]),
                epochs=n,
                features=np.array(rows, dtype=float).reshape(len(rows), width),
                epoch=np.array([s[0] for s in seen], dtype=np.int64),
                wait=np.array([s[1] for s in seen], dtype=np.int64),
                improved=np.array([s[2] for s in seen], dtype=bool),
                has_best=np.array([s[3] for s in seen], dtype=bool),
                regret=regret,
                end=end,
                end_regret=sign * (best_target - values[end_kept]),
            )
        )
    return records


# -- the model --------------------------------------------------------------------------------------------------


def fit_logistic(
    x: Array, y: Array, weights: Array, l2: float = 1.0, start: Array | None = None, iterations: int = 100
) -> tuple[Array, Array, Array, float]:
    """Weighted L2-regularised logistic regression by Newton's method (IRLS) on standardised columns.

    Returns ``(means, scales, weights, bias)``: the logit is
    ``bias + ((x - means) / scales) @ weights``. The weights are penalised by
    ``l2``, the bias barely (``1e-6``, so that it stays finite when every label
    is the same); a constant column gets scale 1. ``start`` (bias first, then
    weights) only speeds convergence: the optimum is unique.

    Examples:
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0.0, 0.0, 1.0, 1.0])
        >>> means, scales, w, b = fit_logistic(x, y, np.ones(4), l2=0.1)
        >>> bool(w[0] > 0), abs(b) < 1e-9
        (True, True)
    """
    rows, width = x.shape
    if rows == 0:
        raise ValueError("no rows to fit")
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales = np.where(scales > 1e-12, scales, 1.0)
    z = np.empty((rows, width + 1))
    z[:, 0] = 1.0
    z[:, 1:] = (x - means) / scales
    penalty = np.full(width + 1, float(l2))
    penalty[0] = 1e-6
    beta = np.zeros(width + 1) if start is None else np.array(start, dtype=float)

    def objective(b: Array) -> float:
        eta = z @ b
        return float(weights @ (np.logaddexp(0.0, eta) - y * eta) + 0.5 * penalty @ (b * b))

    current = objective(beta)
    for _ in range(iterations):
        p = 0.5 * (1.0 + np.tanh(0.5 * (z @ beta)))  # the sigmoid, without overflow
        gradient = z.T @ (weights * (p - y)) + penalty * beta
        hessian = (z.T * (weights * p * (1.0 - p))) @ z
        hessian[np.diag_indices_from(hessian)] += penalty
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while True:  # step halving: far from the optimum a Newton step can overshoot
            candidate = beta - scale * step
            value = objective(candidate)
            if value <= current or scale < 1e-6:
                break
            scale *= 0.5
        beta, current = candidate, value
        if float(np.max(np.abs(scale * step))) < 1e-9:
            break
    return means, scales, beta[1:], float(beta[0])


class _Rows:
    """The rows a policy can stop at, stacked once, with their labels and weights."""

    def __init__(
        self,
        records: Sequence[RunRecord],
        columns: npt.NDArray[np.int64],
        tolerance: float,
        cost_cap: float,
        cost_scale: float,
    ) -> None:
        xs, owners, regrets = [], [], []
        for i, record in enumerate(records):
            mask = record.stoppable()
            xs.append(record.features[mask][:, columns])
            owners.append(np.full(int(mask.sum()), i))
            regrets.append(record.regret[mask])
        self.x = np.vstack(xs)
        self.owner = np.concatenate(owners)
        regret = np.concatenate(regrets)
        costly = regret > tolerance
        self.y = costly.astype(float)
        self.weight = np.where(costly, np.minimum(regret, cost_cap) / cost_scale, 1.0)

    def fit(self, keep: npt.NDArray[np.bool_] | None, l2: float, start: Array | None = None) -> Model:
        """Fit on the rows of the records where ``keep`` is true (all when None)."""
        if keep is None:
            x, y, w = self.x, self.y, self.weight
        else:
            mask = keep[self.owner]
            x, y, w = self.x[mask], self.y[mask], self.weight[mask]
        if x.shape[0] == 0:
            raise ValueError("no epoch of these runs is one a policy could stop at (too short, or always improving)")
        means, scales, weights, bias = fit_logistic(x, y, w, l2, start)
        return Model((), means, scales, weights, bias)


# -- simulating and choosing ------------------------------------------------------------------------------------


class _Layout:
    """Records as padded ``(runs, rows + 1)`` matrices: the last real column is the run's end."""

    def __init__(self, records: Sequence[RunRecord]) -> None:
        count = len(records)
        self.lengths = np.array([len(r.epoch) for r in records], dtype=np.int64)
        width = int(self.lengths.max(initial=0)) + 1
        self.wait = np.zeros((count, width), dtype=np.int64)
        self.base = np.zeros((count, width), dtype=bool)
        self.epoch = np.zeros((count, width), dtype=np.int64)
        self.regret = np.zeros((count, width))
        for i, record in enumerate(records):
            m = len(record.epoch)
            self.wait[i, :m] = record.wait
            self.base[i, :m] = record.stoppable()
            self.epoch[i, :m] = record.epoch
            self.epoch[i, m:] = record.end
            self.regret[i, :m] = record.regret
            self.regret[i, m:] = record.end_regret
        self.end = np.arange(width)[None, :] >= self.lengths[:, None]
        epochs = np.array([r.epochs for r in records], dtype=float)[:, None]
        self.saved = (epochs - 1.0 - self.epoch) / epochs

    def logits(self, logits: Sequence[Array]) -> Array:
        """Per-record logits as one padded matrix."""
        z = np.zeros(self.base.shape)
        for i, values in enumerate(logits):
            z[i, : len(values)] = values
        return z

    def run(self, z: Array, min_wait: int, max_wait: int, cuts: Array) -> tuple[Array, Array, npt.NDArray[np.int64]]:
        """Saved, regret and stop epoch, each ``(runs, cuts)``, for ascending ``cuts``."""
        force = self.base & (self.wait >= max_wait)
        eligible = self.base & (self.wait >= min_wait)
        scores = np.where(force | self.end, -math.inf, np.where(eligible, z, math.inf))
        running = np.minimum.accumulate(scores, axis=1)  # non-increasing along each row
        # The stop for cut c is the first column whose running minimum is < c, i.e. the count of
        # columns with running >= c. bins[t] = how many cuts are <= running[t]: running[t] >= cuts[k] iff k < bins[t].
        count, k = running.shape[0], len(cuts)
        bins = np.searchsorted(cuts, running, side="right")
        flat = (np.arange(count)[:, None] * (k + 1) + bins).ravel()
        histogram = np.bincount(flat, minlength=count * (k + 1)).reshape(count, k + 1)
        at_least = np.cumsum(histogram[:, ::-1], axis=1)[:, ::-1]  # at_least[j] = columns with bins >= j
        index = at_least[:, 1:]  # columns with bins > k, for each cut k
        return (
            np.take_along_axis(self.saved, index, axis=1),
            np.take_along_axis(self.regret, index, axis=1),
            np.take_along_axis(self.epoch, index, axis=1),
        )


def simulate(
    records: Sequence[RunRecord],
    logits: Sequence[Array],
    min_wait: int,
    max_wait: int,
    cuts: Sequence[float],
) -> tuple[Array, Array, npt.NDArray[np.int64]]:
    """Per run and cut: saved, regret and stop epoch of the policy, as the Monitor would replay it.

    The policy stops at the first row where a best exists, the epoch did not
    improve, the epoch is not 0, ``wait >= min_wait`` and either
    ``wait >= max_wait`` or the logit is below the cut; otherwise the run ends
    at ``record.end``. Returns three ``(runs, cuts)`` arrays.

    Examples:
        >>> curve = {"val_loss": [1.0, 0.5, 0.6, 0.7, 0.8], "test_accuracy": [0.5, 0.8, 0.7, 0.7, 0.9]}
        >>> records = record_runs({"a": curve})
        >>> saved, regret, stop = simulate(records, [np.array([0.0, 0.0, 1.0, -1.0, -1.0])], 1, 10, [-0.5, 0.5, 2.0])
        >>> stop.tolist(), saved.tolist()
        ([[3, 3, 2]], [[0.2, 0.2, 0.4]])
    """
    values = np.asarray(cuts, dtype=float)
    order = np.argsort(values, kind="stable")
    layout = _Layout(records)
    saved, regret, stops = layout.run(layout.logits(logits), min_wait, max_wait, values[order])
    undo = np.argsort(order, kind="stable")
    return saved[:, undo], regret[:, undo], stops[:, undo]


def patience_outcome(records: Sequence[RunRecord], patience: int) -> tuple[Array, Array]:
    """Per run: saved and regret of fixed patience replayed on the records (Keras's rule: ``wait >= patience``).

    Examples:
        >>> curve = {"val_loss": [1.0, 0.5, 0.6, 0.7, 0.8], "test_accuracy": [0.5, 0.8, 0.7, 0.7, 0.9]}
        >>> saved, regret = patience_outcome(record_runs({"a": curve}), 2)
        >>> saved.tolist(), regret.tolist()
        ([0.2], [0.0])
    """
    logits = [np.full(len(r.epoch), math.inf) for r in records]
    wait = max(patience, 1)  # Keras: patience 0 acts as 1
    saved, regret, _ = simulate(records, logits, wait, wait, [0.0])
    return saved[:, 0], regret[:, 0]


def group_folds(groups: Sequence[str], folds: int = 10, seed: int = 0) -> list[npt.NDArray[np.int64]]:
    """Split run indices into folds of whole groups: one group per fold when there are at most ``folds``.

    Examples:
        >>> [f.tolist() for f in group_folds(["a", "b", "a", "c"], folds=10)]
        [[0, 2], [1], [3]]
    """
    unique = sorted(set(groups))
    if len(unique) < 2:
        raise ValueError(f"cross-validation needs at least 2 groups of runs, got {len(unique)}")
    folds = check_int("folds", folds, minimum=2)
    if len(unique) <= folds:
        assignment = {group: k for k, group in enumerate(unique)}
        count = len(unique)
    else:
        order = np.random.default_rng(seed).permutation(len(unique))
        assignment = {unique[j]: k % folds for k, j in enumerate(order)}
        count = folds
    labels = np.array([assignment[g] for g in groups])
    return [np.nonzero(labels == k)[0] for k in range(count)]


def choose(
    records: Sequence[RunRecord],
    logits: Sequence[Array],
    budget: float,
    min_waits: Iterable[int] = DEFAULT_MIN_WAITS,
    max_waits: Iterable[int] = DEFAULT_MAX_WAITS,
    cuts: Sequence[float] = CUTS,
) -> Choice:
    """The configuration saving the most with a mean regret within ``budget`` (else the least regret).

    Ties go to the smaller ``min_wait``, then ``max_wait``, then cut.

    Examples:
        >>> curve = {"val_loss": [1.0, 0.5, 0.6, 0.7, 0.8], "test_accuracy": [0.5, 0.8, 0.7, 0.7, 0.9]}
        >>> records = record_runs({"a": curve})
        >>> choice = choose(records, [np.zeros(5)], budget=0.0, min_waits=[1], max_waits=[3])
        >>> choice.min_wait, choice.saved, choice.regret
        (1, 0.4, 0.0)
    """
    layout = _Layout(records)
    z = layout.logits(logits)
    grid = np.sort(np.asarray(cuts, dtype=float))
    best: Choice | None = None
    fallback: Choice | None = None
    for min_wait in sorted(set(min_waits)):
        for max_wait in sorted(set(max_waits)):
            if max_wait < min_wait:
                continue
            saved, regret, _ = layout.run(z, min_wait, max_wait, grid)
            mean_saved, mean_regret = saved.mean(axis=0), regret.mean(axis=0)
            for k, cut in enumerate(grid):
                s, r = float(mean_saved[k]), float(mean_regret[k])
                if r <= budget + 1e-15:
                    if best is None or s > best.saved + 1e-12:
                        best = Choice(float(cut), min_wait, max_wait, s, r, True)
                elif fallback is None or r < fallback.regret - 1e-12:
                    fallback = Choice(float(cut), min_wait, max_wait, s, r, False)
    if best is not None:
        return best
    if fallback is None:
        raise ValueError("no (min_wait, max_wait) pair to choose from: every max_wait is below every min_wait")
    return fallback


# -- fitting ----------------------------------------------------------------------------------------------------


def fit_recorded(
    records: Sequence[RunRecord],
    names: Sequence[str],
    *,
    features: Sequence[str] | None = None,
    max_regret: float | None = 0.0007,
    match_patience: int | None = None,
    tolerance: float = 0.0,
    cost_cap: float = 0.1,
    cost_scale: float = 0.01,
    l2: float = 1.0,
    min_waits: Iterable[int] = DEFAULT_MIN_WAITS,
    max_waits: Iterable[int] = DEFAULT_MAX_WAITS,
    folds: int = 10,
    seed: int = 0,
    log: bool = True,
    train_metric: str | None = None,
    accuracy_metric: str | None = None,
    lr_metric: str | None = None,
    monitor: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> LearnedPolicy:
    """Fit a policy on records from `record_runs` (``names``: the recorded features, in order).

    See [`fit_policy`][earlystop_core.fit_policy] for the other arguments.
    """
    names = tuple(names)
    used = tuple(names if features is None else features)
    for name in used:
        if name not in names:
            raise ValueError(f"feature {name!r} was not recorded; recorded: {', '.join(names)}")
    if records and records[0].features.shape[1] != len(names):
        raise ValueError(f"the records hold {records[0].features.shape[1]} features, but {len(names)} names were given")
    columns = np.array([names.index(name) for name in used], dtype=np.int64)
    min_waits = sorted({check_int("min_wait", m, minimum=1) for m in min_waits})
    max_waits = sorted({check_int("max_wait", m, minimum=1) for m in max_waits})
    if (max_regret is None) == (match_patience is None):
        raise ValueError("give exactly one regret budget: max_regret= (target units) or match_patience= (epochs)")
    if len(records) < 2:
        raise ValueError(f"fitting a policy needs at least 2 runs, got {len(records)}")
    tol = _nonnegative("tolerance", tolerance)
    cap = check_positive("cost_cap", cost_cap)
    scale = check_positive("cost_scale", cost_scale)
    penalty = check_positive("l2", l2)
    say = progress or (lambda message: None)

    rows = _Rows(records, columns, tol, cap, scale)
    final = rows.fit(None, penalty)
    say(f"model: {len(used)} features, {rows.x.shape[0]:,} epochs of {len(records)} runs")
    start = np.concatenate([[final.bias], final.weights])
    # Out-of-fold logits, whole groups held out (each fold starts from the full model: faster, same optimum).
    folds_index = group_folds([r.group for r in records], folds, seed)
    logits: list[Array] = [np.zeros(0)] * len(records)
    for k, held in enumerate(folds_index):
        keep = np.ones(len(records), dtype=bool)
        keep[held] = False
        model = rows.fit(keep, penalty, start)
        for i in held:
            logits[i] = model.logits(records[i].features[:, columns])
        say(f"fold {k + 1}/{len(folds_index)}: {len(held)} runs held out")
    if max_regret is not None:
        # A negative budget is meaningful: ask to end better than the oracle (e.g. with keep_best_by=).
        budget = check_real("max_regret", max_regret)
        assert budget is not None
        reference: dict[str, Any] | None = None
    else:
        assert match_patience is not None
        patience = check_int("match_patience", match_patience, minimum=1)
        ref_saved, ref_regret = patience_outcome(records, patience)
        budget = float(ref_regret.mean())
        reference = {"patience": patience, "saved": float(ref_saved.mean()), "regret": budget}
    choice = choose(records, logits, budget, min_waits, max_waits)
    if not choice.feasible:
        warnings.warn(
            f"no policy kept the cross-validated regret within {budget:.4g}; chose the least regret "
            f"({choice.regret:.4g}, saving {choice.saved:.1%})",
            RuntimeWarning,
            stacklevel=3,
        )
    threshold = 1.0 / (1.0 + math.exp(-choice.cut))
    info = {
        "runs": len(records),
        "groups": len({r.group for r in records}),
        "epochs_fitted": int(rows.x.shape[0]),
        "cv": {
            "folds": len(folds_index),
            "saved": choice.saved,
            "regret": choice.regret,
            "budget": budget,
            "feasible": choice.feasible,
            "reference": reference,
        },
        "settings": {
            "tolerance": tol,
            "cost_cap": cap,
            "cost_scale": scale,
            "l2": penalty,
            "min_waits": list(min_waits),
            "max_waits": list(max_waits),
            "seed": seed,
        },
    }
    return LearnedPolicy(
        used,
        final.means.tolist(),
        final.scales.tolist(),
        final.weights.tolist(),
        final.bias,
        threshold,
        choice.min_wait,
        choice.max_wait,
        max_epochs=None,
        log=log,
        train_metric=train_metric,
        accuracy_metric=accuracy_metric,
        lr_metric=lr_metric,
        monitor=monitor,
        info=info,
    )


def fit_policy(
    curves: Mapping[str, Mapping[str, Sequence[float | None]]],
    runs_meta: Mapping[str, Mapping[str, Any]] | str | Path | None = None,
    groups: Mapping[str, str] | None = None,
    monitor: str = "val_loss",
    target: str = "test_accuracy",
    *,
    mode: str = "auto",
    target_mode: str = "auto",
    log: bool | None = None,
    train_metric: str | None = "loss",
    accuracy_metric: str | None = "val_accuracy",
    lr_metric: str | None = "lr",
    budget: bool = True,
    features: Sequence[str] | None = None,
    monitor_options: Mapping[str, Any] | None = None,
    max_regret: float | None = 0.0007,
    match_patience: int | None = None,
    tolerance: float = 0.0,
    cost_cap: float = 0.1,
    cost_scale: float = 0.01,
    l2: float = 1.0,
    min_waits: Iterable[int] = DEFAULT_MIN_WAITS,
    max_waits: Iterable[int] = DEFAULT_MAX_WAITS,
    folds: int = 10,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> LearnedPolicy:
    """Fit a stopping policy on recorded runs (numpy; deterministic).

    Each run is replayed epoch by epoch through a Monitor that records the
    policy's online features and, at each epoch, the regret of stopping there
    (the target at the run's oracle — its best ``monitor`` epoch — minus the
    target at the epoch the Monitor would restore). A logistic regression
    (L2, Newton/IRLS) learns whether that regret exceeds ``tolerance``,
    each costly epoch weighted by its regret (capped at ``cost_cap``, in units
    of ``cost_scale``). Whole groups of runs are held out to pick the
    threshold, ``min_wait`` and ``max_wait`` that save the most epochs with a
    cross-validated mean regret within the budget; the model is then refitted
    on every run. The returned policy has no ``max_epochs``: bind it
    ([`LearnedPolicy.bind`][earlystop_core.LearnedPolicy.bind]) when it uses budget features.

    Args:
        curves: ``{run: {metric: values by epoch}}``
            (`load_curves`). Each run should have
            run its full budget: the oracle is its best epoch.
        runs_meta: ``{run: {column: value}}`` or the path of a ``runs.csv``;
            its ``problem`` column gives the groups and ``epochs`` the budgets.
        groups: ``{run: group}``, overriding ``problem`` (default: each run alone).
        monitor: The monitored metric.
        target: The metric regret is measured on.
        mode: The monitored metric's direction (``"auto"``: from its name).
        target_mode: The target's direction.
        log: Features on ``log(value)``; default: when the metric is minimised and never negative.
        train_metric: Training-loss key; its features are used when every run has it.
        accuracy_metric: Validation-accuracy key; used when every run has it.
        lr_metric: Learning-rate key; its features are used when any run logs it (a run without it, or an
            epoch, counts as a constant rate: the policy then still decides logs without a rate).
        budget: Use budget features when ``runs_meta`` has an ``epochs`` column.
        features: The feature names to use (default: every one available but ``LEFT_OUT``, as the
            recommended policy).
        monitor_options: Further Monitor settings, e.g. ``{"best_from_epoch": 3}``.
        max_regret: The budget: the most cross-validated mean regret allowed
            (target units; may be negative, e.g. with ``keep_best_by`` in
            ``monitor_options``, which can end runs better than the oracle).
        match_patience: Instead of ``max_regret``: allow the regret of this fixed patience on the same runs.
        tolerance: A stop costs when its regret exceeds this.
        cost_cap: Regret above this weighs as this.
        cost_scale: The regret that weighs as much as one harmless epoch.
        l2: Ridge penalty on the standardised weights.
        min_waits: ``min_wait`` values to choose from.
        max_waits: ``max_wait`` values to choose from.
        folds: Cross-validation folds (leave-one-group-out when there are at most this many groups).
        seed: Seeds the assignment of groups to folds.
        progress: Called with a line of text after each fold.

    Returns:
        The fitted policy; ``policy.info["cv"]`` holds its cross-validated figures.

    Raises:
        ValueError: Too few runs or groups, an unknown feature, or contradictory arguments.
        KeyError: A run lacks the monitored or target metric.

    Examples:
        >>> import math
        >>> curves = {}
        >>> for run in range(8):  # a loss that bottoms out at epoch 10 + run, then rises
        ...     bottom = 10 + run
        ...     loss = [1 + 0.01 * (t - bottom) ** 2 for t in range(60)]
        ...     curves[str(run)] = {"val_loss": loss, "test_accuracy": [1 - v / 10 for v in loss]}
        >>> policy = fit_policy(curves, max_regret=0.0)
        >>> policy.info["cv"]["regret"], policy.info["cv"]["saved"] > 0.5
        (0.0, True)
    """
    if not curves:
        raise ValueError("no runs to fit a policy on")
    meta = read_runs_meta(runs_meta) if isinstance(runs_meta, (str, Path)) else runs_meta
    mode_resolved = resolve_mode(mode, monitor)
    if log is None:
        logged = (v for curve in curves.values() for v in curve.get(monitor, ()) if v is not None)
        log = mode_resolved == "min" and all(not (v < 0) for v in logged)
    if log and mode_resolved == "max":
        raise ValueError(f"log=True takes logarithms of {monitor!r}, which is maximised; pass log=False")
    train = check_metric_name("train_metric", train_metric)
    accuracy = check_metric_name("accuracy_metric", accuracy_metric)
    if train is not None and not all(train in curve for curve in curves.values()):
        train = None  # not recorded in every run: no training-loss features
    if accuracy is not None and not all(accuracy in curve for curve in curves.values()):
        accuracy = None
    rate = check_metric_name("lr_metric", lr_metric)
    if rate is not None and not any(rate in curve for curve in curves.values()):
        rate = None  # no run logs a rate: the rate features would be constant
    if groups is None and meta is not None and all("problem" in meta.get(run, {}) for run in curves):
        groups = {run: str(meta[run]["problem"]) for run in curves}
    budgets: dict[str, int] | None = None
    if budget and meta is not None and all("epochs" in meta.get(run, {}) for run in curves):
        budgets = {run: int(meta[run]["epochs"]) for run in curves}
    if features is not None:
        wanted = {FEATURES.get(name, "?") for name in features}
        unknown = [name for name in features if name not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; features: {', '.join(FEATURES)}")
        if "budget" in wanted and budgets is None:
            raise ValueError("budget features need each run's planned epochs: a runs_meta with an 'epochs' column")
        if "train" in wanted and train is None:
            raise ValueError(f"train features need {train_metric!r} in every run's curve")
        if "accuracy" in wanted and accuracy is None:
            raise ValueError(f"accuracy features need {accuracy_metric!r} in every run's curve")
        if "lr" in wanted and rate is None:
            raise ValueError(f"learning-rate features need {lr_metric!r} in some run's curve")
    options = dict(monitor_options or {})
    records = record_runs(
        curves,
        monitor=monitor,
        mode=mode,
        target=target,
        target_mode=target_mode,
        log=log,
        train_metric=train,
        accuracy_metric=accuracy,
        lr_metric=rate,
        budgets=budgets,
        groups=groups,
        monitor_options=options,
    )
    tracker = FeatureTracker(log, 1 if budgets is not None else None, train, accuracy, rate)
    if features is None:  # every one available but those the evidence leaves out, as the default does
        features = [name for name in tracker.names if name not in LEFT_OUT]
    return fit_recorded(
        records,
        tracker.names,
        features=features,
        max_regret=max_regret,
        match_patience=match_patience,
        tolerance=tolerance,
        cost_cap=cost_cap,
        cost_scale=cost_scale,
        l2=l2,
        min_waits=min_waits,
        max_waits=max_waits,
        folds=folds,
        seed=seed,
        log=log,
        train_metric=train,
        accuracy_metric=accuracy,
        lr_metric=rate,
        monitor={"monitor": monitor, "mode": mode_resolved, **options},
        progress=progress,
    )


def _nonnegative(name: str, value: Any) -> float:
    number = check_real(name, value)
    assert number is not None
    if number < 0:
        raise ValueError(f"{name!r} must be >= 0, got {value!r}")
    return number
