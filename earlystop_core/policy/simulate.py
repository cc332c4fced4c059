"""A learned policy's decisions for many runs at once, with numpy, exactly as the Monitor makes them.

The vectorised replay (`earlystop_core.replay.engine`) steps the
Monitor's bests over every epoch of every run; `first_stops` then finds,
for every run, the first epoch where a [`LearnedPolicy`][earlystop_core.LearnedPolicy]'s
``check`` returns True: it runs the policy's
`FeatureTracker` for all runs together,
a block of epochs at a time, and drops each run from the work once it has
stopped or ended (a learned policy stops most runs about half-way, so most of
the padded epochs are never computed).

Bit for bit, not approximately, in two passes. The exact pass computes every
feature as the tracker's expression term for term (numpy's elementwise
float64 arithmetic rounds as Python's does), takes logarithms as Python's own
``math.log`` (numpy's may differ in the last bit), runs cumulative sums in the
tracker's order and sums the logit as CPython's ``sum`` does (a plain left fold
before Python 3.12, Neumaier's compensated sum since). That logarithm is most
of its cost, so a fast pass goes first: numpy's logarithm, the logit summed in
any order (`_Sum`), and beside each logit a bound on how far the exact pass's
can be from it (`_Trackers._margin`: each feature's error grows from the
logarithms' through sums of at most ``j`` terms). Where every decision of a
run is further from the threshold than its bound (and no record of the
training loss is within a bound of being beaten), the exact pass would decide
the same; the other runs (none on the dev, shift and sample banks) are decided
again by the exact pass. ``tests/test_policy_simulate.py`` holds this against the tracker and
against ``Monitor(policy=...)`` over random policies, curves and Monitor
settings, with numpy's logarithm made worse on purpose too.

Arrays are epoch-major, ``(rows, runs)``: row ``r`` is the epoch
``start + r``, the ``r + 1``-th epoch the policy is asked about.

(Fitting sweeps thresholds over features recorded by a real Monitor instead:
`earlystop_core.policy.fit.simulate`.)
"""

from __future__ import annotations

import functools
import math
import platform
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from earlystop_core.policy.features import LOG_FLOOR, LR_CAP, LR_CONSTANT
from earlystop_core.policy.learned import LearnedPolicy

