"""Replay one Monitor configuration over a whole curve bank at once, with numpy.

[`evaluate`][earlystop_core.evaluate] gives, run by run, exactly what `replay`
gives when each run is fed through ``Monitor.update``: the same stop, kept and
oracle epochs, the same regret and gain, bit for bit. It holds the bank as
arrays ([`Bank`][earlystop_core.Bank]: one runs x epochs float64 array per metric, NaN-padded,
and the runs' lengths) and decides for every run together.

Nothing a run does after it stops changes what came before, so the engine
steps every run's bests over all epochs (a few numpy calls per epoch, each
across all runs), then finds each run's stop as the first epoch where the
Monitor's conditions hold (patience exhausted, threshold reached, a guard
fired), with whole-array operations. The bests are stepped in one of two ways:

* ``"scan"`` (``min_delta=0``, the common case): the best is the running
  minimum, one ``fmin`` per epoch;
* ``"loop"`` (any ``min_delta``, absolute or relative): the Monitor's own
  comparison, ``float32(value + margin) < float32(best)``, per epoch.

Both compare in float32 where the Monitor does (``less32(a, b)`` is
``np.float32(a) < np.float32(b)`` with ``a`` and ``b`` computed in float64
first), smooth with the Monitor's expression term for term, keep the tracked
best (of the smoothed value, from ``best_from_epoch`` on) apart from the kept
best (of the raw value, or of ``keep_best_by`` with the Monitor's tie-break),
and apply the guards in Lightning's order. What they
cannot express (a ``rule=``, a weighted monitor, ``patience="auto"``, a
``plateau=``) and a strategy given as a monitor factory go through the scalar
replay instead (``engine="scalar"``): the same results object and numbers,
only slower.

Examples:
    >>> curves = {"a": {"val_loss": [1.0, 0.9, 1.2, 1.3], "test_accuracy": [0.5, 0.6, 0.55, 0.5]},
    ...           "b": {"val_loss": [1.0, 0.8, 0.7, 0.6], "test_accuracy": [0.5, 0.6, 0.7, 0.8]}}
    >>> result = evaluate(Bank.from_curves(curves), {"monitor": "val_loss", "patience": 1})
    >>> result.engine, result.stop.tolist(), result.kept.tolist(), result.regret.tolist()
    ('scan', [2, 3], [1, 3], [0.0, 0.0])
    >>> s = result.summary
    >>> s.runs, s.epochs_run, s.saved, round(s.gain, 3)
    (2, 3.5, 0.125, 0.05)
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from earlystop_core.config import MonitorConfig
from earlystop_core.errors import MissingMetricError, missing_keep_metric
from earlystop_core.modes import resolve_mode
from earlystop_core.monitor import Monitor
from earlystop_core.policy.learned import LearnedPolicy
from earlystop_core.policy.simulate import first_stops
from earlystop_core.replay.bank import Bank, Curves
from earlystop_core.replay.scalar import ON_ERROR, RunResult, Summary, check_replayable, no_best_epoch, replay
from earlystop_core.rules.base import Rule

__all__ = ["ENGINES", "ENGINE_SUPPORT", "Evaluation", "evaluate", "fallback_reason"]

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Strategy = Mapping[str, Any] | Callable[[], Monitor]

ENGINES = ("auto", "scan", "loop", "scalar")


# -- the results ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Evaluation:
    """Per-run outcomes of one strategy over a bank, as arrays (one entry per run replayed).

    The fields mirror `RunResult` (see
    `earlystop_core.replay.scalar` for the definitions), plus ``value``: the
    target at the kept epoch.

    Attributes:
        runs: Run ids (runs skipped with ``on_error="skip"`` are left out).
        epochs: Each run's length ``n``.
        stop: The last epoch run (``n - 1`` when the monitor never stopped).
        stopped: Whether the monitor told training to stop.
        kept: The epoch whose weights training ends with.
        oracle: The best epoch of the monitored (or reference) quantity.
        saved: ``(n - 1 - stop) / n``.
        regret: How much worse the target is at ``kept`` than at ``oracle`` (positive = worse).
        gain: How much better the target is at ``kept`` than at the last epoch it was logged at (positive =
            better).
        value: The target at ``kept``.
        engine: How the decisions were made: ``"scan"``, ``"loop"`` or ``"scalar"``.
        reason: Why the scalar replay was used (None when vectorised).
    """

    runs: tuple[str, ...]
    epochs: IntArray
    stop: IntArray
    stopped: BoolArray
    kept: IntArray
    oracle: IntArray
    saved: FloatArray
    regret: FloatArray
    gain: FloatArray
    value: FloatArray
    engine: str
    reason: str | None = None

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def summary(self) -> Summary:
        """The means over runs, exactly as `summarize` computes them.

        Raises:
            ValueError: No run was replayed.
        """
        count = len(self.runs)
        if not count:
            raise ValueError("no results to summarize")
        return Summary(
            runs=count,
            epochs_run=math.fsum((self.stop + 1).tolist()) / count,
            saved=math.fsum(self.saved.tolist()) / count,
            regret=math.fsum(self.regret.tolist()) / count,
            gain=math.fsum(self.gain.tolist()) / count,
        )

    @property
    def mean_value(self) -> float:
        """The mean target at the kept epoch (NaN when no run was replayed)."""
        return math.fsum(self.value.tolist()) / len(self.runs) if self.runs else math.nan

    def results(self) -> list[RunResult]:
        """The same outcomes as `replay` returns them."""
        return list(self)

    def __iter__(self) -> Iterator[RunResult]:
        columns = (self.epochs, self.stop, self.stopped, self.kept, self.oracle, self.saved, self.regret, self.gain)
        for run, *fields in zip(self.runs, *(column.tolist() for column in columns), strict=True):
            yield RunResult(run, *fields)


# -- the entry point ----------------------------------------------------------------


def evaluate(
    bank: Bank | Curves,
    strategy: Strategy,
    target: str = "test_accuracy",
    target_mode: str = "max",
    *,
    reference: str | None = None,
    reference_mode: str = "auto",
    on_error: str = "raise",
    engine: str = "auto",
) -> Evaluation:
    """Replay a strategy over every run of a bank; the outcomes of `replay`.

    Args:
        bank: A [`Bank`][earlystop_core.Bank], or ``{run: {metric: values}}`` to pack into one
            (pack once and reuse the bank when evaluating many strategies).
        strategy: [`Monitor`][earlystop_core.Monitor] keyword arguments as a dict
            (vectorised when the engine can; ``restore_best_weights`` defaults
            to True here, the replay protocol's default), or a callable
            building a fresh Monitor (always replayed by the scalar loop).
        target: The metric judging the kept epoch.
        target_mode: ``"max"``, ``"min"`` or ``"auto"``: which way the target is better.
        reference: A metric whose best epoch is the oracle (default: the monitored one).
        reference_mode: The reference's direction (``"auto"`` infers it from the name).
        on_error: ``"raise"`` (the error of the first failing run, naming it) or
            ``"skip"`` (leave failing runs out), as in `replay`.
        engine: ``"auto"`` (the fastest that reproduces the Monitor), or force
            ``"scan"`` (``min_delta=0`` only), ``"loop"`` or ``"scalar"``.

    Returns:
        The per-run outcomes; ``.summary`` has the means.

    Raises:
        ValueError: An invalid option, an engine that cannot run this strategy,
            or (``on_error="raise"``) a run without epochs or without a finite
            value of the oracle's quantity.
        KeyError: (``on_error="raise"``) A run lacks the target, the monitored
            metric or the reference.

    Examples:
        A relative ``min_delta`` runs the epoch loop; a ``rule=`` falls back to
        the scalar replay, with the same results object:

        >>> from earlystop_core import GL, Patience
        >>> curves = {"r": {"val_loss": [1.0, 0.8, 0.79, 0.9, 0.95], "test_accuracy": [0.5, 0.6, 0.7, 0.6, 0.6]}}
        >>> loop = evaluate(curves, {"patience": 1, "min_delta": 0.05, "min_delta_mode": "rel"})
        >>> loop.engine, loop.stop.tolist(), loop.kept.tolist(), loop.regret.round(2).tolist()
        ('loop', [2], [1], [0.1])
        >>> scalar = evaluate(curves, {"rule": Patience(1) | GL(5)})
        >>> scalar.engine, scalar.reason, scalar.stop.tolist()
        ('scalar', 'a rule= is replayed by the Monitor itself', [3])

        Either way the per-run results are `replay`'s:

        >>> curves = {"a": {"val_loss": [1.0, 0.9, 1.2, 1.3], "test_accuracy": [0.5, 0.6, 0.55, 0.5]},
        ...           "b": {"val_loss": [1.0, 0.8, 0.7, 0.6], "test_accuracy": [0.5, 0.6, 0.7, 0.8]}}
        >>> result = evaluate(curves, {"monitor": "val_loss", "patience": 1})
        >>> result.results() == replay(curves, lambda: Monitor(patience=1, restore_best_weights=True))
        True
        >>> result.summary.epochs_run, result.engine
        (3.5, 'scan')
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of 'raise', 'skip', got {on_error!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}")
    goal = resolve_mode(target_mode, target)
    if reference is not None:
        resolve_mode(reference_mode, reference)  # refused now, not run by run
    if not isinstance(bank, Bank):
        bank = Bank.from_curves(bank)
    if isinstance(strategy, Mapping):
        options = {"restore_best_weights": True, **strategy}
        config = Monitor(**options).config  # validates every option now, with the Monitor's messages
        check_replayable(config.rule)

        def make_monitor() -> Monitor:
            return Monitor(**options)

        reason = fallback_reason(config) or _sparse_reason(bank, config)
    elif callable(strategy):
        make_monitor, config = strategy, None
        reason = "a monitor factory is opaque: pass Monitor keyword arguments as a dict to vectorise"
    else:
        raise TypeError(
            f"'strategy' must be a dict of Monitor keyword arguments or a callable returning a Monitor, "
            f"got {type(strategy).__name__}"
        )
    if engine == "auto":
        engine = "scalar" if reason is not None else "scan" if _scannable(config) else "loop"
    elif engine != "scalar" and reason is not None:
        raise ValueError(f"engine={engine!r} cannot run this strategy: {reason}; use engine='auto' or 'scalar'")
    elif engine == "scan" and not _scannable(config):
        raise ValueError("engine='scan' needs min_delta=0 (absolute); use engine='loop' or 'auto'")
    if engine == "scalar":
        return _evaluate_scalar(bank, make_monitor, target, target_mode, reference, reference_mode, on_error, reason)
    assert config is not None
    return _evaluate_vectorised(bank, config, engine, target, goal, reference, reference_mode, on_error)


#: How the engine treats each `MonitorConfig` field: ``None`` when it replays every value
#: exactly, else the values it supports and why any other falls back to the scalar Monitor. Every
#: field must be here (a test checks it), so a new Monitor option cannot reach the engine unclassified.
ENGINE_SUPPORT: dict[str, tuple[Callable[[Any], bool], str] | None] = {
    "monitor": (lambda value: isinstance(value, str), "a weighted monitor is replayed by the Monitor itself"),
    "mode": None,
    "patience": (lambda value: value != "auto", "patience='auto' is replayed by the Monitor itself"),
    "min_delta": None,
    "baseline": None,
    "start_from_epoch": None,
    "restore_best_weights": None,
    "stopping_threshold": None,
    "divergence_threshold": None,
    "check_finite": None,
    "on_missing": None,
    "min_delta_mode": None,
    "best_from_epoch": None,
    "smoothing": None,
    "normalize": None,  # only for a weighted monitor, which falls back anyway
    "metric_modes": None,  # likewise
    "rule": (
        lambda value: value is None or type(value) is LearnedPolicy,
        "a rule= is replayed by the Monitor itself",
    ),
    "max_epochs": None,  # read by patience='auto' only
    "n_samples": None,  # likewise
    "plateau": (lambda value: value is None, "a plateau= is replayed by the Monitor itself"),
    "keep_best_by": None,
    "keep_best_mode": None,
}


def fallback_reason(config: MonitorConfig) -> str | None:
    """Why a configuration needs the scalar replay, or None if the engine vectorises it (see ``ENGINE_SUPPORT``).

    Examples:
        >>> from earlystop_core import Patience
        >>> fallback_reason(Monitor(patience=10, min_delta=0.01, smoothing=0.5).config) is None
        True
        >>> fallback_reason(Monitor(rule=Patience(3)).config)
        'a rule= is replayed by the Monitor itself'
    """
    for name in dict.fromkeys(("rule", "patience", "monitor", "plateau", *ENGINE_SUPPORT)):  # the rule's reason first
        support = ENGINE_SUPPORT[name]
        if support is not None and not support[0](getattr(config, name)):
            return support[1]
    return None


def _validated(bank: Bank, config: MonitorConfig) -> tuple[Bank, IntArray] | None:
    """The bank cut down to each run's validation checks (the epochs it logs the monitored metric at), and each
    check's epoch; None where that would not replay as the Monitor does (see `_sparse_reason`).

    With ``on_missing="skip"`` the Monitor passes over an epoch without the metric, so its decisions are those
    on the checks alone, as long as nothing counts epochs themselves (a warm-up, a rule) and ``keep_best_by``
    is logged at every check.
    """
    assert isinstance(config.monitor, str)
    if config.on_missing != "skip" or config.start_from_epoch or config.best_from_epoch or config.rule is not None:
        return None
    key = config.monitor
    inside = np.arange(bank.max_epochs) < bank.lengths[:, None]
    checks = inside & ~bank.missing[key] & bank.present[key][:, None]
    keep = config.keep_best_by
    if keep is not None and keep in bank.missing and (bank.missing[keep] & checks).any():
        return None  # the Monitor raises there (keep_best_by needs its metric beside the monitored one)
    counts = checks.sum(axis=1)
    width = int(counts.max()) if len(counts) else 0
    epochs = np.argsort(~checks, axis=1, kind="stable")[:, :width]  # each run's checks first, in order
    valid = np.arange(width) < counts[:, None]
    names = [key] if keep is None else [key, keep]
    values = {}
    for name in names:
        if name not in bank.values:
            continue
        array = np.take_along_axis(bank.values[name], epochs, axis=1) if width else np.zeros((len(counts), 0))
        values[name] = np.asfortranarray(np.where(valid, array, np.nan))
    present = {name: bank.present[name] for name in values}
    return Bank(bank.runs, counts.astype(np.int64), values, present), epochs


def _sparse_reason(bank: Bank, config: MonitorConfig) -> str | None:
    """Why the scalar replay is needed for this bank: a metric the Monitor reads is missing at some epochs
    (unless only the monitored one is, and the checks alone replay as the Monitor does: `_validated`)."""
    read = [config.monitor] if isinstance(config.monitor, str) else list(config.monitor)
    read += [config.keep_best_by] if config.keep_best_by is not None else []
    read += sorted(config.rule.requires) if config.rule is not None else []
    sparse = [name for name in read if name in bank.missing and bank.missing[name].any()]
    if config.rule is not None:  # an optional metric may be missing (the rule carries the last value) ...
        for name in sorted(config.rule.optional):
            with np.errstate(invalid="ignore"):
                if name in bank.values and (bank.values[name] < 0.0).any():  # ... but not negative
                    return f"{name!r} is negative at some epoch: the Monitor itself replays the error it raises"
    if sparse and sparse[0] == config.monitor and _validated(bank, config) is not None:
        return None  # the engine replays the validation checks alone
    if sparse:
        return f"{sparse[0]!r} is not logged at every epoch: the Monitor itself replays the epochs without it"
    return None


def _scannable(config: MonitorConfig | None) -> bool:
    # A relative zero min_delta is not quite zero: 0 * abs(inf) is NaN, and the Monitor then never improves.
    return config is not None and config.min_delta == 0.0 and config.min_delta_mode == "abs"


# -- the scalar fallback -------------------------------------------------------------


def _evaluate_scalar(
    bank: Bank,
    make_monitor: Callable[[], Monitor],
    target: str,
    target_mode: str,
    reference: str | None,
    reference_mode: str,
    on_error: str,
    reason: str | None,
) -> Evaluation:
    results = replay(
        bank.lazy_curves(),
        make_monitor,
        target,
        target_mode,
        reference=reference,
        reference_mode=reference_mode,
        on_error=on_error,
    )
    index = {run: row for row, run in enumerate(bank.runs)}
    rows = np.array([index[r.run] for r in results], dtype=np.int64)
    kept = np.array([r.kept for r in results], dtype=np.int64)
    return Evaluation(
        runs=tuple(r.run for r in results),
        epochs=np.array([r.epochs for r in results], dtype=np.int64),
        stop=np.array([r.stop for r in results], dtype=np.int64),
        stopped=np.array([r.stopped for r in results], dtype=bool),
        kept=kept,
        oracle=np.array([r.oracle for r in results], dtype=np.int64),
        saved=np.array([r.saved for r in results], dtype=np.float64),
        regret=np.array([r.regret for r in results], dtype=np.float64),
        gain=np.array([r.gain for r in results], dtype=np.float64),
        value=bank.values[target][rows, kept] if len(results) else np.zeros(0),
        engine="scalar",
        reason=reason,
    )


# -- the vectorised replay -------------------------------------------------------------
#
# Arrays here are epoch-major, (epochs, runs): one epoch of every run is a
# contiguous row, so a step over epochs is a handful of numpy calls on rows,
# and cumulative quantities are built by such steps (numpy's own
# ``ufunc.accumulate`` along an axis is several times slower than that loop).
# Padding past a run's end is NaN, which never improves, reaches or diverges;
# whatever happens there is clamped away by the run's length.
#
# Work arrays as large as the bank come from a per-bank, per-thread scratch
# pool and are written with ``out=``: memory fresh from the system costs a
# page fault per 4 kB, which for 1,000 runs x 200 epochs costs more than the
# arithmetic (about 1 ms per float64 array on the machine measured).


class _Scratch:
    """Reusable (epochs + 1, runs) work arrays, by slot name and dtype (some twice as wide)."""

    def __init__(self, width: int, count: int) -> None:
        self.width, self.count = width, count
        self.arrays: dict[tuple[str, Any, int], npt.NDArray[Any]] = {}

    def get(self, slot: str, dtype: Any, rows: int, wide: bool = False) -> npt.NDArray[Any]:
        """The first ``rows`` rows of the slot's array (contiguous; contents undefined)."""
        columns = self.count * (2 if wide else 1)
        key = (slot, np.dtype(dtype), columns)
        array = self.arrays.get(key)
        if array is None:
            array = self.arrays[key] = np.empty((self.width + 1, columns), dtype=dtype)
        return array[:rows]


def _scratch(bank: Bank) -> _Scratch:
    local = bank._local
    scratch: _Scratch | None = getattr(local, "scratch", None)
    if scratch is None:
        scratch = local.scratch = _Scratch(bank.max_epochs, len(bank.runs))
    return scratch


#: Runs replayed together at most: the work arrays stay a few MB however large the bank (for all the runs of
#: a large bank they would take about as much memory as the bank itself).
GROUP = 4096


def _evaluate_vectorised(
    bank: Bank,
    config: MonitorConfig,
    engine: str,
    target: str,
    goal: str,
    reference: str | None,
    reference_mode: str,
    on_error: str,
) -> Evaluation:
    if len(bank.runs) > GROUP:  # runs are independent: one group at a time, in order (the first failure raises)
        arguments = (config, engine, target, goal, reference, reference_mode, on_error)
        return _joined([_evaluate_vectorised(part, *arguments) for part in _groups(bank)])
    assert isinstance(config.monitor, str)
    key = config.monitor
    n = bank.lengths
    count, width = len(bank.runs), bank.max_epochs
    rows = np.arange(count)
    absent = np.zeros(count, dtype=bool)
    has_key = bank.present.get(key, absent)
    compact = _validated(bank, config) if key in bank.missing else None
    decided = bank if compact is None else compact[0]
    step = _scratch(decided)
    with np.errstate(all="ignore"):  # float32 overflow to inf and NaN arithmetic are intended
        signal = _signal(_epoch_major(decided, key), decided.lengths, config, step)
        keep32 = None if config.keep_best_by is None else _keep_values(decided, config, step)
        logs = None if config.rule is None else _policy_logs(decided, config.rule)
        stop, stopped, best = _decide(signal, decided.lengths, config, engine == "scan", step, keep32, logs)
    work = _scratch(bank)
    if compact is not None:  # back from validation checks to epochs; a run that did not stop ran to its end
        epochs = compact[1]
        at = np.clip(stop, 0, max(epochs.shape[1] - 1, 0))
        stop = np.where(stopped, epochs[rows, at] if epochs.shape[1] else 0, n - 1)
        best = np.where(best >= 0, epochs[rows, np.maximum(best, 0)] if epochs.shape[1] else -1, -1)
    # A run without the monitored metric: every epoch is skipped (on_missing="skip"), or it fails.
    stop = np.where(has_key, stop, n - 1)
    stopped &= has_key
    best = np.where(has_key, best, -1)
    kept = np.where(config.restore_best_weights & (best >= 0), best, stop)

    # Per-run failures, in the order replay_run meets them.
    failed = ~bank.present.get(target, absent) | (n == 0)
    if config.on_missing == "raise":
        failed |= ~has_key
    if config.keep_best_by is not None:  # read at every epoch the monitored metric is
        failed |= has_key & ~bank.present.get(config.keep_best_by, absent)
    negative = np.full(count, width)  # a rule taking logarithms refuses a negative value: the first epoch of one
    if config.rule is not None:  # a learned policy (any other rule is replayed by the scalar loop)
        for name in config.rule.requires:
            failed |= has_key & ~bank.present.get(name, absent)
        if config.rule.takes_log:
            negative = _first_true(np.less(_epoch_major(bank, key), 0.0), width)
            failed |= has_key & (negative <= stop)
    if reference is not None:
        oracle_name, oracle_mode = reference, resolve_mode(reference_mode, reference)
    else:
        oracle_name, oracle_mode = key, config.mode
    oracle, finite = _oracle(bank, oracle_name, oracle_mode, work)
    failed |= ~bank.present.get(oracle_name, absent) | ~finite
    if on_error == "raise" and failed.any():
        first = int(np.flatnonzero(failed)[0])
        error = _failure(bank, first, config, target, reference, bool(has_key[first]), int(negative[first]))
        if sys.version_info >= (3, 11):
            error.add_note(f"while replaying run {bank.runs[first]!r}")
        raise error

    if target in bank.values and width:
        values = bank.values[target]
        at_kept = values[rows, np.maximum(kept, 0)]
        at_oracle = values[rows, oracle]
        at_last = values[rows, _last_logged(bank, target, n)]
    else:
        at_kept = at_oracle = at_last = np.full(count, np.nan)
    with np.errstate(all="ignore"):
        if goal == "max":
            regret, gain = at_oracle - at_kept, at_kept - at_last
        else:
            regret, gain = at_kept - at_oracle, at_last - at_kept
        saved = (n - 1 - stop) / n
    if not failed.any():
        return Evaluation(bank.runs, n, stop, stopped, kept, oracle, saved, regret, gain, at_kept, engine)
    keep = np.flatnonzero(~failed)
    return Evaluation(
        runs=tuple(bank.runs[i] for i in keep.tolist()),
        epochs=n[keep],
        stop=stop[keep],
        stopped=stopped[keep],
        kept=kept[keep],
        oracle=oracle[keep],
        saved=saved[keep],
        regret=regret[keep],
        gain=gain[keep],
        value=at_kept[keep],
        engine=engine,
    )


def _groups(bank: Bank) -> list[Bank]:
    """The bank in groups of equal size, at most `GROUP` runs; groups as large share work arrays (kept on
    the bank, for the next strategy)."""
    count = len(bank.runs)
    size = -(-count // -(-count // GROUP))
    shared: dict[int, _Scratch] | None = getattr(bank._local, "groups", None)
    if shared is None:
        shared = bank._local.groups = {}
    parts = []
    for start in range(0, count, size):
        part = bank[start : start + size]
        runs = len(part.runs)
        if runs not in shared:  # as many epochs as the longest run of the bank: enough for every group
            shared[runs] = _Scratch(bank.max_epochs, runs)
        part._local.scratch = shared[runs]
        parts.append(part)
    return parts


def _joined(parts: list[Evaluation]) -> Evaluation:
    """The evaluations of consecutive groups of runs, as one."""
    fields = ("epochs", "stop", "stopped", "kept", "oracle", "saved", "regret", "gain", "value")
    arrays = {name: np.concatenate([getattr(part, name) for part in parts]) for name in fields}
    runs = tuple(run for part in parts for run in part.runs)
    return Evaluation(runs=runs, **arrays, engine=parts[0].engine, reason=parts[0].reason)


def _policy_logs(bank: Bank, policy: Rule) -> dict[str, FloatArray]:
    """The metrics a learned policy reads besides the monitored one: those it requires, and the optional
    ones (a learning rate) the bank logs, NaN at epochs without them."""
    names = [*policy.requires, *(name for name in policy.optional if name in bank.values)]
    return {name: _epoch_major(bank, name) for name in names}


def _epoch_major(bank: Bank, name: str) -> FloatArray:
    """The metric as (epochs, runs), contiguous (free for a bank built by `Bank.from_curves`)."""
    width = bank.max_epochs
    if name not in bank.values:
        return np.full((width, len(bank.runs)), np.nan)
    return np.ascontiguousarray(bank.values[name][:, :width].T)


def _oracle(bank: Bank, name: str, mode: str, work: _Scratch) -> tuple[IntArray, BoolArray]:
    """Each run's first epoch of the best finite value of ``name``, and whether it has one."""
    count, width = len(bank.runs), bank.max_epochs
    if name not in bank.values or not width:
        return np.zeros(count, dtype=np.int64), np.zeros(count, dtype=bool)
    values = _epoch_major(bank, name)
    infinite = np.isinf(values, out=work.get("flags", bool, width))
    if infinite.any():  # only finite values count; NaN (and the padding) never does
        values = np.where(infinite, np.nan, values)
    best = (np.fmin if mode == "min" else np.fmax).reduce(values, axis=0)
    return _first_true(np.equal(values, best, out=work.get("equal", bool, width)), 0), ~np.isnan(best)


def _failure(
    bank: Bank, row: int, config: MonitorConfig, target: str, reference: str | None, has_key: bool, negative: int
) -> Exception:
    """The exception ``replay_run`` raises for this run (it failed the vectorised checks).

    ``negative``: the first epoch with a negative monitored value, when the rule takes logarithms.
    """
    names = [name for name in bank.values if bank.present[name][row]]
    if target not in names:
        return KeyError(f"no target metric {target!r} in the curve; metrics: {', '.join(names)}")
    n = int(bank.lengths[row])
    if n == 0:
        return ValueError("the curve has no epochs")
    assert isinstance(config.monitor, str)
    if not has_key and config.on_missing == "raise":
        return MissingMetricError(config.monitor, _logged_at(bank, row, 0))
    rule = config.rule
    logged = _logged_at(bank, row, _first_logged(bank, row, config.monitor))  # where the Monitor raises
    if has_key and rule is not None:  # the Monitor checks a rule's inputs before it reads keep_best_by
        for name in rule.requires:
            if name not in names:
                fix = f"The stopping rule reads it at every epoch (it requires {', '.join(sorted(rule.requires))})."
                return MissingMetricError(name, logged, fix)
    refused = None
    if has_key and rule is not None and negative < n:
        value = float(bank.values[config.monitor][row, negative])
        refused = ValueError(
            f"{rule!r} takes logarithms of {config.name}, which must be >= 0, got {value!r}; use log=False"
        )
        if negative == 0:
            return refused
    if has_key and config.keep_best_by is not None and config.keep_best_by not in names:
        return missing_keep_metric(config.keep_best_by, logged, config.monitor)
    if refused is not None:
        return refused
    if reference is not None and reference not in names:
        return KeyError(f"no reference metric {reference!r} in the curve; metrics: {', '.join(names)}")
    if reference is None and not has_key:
        return KeyError(config.monitor)
    return no_best_epoch(reference if reference is not None else config.name, n)


def _logged_at(bank: Bank, row: int, epoch: int) -> list[str]:
    """The metrics a run logged at an epoch: the keys of the logs the Monitor was given there (its error names
    them)."""
    return [
        name
        for name in bank.values
        if bank.present[name][row] and not (name in bank.missing and bank.missing[name][row, epoch])
    ]


def _first_logged(bank: Bank, row: int, name: str) -> int:
    """The first epoch a run logged a metric at (0 when it logs it at every epoch)."""
    if name not in bank.missing:
        return 0
    return int(np.argmin(bank.missing[name][row, : int(bank.lengths[row])]))


def _last_logged(bank: Bank, name: str, n: IntArray) -> IntArray:
    """Each run's last epoch with ``name`` logged (its last epoch when it has none, or no epochs)."""
    last = np.maximum(n - 1, 0)
    if name not in bank.missing:
        return last
    logged = ~bank.missing[name][:, : bank.max_epochs] & (np.arange(bank.max_epochs) < n[:, None])
    found = logged.any(axis=1)
    return np.where(found, bank.max_epochs - 1 - logged[:, ::-1].argmax(axis=1), last)


def _first_true(mask: BoolArray, default: int | IntArray) -> IntArray:
    """Per column (run), the first row (epoch) holding True, else ``default``."""
    count = mask.shape[1]
    if not mask.shape[0] or not mask.any():
        return np.broadcast_to(np.asarray(default, dtype=np.int64), (count,)).copy()
    index = mask.argmax(axis=0)
    return np.where(mask[index, np.arange(count)], index, default)


@dataclasses.dataclass
class _Signal:
    """What every engine starts from: the signed values, where guards stop runs, where the goal is reached."""

    signed: FloatArray  # value * sign: lower is better
    signed32: Float32Array
    guard: IntArray  # the first epoch a guard stops the run (non-finite, divergence), else n
    reached: BoolArray | None


def _signal(values: FloatArray, n: IntArray, config: MonitorConfig, work: _Scratch) -> _Signal:
    width = len(values)
    sign = 1.0 if config.mode == "min" else -1.0
    signed = values if sign == 1.0 else np.negative(values, out=work.get("signed", np.float64, width))
    signed32 = work.get("signed32", np.float32, width)
    np.copyto(signed32, signed, casting="same_kind")  # rounds as the Monitor's float32 casts do
    guard = None
    if config.check_finite:  # the NaN padding fires only past the end
        guard = np.logical_not(
            np.isfinite(signed, out=work.get("flags", bool, width)), out=work.get("flags", bool, width)
        )
    reached = None
    if config.stopping_threshold is not None:
        reached = np.less(signed32, np.float32(config.stopping_threshold * sign), out=work.get("reached", bool, width))
    if config.divergence_threshold is not None:
        diverged = np.less(
            np.float32(config.divergence_threshold * sign), signed32, out=work.get("flags2", bool, width)
        )
        if reached is not None:
            np.greater(diverged, reached, out=diverged)  # diverged and not reached
        guard = diverged if guard is None else np.logical_or(guard, diverged, out=guard)
    first = n if guard is None else np.minimum(_first_true(guard, n), n)
    return _Signal(signed, signed32, first, reached)


def _tracked(signed: FloatArray, config: MonitorConfig, work: _Scratch | None = None) -> FloatArray:
    """The value patience sees, (epochs, runs): the signed value, or its EMA from ``start_from_epoch`` on."""
    factor = config.smoothing
    start = config.start_from_epoch
    width = signed.shape[0]
    if not factor or start >= width:
        return signed
    tracked = signed.copy() if work is None else work.get("tracked", np.float64, width)
    terms = np.empty_like(signed) if work is None else work.get("terms", np.float64, width)
    tracked[: start + 1] = signed[: start + 1]
    np.multiply(signed, 1.0 - factor, out=terms)
    ema, term = list(tracked), list(terms)
    multiply, add = np.multiply, np.add
    for epoch in range(start + 1, width):
        # The Monitor's `factor * ema + (1.0 - factor) * s`, rounding for rounding.
        multiply(ema[epoch - 1], factor, out=ema[epoch])
        add(ema[epoch], term[epoch], out=ema[epoch])
    return tracked


def _tracked32(signal: _Signal, config: MonitorConfig, work: _Scratch) -> tuple[FloatArray, Float32Array]:
    """The tracked values in float64 and float32 (the signed ones without smoothing)."""
    if not config.smoothing:
        return signal.signed, signal.signed32
    width = len(signal.signed)
    tracked = _tracked(signal.signed, config, work)
    tracked32 = work.get("tracked32", np.float32, width)
    np.copyto(tracked32, tracked, casting="same_kind")
    return tracked, tracked32


def _ends(n: IntArray, guard: IntArray, exhausted: IntArray, reached: IntArray) -> tuple[IntArray, BoolArray, IntArray]:
    """Stop epoch, whether stopped, and the last epoch whose step completed (the best is as it was then).

    Each argument is a first epoch per run, ``>= n`` meaning never.
    """
    stop_at = np.minimum(exhausted, reached)
    by_guard = (guard <= stop_at) & (guard < n)  # a guard returns before the monitored block and the threshold
    stop = np.where(by_guard, guard, np.minimum(stop_at, n - 1))
    return stop, by_guard | (stop_at < n), np.where(by_guard, guard - 1, stop)


def _best_epochs(history: Float32Array, first: int, last: IntArray, work: _Scratch) -> IntArray:
    """The epoch of the best as it stood after epoch ``last`` (-1 before ``first``).

    ``history[i]`` is the best after epoch ``first + i``. Bests strictly
    decrease, so the best's epoch is the first holding its value; a NaN first
    value is a best nothing improves on.
    """
    count = history.shape[1]
    if not len(history):
        return np.full(count, -1, dtype=np.int64)
    at = np.clip(last - first, 0, len(history) - 1)
    span = int(at.max()) + 1  # rows past every run's end may be unset
    equal = np.equal(history[:span], history[at, np.arange(count)], out=work.get("equal", bool, span))
    found = first + _first_true(equal, 0)
    found = np.where(np.isnan(history[0]), first, found)
    return np.where(last >= first, found, -1)


def _keep_values(bank: Bank, config: MonitorConfig, work: _Scratch) -> Float32Array:
    """The ``keep_best_by`` metric, (epochs, runs), signed (lower is better), non-finite as +inf, in float32."""
    assert config.keep_best_by is not None
    values = _epoch_major(bank, config.keep_best_by)
    width = len(values)
    signed = np.multiply(
        values, -1.0 if config.keep_best_mode == "max" else 1.0, out=work.get("keep", np.float64, width)
    )
    signed[~np.isfinite(signed)] = np.inf
    keep32 = work.get("keep32", np.float32, width)
    np.copyto(keep32, signed, casting="same_kind")
    return keep32


def _kept_by(keep32: Float32Array, signed32: Float32Array, start: int, last: IntArray, work: _Scratch) -> IntArray:
    """With ``keep_best_by``: the kept epoch after epoch ``last`` (-1 before ``start``).

    The Monitor's step from ``start`` on keeps an epoch when its keep value is
    lower, or equal with a lower monitored value (float32 comparisons; a NaN
    never wins a tie and is never displaced by one). Non-finite keep values are
    +inf here, so the kept epoch is found without stepping: the first epoch
    holding the lowest keep value, unless a later epoch holding it too has a
    strictly lower monitored value: then the first holding the lowest of those
    (a NaN at the first keeps it).
    """
    width, count = keep32.shape
    if start >= width or not (last >= start).any():
        return np.full(count, -1, dtype=np.int64)
    span = int(min(last.max(), width - 1)) + 1 - start  # the rows any run reaches
    rows = np.arange(span)[:, None]
    seen = rows <= (last - start)  # the epochs each run has had by ``last``
    keep = np.where(seen, keep32[start : start + span], np.float32(np.inf))
    lowest = keep.min(axis=0)
    tied = np.equal(keep, lowest, out=work.get("tied", bool, span)) & seen
    first = tied.argmax(axis=0)
    signed = np.where(tied, signed32[start : start + span], np.float32(np.nan))
    with np.errstate(invalid="ignore"):
        least = np.fmin.reduce(signed, axis=0)  # NaN where every tied value is NaN
    later = _first_true(np.equal(signed, least), -1)
    stuck = np.isnan(signed[first, np.arange(count)]) | (later < 0)
    return np.where(last >= start, start + np.where(stuck, first, later), -1)


def _adoptions(
    values: FloatArray, values32: Float32Array, config: MonitorConfig, scan: bool, work: _Scratch, slot: str
) -> tuple[Float32Array, BoolArray]:
    """The Monitor's best, stepped over epochs from the first that can be the best: (history, improves).

    ``history[i]`` is the float32 best after step ``i`` and ``improves[i]``
    whether step ``i`` adopted a new one (step 0 always does). Bests strictly
    decrease, so a change of value is an adoption. ``scan`` (``min_delta=0``
    only): the best is the running minimum, one ``fmin`` per epoch. Otherwise
    the Monitor's step: compare ``float32(value + margin)`` with the best, the
    margin being ``min_delta`` or, relative, ``min_delta * abs(best)``.
    """
    steps, count = values32.shape
    wide = count != work.count
    history = work.get(slot, np.float32, steps, wide)
    improves = work.get(slot + ":improves", bool, steps, wide)
    if not steps:
        return history, improves
    history[0] = values32[0]
    improves[0] = True
    delta = config.min_delta
    rows, best, adopts = list(values32), list(history), list(improves)
    if scan:
        fmin = np.fmin
        for step in range(1, steps):
            fmin(best[step - 1], rows[step], out=best[step])
        np.less(values32[1:], history[:-1], out=improves[1:])
        stuck = np.isnan(values32[0])  # a NaN best, which nothing improves on (fmin would skip it)
        if stuck.any():
            improves[1:, stuck] = False
            history[1:, stuck] = np.nan
        return history, improves
    less, copyto, putmask = np.less, np.copyto, np.putmask
    if config.min_delta_mode == "abs":
        shifted32 = work.get(slot + ":shifted32", np.float32, steps, wide)
        np.copyto(
            shifted32, np.add(values, delta, out=work.get("float64", np.float64, steps, wide)), casting="same_kind"
        )
        compared = list(shifted32)
        for step in range(1, steps):
            less(compared[step], best[step - 1], out=adopts[step])
            copyto(best[step], best[step - 1])
            putmask(best[step], adopts[step], rows[step])
        return history, improves
    margins = np.multiply(
        np.abs(values, out=work.get("float64", np.float64, steps, wide)),
        delta,
        out=work.get("float64", np.float64, steps, wide),
    )
    margin = margins[0].copy()  # min_delta * abs(best), the best in float64
    shifted32 = np.empty(count, dtype=np.float32)
    exact, scaled = list(values), list(margins)
    add = np.add
    for step in range(1, steps):
        add(exact[step], margin, out=shifted32, dtype=np.float64, casting="same_kind")  # float32(value + margin)
        less(shifted32, best[step - 1], out=adopts[step])
        copyto(best[step], best[step - 1])
        putmask(best[step], adopts[step], rows[step])
        putmask(margin, adopts[step], scaled[step])
    return history, improves


def _decide(
    signal: _Signal,
    n: IntArray,
    config: MonitorConfig,
    scan: bool,
    work: _Scratch,
    keep32: Float32Array | None = None,
    logs: Mapping[str, FloatArray] | None = None,
) -> tuple[IntArray, BoolArray, IntArray]:
    """Every run's stop epoch, whether it stopped, and its best (kept) epoch, -1 for none.

    ``keep32``: with ``keep_best_by``, its signed float32 values, which pick the kept epoch instead.
    ``logs``: ``{metric: (epochs, runs)}``, the metrics a learned policy reads besides the monitored one.

    Nothing a run does after it stops changes what came before, so the bests
    are stepped over every epoch of every run, and the stop is then the first
    epoch where the Monitor's conditions hold, found for all runs at once.
    """
    width, count = signal.signed.shape
    start = config.start_from_epoch
    first = min(max(start, config.best_from_epoch), width)  # the first epoch that can become the tracked best
    tracked, tracked32 = _tracked32(signal, config, work)
    split = config.smoothing > 0 or config.best_from_epoch > 0  # the kept best is the raw value's, from start
    if split and first < width:
        # One pass for both bests, side by side: [raw from start | tracked from first]. The tracked
        # half repeats its first value until `first`, which can never improve on itself.
        offset = first - start
        wide64 = work.get("wide64", np.float64, width - start, wide=True)
        wide32 = work.get("wide32", np.float32, width - start, wide=True)
        for wide, raw, smooth in ((wide64, signal.signed, tracked), (wide32, signal.signed32, tracked32)):
            wide[:, :count] = raw[start:]
            wide[: offset + 1, count:] = smooth[first]
            wide[offset:, count:] = smooth[first:]
        both, adopted = _adoptions(wide64, wide32, config, scan, work, "best:both")
        kept, history, improves = both[:, :count], both[offset:, count:], adopted[offset:, count:]
        improves[0] = True
    else:
        history, improves = _adoptions(tracked[first:], tracked32[first:], config, scan, work, "best:tracked")
        kept = history
    reached = width if signal.reached is None else _first_true(signal.reached, width)
    if isinstance(config.rule, LearnedPolicy):
        assert logs is not None
        limit = np.minimum(np.minimum(n, signal.guard), reached + 1)  # the epochs the policy is asked about
        exhausted = _policy_stops(config.rule, config, tracked, improves, first, logs, limit, work)
    else:
        exhausted = first + _first_true(
            _patience_exhausted(config, tracked, history, improves, first, signal.reached, work), width
        )
    stop, stopped, last = _ends(n, signal.guard, exhausted, reached)
    if keep32 is not None:
        return stop, stopped, _kept_by(keep32, signal.signed32, start, last, work)
    if split and first >= width:
        kept, _ = _adoptions(signal.signed[start:], signal.signed32[start:], config, scan, work, "best:kept")
    return stop, stopped, _best_epochs(kept, start if split else first, last, work)


def _patience_exhausted(
    config: MonitorConfig,
    tracked: FloatArray,
    history: Float32Array,
    improves: BoolArray,
    first: int,
    reached: BoolArray | None,
    work: _Scratch,
) -> BoolArray:
    """Per epoch from ``first``: whether fixed patience stops there (not where the threshold is reached).

    Epoch ``first + i`` exhausts the patience if it does not improve and the wait (epochs counted from
    ``start_from_epoch``, back to 0 when a best beats the baseline) has reached the patience.
    """
    steps, count = history.shape
    start, patience = config.start_from_epoch, config.patience
    assert isinstance(patience, int)
    stuck = np.isnan(history[0]) if steps else np.zeros(count, dtype=bool)  # a NaN best nothing improves on
    calm = work.get("calm", bool, steps)
    if config.baseline is None:  # every adoption resets: the best is unchanged over the window
        calm[:patience] = False
        np.equal(history[patience:], history[: max(steps - patience, 0)], out=calm[patience:])
        if stuck.any():
            calm[patience:, stuck] = True
    else:
        resets = _resets(config, tracked, improves, first, work)
        counts = work.get("counts", np.int32, steps + 1)
        counts[0] = 0
        totals, rows = list(counts), list(resets)
        for step in range(steps):
            np.add(totals[step], rows[step], out=totals[step + 1])
        since = np.maximum(np.arange(steps) + 1 - patience, 0)
        np.equal(counts[1:], counts[since], out=calm)
        calm[: max(0, start - 1 + patience - first)] = False  # fewer than `patience` epochs counted yet
    exhausted: BoolArray = np.greater(calm, improves, out=calm)  # calm and not improving
    exhausted[:1] = False  # the first adoptable epoch improves
    if reached is not None:
        np.greater(exhausted, reached[first:], out=exhausted)  # and not at the goal
    return exhausted


def _resets(config: MonitorConfig, tracked: FloatArray, improves: BoolArray, first: int, work: _Scratch) -> BoolArray:
    """Per epoch from ``first``: whether it sets ``wait`` back to 0 (an adoption beating the baseline, if any)."""
    if config.baseline is None:
        return improves
    steps = len(improves)
    baseline = config.baseline * (1.0 if config.mode == "min" else -1.0)
    margin = config.min_delta * abs(baseline) if config.min_delta_mode == "rel" else config.min_delta
    shifted32 = work.get("beats32", np.float32, steps)
    np.copyto(
        shifted32, np.add(tracked[first:], margin, out=work.get("float64", np.float64, steps)), casting="same_kind"
    )
    resets: BoolArray = np.less(shifted32, np.float32(baseline), out=work.get("resets", bool, steps))
    resets &= improves
    return resets


def _policy_stops(
    policy: LearnedPolicy,
    config: MonitorConfig,
    tracked: FloatArray,
    improves: BoolArray,
    first: int,
    logs: Mapping[str, FloatArray],
    limit: IntArray,
    work: _Scratch,
) -> IntArray:
    """Per run, the first epoch the learned policy stops at (``width`` for none), before the threshold's say.

    The policy is asked from ``start_from_epoch`` on, with what the Monitor passes a rule: the tracked
    value, the tracked best (None before ``first``), ``wait`` and whether the epoch was adopted. Epochs
    from ``limit`` on (a run's end, a guard, a threshold reached) are not computed.
    """
    start = config.start_from_epoch
    width, count = tracked.shape
    if start >= width:  # no epoch is monitored
        return np.full(count, width, dtype=np.int64)
    offset = first - start
    adopted = np.zeros((width - start, count), dtype=bool)
    adopted[offset:] = improves
    reset = adopted if config.baseline is None else np.zeros_like(adopted)
    if config.baseline is not None:
        reset[offset:] = _resets(config, tracked, improves, first, work)
    inputs = {name: logs[name][start:] for name in (*policy.requires, *policy.optional) if name in logs}
    stops = first_stops(policy, start, tracked[start:], adopted, reset, inputs, limit - start, offset)
    return np.where(stops < width - start, stops + start, width)
