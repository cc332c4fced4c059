"""Replay recorded learning curves through a Monitor: what would a rule have cost and saved?

Every run of a curve bank was trained to its last epoch, so any stopping rule
can be replayed offline: feed the epochs one at a time to a fresh
[`Monitor`][earlystop_core.Monitor] until it stops, keep the epoch it would have
kept, and compare with hindsight. Per run:

* ``saved = (n - 1 - stop) / n``: the share of the ``n`` epochs not run
  (``stop = n - 1`` when the monitor never stops);
* ``kept``: the best epoch when the final decision restores the best weights,
  else the stop epoch;
* ``oracle``: the best epoch of the monitored quantity over the whole run
  (first on ties), or of a ``reference`` metric so that rules monitoring
  different quantities are measured against one yardstick;
* ``regret``: how much worse the ``target`` is at ``kept`` than at ``oracle``
  (positive = worse), in the target's units whatever its direction;
* ``gain``: how much better the ``target`` is at ``kept`` than at the last
  epoch (positive = better): the effect against training to the end (at the
  last epoch the target was logged at, when the run ends on an epoch without
  it: validation every few epochs, a trial cut short).

This is the simple, scalar replay (one Python call per epoch, exactly the
Monitor users run). [`earlystop_core.replay.engine.evaluate`][earlystop_core.evaluate] gives the same
results for a whole bank at once, vectorised with numpy across runs when the
strategy allows. Compare two rules run by run with
`paired_bootstrap`: regret is heavy-tailed, so unpaired means differ by
noise.

Examples:
    >>> from earlystop_core import Monitor
    >>> curve = {"val_loss": [1.0, 0.8, 0.9, 0.95, 0.7], "test_accuracy": [0.5, 0.7, 0.65, 0.6, 0.8]}
    >>> r = replay_run(curve, lambda: Monitor(patience=2, restore_best_weights=True))
    >>> r.stop, r.kept, r.oracle, round(r.saved, 2), round(r.regret, 2), round(r.gain, 2)
    (3, 1, 4, 0.2, 0.1, -0.1)
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from earlystop_core.curves import best_epoch, epochs
from earlystop_core.errors import MissingMetricError
from earlystop_core.modes import Mode, resolve_mode
from earlystop_core.monitor import Monitor
from earlystop_core.rules.base import Rule
from earlystop_core.signals import WeightedScore

__all__ = [
    "RunResult",
    "Summary",
    "check_replayable",
    "paired_bootstrap",
    "replay",
    "replay_run",
    "summarize",
]

ON_ERROR = ("raise", "skip")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of replaying one run (see the module docstring for the definitions).

    Attributes:
        run: The run's id (empty when replayed alone with `replay_run`).
        epochs: The run's length ``n``.
        stop: The last epoch run (``n - 1`` when the monitor never stopped).
        stopped: Whether the monitor told training to stop.
        kept: The epoch whose weights training ends with.
        oracle: The best epoch of the monitored (or reference) quantity in hindsight.
        saved: ``(n - 1 - stop) / n``.
        regret: How much worse the target is at ``kept`` than at ``oracle`` (positive = worse).
        gain: How much better the target is at ``kept`` than at the last epoch it was logged at (positive =
            better).
    """

    run: str
    epochs: int
    stop: int
    stopped: bool
    kept: int
    oracle: int
    saved: float
    regret: float
    gain: float


@dataclasses.dataclass(frozen=True)
class Summary:
    """Means over replayed runs.

    Attributes:
        runs: How many runs.
        epochs_run: Mean epochs run (``stop + 1``).
        saved: Mean per-run share of epochs saved (a fraction, not a percentage).
        regret: Mean regret, in the target's units.
        gain: Mean gain, in the target's units.
    """

    runs: int
    epochs_run: float
    saved: float
    regret: float
    gain: float


def check_replayable(rule: Rule | None) -> None:
    """Raise ``ValueError`` for a rule whose decisions recorded logs cannot reproduce (a time budget)."""
    if rule is not None and not rule.replayable:
        raise ValueError(
            f"{rule!r} cannot be replayed: its decisions do not follow from the logged metrics (a time budget "
            "reads the clock); replay the rule without it"
        )


