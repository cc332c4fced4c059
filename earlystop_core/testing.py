"""A testing kit: hypothesis strategies for metric sequences, and conformance checks for rules and training loops.

Our own suite proves the engine with property-based tests over generated metric
sequences; this module hands the same tools to users. It needs hypothesis, an
optional dependency (``pip install "earlystop[testing]"``): ``import earlystop_core``
never imports it, and nothing in the package imports this module.

- **Strategies**: `metric_sequences` (one metric's values over a run:
  loss-like or accuracy-like curves with noise, plateaus and exact ties,
  spikes, late overfitting, NaN/inf and epochs without validation),
  `logs` (a run's logs: ``loss``, ``val_loss`` and ``val_accuracy``,
  consistent with each other) and `monitor_configs` (valid ``Monitor``
  arguments).
- **Checks**: `check_rule` runs a stopping rule of your own inside
  Monitors over generated logs and asserts the contract every rule keeps
  (deterministic, ``reset``, ``spec``, resume at every epoch, strict JSON
  state, no stop on an improving epoch, ``mode="max"``, composition);
  `check_monitor_loop` drives your training-loop integration and
  compares it with a plain Monitor.

A violation raises an ``AssertionError`` naming the property and showing the
smallest counterexample hypothesis found. Checks are deterministic by default
(a fixed seed per property), so they do not make a CI flaky. Call them from
plain test functions, not from inside a hypothesis test of your own.

Examples:
    >>> from earlystop_core import Patience
    >>> check_rule(Patience(3))  # passes: returns None
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError as error:  # pragma: no cover - run in a subprocess without hypothesis by the tests
    raise ImportError(
        'earlystop_core.testing needs hypothesis, an optional dependency: pip install "earlystop[testing]" '
        "(or pip install hypothesis)"
    ) from error

from earlystop_core import AllOf, AnyOf, Decision, Monitor, Patience, Rule, StopReason, never

__all__ = ["Clock", "PROPERTIES", "check_monitor_loop", "check_rule", "logs", "metric_sequences", "monitor_configs"]

T = TypeVar("T")

#: The properties `check_rule` checks, in the order it checks them.
PROPERTIES = ("deterministic", "json", "resume", "reset", "spec", "improved", "mode", "composition")

#: The values a run's metric starts from (shrinking goes to the first): common initial losses.
_STARTS = (1.0, 2.0, 0.5, 0.7, 2.3, 4.6, 0.25, 9.0)
#: How much worse than the curve a spike is.
_SPIKES = (2.0, 3.0, 10.0)
_NON_FINITE = (math.nan, math.inf, -math.inf)
#: Baselines and thresholds on the scale of the default curves (eighths, exact in float32).
_LOSS_GRID = st.integers(0, 40).map(lambda k: k / 8)
_MIN_DELTAS = st.sampled_from([0.0, 0.001, 0.01, 0.1, -0.01])
_GUARDS = (StopReason.NON_FINITE_METRIC, StopReason.STOPPING_THRESHOLD, StopReason.DIVERGENCE_THRESHOLD)
_KEY, _TRAIN, _ACCURACY = "val_loss", "loss", "val_accuracy"


# -- strategies ---------------------------------------------------------------------------------------------------


class _Curve(NamedTuple):
    values: list[float | None]  # the metric, None where the epoch was not validated
    trend: list[float]  # the loss level underneath, without noise, spikes or overfitting (a training loss)


def metric_sequences(
    *,
    min_size: int = 0,
    max_size: int = 30,
    direction: str = "min",
    noise: float = 0.1,
    plateaus: bool = True,
    spikes: bool = True,
    overfitting: bool = True,
    non_finite: bool | Iterable[float] = False,
    missing: bool = False,
    values: st.SearchStrategy[float] | None = None,
) -> st.SearchStrategy[list[float | None]]:
    """One metric's values over a run, one per epoch (``None``: an epoch without validation).

    A run is a learning curve: it starts from a common initial loss (1.0, 2.3,
    0.7...), decays exponentially towards a floor (or stays flat), and may
    rise again late (overfitting). Each epoch then may be off the curve:
    noisy, an exact repeat of the previous value (plateaus and exact ties),
    a spike, a NaN or infinity, or missing. Values have six significant
    digits, as logs print them. Shrinking goes to a flat curve without noise,
    so counterexamples read as short runs of one repeated value.

    Args:
        min_size: The fewest epochs.
        max_size: The most epochs.
        direction: ``"min"``: loss-like values (>= 0, falling); ``"max"``:
            accuracy-like values in [0, 1] (rising), the loss curve through
            ``1 / (1 + loss)``.
        noise: The largest relative jitter of an epoch, in [0, 1) (0: smooth).
        plateaus: Some epochs repeat the previous value exactly.
        spikes: Some epochs are 2-10 times worse than the curve.
        overfitting: The curve may turn and rise from some epoch on.
        non_finite: Inject non-finite values: ``True`` for NaN, inf and -inf,
            or the values to inject (e.g. ``[math.nan, math.inf]`` for a
            metric that must stay >= 0).
        missing: Some epochs are ``None`` (not validated: pair with ``on_missing="skip"``).
        values: Draw every epoch independently from this strategy instead of a
            curve (adversarial values for testing the engine itself);
            ``direction``, ``noise``, ``plateaus``, ``spikes`` and
            ``overfitting`` then do not apply.

    Examples:
        >>> from hypothesis import find
        >>> find(metric_sequences(min_size=3), lambda run: True)  # the simplest run: flat
        [1.0, 1.0, 1.0]
        >>> run = find(metric_sequences(direction="max", min_size=5), lambda run: len(set(run)) > 3)
        >>> all(0.0 <= value <= 1.0 for value in run)
        True
    """
    injected = _check_sizes_and_injected(min_size, max_size, non_finite)
    if values is not None:
        elements: st.SearchStrategy[Any] = values
        if injected:
            elements = elements | st.sampled_from(injected)
        if missing:
            elements = elements | st.none()
        return st.lists(elements, min_size=min_size, max_size=max_size)
    if direction not in ("min", "max"):
        raise ValueError(f"direction must be 'min' (loss-like) or 'max' (accuracy-like), got {direction!r}")
    _check_noise(noise)
    curves = _curves(min_size, max_size, direction, noise, plateaus, spikes, overfitting, injected, missing)
    return curves.map(lambda curve: curve.values)


def logs(
    *,
    min_size: int = 0,
    max_size: int = 30,
    noise: float = 0.1,
    plateaus: bool = True,
    spikes: bool = True,
    overfitting: bool = True,
    non_finite: bool | Iterable[float] = False,
    missing: bool = False,
    extra: Iterable[str] = (),
    names: Mapping[str, str] | None = None,
) -> st.SearchStrategy[list[dict[str, float]]]:
    """A run's logs, one dict per epoch: ``loss``, ``val_loss`` and ``val_accuracy``, consistent with each other.

    ``val_loss`` is a `metric_sequences` curve (same knobs);
    ``val_accuracy`` falls as it rises (``1 / (1 + val_loss)``, lowered by up
    to ``noise`` / 2 now and then, so that the two metrics sometimes disagree
    on the best epoch; NaN where ``val_loss`` is not finite); ``loss``, the
    training loss, follows the curve's trend below it, keeps falling when
    ``val_loss`` overfits, and is logged at every epoch. An epoch without
    validation (``missing``) has ``loss`` only.

    Args:
        min_size: The fewest epochs.
        max_size: The most epochs.
        noise: As in `metric_sequences`.
        plateaus: As in `metric_sequences`.
        spikes: As in `metric_sequences`.
        overfitting: As in `metric_sequences`.
        non_finite: Non-finite ``val_loss`` values to inject, as in `metric_sequences`.
        missing: Some epochs have no ``val_loss`` and ``val_accuracy``.
        extra: Other metrics to log at every epoch (what a rule of your own
            reads, its ``requires``): each a positive number, multiples of 1/16.
        names: Log metrics under other names, ``{name: logged name}``, as
            ``Monitor(names=...)`` reads them (e.g. ``{"val_loss": "eval_loss"}``).

    Examples:
        >>> from hypothesis import find
        >>> find(logs(min_size=2), lambda run: True)
        [{'loss': 0.5, 'val_loss': 1.0, 'val_accuracy': 0.5}, {'loss': 0.5, 'val_loss': 1.0, 'val_accuracy': 0.5}]
        >>> find(logs(names={"val_loss": "eval_loss"}), lambda run: len(run) == 1)
        [{'loss': 0.5, 'eval_loss': 1.0, 'val_accuracy': 0.5}]
        >>> from hypothesis import settings
        >>> once = settings(derandomize=True, database=None)  # the same search on every machine
        >>> find(logs(missing=True), lambda run: len(run) >= 2 and "val_loss" not in run[-1], settings=once)
        [{'loss': 0.5, 'val_loss': 1.0, 'val_accuracy': 0.5}, {'loss': 0.5}]
    """
    injected = _check_sizes_and_injected(min_size, max_size, non_finite)
    _check_noise(noise)
    extras = _names("extra", extra)
    renamed = dict(names or {})
    if not all(isinstance(k, str) and isinstance(v, str) and k and v for k, v in renamed.items()):
        raise TypeError(
            f"'names' must map metric names to logged names, e.g. {{'val_loss': 'eval_loss'}}, got {names!r}"
        )
    clash = sorted(set(extras) & {_TRAIN, _KEY, _ACCURACY})
    if clash:
        raise ValueError(f"extra={extras!r} repeats {clash[0]!r}, which logs() always logs; drop it from extra")
    curves = _curves(min_size, max_size, "min", noise, plateaus, spikes, overfitting, injected, missing)
    return _runs(curves, noise, tuple(extras), renamed)


def monitor_configs(
    *,
    monitor: str = _KEY,
    mode: str | None = None,
    values: st.SearchStrategy[float] | None = None,
    patience: bool | st.SearchStrategy[int] = True,
    min_delta: st.SearchStrategy[float] | None = None,
    stopping_threshold: bool = True,
    divergence_threshold: bool = True,
    non_finite: bool = False,
    missing: bool = False,
    beyond_keras: bool = False,
    rule: Rule | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid ``Monitor`` keyword arguments: ``Monitor(**config)`` never refuses one.

    Drawn: ``mode``, ``patience``, ``min_delta``, ``baseline``,
    ``start_from_epoch``, ``restore_best_weights``, the two thresholds (in a
    consistent order: ``stopping_threshold`` on the good side of
    ``divergence_threshold``) and, on request, ``check_finite``,
    ``on_missing`` and the settings beyond Keras's. Shrinking goes to the
    defaults.

    Args:
        monitor: The metric name.
        mode: ``"min"`` or ``"max"``; None draws one.
        values: Where ``baseline`` and the thresholds are drawn from (default:
            multiples of 1/8 in [0, 5], the scale of `metric_sequences`).
        patience: Draw a patience (0-5), draw it from this strategy, or
            (False) leave it out.
        min_delta: Where ``min_delta`` is drawn from (default: 0, 0.001, 0.01,
            0.1 or -0.01; the sign is ignored, as in Keras).
        stopping_threshold: Draw a ``stopping_threshold`` (or None).
        divergence_threshold: Draw a ``divergence_threshold`` (or None).
        non_finite: Also draw ``check_finite`` (for sequences with NaN or inf).
        missing: Set ``on_missing="skip"`` (for sequences with missing epochs).
        beyond_keras: Also draw ``min_delta_mode``, ``best_from_epoch`` and ``smoothing``.
        rule: Decide with this rule (``rule=``; no patience is drawn then).

    Examples:
        >>> from hypothesis import find
        >>> find(monitor_configs(mode="min"), lambda config: True)
        {'monitor': 'val_loss', 'mode': 'min', 'patience': 0, 'min_delta': 0.0, 'baseline': None,
         'start_from_epoch': 0, 'restore_best_weights': False, 'stopping_threshold': None, 'divergence_threshold': None}
    """
    if mode not in (None, "min", "max"):
        raise ValueError(f"mode must be 'min', 'max' or None (drawn), got {mode!r}")
    if rule is not None and not isinstance(rule, Rule):
        raise TypeError(f"'rule' must be a Rule, got {type(rule).__name__} ({rule!r})")
    if isinstance(patience, bool):
        patiences: st.SearchStrategy[int] | None = st.integers(0, 5) if patience else None
    else:
        patiences = patience
    return _configs(
        monitor,
        mode,
        _LOSS_GRID if values is None else values,
        None if rule is not None else patiences,
        _MIN_DELTAS if min_delta is None else min_delta,
        stopping_threshold,
        divergence_threshold,
        non_finite,
        missing,
        beyond_keras,
        rule,
    )