__all__ = ["BLOCK", "first_stops"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Epochs computed per step for the runs still going (more: fewer numpy calls; fewer: less work past a stop).
BLOCK = 16
#: Fewer runs going than this take taller steps, up to _TALL rows (see `_height`).
_FEW = 256
_TALL = 64
#: The bytes of the array `_roomy_heap` frees.
_BALLAST = 8 << 20
#: Runs computed together at most (more are taken in turn).
_RUNS = 1024
_FLOOR_LEVEL = math.log(LOG_FLOOR)
_CAP = 50.0
_NOISE_FLOOR = 1e-6
#: Whether `_log` may round extended-precision logarithms (see there); else it calls ``math.log``.
_EXTENDED_LOG = (
    np.finfo(np.longdouble).nmant == 63  # x87 extended precision, stored little-endian in 16 bytes
    and np.dtype(np.longdouble).itemsize == 16
    and sys.byteorder == "little"
    and platform.libc_ver()[0] == "glibc"
    and tuple(int(part) for part in platform.libc_ver()[1].split(".")[:2]) >= (2, 28)
)
#: CPython's ``sum`` of floats compensates its rounding from 3.12 on (Neumaier); the policy's logit is such a sum.
_COMPENSATED_SUM = sys.version_info >= (3, 12)
#: The fast pass assumes numpy's logarithm within this many units in the last place of ``math.log``'s
#: (they are 1 apart at most where checked; `_fast_log_trusted` checks a spread of values before any use).
_LOG_ULPS = 16.0
#: The gap between 1.0 and the next float64: a float64 ``x`` is within ``_EPS * abs(x) / 2`` of any real it rounds.
_EPS = 2.0**-52
#: The fast pass's features whose error grows with the logarithms' (the others are exact in both passes), and
#: the error of each in units of ``_EPS * M`` (``M``: the largest level's magnitude, ``C``: `_LOG_ULPS`) as the
#: coefficients of ``a + b * j + c * j**2``, ``j`` the epochs seen. Derived in `_Trackers._margin`.
#: The records the 10-epoch windows look back over, kept between blocks.
_WINDOW = 10
#: The `_Trackers` state arrays, runs on the last axis (`_Trackers.keep` drops runs from each).
_STATE = (
    "sums", "bests", "last", "at_best", "marks", "nan_best", "low", "low_row", "acc_first",
    "lr_state", "lr_window",
)  # fmt: skip
_C = _LOG_ULPS
_DIFFERENCE = (2.0 * _C + 2.0, 0.0, 0.0)  # a difference of two levels
_ERRORS: dict[str, tuple[float, float, float]] = {
    "gl": _DIFFERENCE,
    "recent_gain10": _DIFFERENCE,
    "trend5": (0.0, 0.8 * _C + 16.0, 0.8),
    "noise10": (0.0, 2.0 * _C + 6.0, 2.0),
    "train_since_best": _DIFFERENCE,
    "train_gap": _DIFFERENCE,
    "lr_log_to_max": _DIFFERENCE,
    "lr_trend10": _DIFFERENCE,
    "lr_since_best": _DIFFERENCE,
}


def first_stops(
    policy: LearnedPolicy,
    start: int,
    value: FloatArray,
    adopted: BoolArray,
    reset: BoolArray,
    logs: Mapping[str, FloatArray],
    limit: IntArray,
    earliest: int = 0,
    block: int = BLOCK,
    exact: bool = False,
) -> IntArray:
    """Per run, the first row where the policy's ``check`` returns True (``rows`` when it never does).

    Args:
        policy: The policy (its fitted numbers; its memory is not read).
        start: The first epoch asked (the Monitor's ``start_from_epoch``).
        value: ``(rows, runs)``: the tracked (signed, smoothed) value the Monitor passes the rule.
        adopted: Whether the epoch became the tracked best (the rule's ``improved``); the best the
            rule is passed is the value at the last such epoch (None before the first).
        reset: Whether the epoch set the Monitor's ``wait`` back to 0 (an adoption beating the
            baseline); ``wait`` counts the epochs since, or since ``start`` (this one included).
        logs: ``{metric: (rows, runs)}`` for each metric in ``policy.requires``, and for its learning
            rate (``policy.optional``) when the runs log it: NaN where an epoch does not (a missing
            array: no epoch does).
        limit: Per run, the rows that matter (its epochs, up to a guard or threshold that ends it);
            rows past it are never computed.
        earliest: The first row that may stop (the Monitor stops only once a best exists).
        block: Rows computed per step.
        exact: Only the exact pass (the result is the same; this is what the fast pass falls back to).

    Examples:
        >>> policy = LearnedPolicy(["log_wait"], [0.0], [1.0], [-3.0], 4.0, threshold=0.5, min_wait=1, max_wait=10)
        >>> column = lambda *xs: np.array(xs)[:, None]
        >>> value = column(1.0, 0.5, 0.6, 0.7, 0.8)
        >>> adopted = column(True, True, False, False, False)
        >>> first_stops(policy, 0, value, adopted, adopted, {}, np.array([5])).tolist()  # at wait 3
        [4]
    """
    rows, count = value.shape
    if count > _RUNS:  # runs are independent: a thousand at a time keep the work arrays in the cache
        size = -(-count // -(-count // _RUNS))  # groups of equal size, none above _RUNS

        def group(part: slice) -> IntArray:  # the resets still the adoptions where they were
            adopts = adopted[:, part]
            resets = adopts if reset is adopted else reset[:, part]
            inputs = {name: array[:, part] for name, array in logs.items()}
            runs = value[:, part]
            return first_stops(policy, start, runs, adopts, resets, inputs, limit[part], earliest, block, exact)

        return np.concatenate([group(slice(lo, lo + size)) for lo in range(0, count, size)])

    _roomy_heap()
    stops = np.full(count, rows, dtype=np.int64)
    longest = max(start + rows, policy.max_epochs or 0)  # what log1p is taken of
    fast = not exact and _fast_log_trusted()
    doubted = np.full(count, rows + 1, dtype=np.int64)  # per run, the first row the fast pass cannot vouch for
    active = np.flatnonzero(limit > 0)
    tracker = _Trackers(policy, start, rows, len(active), longest, logs if fast else None, earliest, value)
    with np.errstate(all="ignore"):
        first = 0
        while first < rows and len(active):
            last = min(first + _height(block, len(active)), rows)
            span = slice(first, last)
            part = {name: _cells(array, span, active) for name, array in logs.items()}
            adopts = _cells(adopted, span, active)
            resets = adopts if reset is adopted else _cells(reset, span, active)  # the same: one running mark
            wants, doubt = tracker.step(active, first, _cells(value, span, active), adopts, resets, part)
            rows_here = np.arange(first, last)[:, None]
            inside = rows_here < limit[active]
            wants &= inside & (rows_here >= earliest)
            stopping = wants.any(axis=0)
            stops[active[stopping]] = first + wants[:, stopping].argmax(axis=0)
            if doubt is not None:
                doubt &= inside
                unsure = doubt.any(axis=0)
                doubted[active[unsure]] = first + doubt[:, unsure].argmax(axis=0)
                stopping |= unsure  # decided again below
            going = ~stopping & (limit[active] > last)
            active = active[going]
            tracker.keep(going)
            first = last
    again = np.flatnonzero(doubted <= stops)  # a decision up to the stop might differ: the exact pass decides
    if len(again):
        stops[again] = first_stops(
            policy, start, value[:, again], adopted[:, again], reset[:, again],
            {name: array[:, again] for name, array in logs.items()}, limit[again], earliest, block, exact=True,
        )  # fmt: skip
    return stops


@functools.cache
def _roomy_heap() -> None:
    """Free one 8 MiB array, once per process, so that the C library keeps the blocks' temporaries mapped.

    Each step allocates and frees a few MiB of temporaries of a few hundred KiB each. glibc's ``malloc``
    gives the top of its heap back to the system whenever more than its trim threshold (twice its
    mmap threshold, 128 KiB at start) lies free there, and the next step faults every page back in: a
    sixth of a step's time, measured (``benchmarks/bench_replay.py``, page faults from ``getrusage``). Freeing
    a mapped block raises both thresholds to its size, as any program that frees a large array does;
    elsewhere this changes nothing. (The cost: up to 16 MiB of freed memory kept by the process.)
    """
    ballast = np.empty(_BALLAST, dtype=np.uint8)
    del ballast


def _height(block: int, runs: int) -> int:
    """The rows of the next step for ``runs`` runs going: ``block``, more when few runs are left.

    A step costs about as much as a few hundred numpy calls plus its cells; when few runs are left the calls
    dominate, and computing a few rows past a stop costs less than another step.
    """
    return block if runs >= _FEW else min(_TALL, block * _FEW // max(runs, 1))


@functools.cache
def _fast_log_trusted() -> bool:
    """Whether numpy's logarithm is within 2 units in the last place of ``math.log`` on a spread of values.

    The fast pass's bounds assume `_LOG_ULPS`; where numpy's logarithm is further off than this check allows,
    every run goes through the exact pass.
    """
    rng = np.random.default_rng(0)
    values = np.concatenate([np.geomspace(LOG_FLOOR, 1e300, 3001), rng.uniform(LOG_FLOOR, 10.0, 3000)])
    exact = np.fromiter(map(math.log, values.tolist()), dtype=np.float64, count=len(values))
    with np.errstate(all="ignore"):
        close = np.abs(_fast_log(values) - exact) <= 2.0 * np.spacing(np.abs(exact))
    return bool(close.all())


def _magnitudes(policy: LearnedPolicy, value: FloatArray | None, logs: Mapping[str, FloatArray]) -> tuple[float, float]:
    """The fast pass's ``M`` and ``F`` for all the runs: bounds on the magnitude of every level, and of every
    level difference and accuracy (a level is a logarithm, at least the floor's; or a monitored value).
    """
    assert value is not None
    logged = [logs[name] for name in (policy.train_metric, policy.lr_metric) if name is not None and name in logs]
    largest = -_FLOOR_LEVEL  # the logarithm of a value up to 1e12 is within the floor's magnitude
    for array in [*logged, value] if policy.log else logged:
        if _beyond(array, 1.0 / LOG_FLOOR):  # a larger one (or an infinity: carried, counted anyway)
            largest = max(largest, math.log(max(_finite_max(array), 1.0)))
    if not policy.log:
        largest = max(largest, _finite_max(np.abs(value)))
    accuracy = 0.0
    if policy.accuracy_metric is not None:
        values = logs[policy.accuracy_metric]
        if _beyond(values, largest):  # rare: an accuracy is a fraction
            accuracy = _finite_max(np.abs(values))
    return largest, 2.0 * max(largest, accuracy)


def _beyond(values: FloatArray, bound: float) -> bool:
    """Whether a value is larger than ``bound`` in magnitude (an infinity is; NaN is not)."""
    top, bottom = values.max(initial=-math.inf), values.min(initial=math.inf)  # NaN if a value is: look closer
    if -bound <= bottom and top <= bound:
        return False
    return bool(((values > bound) | (values < -bound)).any())


def _finite_max(values: FloatArray) -> float:
    """The largest finite value (0 for none)."""
    return float(np.max(values, where=np.isfinite(values), initial=0.0))


def _fast_log(values: FloatArray) -> FloatArray:
    """The fast pass's logarithm: numpy's (vectorised; the last bit may differ from ``math.log``'s)."""
    logs: FloatArray = np.log(values)
    return logs


class _Trackers:
    """A `FeatureTracker` per run, as arrays, stepped a block at a time.

    Per run it keeps what the tracker keeps between epochs (the carried levels, the
    bests and their epochs, the running records, the last ten records the 10-epoch
    windows look back at). Series that are stepped alike (the monitored level, the
    training loss and the accuracy) are stepped side by side, as one array ``width``
    columns per series: numpy calls, not arithmetic, are the cost. The state holds
    the runs still going only, in order: `keep` drops the others after each block.
    """

    def __init__(
        self,
        policy: LearnedPolicy,
        start: int,
        rows: int,
        count: int,
        longest: int,
        fast: Mapping[str, FloatArray] | None = None,
        earliest: int = 0,
        value: FloatArray | None = None,
    ) -> None:
        self.policy = policy
        # The fast pass (given the runs' logs, whose training losses it looks up where a record is in doubt).
        self.fast = fast
        self.earliest = earliest
        self.start = start
        self.weights = policy._folded
        self.bias = policy._bias_folded
        self.cut = policy._cut
        self.budget = policy._tracker.max_epochs
        self.train = policy.train_metric is not None
        self.accuracy = policy.accuracy_metric is not None
        self.series = 1 + self.train + self.accuracy  # the monitored level, then the training loss, the accuracy
        self.log1p = np.array([math.log1p(k) for k in range(longest + 2)])  # math.log1p of the counts
        self.rows = np.arange(rows)[:, None]
        # Records j - 10 .. j - 1 before the block's first (j epochs seen), per run: the cumulative sums of
        # levels and of absolute level steps, and the best level. Record 0 is the tracker's seed (0, 0, the
        # first level); a window reaching before it reads it (what `trend5` and friends read there is unused).
        self.sums = np.zeros((_WINDOW, 2, count))
        self.bests = np.zeros((_WINDOW, count))
        # Per series and run: the last carried value (NaN before the first epoch) and its value at b.
        self.last = np.full((self.series, count), np.nan)
        self.at_best = np.zeros((self.series, count))
        # Per run: the rows wait was last set back to 0 and of the last adoption (-1: none).
        self.marks = np.full((2, count), -1, dtype=np.int64)
        self.nan_best = np.zeros(count, dtype=bool)  # whether the best is NaN (its level is then each epoch's)
        # For the training loss and the negated accuracy, per run: the lowest so far and its row.
        records = self.train + self.accuracy
        self.low = np.full((records, count), np.inf)
        self.low_row = np.full((records, count), -1, dtype=np.int64)
        self.acc_first = np.zeros(count)
        # The learning rate, per run: the last rate (raw) and its level, the highest (raw and level), the
        # first level and the level at b, NaN until a rate is logged; the carried levels of the last ten rows.
        self.lr = policy.lr_metric
        if self.lr is not None:
            self.lr_state = np.full((6, count), np.nan)
            self.lr_window = np.full((_WINDOW, count), np.nan)
            self.constant_rates = [np.full((1, 1), rate) for rate in LR_CONSTANT]  # broadcast to any rows
        if fast is not None:
            # M and F (see _magnitudes); the error coefficients of the features' sum (see _margin).
            self.magnitude, self.largest = _magnitudes(policy, value, fast)
            names = policy._tracker.names
            errors = [(abs(self.weights[k]), _ERRORS[name]) for k, name in enumerate(names) if name in _ERRORS]
            self.error = [sum(weight * terms[n] for weight, terms in errors) for n in range(3)]
            ratio = names.index("gl_over_noise")
            self.ratio_weight = abs(self.weights[ratio])
            self.summed = len(self.weights) + 2  # the terms of the logit, its bias and the products' rounding
            # Every feature but the ratio is at most F in magnitude, or a logarithm of a count, an epoch over
            # the budget, the learning rate's cap.
            self.sizes = sum(abs(weight) for k, weight in enumerate(self.weights) if k != ratio) + abs(self.bias)
            counted = max(math.log1p(longest + 1), (longest + 1) / (self.budget or longest + 1), LR_CAP, 1.0)
            self.largest = max(self.largest, counted)

    def keep(self, kept: BoolArray) -> None:
        """Keep the state of the runs ``kept`` marks (in the state's order), drop the others'."""
        if kept.all():
            return
        for name in _STATE:
            state = getattr(self, name, None)
            if state is not None:
                setattr(self, name, state[..., kept])

    def step(
        self,
        cols: IntArray,
        first: int,
        value: FloatArray,
        adopted: BoolArray,
        reset: BoolArray,
        logs: Mapping[str, FloatArray],
    ) -> tuple[BoolArray, BoolArray | None]:
        """Rows ``first ..`` of the runs ``cols`` (the state's): where ``check`` returns True (the memory moves on).

        And, in the fast pass, the rows whose decision the exact pass might make otherwise (None: exact pass).
        """
        policy = self.policy
        height, width = value.shape
        row = self.rows[first : first + height]
        j = row + 1  # epochs seen
        epoch = row + self.start
        # wait (epochs since the last reset, or since start: a reset "at row -1") and the best's row.
        if reset is adopted:  # every adoption resets wait (no baseline): one running mark for both
            adoption = _running(np.maximum, self.marks[1], _rows_where(adopted, row))
            self.marks = np.stack([adoption[-1], adoption[-1]])
            wait = row - adoption
        else:
            both = _rows_where(np.concatenate([reset, adopted], axis=1), row)
            marks = _running(np.maximum, self.marks.reshape(-1), both)
            self.marks = marks[-1].reshape(2, width)
            wait, adoption = row - marks[:, :width], marks[:, width:]
        # The series' values: levels where the tracker takes logarithms, NaN where it carries the last one.
        train_key, accuracy_key = policy.train_metric, policy.accuracy_metric
        fast = self.fast is not None
        if train_key is not None and policy.log:  # both through one logarithm call (a negative loss is carried too)
            raw = [_levels(np.concatenate([value, logs[train_key]], axis=1), True, fast)]
        else:
            raw = [_levels(value, policy.log, fast)]
            if train_key is not None:
                raw.append(_levels(logs[train_key], True, fast))
        if accuracy_key is not None:
            accuracy = logs[accuracy_key]
            raw.append(np.where(np.isfinite(accuracy), accuracy, np.nan))
        before = self.last.reshape(-1)
        carried = _carry(np.concatenate(raw, axis=1) if len(raw) > 1 else raw[0], before)
        self.last = carried[-1].reshape(self.series, width)
        level = carried[:, :width]
        # At b (the last adoption, or the first epoch seen): each series' value, from this block or kept.
        anchor = np.maximum(adoption, 0)
        inside = anchor >= first
        at = (anchor - first) * inside  # (integer arithmetic: cheaper than np.where on an irregular mask)
        # Each series' value at b: its carried value at row `at` of this block, or the one kept (as row -1).
        series = self.series
        source = np.concatenate([self.at_best.reshape(1, -1), carried])
        above = (anchor - (first - 1)) * inside  # the row in `source`: 0 for the kept one
        index = (above * (series * width) + np.arange(width))[:, None, :] + (np.arange(series) * width)[:, None]
        at_best = np.take(source.ravel(), index).reshape(height, -1)
        self.at_best = at_best[-1].reshape(series, width)
        if self.nan_best.any() or np.isnan(value).any():  # a NaN best's level is each epoch's own
            nan_best = np.where(inside, np.isnan(_take(value, at)), self.nan_best)
            best_level = np.where((adoption >= 0) & ~nan_best, at_best[:, :width], level)
            self.nan_best = nan_best[-1]
        else:
            best_level = np.where(adoption >= 0, at_best[:, :width], level)
        # Cumulative sums of levels and of absolute steps, and the best levels: one record per epoch seen.
        previous = np.concatenate([before[None, :width] if first else level[:1], level[:-1]])
        step = np.abs(level - previous)
        if first == 0:
            self.bests[:] = level[0]  # record 0's best level, for every window reaching before it
        sums = _running(np.add, self.sums[-1].reshape(-1), np.concatenate([level, step], axis=1))  # in order
        # Records j - 10 (rows 0 ..) and j - 5 (rows 5 ..) of the block's rows, from the window and the block.
        history = np.concatenate([self.sums.reshape(_WINDOW, -1), sums])
        bests = np.concatenate([self.bests, best_level])
        self.sums = history[-_WINDOW:].reshape(_WINDOW, 2, width)
        self.bests = bests[-_WINDOW:]
        back10 = history[:height]
        trend5 = (sums[:, :width] - 2.0 * history[5 : 5 + height, :width]) + back10[:, :width]
        trend5 *= 0.2
        recent = bests[:height] - best_level
        noise = (sums[:, width:] - back10[:, width:]) * 0.1
        if first < 10:  # the rows that have seen 10 epochs or fewer
            early = slice(0, min(10 - first, height))
            e = j[early]
            trend5[early] = np.where(e >= 10, trend5[early], 0.0)
            first_level = bests[:1]  # record 0's (the window reaches back to it)
            recent[early] = np.where(e >= 10, recent[early], first_level - best_level[early])
            counted = sums[early, width:]
            noise[early] = np.where(
                e > 10, noise[early], np.where(e == 10, counted / 9.0, counted / np.maximum(e - 1, 1))
            )
            noise[early] = np.where(e > 1, noise[early], 0.0)
        gl = np.minimum(level - best_level, _CAP)  # the tracker's `if gl > 50: gl = 50`
        floor = np.fmax(noise, _NOISE_FLOOR)
        ratio = gl / floor  # divided by the noise when it is above the floor
        columns: list[FloatArray] = [
            self.log1p[wait],
            wait / j,
            self.log1p[self.start + anchor],
            self.log1p[epoch],
            gl,
            trend5,
            noise,
            np.fmin(ratio, _CAP),  # `ratio if ratio < 50 else 50`: a NaN ratio is 50 too
            recent,
        ]
        summed = _Sum(self.bias, self.weights, value.shape) if fast else None  # each group added while cached
        if summed is not None:
            summed.add(columns)
        budget = self.budget
        if budget is not None:
            left = budget - 1 - epoch
            columns += [epoch / budget, np.where(left > 0, self.log1p[np.maximum(left, 0)], 0.0), wait / budget]
        doubt: BoolArray | None = None
        if self.train or self.accuracy:
            records, doubt = self._records(cols, row, carried[:, width:], at_best[:, width:], level, first)
            columns += records
            if summed is not None:
                summed.add(columns)
        if self.lr is not None:
            columns += self._rates(first, logs.get(self.lr), inside, at)
        may: BoolArray = ~adopted & (epoch != 0) & (wait >= policy.min_wait)
        capped = wait >= policy.max_wait
        if summed is None:
            logit = self.bias + _weighted_sum(self.weights, columns, value.shape)
            return may & (capped | (logit < self.cut)), None
        summed.add(columns)
        logit = summed.total()
        margin = self._margin(j, floor, ratio)
        wants: BoolArray = may & (capped | (logit < self.cut))
        # In doubt: a decision the logit makes within its bound of the threshold (NaN bounds included), and a
        # record of the training loss the exact pass might set elsewhere (every later feature might differ).
        close = may & ~capped & ~(np.abs(logit - self.cut) > margin) & (row >= self.earliest)
        return wants, close if doubt is None else close | doubt

    def _margin(self, j: IntArray, floor: FloatArray, ratio: FloatArray) -> FloatArray:
        """A bound on the distance of the exact pass's logit from the fast pass's (`_Sum`), per cell.

        Both passes compute the same real quantities and each is within these bounds of them (``E = C eps M``:
        the two logarithms of a level differ by ``E`` at most; ``eps M`` bounds a rounding of a sum or difference
        of two levels, in either pass): a level, the best's, the training loss's, the learning rate's are ``E``
        apart; a difference of two ``2 E + 2 eps M`` (``a`` in ``_ERRORS``); the sum ``S_j`` of ``j`` levels
        ``j E + eps j**2 M`` (the rounding of any summation order); the sum of ``j`` steps ``2 j E +
        2 eps j M + 2 eps j**2 M``; ``trend5``, five of those sums less than ``0.8 dS_j + 16 eps j M``;
        ``noise10`` less than ``dT_j + 4 eps j M``. The ratio ``gl / max(noise, 1e-6)`` is bounded from those
        (unbounded where the noise might be 0; ``|gl| / floor`` is ``|ratio|`` to within a rounding), and 0 where
        both passes cap it. Summing the logit rounds, in
        each pass, by less than ``(terms + 2) eps / 2`` times the sum of its terms' magnitudes; every feature
        but the ratio is at most ``F`` (see `_magnitudes`). The bound is twice the sum of these, for the
        second-order terms left out.
        """
        unit = _EPS * self.magnitude
        a, b, c = self.error
        grown = unit * (a + (b + c * j) * j) + (self.summed * _EPS) * (self.sizes * self.largest)  # per row
        size = np.abs(ratio)
        margin = (self.summed * _EPS * self.ratio_weight) * size + grown
        if self.ratio_weight:
            steps_error = unit * ((2.0 * _C + 6.0 + 2.0 * j) * j)
            low = floor - steps_error
            error = ((2.0 * _C + 2.0) * unit + size * ((1.0 + 2.0 * _EPS) * steps_error)) / low + 4.0 * _EPS * size
            error = np.where(low > 0.0, error, np.inf)
            error *= ratio - error <= _CAP  # 0 where both are capped (an infinite error never is)
            margin += self.ratio_weight * error
        margin *= 2.0
        return margin

    def _records(
        self, cols: IntArray, row: IntArray, series: FloatArray, at_best: FloatArray, level: FloatArray, first: int
    ) -> tuple[list[FloatArray], BoolArray | None]:
        """The ``train`` and ``accuracy`` features, from the carried training-loss level and accuracy.

        And, in the fast pass, where the exact pass might set the training loss's record differently (None: nowhere).
        """
        width = len(cols)
        # The running records, side by side: the lowest training loss and the highest accuracy (negated).
        train = series[:, :width] if self.train else None
        acc = series[:, -width:] if self.accuracy else None
        both = np.concatenate([part for part in (train, None if acc is None else -acc) if part is not None], axis=1)
        low = _running(np.minimum, self.low.reshape(-1), both)
        before = np.concatenate([self.low.reshape(1, -1), low[:-1]])
        beats = both < before
        before_row = self.low_row.reshape(-1)
        low_row = _running(np.maximum, before_row, _rows_where(beats, row))
        self.low, self.low_row = low[-1].reshape(-1, width), low_row[-1].reshape(-1, width)
        doubt = None
        if train is not None and self.fast is not None:
            doubt = self._record_doubt(cols, row, train, before[:, :width], before_row[:width], low_row[:, :width])
        features: list[FloatArray] = []
        if train is not None:
            features += [train - at_best[:, :width], self.log1p[row - low_row[:, :width]], level - train]
        if acc is not None:
            if first == 0:
                self.acc_first = acc[0].copy()
            high = -low[:, -width:]
            features += [
                self.log1p[row - low_row[:, -width:]],
                high - at_best[:, -width:],
                high - self.acc_first,
                acc,
                high,
            ]
        return features, doubt

    def _record_doubt(
        self, cols: IntArray, row: IntArray, train: FloatArray, before: FloatArray, first_row: IntArray, rows: IntArray
    ) -> BoolArray | None:
        """Where the fast pass's training-loss level is within ``2 E`` (twice) of the record before it (None: nowhere).

        Equal levels of equal losses are equal in both passes: no doubt there (a loss not logged then is).
        """
        assert self.fast is not None and self.policy.train_metric is not None
        gap = np.abs(train - before)
        near = gap <= (4.0 * _C * _EPS) * self.magnitude
        if not near.any():
            return None
        losses = self.fast[self.policy.train_metric]
        record_row = np.concatenate([first_row[None], rows[:-1]])  # the row of the record before each row
        here = np.nonzero(near)
        loss = losses[row[here[0], 0], cols[here[1]]]
        record = losses[np.maximum(record_row[here], 0), cols[here[1]]]
        same = (gap[here] == 0.0) & (loss == record) & (loss >= 0.0) & (loss < math.inf)
        doubt = np.zeros_like(near)
        doubt[here] = ~same
        return doubt

    def _rates(self, first: int, rates: FloatArray | None, inside: BoolArray, at: IntArray) -> list[FloatArray]:
        """The ``lr`` features: the rate carried over epochs without one (NaN until one is logged)."""
        height, width = inside.shape
        state = self.lr_state  # last, last level, highest, highest level, first level, level at b
        if rates is None and np.isnan(state[0]).all():  # no rate logged yet, none in these rows: all still NaN
            state[5] = np.where(inside[-1], np.nan, state[5])
            return self.constant_rates
        raw = np.full((height, width), np.nan) if rates is None else np.where(rates < math.inf, rates, np.nan)
        given = ~np.isnan(raw)
        levels = np.full_like(raw, np.nan)
        above = given & (raw > LOG_FLOOR)
        levels[above] = _log(raw[above]) if self.fast is None else _fast_log(raw[above])
        levels[given & ~above] = _FLOOR_LEVEL
        rate = _carry(raw, state[0], fill=math.nan)
        level = _carry(levels, state[1], fill=math.nan)
        top = _running(np.fmax, state[2], rate)
        top_level = _running(np.fmax, state[3], level)
        logged = ~np.isnan(level)
        first_row = np.argmax(logged, axis=0)  # the first row with a rate, where none was before
        first_level = np.where(np.isnan(state[4]), _take(level, first_row[None])[0], state[4])
        # At b: the level of this block's anchor row, or the one kept (NaN: no rate logged by then).
        at_best = np.where(inside, _take(level, at), state[5])
        self.lr_state = np.stack([rate[-1], level[-1], top[-1], top_level[-1], first_level, at_best[-1]])
        if first == 0:
            self.lr_window[:] = level[0]  # row 0's level, for every window reaching before it
        window = np.concatenate([self.lr_window, level])
        self.lr_window = window[-_WINDOW:]
        then = window[:height]  # the level 10 rows before (row 0's before row 10)
        trend = level - np.where(np.isnan(then), first_level, then)
        since = level - np.where(np.isnan(at_best), first_level, at_best)
        return [
            np.where(logged, np.where(top > 0.0, rate / top, 1.0), LR_CONSTANT[0]),
            np.where(logged, np.maximum(level - top_level, -LR_CAP), LR_CONSTANT[1]),
            np.where(logged, np.clip(trend, -LR_CAP, LR_CAP), LR_CONSTANT[2]),
            np.where(logged, np.clip(since, -LR_CAP, LR_CAP), LR_CONSTANT[3]),
        ]


class _Sum:
    """The fast pass's logit: the bias plus each weighted feature, added group by group as they are made.

    Any order will do (the bound allows for it); adding a group while its features are still in the cache
    saves reading them back.
    """

    def __init__(self, bias: float, weights: tuple[float, ...], shape: tuple[int, int]) -> None:
        self.weights = weights
        self.sum = np.full(shape, bias)
        self.term = np.empty(shape)
        self.narrow = np.zeros((shape[0], 1))  # the features the same for every run (the epoch's, a constant rate's)
        self.added = 0

    def add(self, columns: list[FloatArray]) -> None:
        """Add the features in ``columns`` not added yet."""
        for column, weight in zip(columns[self.added :], self.weights[self.added :], strict=False):
            if weight == 0.0:
                continue
            if column.shape[1] == 1 or column.strides[1] == 0:
                self.narrow += column[:, :1] * weight
            else:
                np.multiply(column, weight, out=self.term)
                self.sum += self.term
        self.added = len(columns)

    def total(self) -> FloatArray:
        """The logit of every cell (once every feature is added)."""
        total: FloatArray = self.sum + self.narrow
        return total


def _levels(values: FloatArray, log: bool, fast: bool = False) -> FloatArray:
    """The tracker's level of each value, NaN where it is not finite (the tracker carries the last one there).

    ``fast``: numpy's logarithm (see `_fast_log`).
    """
    if not log:
        return np.where(np.isfinite(values), values, np.nan)
    if fast:  # a value up to the floor (0 included) has the floor's level, a NaN or a negative one NaN
        levels = np.maximum(_fast_log(values), _FLOOR_LEVEL)
        infinite = np.isinf(levels)
        if infinite.any():
            levels[infinite] = np.nan
        return levels
    usable = (values > LOG_FLOOR) & (values < math.inf)
    levels = np.full_like(values, np.nan)
    levels[usable] = _log(values[usable])
    levels[(values >= 0.0) & (values <= LOG_FLOOR)] = _FLOOR_LEVEL  # a negative value is refused before
    return levels


def _log(values: FloatArray) -> FloatArray:
    """``math.log`` of each value (finite, > 0), exactly: numpy's own ``log`` differs in the last bit for about
    1 value in 5,000.

    Where the C library's ``log`` is documented to be within 0.52 ulp of the true value (glibc since 2.28)
    and ``long double`` has a 64-bit mantissa, the logarithm is taken in extended precision and rounded to
    float64: that is what ``math.log`` returns wherever the true value is not within 0.05 ulp of a rounding
    tie; there (about 1 value in 10) ``math.log`` itself is called. Elsewhere every value goes through
    ``math.log``.
    """
    if not _EXTENDED_LOG:
        return np.fromiter(map(math.log, values.tolist()), dtype=np.float64, count=len(values))
    wide = np.log(values.astype(np.longdouble))
    result = wide.astype(np.float64)
    # Rounding to float64 drops the low 11 bits of the 64-bit mantissa (in the first two of each value's 16
    # bytes): 1024 of 2048 is exactly half an ulp, so 922..1126 is within 0.05 ulp of a tie.
    dropped = wide.view(np.uint16)[::8] & 0x7FF
    tie = (dropped - np.uint16(922)) < 205  # uint16 arithmetic wraps: below 922 becomes large
    if tie.any():
        near = values[tie]
        result[tie] = np.fromiter(map(math.log, near.tolist()), dtype=np.float64, count=len(near))
    return result


def _carry(values: FloatArray, before: FloatArray, fill: float = 0.0) -> FloatArray:
    """Each NaN replaced by the last non-NaN value above it in its column, else ``before``'s, else ``fill``."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    stacked = np.concatenate([np.where(np.isnan(before), fill, before)[None], values])
    rows = np.arange(len(stacked))[:, None]
    last = _running(np.maximum, np.zeros(values.shape[1], dtype=np.int64), np.where(np.isnan(stacked), 0, rows))
    return _take(stacked, last)[1:]


def _records(
    values: FloatArray, row: IntArray, record_row: IntArray, record: FloatArray, better: np.ufunc
) -> tuple[IntArray, FloatArray]:
    """The row of the running record (a value strictly beating all before it) and the record, per cell."""
    running = _running(np.minimum if better is np.less else np.maximum, record, values)
    beats = better(values, np.concatenate([record[None], running[:-1]]))
    return _running(np.maximum, record_row, np.where(beats, row, -1)), running


def _rows_where(mask: BoolArray, row: IntArray) -> IntArray:
    """``np.where(mask, row, -1)`` (``row``: a column), in integer arithmetic: faster on irregular masks."""
    rows: IntArray = mask * (row + 1)
    rows -= 1
    return rows


def _running(ufunc: np.ufunc, before: npt.NDArray[Any], values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Row ``r``: ``ufunc(row r - 1, values[r])``, row -1 being ``before``; one row at a time, in order.

    (``ufunc.accumulate`` along the first axis does the same, several times slower.)
    """
    out = np.empty_like(values, dtype=np.result_type(before, values))
    rows, given = list(out), list(values)  # the row views, made at once
    ufunc(before, given[0], out=rows[0])
    for r in range(1, len(given)):
        ufunc(rows[r - 1], given[r], out=rows[r])
    return out


def _cells(values: npt.NDArray[Any], rows: slice, cols: IntArray) -> npt.NDArray[Any]:
    """``values[rows, cols]``, in C order (the fancy index gives Fortran order, which slows every use)."""
    return np.take(values[rows], cols, axis=1)


def _take(values: FloatArray, rows: IntArray) -> FloatArray:
    """``values[rows[r, c], c]`` for every cell (a flat ``take``: cheaper than ``take_along_axis``)."""
    width = values.shape[1]
    taken: FloatArray = np.take(values.ravel(), rows * width + np.arange(width))
    return taken


def _weighted_sum(weights: tuple[float, ...], columns: list[FloatArray], shape: tuple[int, int]) -> FloatArray:
    """``sum(map(mul, weights, features))`` per cell, rounding as CPython's built-in ``sum`` does for floats."""
    term = np.empty(shape)
    if not _COMPENSATED_SUM:  # a plain left fold from the integer 0 (0 + -0.0 is 0.0)
        total = np.zeros(shape)
        for weight, column in zip(weights, columns, strict=True):
            np.multiply(column, weight, out=term)
            np.add(total, term, out=total)
        return total
    total = np.broadcast_to(0.0 + columns[0] * weights[0], shape)
    compensation = np.zeros(shape)
    for weight, column in zip(weights[1:], columns[1:], strict=True):
        np.multiply(column, weight, out=term)
        added = total + term
        compensation += np.where(np.abs(total) >= np.abs(term), (total - added) + term, (term - added) + total)
        total = added
    return np.where((compensation != 0.0) & np.isfinite(compensation), total + compensation, total)