def replay_run(
    curve: Mapping[str, Sequence[float | None]],
    make_monitor: Callable[[], Monitor],
    target: str = "test_accuracy",
    target_mode: str = "max",
    *,
    reference: str | None = None,
    reference_mode: str = "auto",
    run: str = "",
) -> RunResult:
    """Replay one run through a fresh monitor from ``make_monitor()``.

    Each epoch's logs hold every metric of the curve at that epoch (so rules
    reading the training loss find it). The monitor is fed until it says stop;
    if it never does, [`Monitor.finish`][earlystop_core.Monitor.finish] gives the final decision.

    Args:
        curve: ``{metric: values by epoch}``, as `load_curves` returns.
        make_monitor: Builds a fresh [`Monitor`][earlystop_core.Monitor] (called once).
        target: The metric to judge the kept epoch by (never shown to the monitor's decision
            unless the monitor itself reads it).
        target_mode: ``"max"``, ``"min"`` or ``"auto"``: which way the target is better.
        reference: A metric whose best epoch is the oracle, instead of the monitored quantity:
            use one reference when comparing monitors that watch different quantities.
        reference_mode: The reference's direction (``"auto"`` infers it from the name).
        run: The run's id, recorded in the result.

    Raises:
        ValueError: The curve has no epochs, or the oracle's quantity is never finite.
        KeyError: The target (or reference) is not in the curve.

    Examples:
        A run that never stops, without and with restoring the best weights
        (a loss as target: lower is better, and regret is still positive = worse):

        >>> curve = {"val_loss": [1.0, 0.5, 0.6], "test_loss": [1.1, 0.6, 0.7]}
        >>> r = replay_run(curve, lambda: Monitor(patience=5), target="test_loss", target_mode="min")
        >>> r.stopped, r.stop, r.kept, r.saved, round(r.regret, 2), r.gain
        (False, 2, 2, 0.0, 0.1, 0.0)
        >>> r = replay_run(curve, lambda: Monitor(patience=5, restore_best_weights=True), "test_loss", "min")
        >>> r.kept, r.regret, round(r.gain, 2)
        (1, 0.0, 0.1)
    """
    goal = resolve_mode(target_mode, target)
    if target not in curve:
        raise KeyError(f"no target metric {target!r} in the curve; metrics: {', '.join(curve)}")
    values = curve[target]
    n = len(values)
    if n == 0:
        raise ValueError("the curve has no epochs")
    lengths = {name: len(series) for name, series in curve.items()}
    if set(lengths.values()) != {n}:
        raise ValueError(f"every metric of a curve needs one value per epoch, got lengths {lengths}")
    monitor = make_monitor()
    check_replayable(monitor.config.rule)
    decision = None
    for logs in epochs(curve):
        decision = monitor.update(logs)
        if decision.should_stop:
            break
    assert decision is not None
    stopped = decision.should_stop
    if not stopped:
        decision = monitor.finish()
    stop = decision.epoch if stopped else n - 1
    kept = decision.best_epoch if decision.restore and decision.best_epoch is not None else stop
    oracle = _oracle(curve, monitor, reference, reference_mode)
    last = max((epoch for epoch, value in enumerate(values) if value is not None), default=n - 1)
    at_oracle, at_kept, at_last = (_number(values[epoch]) for epoch in (oracle, kept, last))
    if goal == "max":
        regret, gain = at_oracle - at_kept, at_kept - at_last
    else:
        regret, gain = at_kept - at_oracle, at_last - at_kept
    return RunResult(run, n, stop, stopped, kept, oracle, (n - 1 - stop) / n, regret, gain)