@st.composite
def _curves(
    draw: st.DrawFn,
    min_size: int,
    max_size: int,
    direction: str,
    noise: float,
    plateaus: bool,
    spikes: bool,
    overfitting: bool,
    injected: tuple[float, ...],
    missing: bool,
) -> _Curve:
    start = draw(st.sampled_from(_STARTS))
    rate = draw(st.integers(0, 50)) / 100  # per epoch; 0 (the shrink target) is a flat run
    floor = start * draw(st.integers(0, 9)) / 10
    rise_from = draw(st.none() | st.integers(1, max(1, max_size - 1))) if overfitting else None
    rise = start * draw(st.integers(1, 10)) / 100 if rise_from is not None else 0.0
    # Weighted by repetition; the first, where shrinking goes, is an epoch on the curve.
    kinds = ["curve"] * 12 + ["tie"] * 4 * plateaus + ["spike"] * spikes + ["missing"] * 2 * missing
    kinds += ["non-finite"] * bool(injected)
    # One list element per epoch: its kind and a number k in [-10, 10], the noise (k / 10 of ``noise``), or which
    # spike factor or non-finite value. Shrinking deletes epochs and takes each to a smooth one (k = 0).
    epoch_draws = st.tuples(st.sampled_from(kinds) if len(kinds) > 12 else st.just("curve"), st.integers(-10, 10))
    # In three stretches: hypothesis's lists are short on average (about five elements), and deleting elements
    # of each stretch still shrinks a run to its shortest.
    stretches = [max_size // 3 + (k < max_size % 3) for k in range(3)]
    least = [min(size, max(0, min_size - sum(stretches[:k]))) for k, size in enumerate(stretches)]
    epochs = [
        item
        for low, high in zip(least, stretches, strict=True)
        for item in draw(st.lists(epoch_draws, min_size=low, max_size=high))
    ]
    values: list[float | None] = []
    trend: list[float] = []
    previous: float | None = None
    for epoch, (kind, k) in enumerate(epochs):
        level = floor + (start - floor) * (1.0 - rate) ** epoch
        trend.append(level)
        if rise_from is not None and epoch > rise_from:
            level += rise * (epoch - rise_from)
        if kind == "missing":
            values.append(None)
            continue
        if kind == "non-finite":
            values.append(injected[abs(k) % len(injected)])
            continue
        if kind == "tie" and previous is not None:
            values.append(previous)
            continue
        level *= _SPIKES[abs(k) % len(_SPIKES)] if kind == "spike" else 1.0 + noise * k / 10
        value = _six_digits(level if direction == "min" else 1.0 / (1.0 + level))
        values.append(value)
        previous = value
    return _Curve(values, trend)


@st.composite
def _runs(
    draw: st.DrawFn,
    curves: st.SearchStrategy[_Curve],
    noise: float,
    extra: tuple[str, ...],
    names: dict[str, str],
) -> list[dict[str, float]]:
    curve = draw(curves)
    gap = draw(st.integers(5, 10)) / 10  # the training loss sits this far below the validation loss's trend
    size = len(curve.values)
    lowers = draw(st.lists(st.integers(0, 10), min_size=size, max_size=size)) if noise else [0] * size
    run = []
    for value, level, lowered in zip(curve.values, curve.trend, lowers, strict=True):
        entry = {_TRAIN: _six_digits(gap * level)}
        if value is not None:
            entry[_KEY] = value
            if math.isfinite(value) and value >= 0.0:
                entry[_ACCURACY] = _six_digits(1.0 / (1.0 + value) * (1.0 - noise / 2 * lowered / 10))
            else:  # a diverged model's accuracy is not worth reading
                entry[_ACCURACY] = math.nan
        for name in extra:
            entry[name] = draw(st.integers(1, 64)) / 16
        run.append({names.get(key, key): number for key, number in entry.items()})
    return run


@st.composite
def _configs(
    draw: st.DrawFn,
    monitor: str,
    mode: str | None,
    values: st.SearchStrategy[float],
    patience: st.SearchStrategy[int] | None,
    min_delta: st.SearchStrategy[float],
    stopping_threshold: bool,
    divergence_threshold: bool,
    non_finite: bool,
    missing: bool,
    beyond_keras: bool,
    rule: Rule | None,
) -> dict[str, Any]:
    chosen = mode or draw(st.sampled_from(["min", "max"]))
    config: dict[str, Any] = {"monitor": monitor, "mode": chosen}
    if patience is not None:
        config["patience"] = draw(patience)
    config["min_delta"] = draw(min_delta)
    config["baseline"] = draw(st.none() | values)
    config["start_from_epoch"] = draw(st.integers(0, 4))
    config["restore_best_weights"] = draw(st.booleans())
    if non_finite:
        config["check_finite"] = draw(st.sampled_from([True, False]))
    if missing:
        config["on_missing"] = "skip"
    stopping = draw(st.none() | values) if stopping_threshold else None
    divergence = draw(st.none() | values) if divergence_threshold else None
    if stopping is not None and divergence is not None:
        hypothesis.assume(stopping != divergence)
        low, high = sorted([stopping, divergence])
        stopping, divergence = (low, high) if chosen == "min" else (high, low)
    config["stopping_threshold"] = stopping
    config["divergence_threshold"] = divergence
    if beyond_keras:
        config["min_delta_mode"] = draw(st.sampled_from(["abs", "rel"]))
        config["best_from_epoch"] = draw(st.integers(0, 3))
        config["smoothing"] = draw(st.sampled_from([0.0, 0.5, 0.9]))
    if rule is not None:
        config["rule"] = rule
    return config


def _six_digits(value: float) -> float:
    return float(f"{value:.6g}")


def _check_sizes_and_injected(min_size: int, max_size: int, non_finite: bool | Iterable[float]) -> tuple[float, ...]:
    for name, size in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"{name!r} must be an int >= 0, got {size!r}")
    if min_size > max_size:
        raise ValueError(f"min_size ({min_size}) must be <= max_size ({max_size})")
    if isinstance(non_finite, bool):
        return _NON_FINITE if non_finite else ()
    injected = tuple(float(value) for value in non_finite)
    if any(value - value == 0.0 for value in injected):
        raise ValueError(f"non_finite takes non-finite values (nan, inf, -inf), got {list(injected)!r}")
    return injected


def _check_noise(noise: float) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise < 1.0:
        raise ValueError(f"'noise' must be a number in [0, 1), got {noise!r}")


def _names(what: str, names: Iterable[str], kind: str = "metric names") -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{what!r} must be a list of {kind}, got the string {names!r}")
    found = list(names)
    if not all(isinstance(name, str) and name for name in found):
        raise TypeError(f"{what!r} must be a list of {kind}, got {found!r}")
    return found


# -- running rules and monitors -----------------------------------------------------------------------------------


class Clock:
    """Seconds that move only when the kit moves them: the clock of a rule that reads one (``TimeBudget``).

    `check_rule` given a factory, ``check_rule(lambda clock: TimeBudget(60, clock=clock))``,
    builds every rule it checks on a fresh ``Clock`` and advances it before
    each epoch by the epoch's drawn duration (whole seconds), and by a drawn
    pause between saving and resuming (time that is not training time). Copies
    of a rule share its clock, as they share time.

    Examples:
        >>> clock = Clock()
        >>> clock.advance(2.5)
        >>> clock() - Clock()()
        2.5
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``."""
        self.now += seconds

    def __deepcopy__(self, memo: dict[int, Any]) -> Clock:
        return self  # a Monitor's copy of the rule must read the clock the kit moves

    def __repr__(self) -> str:
        return f"Clock(now={self.now!r})"


class _Example(NamedTuple):
    """One generated case: the Monitor's settings (but the rule), the logs, and how long each epoch takes."""

    settings: dict[str, Any]
    logs: list[dict[str, float]]
    seconds: list[int] | None  # per epoch, with a clock
    pause: int  # seconds between saving and resuming, with a clock
    before: list[dict[str, float]]  # the run before a reset (the reset property)
    before_seconds: list[int] | None  # per epoch of that run, with a clock


class _Subject:
    """The rule under check: a Rule to copy, or a factory called with a fresh clock for each Monitor."""

    def __init__(self, rule: Rule | Callable[[Clock], Rule], label: str | None = None) -> None:
        if isinstance(rule, Rule):
            self.factory: Callable[[Clock], Rule] | None = None
            self.sample = rule
        elif callable(rule):
            self.factory = rule
            self.sample = rule(Clock())
            if not isinstance(self.sample, Rule):
                raise TypeError(
                    f"check_rule takes a Rule, or a factory taking a Clock and returning a Rule; the factory returned "
                    f"{type(self.sample).__name__} ({self.sample!r})"
                )
        else:
            raise TypeError(
                "check_rule takes a Rule, or a factory taking a Clock and returning a Rule (for a rule reading a "
                f"clock, e.g. lambda clock: TimeBudget(60, clock=clock)); got {type(rule).__name__} ({rule!r})"
            )
        self.label = label or repr(self.sample)

    @property
    def clocked(self) -> bool:
        return self.factory is not None

    def make(self, clock: Clock) -> Rule:
        return copy.deepcopy(self.sample) if self.factory is None else self.factory(clock)

    def combined(self, partner: Rule, operator: str) -> _Subject:
        def build(clock: Clock) -> Rule:
            mine, theirs = self.make(clock), copy.deepcopy(partner)
            return mine | theirs if operator == "|" else theirs & mine

        shown = f"{self.label} | {partner!r}" if operator == "|" else f"{partner!r} & {self.label}"
        subject = _Subject(build if self.clocked else build(Clock()), shown)
        return subject