def replay(
    curves: Mapping[str, Mapping[str, Sequence[float | None]]],
    make_monitor: Callable[[], Monitor],
    target: str = "test_accuracy",
    target_mode: str = "max",
    *,
    reference: str | None = None,
    reference_mode: str = "auto",
    on_error: str = "raise",
) -> list[RunResult]:
    """Replay every run of ``{run: curve}``, in order (see `replay_run`).

    Args:
        on_error: ``"raise"`` (the default; the message says which run) or
            ``"skip"``: leave out a run whose replay raised ``ValueError``,
            ``KeyError`` or ``ArithmeticError`` (a rule that cannot handle a
            value, a missing metric); compare ``len(result)`` with the number
            of runs, and the ``run`` fields, to see which.

    Examples:
        >>> curves = {"a": {"val_loss": [1.0, 0.9, 1.2, 1.3], "test_accuracy": [0.5, 0.6, 0.55, 0.5]},
        ...           "b": {"val_loss": [1.0, 0.8, 0.7, 0.6], "test_accuracy": [0.5, 0.6, 0.7, 0.8]}}
        >>> results = replay(curves, lambda: Monitor(patience=1, restore_best_weights=True))
        >>> [(r.run, r.stop, r.kept, r.regret) for r in results]
        [('a', 2, 1, 0.0), ('b', 3, 3, 0.0)]
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of 'raise', 'skip', got {on_error!r}")
    results = []
    for run, curve in curves.items():
        try:
            result = replay_run(
                curve, make_monitor, target, target_mode, reference=reference, reference_mode=reference_mode, run=run
            )
        except (ValueError, KeyError, ArithmeticError) as error:
            if on_error == "skip":
                continue
            if sys.version_info >= (3, 11):
                error.add_note(f"while replaying run {run!r}")
            raise
        results.append(result)
    return results


def summarize(results: Iterable[RunResult]) -> Summary:
    """Means over runs: epochs run, share of epochs saved, regret and gain.

    Examples:
        >>> r = RunResult("a", epochs=10, stop=4, stopped=True, kept=2, oracle=3, saved=0.5, regret=0.02, gain=0.01)
        >>> summarize([r, dataclasses.replace(r, stop=9, saved=0.0, regret=0.0, gain=0.03)])
        Summary(runs=2, epochs_run=7.5, saved=0.25, regret=0.01, gain=0.02)
    """
    items = list(results)
    if not items:
        raise ValueError("no results to summarize")
    count = len(items)
    return Summary(
        runs=count,
        epochs_run=math.fsum(r.stop + 1 for r in items) / count,
        saved=math.fsum(r.saved for r in items) / count,
        regret=math.fsum(r.regret for r in items) / count,
        gain=math.fsum(r.gain for r in items) / count,
    )


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], n: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a[i] - b[i]`` with a 95% percentile bootstrap interval, resampling runs.

    Pair the values of two strategies run by run (e.g. their regrets); the
    interval is over ``n`` resamples of the runs with replacement, from a
    generator seeded with ``seed``, so it is reproducible.

    Returns:
        ``(mean difference, low, high)``.

    Examples:
        >>> mean, low, high = paired_bootstrap([0.1, 0.0, 0.3, 0.2], [0.0, 0.0, 0.1, 0.1])
        >>> round(mean, 3), low <= mean <= high
        (0.1, True)
    """
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"need two equally long sequences of paired values, got lengths {x.shape} and {y.shape}")
    if x.size == 0:
        raise ValueError("need at least one pair of values")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"'n' must be an int >= 1, got {n!r}")
    diff = x - y
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def _number(value: float | None) -> float:
    """A value of a curve, NaN where the metric was not logged."""
    return math.nan if value is None else value


def _oracle(
    curve: Mapping[str, Sequence[float | None]], monitor: Monitor, reference: str | None, reference_mode: str
) -> int:
    if reference is not None:
        if reference not in curve:
            raise KeyError(f"no reference metric {reference!r} in the curve; metrics: {', '.join(curve)}")
        return _best(curve[reference], resolve_mode(reference_mode, reference), reference)
    config = monitor.config
    mode: Mode = config.mode
    if isinstance(config.monitor, str):
        return _best(curve[config.monitor], mode, config.monitor)
    score = WeightedScore(config.monitor, config.metric_modes or "auto", config.normalize)
    return _best([_score(score, logs) for logs in epochs(curve)], mode, config.name)


def _best(values: Sequence[float | None], mode: Mode, name: str) -> int:
    """The best epoch in hindsight; a run without one (diverged from the start) is refused, its metric named."""
    try:
        return best_epoch(values, mode)
    except ValueError:
        raise no_best_epoch(name, len(values)) from None


def no_best_epoch(name: str, epochs: int) -> ValueError:
    """The error for a run whose ``name`` never has a finite value: no best epoch to measure regret against."""
    return ValueError(
        f"{name!r} has no finite value in {epochs} epoch(s) (NaN, infinite or not logged throughout: a run "
        "that diverged from the start): there is no best epoch to measure regret against"
    )


def _score(score: WeightedScore, logs: Mapping[str, float]) -> float | None:
    """The weighted score of an epoch's logs, None when a metric of it was not logged then."""
    try:
        return score.read(logs)
    except MissingMetricError:
        return None