class _PropertyError(AssertionError):
    """A property does not hold on an example (the message is written by `report`)."""

    def __init__(self, what: str, example: _Example, details: Sequence[str] = (), reset: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.example = example
        self.details = list(details)
        self.reset = reset  # the run before the reset is part of the counterexample


def _fail(what: str, example: _Example, *details: str) -> _PropertyError:
    return _PropertyError(what, example, details)


class _Run(NamedTuple):
    decisions: list[Decision]
    monitor: Monitor


def _new_monitor(
    subject: _Subject, example: _Example, clock: Clock, settings: Mapping[str, Any] | None = None
) -> Monitor:
    arguments = example.settings if settings is None else settings
    try:
        return Monitor(rule=subject.make(clock), **arguments)
    except Exception as error:  # a Monitor refusing the rule: no decision can be checked
        raise _fail(f"a Monitor refuses the rule: {_error(error)}", example) from None


def _feed(
    monitor: Monitor,
    entries: Sequence[Mapping[str, float]],
    example: _Example,
    clock: Clock,
    first: int = 0,
    seconds: Sequence[int] | None = None,
) -> list[Decision]:
    """Feed ``entries`` (epochs ``first``, ``first + 1``...), moving the clock by each epoch's duration first.

    ``seconds`` are the epochs' durations (by default the example's, of its ``logs``).
    """
    durations = example.seconds if seconds is None else seconds
    decisions = []
    for offset, entry in enumerate(entries):
        epoch = first + offset
        if durations is not None:
            clock.advance(durations[epoch])
        try:
            decisions.append(monitor.update(entry))
        except Exception as error:
            raise _fail(f"the Monitor raised at epoch {epoch}: {_error(error)}", example) from None
    return decisions


def _run(subject: _Subject, example: _Example, settings: Mapping[str, Any] | None = None, entries: Any = None) -> _Run:
    clock = Clock()
    monitor = _new_monitor(subject, example, clock, settings)
    return _Run(_feed(monitor, example.logs if entries is None else entries, example, clock), monitor)


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _same(a: Any, b: Any) -> bool:
    """Equality of JSON-like data and Decisions, NaN equal to NaN, a tuple not equal to a list."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return type(a) is type(b) and bool(a == b)


def _first_difference(expected: Sequence[Decision], got: Sequence[Decision]) -> int | None:
    for epoch, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want != have and not _same(tuple(want), tuple(have)):  # == first: NaN is rare, and _same is slow
            return epoch
    return None if len(expected) == len(got) else min(len(expected), len(got))


def _strict_json(state: Any) -> Any:
    """``state`` through ``json.dumps(allow_nan=False)`` and back (raises TypeError or ValueError if it cannot)."""
    return json.loads(json.dumps(state, allow_nan=False))


_JSON_ADVICE = (
    "a rule's state_dict() must hold only dicts with str keys, lists, str, int, bool, None and finite floats "
    "(write non-finite floats as the strings 'nan', 'inf', '-inf')"
)


def _state(monitor: Monitor, example: _Example, when: str) -> dict[str, Any]:
    """``monitor.state_dict()``, or the violation that it cannot be saved (its JSON checksum fails on a non-JSON
    rule state)."""
    try:
        return monitor.state_dict()
    except Exception as error:
        try:
            mine = repr(monitor.rule.state_dict()) if monitor.rule is not None else "None"
        except Exception as inner:
            mine = f"(state_dict() raised {_error(inner)})"
        if isinstance(error, (TypeError, ValueError)):
            what = f"the state {when} is not strict JSON ({_error(error)})"
            raise _fail(what, example, f"the rule's state: {mine}", _JSON_ADVICE) from None
        raise _fail(f"Monitor.state_dict() raised {when}: {_error(error)}", example, f"the rule: {mine}") from None


def _as_json(state: dict[str, Any], example: _Example, when: str) -> Any:
    """``state`` read back from strict JSON, or the violation that it is not strict JSON."""
    try:
        return _strict_json(state)
    except (TypeError, ValueError) as error:
        raise _fail(
            f"the state {when} is not strict JSON ({_error(error)})",
            example,
            f"the rule's state: {_rule_state(state)!r}",
            _JSON_ADVICE,
        ) from None


def _rule_state(state: Mapping[str, Any]) -> Any:
    return state.get("state", {}).get("rule") if isinstance(state.get("state"), Mapping) else None


# -- the properties -----------------------------------------------------------------------------------------------


def _deterministic(subject: _Subject, example: _Example) -> None:
    first, second = _run(subject, example), _run(subject, example)
    epoch = _first_difference(first.decisions, second.decisions)
    if epoch is not None:
        raise _fail(
            "two Monitors with the same rule, fed the same logs, decide differently",
            example,
            *_compare(epoch, ("first run", first.decisions), ("second run", second.decisions)),
        )
    assert first.monitor.rule is not None and second.monitor.rule is not None
    try:  # the rule's own state, not the Monitor's: JSON is the property 'json'
        one, two = first.monitor.rule.state_dict(), second.monitor.rule.state_dict()
    except Exception as error:
        raise _fail(f"the rule's state_dict() raised: {_error(error)}", example) from None
    if not _same(one, two):
        raise _fail(
            "two Monitors with the same rule, fed the same logs, end with different rule states",
            example,
            f"first run:  {one!r}",
            f"second run: {two!r}",
        )


def _json(subject: _Subject, example: _Example) -> None:
    clock = Clock()
    monitor = _new_monitor(subject, example, clock)
    for epoch in range(-1, len(example.logs)):
        if epoch >= 0:
            _feed(monitor, example.logs[epoch : epoch + 1], example, clock, epoch)
        when = "before the first epoch" if epoch < 0 else f"after epoch {epoch}"
        state = _state(monitor, example, when)
        loaded = _as_json(state, example, when)
        if not _same(loaded, state):
            raise _fail(
                f"the state {when} changes in a JSON round trip",
                example,
                f"the rule's state:  {_rule_state(state)!r}",
                f"read back as JSON: {_rule_state(loaded)!r}",
                "(tuples come back as lists, int keys as str keys: save lists and str keys)",
            )


def _resume(subject: _Subject, example: _Example) -> None:
    whole = _run(subject, example)
    expected = whole.decisions
    expected_end = whole.monitor.finish()
    expected_state = _state(whole.monitor, example, "at the end")
    for split in range(len(example.logs) + 1):
        clock = Clock()
        before = _new_monitor(subject, example, clock)
        head = _feed(before, example.logs[:split], example, clock)
        saved_when = "before epoch 0" if split == 0 else f"after epoch {split - 1}"
        saved = _as_json(_state(before, example, saved_when), example, f"saved {saved_when}")
        clock.advance(example.pause)
        after = _new_monitor(subject, example, clock)
        try:
            after.load_state_dict(saved)
        except Exception as error:
            raise _fail(
                f"a new Monitor refuses the state saved {saved_when}: {_error(error)}",
                example,
                f"the rule's saved state: {_rule_state(saved)!r}",
            ) from None
        resumed = head + _feed(after, example.logs[split:], example, clock, split)
        epoch = _first_difference(expected, resumed)
        if epoch is not None:
            raise _fail(
                f"a Monitor saved {saved_when} and resumed in a new one decides differently from an uninterrupted run",
                example,
                f"split: the state saved {saved_when} (rule's state {_rule_state(saved)!r}), "
                f"loaded into a new Monitor{_pause(example)}",
                *_compare(epoch, ("uninterrupted", expected), ("resumed", resumed)),
            )
        end, state = after.finish(), _state(after, example, "at the end")
        if not _same(tuple(end), tuple(expected_end)):
            raise _fail(
                f"resumed {saved_when}, the Monitor's finish() differs from an uninterrupted run's",
                example,
                f"uninterrupted: {expected_end!r}",
                f"resumed:       {end!r}",
            )
        if not _same(state, expected_state):
            mine, theirs = _rule_state(state), _rule_state(expected_state)
            whose = "the rule" if not _same(mine, theirs) else "the Monitor"
            shown = (mine, theirs) if whose == "the rule" else (state, expected_state)
            raise _fail(
                f"resumed {saved_when}, {whose} ends in another state than an uninterrupted run's",
                example,
                f"uninterrupted: {shown[1]!r}",
                f"resumed:       {shown[0]!r}",
            )


def _reset(subject: _Subject, example: _Example) -> None:
    clock = Clock()
    used = _new_monitor(subject, example, clock)
    try:
        _feed(used, example.before, example, clock, seconds=example.before_seconds)
    except _PropertyError as broken:  # the run before the reset is part of the counterexample
        raise _PropertyError(f"before reset(): {broken.what}", example, broken.details, reset=True) from None
    used.finish()
    used.reset()
    fresh_clock = Clock()
    fresh = _new_monitor(subject, example, fresh_clock)
    after_reset = _rule_state(_state(used, example, "after reset()"))
    new = _rule_state(_state(fresh, example, "of a new Monitor"))
    if not _same(after_reset, new):
        raise _PropertyError(
            "after reset() the rule remembers the run before",
            example,
            [f"after reset(): {after_reset!r}", f"a new rule:    {new!r}"],
            reset=True,
        )
    again = _feed(used, example.logs, example, clock)
    expected = _feed(fresh, example.logs, example, fresh_clock)
    epoch = _first_difference(expected, again)
    if epoch is not None:
        raise _PropertyError(
            "after reset() a Monitor decides differently from a new one",
            example,
            _compare(epoch, ("new Monitor", expected), ("after reset()", again)),
            reset=True,
        )


def _spec(subject: _Subject, example: _Example, from_spec: Callable[[dict[str, Any]], Rule] | None) -> None:
    rule = subject.make(Clock())
    try:
        spec = rule.spec()
        loaded = _strict_json(spec)
    except (TypeError, ValueError) as error:
        raise _fail(f"spec() is not strict JSON: {_error(error)}", example) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("rule"), str):
        raise _fail(f"spec() must be a dict naming the rule ({{'rule': 'MyRule', ...}}), got {spec!r}", example)
    if not _same(loaded, spec):
        raise _fail(f"spec() changes in a JSON round trip: {spec!r} reads back as {loaded!r}", example)
    run = _run(subject, example)
    assert run.monitor.rule is not None
    if not _same(run.monitor.rule.spec(), spec):
        raise _fail(
            "spec() changes as the rule sees epochs: it must hold the rule's parameters, not its memory",
            example,
            f"a new rule:          {spec!r}",
            f"after the epochs:    {run.monitor.rule.spec()!r}",
        )
    try:
        rebuilt = from_spec(loaded) if from_spec is not None else _from_spec(loaded, _classes(rule))
    except Exception as error:
        raise _fail(
            f"the rule cannot be rebuilt from its spec {spec!r}: {_error(error)}",
            example,
            "spec() must hold the constructor's arguments by name (MyRule(**params) rebuilds it), or pass "
            "check_rule(rule, from_spec=...) to say how",
        ) from None
    if not _same(rebuilt.spec(), spec) or rebuilt != rule:
        raise _fail(
            "the rule rebuilt from its spec has another spec",
            example,
            f"spec:            {spec!r}",
            f"rebuilt's spec:  {rebuilt.spec()!r}",
        )
    if subject.clocked:
        return  # a rule rebuilt from its spec reads the real clock, not the kit's: only its spec is compared
    again = _run(_Subject(rebuilt), example)
    epoch = _first_difference(run.decisions, again.decisions)
    if epoch is not None:
        raise _fail(
            "two rules with equal specs decide differently",
            example,
            f"spec: {spec!r}",
            *_compare(epoch, ("the rule", run.decisions), ("rebuilt from its spec", again.decisions)),
        )


def _improved(subject: _Subject, example: _Example) -> None:
    for decision in _run(subject, example).decisions:
        if decision.should_stop and decision.improved and decision.reason not in _GUARDS:
            raise _fail(
                f"the rule stops at epoch {decision.epoch}, which improved on the best "
                f"({decision.reason.name}: {decision.detail})",
                example,
                "a rule that may stop on an improving epoch on purpose says so: stops_on_improvement = True",
            )


def _mode(subject: _Subject, example: _Example) -> None:
    settings = example.settings
    mirrored = dict(settings, mode="max", baseline=_negated(settings.get("baseline")))
    for name in ("stopping_threshold", "divergence_threshold"):
        mirrored[name] = _negated(settings.get(name))
    negated = [{**entry, _KEY: -entry[_KEY]} if _KEY in entry else entry for entry in example.logs]
    minimised = _run(subject, example).decisions
    maximised = [_unmirrored(d) for d in _run(subject, example, mirrored, negated).decisions]
    epoch = _first_difference(minimised, maximised)
    if epoch is not None:
        raise _fail(
            "in mode='max' on the negated values the rule decides differently than in mode='min' (rules see "
            "values signed: lower is better in both modes)",
            example,
            *_compare(epoch, ("mode='min'", minimised), ("mode='max', negated", maximised)),
        )


def _composition(subject: _Subject, example: _Example, partner: Rule) -> None:
    alone = _run(subject, example).decisions
    other = _run(_Subject(partner), example).decisions
    for operator in ("|", "&"):
        combined = subject.combined(partner, operator)
        together = _run(combined, example).decisions
        for epoch, (mine, theirs, both) in enumerate(zip(alone, other, together, strict=True)):
            stops = (mine.should_stop, theirs.should_stop)
            expected = any(stops) if operator == "|" else all(stops)
            if both.should_stop != expected:
                raise _fail(
                    f"{combined.label} does not stop exactly when its parts would, at epoch {epoch}",
                    example,
                    f"{subject.label} alone: {_brief(mine)}",
                    f"{partner!r} alone: {_brief(theirs)}",
                    f"{combined.label}: {_brief(both)}",
                )
        try:  # resumed at every split in `rule | partner` (the costly part), reset in both
            if operator == "|":
                _resume(combined, example)
            _reset(combined, example)
        except _PropertyError as broken:
            raise _PropertyError(f"in {combined.label}: {broken.what}", example, broken.details, broken.reset) from None


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def _unmirrored(d: Decision) -> Decision:
    limit = _negated(d.limit) if d.reason in _GUARDS else d.limit  # a threshold, signed as the metric
    return d._replace(value=_negated(d.value), best=_negated(d.best), limit=limit)


def _pause(example: _Example) -> str:
    return f" {example.pause} s later (not training time)" if example.seconds is not None else ""


def _brief(d: Decision) -> str:
    what = f"stop ({d.reason.name})" if d.should_stop else "continue"
    improved = ", improved" if d.improved else ""
    detail = f", detail={d.detail!r}" if d.detail is not None else ""
    return f"{what}{improved}, wait={d.wait}, best_epoch={d.best_epoch}{detail}"


def _compare(epoch: int, *runs: tuple[str, Sequence[Decision]]) -> list[str]:
    width = max(len(name) for name, _ in runs) + 1
    lines = [f"first difference at epoch {epoch}:"]
    for name, decisions in runs:
        shown = _brief(decisions[epoch]) if epoch < len(decisions) else "(no decision)"
        lines.append(f"  {name + ':':<{width}} {shown}")
    if all(epoch < len(decisions) for _, decisions in runs):
        first, *others = [decisions[epoch] for _, decisions in runs]
        fields = [
            f"{field} ({_shown(getattr(first, field))} vs {', '.join(_shown(getattr(d, field)) for d in others)})"
            for field in Decision._fields
            if not all(_same(getattr(first, field), getattr(d, field)) for d in others)
        ]
        lines.append(f"  the decisions differ in: {'; '.join(fields)}")
    lines.append("should_stop by epoch:")
    for name, decisions in runs:
        lines.append(f"  {name + ':':<{width}} {[d.should_stop for d in decisions]}")
    return lines


def _shown(value: Any) -> str:
    return value.name if isinstance(value, StopReason) else repr(value)


def _classes(rule: Rule) -> dict[str, type[Rule]]:
    """Each part's ``spec()["rule"]`` name and its class, over a composition."""
    found: dict[str, type[Rule]] = {}
    todo = [rule]
    while todo:
        part = todo.pop()
        name = part.spec().get("rule")
        if isinstance(name, str):
            found.setdefault(name, type(part))
        if isinstance(part, (AnyOf, AllOf)):
            todo.extend(part.rules)
    return found


def _from_spec(spec: Mapping[str, Any], classes: Mapping[str, type[Rule]]) -> Rule:
    """A rule from its spec, by the convention the built-in rules keep: ``MyRule(**params)``."""
    name = spec.get("rule")
    if name == "never":
        return never
    if not isinstance(name, str) or name not in classes:
        raise ValueError(f"no rule named {name!r} in the rule checked")
    cls = classes[name]
    params = {key: value for key, value in spec.items() if key != "rule"}
    if issubclass(cls, (AnyOf, AllOf)):
        parts = params.get("rules")
        if not isinstance(parts, list):
            raise ValueError(f"a composition's spec lists its rules under 'rules', got {spec!r}")
        return cls(*(_from_spec(part, classes) for part in parts))
    return cls(**params)


# -- check_rule ---------------------------------------------------------------------------------------------------


@st.composite
def _examples(
    draw: st.DrawFn,
    subject: _Subject,
    configs: st.SearchStrategy[dict[str, Any]],
    runs: st.SearchStrategy[list[dict[str, float]]],
    reset: bool,
) -> _Example:
    settings = draw(configs)
    entries = draw(runs)
    durations = st.lists(st.integers(0, 30), min_size=len(entries), max_size=len(entries))
    seconds = draw(durations) if subject.clocked else None
    pause = draw(st.integers(0, 10**6)) if subject.clocked else 0
    before = draw(runs) if reset else []
    before_seconds = None
    if subject.clocked:
        before_seconds = draw(st.lists(st.integers(0, 30), min_size=len(before), max_size=len(before)))
    return _Example(settings, entries, seconds, pause, before, before_seconds)


def _hypothesis_settings(settings: hypothesis.settings | None, max_examples: int | None) -> hypothesis.settings:
    if settings is None:
        settings = hypothesis.settings(
            max_examples=25,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[
                hypothesis.HealthCheck.too_slow,
                hypothesis.HealthCheck.data_too_large,
                hypothesis.HealthCheck.large_base_example,
            ],
        )
    # One counterexample, reported by the kit itself.
    chosen = hypothesis.settings(settings, report_multiple_bugs=False, verbosity=hypothesis.Verbosity.quiet)
    return chosen if max_examples is None else hypothesis.settings(chosen, max_examples=max_examples)


def _falsify(
    name: str,
    examples: st.SearchStrategy[_Example],
    check: Callable[[_Example], None],
    settings: hypothesis.settings,
    seed: int | None,
) -> _PropertyError | None:
    """Hypothesis's smallest example on which ``check`` fails (None if none was found)."""

    @settings
    @hypothesis.given(examples)
    def holds(example: _Example) -> None:
        check(example)

    test: Callable[[], None] = holds
    if seed is not None:
        test = hypothesis.seed(seed + zlib.crc32(name.encode()))(holds)
    try:
        test()
    except _PropertyError as broken:
        return broken
    except hypothesis.errors.Flaky as flaky:  # failed once, then passed on the same example: not deterministic
        inner = [error for error in getattr(flaky, "exceptions", ()) if isinstance(error, _PropertyError)]
        if not inner:
            raise
        found = inner[0]
        found.details.append(
            "this failure did not happen again when the same example was run again: the rule (or what it reads) "
            "is not deterministic"
        )
        return found
    return None


def check_rule(
    rule: Rule | Callable[[Clock], Rule],
    *,
    properties: Iterable[str] | None = None,
    partner: Rule | None = None,
    from_spec: Callable[[dict[str, Any]], Rule] | None = None,
    max_examples: int | None = None,
    settings: hypothesis.settings | None = None,
    seed: int | None = 0,
) -> None:
    """Assert that a stopping rule keeps the contract of every rule, in Monitors over generated logs.

    The rule decides in ``Monitor(rule=rule, monitor="val_loss", ...)``
    fed `logs` (with NaN, inf and epochs without validation) under
    settings drawn by `monitor_configs`. Each property is checked on its
    own; the first that fails raises, with the smallest counterexample
    hypothesis found:

    - ``deterministic``: two Monitors fed the same logs decide the same and
      end with the same rule state.
    - ``json``: ``Monitor.state_dict()`` is strict JSON at every epoch
      (``json.dumps(allow_nan=False)``) and reads back unchanged.
    - ``resume``: saved at every epoch (through strict JSON) and loaded into a
      new Monitor, the run decides exactly as an uninterrupted one, ends with
      the same ``finish()`` and the same state.
    - ``reset``: after ``Monitor.reset()`` the rule's state is a new rule's and
      it decides as a new rule does.
    - ``spec``: ``spec()`` is strict JSON naming the rule, does not change as
      the rule sees epochs, rebuilds the rule (``MyRule(**params)``, or
      ``from_spec``) with an equal spec, and equal specs decide the same.
    - ``improved``: no stop on an epoch the Monitor marks as improved, unless
      the rule says it may (``stops_on_improvement = True``). Checked under
      Keras's settings, where that is the epoch the rule is told improved.
    - ``mode``: in ``mode="max"`` on the negated values the rule decides as in
      ``mode="min"``: it must use the signed values the Monitor passes, not
      read the monitored metric from the logs. Not checked for a rule that
      takes logarithms (``takes_log``), which a maximised metric cannot feed.
    - ``composition``: ``rule | partner`` and ``partner & rule`` stop exactly
      when their parts would and reset as above; the first also resumes
      as above.

    Args:
        rule: The rule, or (for a rule that reads a clock) a factory taking a
            `Clock` and returning the rule:
            ``check_rule(lambda clock: TimeBudget(60, clock=clock))``. Each
            epoch then takes a drawn number of whole seconds on that clock.
        properties: Check only these (names in `PROPERTIES`).
        partner: The rule composed with it (default ``Patience(2)``).
        from_spec: How to rebuild the rule from its spec, if not ``MyRule(**params)``.
        max_examples: Examples per property (default 25).
        settings: Hypothesis settings to use instead of the kit's (which are
            deterministic, keep no example database and have no deadline);
            multiple-bug reports and hypothesis's own printing are always off
            (the kit reports the counterexample itself).
        seed: The seed of the first property (each property's is derived from
            it); None leaves the randomness to ``settings``.

    Raises:
        AssertionError: A property does not hold; the message names it and
            shows the counterexample: the Monitor's settings, the logs, the
            split point for ``resume``, and both runs' decisions.

    Examples:
        >>> from earlystop_core import Rule
        >>> class Streak(Rule):  # stop after `epochs` epochs in a row without improvement, counted by the rule
        ...     def __init__(self, epochs):
        ...         self.epochs = epochs
        ...         self.streak = 0
        ...     def check(self, epoch, value, best, wait, improved, logs):
        ...         self.streak = 0 if improved else self.streak + 1
        ...         return self.streak >= self.epochs
        ...     def spec(self):
        ...         return {"rule": "Streak", "epochs": self.epochs}
        ...     def reset(self):
        ...         self.streak = 0
        ...     def state_dict(self):
        ...         return {"streak": self.streak}
        ...     def load_state_dict(self, state):
        ...         self.streak = state["streak"]
        >>> check_rule(Streak(3))
        >>> class Forgetful(Streak):  # keeps no state: forgets its count on resume
        ...     def spec(self):
        ...         return {"rule": "Forgetful", "epochs": self.epochs}
        ...     def state_dict(self):
        ...         return None
        ...     def load_state_dict(self, state):
        ...         pass
        >>> check_rule(Forgetful(3))
        Traceback (most recent call last):
        ...
        AssertionError: check_rule(Forgetful(epochs=3)): property 'resume' does not hold: a Monitor saved after
        epoch 1 and resumed in a new one decides differently from an uninterrupted run
        counterexample (shrunk by hypothesis):
          settings: mode='min', on_missing='skip'
          val_loss:     [1.0, 1.0, 1.0, 1.0]
          loss:         [0.5, 0.5, 0.5, 0.5]
          val_accuracy: [0.5, 0.5, 0.5, 0.5]
          split: the state saved after epoch 1 (rule's state None), loaded into a new Monitor
          first difference at epoch 3:
          ...
    """
    subject = _Subject(rule)
    chosen = _check_properties(properties)
    partner = Patience(2) if partner is None else partner
    if not isinstance(partner, Rule):
        raise TypeError(f"'partner' must be a Rule, got {type(partner).__name__} ({partner!r})")
    sample = subject.sample
    injected = (math.nan, math.inf) if sample.takes_log else _NON_FINITE  # a logarithm's metric stays >= 0
    extra = sorted(set(sample.requires) - {_KEY, _TRAIN, _ACCURACY})
    runs = logs(max_size=30, non_finite=injected, missing=True, extra=extra)
    general = monitor_configs(mode="min", patience=False, non_finite=True, missing=True, beyond_keras=True)
    plain = monitor_configs(
        mode="min",
        patience=False,
        stopping_threshold=False,
        divergence_threshold=False,
        non_finite=True,
        missing=True,
    )
    hypothesis_settings = _hypothesis_settings(settings, max_examples)
    checks: dict[str, tuple[Callable[[_Example], None], st.SearchStrategy[_Example]]] = {
        "deterministic": (lambda e: _deterministic(subject, e), _examples(subject, general, runs, False)),
        "json": (lambda e: _json(subject, e), _examples(subject, general, runs, False)),
        "resume": (lambda e: _resume(subject, e), _examples(subject, general, runs, False)),
        "reset": (lambda e: _reset(subject, e), _examples(subject, general, runs, True)),
        "spec": (lambda e: _spec(subject, e, from_spec), _examples(subject, general, runs, False)),
        "improved": (lambda e: _improved(subject, e), _examples(subject, plain, runs, False)),
        "mode": (lambda e: _mode(subject, e), _examples(subject, general, runs, False)),
        "composition": (lambda e: _composition(subject, e, partner), _examples(subject, general, runs, True)),
    }
    for name in chosen:
        if name == "improved" and getattr(sample, "stops_on_improvement", False):
            continue  # documented: the rule may stop on an improving epoch
        if name == "mode" and sample.takes_log:
            continue  # Monitor(mode="max") refuses a rule taking logarithms
        check, examples = checks[name]
        broken = _falsify(name, examples, check, hypothesis_settings, seed)
        if broken is not None:
            raise AssertionError(_report(f"check_rule({subject.label})", name, broken)) from None


def _check_properties(properties: Iterable[str] | None) -> list[str]:
    if properties is None:
        return list(PROPERTIES)
    chosen = _names("properties", properties, "property names")
    unknown = [name for name in chosen if name not in PROPERTIES]
    if unknown:
        raise ValueError(f"unknown property {unknown[0]!r}; properties: {', '.join(PROPERTIES)}")
    return [name for name in PROPERTIES if name in chosen]


def _report(call: str, name: str, broken: _PropertyError) -> str:
    example = broken.example
    lines = [f"{call}: property {name!r} does not hold: {broken.what}", "counterexample (shrunk by hypothesis):"]
    lines.append(f"  settings: {_shown_settings(example.settings)}")
    if broken.reset:
        lines.append("  the run before reset():")
        lines.extend(f"    {line}" for line in _shown_logs(example.before))
        if example.before_seconds is not None:
            lines.append(f"    seconds per epoch on the clock: {example.before_seconds}")
        lines.append("  the run after it:")
        lines.extend(f"    {line}" for line in _shown_logs(example.logs))
    else:
        lines.extend(f"  {line}" for line in _shown_logs(example.logs))
    if example.seconds is not None:
        lines.append(f"  seconds per epoch on the clock: {example.seconds}")
    lines.extend(f"  {line}" for line in broken.details)
    return "\n".join(lines)


def _shown_settings(settings: Mapping[str, Any]) -> str:
    """The Monitor's arguments that differ from its defaults, as Python."""
    defaults = {name: p.default for name, p in inspect.signature(Monitor).parameters.items()}
    shown = [f"{key}={value!r}" for key, value in settings.items() if key not in defaults or defaults[key] != value]
    return ", ".join(shown) if shown else "(the Monitor's defaults)"


def _shown_logs(entries: Sequence[Mapping[str, float]]) -> list[str]:
    """Each metric's values by epoch, exactly (repr), None where it was not logged."""
    names = list(dict.fromkeys(name for entry in entries for name in entry))
    if not entries:
        return ["logs: [] (no epoch)"]
    order = [_KEY] + [name for name in names if name != _KEY]
    width = max(len(name) for name in order) + 1
    return [f"{name + ':':<{width}} {[entry.get(name) for entry in entries]!r}" for name in order]


# -- check_monitor_loop -------------------------------------------------------------------------------------------

#: What a loop may report, and how a plain Monitor's run gives it.
_OUTCOMES = ("decisions", "epochs", "stopped_epoch", "best_epoch", "restored_epoch")


class _LoopCase(NamedTuple):
    config: dict[str, Any]
    logs: list[dict[str, float]]
    resume_at: int | None


def _reference(case: _LoopCase) -> dict[str, Any]:
    """What a plain Monitor does with these logs: feed epochs in order, stop at the first stop, then finish."""
    monitor = Monitor(**case.config)
    decisions = []
    for entry in case.logs:
        decisions.append(monitor.update(entry))
        if decisions[-1].should_stop:
            break
    monitor.finish()
    restore = bool(case.config.get("restore_best_weights")) and monitor.best_epoch is not None
    return {
        "decisions": decisions,
        "epochs": len(decisions),
        "stopped_epoch": monitor.stopped_epoch,
        "best_epoch": monitor.best_epoch,
        "restored_epoch": monitor.best_epoch if restore else None,
    }


def _loop_outcome(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        unknown = sorted(set(result) - set(_OUTCOMES))
        if unknown or not result:
            raise TypeError(
                f"the loop must return a dict with some of {', '.join(_OUTCOMES)} (or a list of Decisions), got "
                f"{dict(result)!r}"
            )
        return dict(result)
    if isinstance(result, Sequence) and all(isinstance(d, Decision) for d in result):
        return {"decisions": list(result)}
    raise TypeError(
        f"the loop must return a dict with some of {', '.join(_OUTCOMES)} (or a list of Decisions), got "
        f"{type(result).__name__} ({result!r})"
    )


def check_monitor_loop(
    loop: Callable[..., Any],
    *,
    configs: st.SearchStrategy[dict[str, Any]] | None = None,
    runs: st.SearchStrategy[list[dict[str, float]]] | None = None,
    resume: bool = False,
    max_examples: int | None = None,
    settings: hypothesis.settings | None = None,
    seed: int | None = 0,
) -> None:
    """Assert that a training-loop integration decides as a plain Monitor fed the same logs.

    ``loop(logs, config)`` is your integration under test: it builds what it
    builds from ``config`` (``Monitor`` keyword arguments: a Monitor, your
    callback or wrapper), runs one epoch per entry of ``logs`` in order,
    handing each epoch's logs to it, stops when it is told to, and returns
    what it did: a dict with any of

    - ``"decisions"``: the Decisions it got, one per epoch run;
    - ``"epochs"``: how many epochs it ran;
    - ``"stopped_epoch"``: the epoch it stopped after (None: it ran every epoch);
    - ``"best_epoch"``: the best epoch at the end;
    - ``"restored_epoch"``: the epoch whose weights it ended with restored
      (None if none was restored);

    or just the list of Decisions. Each is compared with a plain Monitor's run
    of the same logs (stopping at the first stop, then ``finish()``). Where a
    plain Monitor raises (a metric missing with ``on_missing="raise"``), the
    loop must raise an error of the same type.

    With ``resume=True`` it is called ``loop(logs, config, resume_at)``: save
    the integration's state after ``resume_at`` epochs (0 to ``len(logs)``),
    build a new one from the saved state, and go on with it: the run must
    still be a plain uninterrupted Monitor's.

    Args:
        loop: The integration under test.
        configs: Monitor arguments to draw (default: `monitor_configs`
            with NaN, missing epochs and the settings beyond Keras's).
        runs: Logs to draw (default: `logs` with NaN, inf and missing epochs).
        resume: Also pass the epoch to save and resume at.
        max_examples: Examples to try (default 100: a loop runs once per example).
        settings: Hypothesis settings to use instead of the kit's.
        seed: As in `check_rule`.

    Raises:
        AssertionError: The loop's outcome differs; the message shows the
            configuration, the logs and both outcomes.

    Examples:
        >>> from earlystop_core import Monitor
        >>> def loop(logs, config):
        ...     monitor = Monitor(**config)
        ...     for epoch, entry in enumerate(logs):
        ...         if monitor.update(entry).should_stop:
        ...             return {"stopped_epoch": epoch, "best_epoch": monitor.best_epoch}
        ...     return {"stopped_epoch": None, "best_epoch": monitor.best_epoch}
        >>> check_monitor_loop(loop)
        >>> def validated_only(logs, config):  # calls the Monitor only on epochs with validation
        ...     monitor = Monitor(**config)
        ...     for epoch, entry in enumerate(logs):
        ...         if "val_loss" in entry and monitor.update(entry).should_stop:
        ...             return {"stopped_epoch": epoch, "best_epoch": monitor.best_epoch}
        ...     return {"stopped_epoch": None, "best_epoch": monitor.best_epoch}
        >>> check_monitor_loop(validated_only)
        Traceback (most recent call last):
        ...
        AssertionError: check_monitor_loop(validated_only): the loop's best_epoch is 0, a plain Monitor's is 1
        ...
    """
    if not callable(loop):
        raise TypeError(f"'loop' must be a callable loop(logs, config), got {type(loop).__name__} ({loop!r})")
    configs = configs if configs is not None else monitor_configs(non_finite=True, missing=True, beyond_keras=True)
    runs = runs if runs is not None else logs(max_size=20, non_finite=True, missing=True)
    name = getattr(loop, "__name__", repr(loop))
    cases = _loop_cases(configs, runs, resume)

    def check(case: _LoopCase) -> None:
        try:
            expected = _reference(case)
        except Exception as error:  # logs a plain Monitor refuses: the loop must refuse them too
            refused: Exception | None = error
        else:
            refused = None
        arguments: tuple[Any, ...] = (copy.deepcopy(case.logs), dict(case.config))
        try:
            result = loop(*arguments, case.resume_at) if resume else loop(*arguments)
        except Exception as error:
            if refused is not None and isinstance(error, type(refused)):
                return
            raise _LoopError(f"the loop raised {_error(error)}", case) from None
        if refused is not None:
            raise _LoopError(f"a plain Monitor raises {_error(refused)}, the loop returned {result!r}", case)
        got = _loop_outcome(result)
        for key in _OUTCOMES:
            if key not in got:
                continue
            if key == "decisions":
                epoch = _first_difference(expected[key], got[key])
                if epoch is not None:
                    raise _LoopError(
                        "the loop's decisions differ from a plain Monitor's",
                        case,
                        _compare(epoch, ("plain Monitor", expected[key]), ("the loop", got[key])),
                    )
            elif not _same(got[key], expected[key]):
                raise _LoopError(f"the loop's {key} is {got[key]!r}, a plain Monitor's is {expected[key]!r}", case)

    chosen = _hypothesis_settings(settings, 100 if max_examples is None and settings is None else max_examples)

    @chosen
    @hypothesis.given(cases)
    def holds(case: _LoopCase) -> None:
        check(case)

    test: Callable[[], None] = holds if seed is None else hypothesis.seed(seed + zlib.crc32(b"loop"))(holds)
    try:
        test()
    except _LoopError as broken:
        raise AssertionError(broken.report(f"check_monitor_loop({name})")) from None
    except hypothesis.errors.Flaky as flaky:
        inner = [error for error in getattr(flaky, "exceptions", ()) if isinstance(error, _LoopError)]
        if not inner:
            raise
        raise AssertionError(
            inner[0].report(f"check_monitor_loop({name})")
            + "\n  this failure did not happen again on the same example: the loop is not deterministic"
        ) from None


class _LoopError(AssertionError):
    def __init__(self, what: str, case: _LoopCase, details: Sequence[str] = ()) -> None:
        super().__init__(what)
        self.what, self.case, self.details = what, case, list(details)

    def report(self, call: str) -> str:
        case = self.case
        lines = [f"{call}: {self.what}", "counterexample (shrunk by hypothesis):"]
        lines.append(f"  config: {case.config!r}")
        lines.extend(f"  {line}" for line in _shown_logs(case.logs))
        if case.resume_at is not None:
            lines.append(f"  resume_at: {case.resume_at} (saved after {case.resume_at} epoch(s), resumed in a new one)")
        lines.extend(f"  {line}" for line in self.details)
        return "\n".join(lines)


@st.composite
def _loop_cases(
    draw: st.DrawFn,
    configs: st.SearchStrategy[dict[str, Any]],
    runs: st.SearchStrategy[list[dict[str, float]]],
    resume: bool,
) -> _LoopCase:
    config = draw(configs)
    entries = draw(runs)
    monitored = config.get("monitor", _KEY)
    if isinstance(monitored, str) and config.get("on_missing", "raise") != "skip":
        entries = [entry for entry in entries if monitored in entry]  # not the epochs a Monitor would refuse
    resume_at = draw(st.integers(0, len(entries))) if resume else None
    return _LoopCase(config, entries, resume_at)
