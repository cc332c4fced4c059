"""A learned policy's decisions for many runs at once, with numpy, exactly as the Monitor makes them.

The vectorised replay (`earlystop_core.replay.engine`) steps the
Monitor's bests over every epoch of every run; `first_stops` then finds,
for every run, the first epoch where a [`LearnedPolicy`][earlystop_core.LearnedPolicy]'s
``check`` returns True: it runs the policy's
`FeatureTracker` for all runs together,
a block of epochs at a time, and drops each run from the work once it has
stopped or ended (a learned policy stops most runs about half-way, so most of
the padded epochs are never computed).

Bit for bit, not approximately: every feature is the tracker's expression
term for term (numpy's elementwise float64 arithmetic rounds as Python's
does), logarithms are Python's own ``math.log`` (numpy's may differ in the last
bit), cumulative sums run in the tracker's order, and the logit is summed as
CPython's ``sum`` does (a plain left fold before Python 3.12, Neumaier's
compensated sum since). ``tests/test_policy_simulate.py`` holds this against
the tracker and against ``Monitor(policy=...)`` over random policies, curves
and Monitor settings.

Arrays are epoch-major, ``(rows, runs)``: row ``r`` is the epoch
``start + r``, the ``r + 1``-th epoch the policy is asked about.

(Fitting sweeps thresholds over features recorded by a real Monitor instead:
`earlystop_core.policy.fit.simulate`.)
"""

from __future__ import annotations

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
        parts = [slice(lo, lo + size) for lo in range(0, count, size)]
        return np.concatenate([
            first_stops(policy, start, value[:, part], adopted[:, part], reset[:, part],
                        {name: array[:, part] for name, array in logs.items()}, limit[part], earliest, block)
            for part in parts
        ])  # fmt: skip
    stops = np.full(count, rows, dtype=np.int64)
    longest = max(start + rows, policy.max_epochs or 0)  # what log1p is taken of
    tracker = _Trackers(policy, start, rows, count, longest)
    active = np.flatnonzero(limit > 0)
    with np.errstate(all="ignore"):
        for first in range(0, rows, block):
            if not len(active):
                break
            last = min(first + block, rows)
            part = {name: array[first:last, active] for name, array in logs.items()}
            wants = tracker.step(
                active, first, value[first:last, active], adopted[first:last, active], reset[first:last, active], part
            )
            rows_here = np.arange(first, last)[:, None]
            wants &= (rows_here < limit[active]) & (rows_here >= earliest)
            stopping = wants.any(axis=0)
            stops[active[stopping]] = first + wants[:, stopping].argmax(axis=0)
            active = active[~stopping & (limit[active] > last)]
    return stops


class _Trackers:
    """A `FeatureTracker` per run, as arrays, stepped a block at a time.

    Per run it keeps what the tracker keeps between epochs (the carried levels, the
    bests and their epochs, the running records); per row, the cumulative sums and
    best levels the 10-epoch windows look back at. Series that are stepped alike (the
    monitored level, the training loss and the accuracy) are stepped side by side, as
    one array ``width`` columns per series: numpy calls, not arithmetic, are the cost.
    """

    def __init__(self, policy: LearnedPolicy, start: int, rows: int, count: int, longest: int) -> None:
        self.policy = policy
        self.start = start
        self.count = count
        self.weights = policy._folded
        self.bias = policy._bias_folded
        self.cut = policy._cut
        self.budget = policy._tracker.max_epochs
        self.train = policy.train_metric is not None
        self.accuracy = policy.accuracy_metric is not None
        self.series = 1 + self.train + self.accuracy  # the monitored level, then the training loss, the accuracy
        self.log1p = np.array([math.log1p(k) for k in range(longest + 2)])  # math.log1p of the counts
        self.rows = np.arange(rows)[:, None]
        # Record j (j epochs seen), per run: the cumulative sum of levels, then of absolute level steps;
        # and the best level. Record 0 is the tracker's seed (0, 0, first level).
        self.sums = np.zeros((rows + 1, 2 * count))
        self.record_best = np.zeros((rows + 1, count))
        # Per run and series: the last carried value (NaN before the first epoch) and its value at b.
        self.last = np.full(self.series * count, np.nan)
        self.at_best = np.zeros(self.series * count)
        # Per run: the rows wait was last set back to 0 and of the last adoption (-1: none).
        self.marks = np.full(2 * count, -1, dtype=np.int64)
        self.nan_best = np.zeros(count, dtype=bool)  # whether the best is NaN (its level is then each epoch's)
        # Per run, for the training loss and the negated accuracy: the lowest so far and its row.
        self.low = np.full(2 * count, np.inf)
        self.low_row = np.full(2 * count, -1, dtype=np.int64)
        self.acc_first = np.zeros(count)
        # The learning rate, per run: the last rate (raw) and its level, the highest (raw and level), the
        # first level and the level at b, NaN until a rate is logged; per row, the carried levels.
        self.lr = policy.lr_metric
        if self.lr is not None:
            self.lr_state = np.full((6, count), np.nan)
            self.lr_rows = np.full((rows, count), np.nan)

    def columns(self, cols: IntArray, copies: int) -> IntArray:
        """The state columns of runs ``cols`` in ``copies`` side-by-side arrays of ``count`` columns."""
        return np.concatenate([cols + k * self.count for k in range(copies)])

    def step(
        self,
        cols: IntArray,
        first: int,
        value: FloatArray,
        adopted: BoolArray,
        reset: BoolArray,
        logs: Mapping[str, FloatArray],
    ) -> BoolArray:
        """Rows ``first ..`` of the runs ``cols``: where ``check`` returns True (the memory moves on)."""
        policy = self.policy
        height, width = value.shape
        row = self.rows[first : first + height]
        j = row + 1  # epochs seen
        epoch = row + self.start
        two, many = self.columns(cols, 2), self.columns(cols, self.series)
        # wait (epochs since the last reset, or since start: a reset "at row -1") and the best's row.
        marks = _running(np.maximum, self.marks[two], np.where(np.concatenate([reset, adopted], axis=1), row, -1))
        self.marks[two] = marks[-1]
        wait, adoption = row - marks[:, :width], marks[:, width:]
        # The series' values: levels where the tracker takes logarithms, NaN where it carries the last one.
        train_key, accuracy_key = policy.train_metric, policy.accuracy_metric
        if train_key is not None and policy.log:  # both through one logarithm call (a negative loss is carried too)
            raw = [_levels(np.concatenate([value, logs[train_key]], axis=1), True)]
        else:
            raw = [_levels(value, policy.log)]
            if train_key is not None:
                raw.append(_levels(logs[train_key], True))
        if accuracy_key is not None:
            accuracy = logs[accuracy_key]
            raw.append(np.where(np.isfinite(accuracy), accuracy, np.nan))
        before = self.last[many]
        carried = _carry(np.concatenate(raw, axis=1) if len(raw) > 1 else raw[0], before)
        self.last[many] = carried[-1]
        level = carried[:, :width]
        # At b (the last adoption, or the first epoch seen): each series' value, from this block or kept.
        anchor = np.maximum(adoption, 0)
        inside = anchor >= first
        at = np.where(inside, anchor - first, 0)
        at_best = np.where(np.tile(inside, self.series), _take(carried, np.tile(at, self.series)), self.at_best[many])
        self.at_best[many] = at_best[-1]
        if self.nan_best[cols].any() or np.isnan(value).any():  # a NaN best's level is each epoch's own
            nan_best = np.where(inside, np.isnan(_take(value, at)), self.nan_best[cols])
            best_level = np.where((adoption >= 0) & ~nan_best, at_best[:, :width], level)
            self.nan_best[cols] = nan_best[-1]
        else:
            best_level = np.where(adoption >= 0, at_best[:, :width], level)
        # Cumulative sums of levels and of absolute steps, and the best levels: one record per epoch seen.
        previous = np.concatenate([before[None, :width] if first else level[:1], level[:-1]])
        step = np.abs(level - previous)
        if first == 0:
            self.record_best[0, cols] = level[0]
        sums = _running(np.add, self.sums[first, two], np.concatenate([level, step], axis=1))  # in order
        stored = slice(first + 1, first + height + 1)
        self.sums[stored, two] = sums
        self.record_best[stored, cols] = best_level
        # The 10-epoch windows: records j - 5 and j - 10 (they start once 10 epochs are seen).
        back10 = self.sums[np.ix_(np.maximum(j[:, 0] - 10, 0), two)]
        trend5 = (sums[:, :width] - 2.0 * self.sums[np.ix_(np.maximum(j[:, 0] - 5, 0), cols)]) + back10[:, :width]
        trend5 *= 0.2
        recent = self.record_best[np.ix_(np.maximum(j[:, 0] - 10, 0), cols)] - best_level
        noise = (sums[:, width:] - back10[:, width:]) * 0.1
        if first < 10:  # the rows that have seen 10 epochs or fewer
            early = slice(0, min(10 - first, height))
            e = j[early]
            trend5[early] = np.where(e >= 10, trend5[early], 0.0)
            first_level = level[:1] if first == 0 else self.record_best[0, cols][None]
            recent[early] = np.where(e >= 10, recent[early], first_level - best_level[early])
            counted = sums[early, width:]
            noise[early] = np.where(
                e > 10, noise[early], np.where(e == 10, counted / 9.0, counted / np.maximum(e - 1, 1))
            )
            noise[early] = np.where(e > 1, noise[early], 0.0)
        gl = np.minimum(level - best_level, _CAP)  # the tracker's `if gl > 50: gl = 50`
        ratio = gl / np.fmax(noise, _NOISE_FLOOR)  # divided by the noise when it is above the floor
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
        budget = self.budget
        if budget is not None:
            left = budget - 1 - epoch
            columns += [epoch / budget, np.where(left > 0, self.log1p[np.maximum(left, 0)], 0.0), wait / budget]
        if self.train or self.accuracy:
            columns += self._records(cols, row, carried[:, width:], at_best[:, width:], level, first)
        if self.lr is not None:
            columns += self._rates(cols, first, logs.get(self.lr), inside, at)
        total = _weighted_sum(self.weights, columns, value.shape)
        logit = self.bias + total
        may: BoolArray = ~adopted & (epoch != 0) & (wait >= policy.min_wait)
        wants: BoolArray = may & ((wait >= policy.max_wait) | (logit < self.cut))
        return wants

    def _records(
        self, cols: IntArray, row: IntArray, series: FloatArray, at_best: FloatArray, level: FloatArray, first: int
    ) -> list[FloatArray]:
        """The ``train`` and ``accuracy`` features, from the carried training-loss level and accuracy."""
        width = len(cols)
        # The running records, side by side: the lowest training loss and the highest accuracy (negated).
        train = series[:, :width] if self.train else None
        acc = series[:, -width:] if self.accuracy else None
        both = np.concatenate([part for part in (train, None if acc is None else -acc) if part is not None], axis=1)
        which = np.concatenate([cols + k * self.count for k, on in enumerate((self.train, self.accuracy)) if on])
        low = _running(np.minimum, self.low[which], both)
        beats = both < np.concatenate([self.low[which][None], low[:-1]])
        low_row = _running(np.maximum, self.low_row[which], np.where(beats, row, -1))
        self.low[which], self.low_row[which] = low[-1], low_row[-1]
        features: list[FloatArray] = []
        if train is not None:
            features += [train - at_best[:, :width], self.log1p[row - low_row[:, :width]], level - train]
        if acc is not None:
            if first == 0:
                self.acc_first[cols] = acc[0]
            high = -low[:, -width:]
            features += [
                self.log1p[row - low_row[:, -width:]],
                high - at_best[:, -width:],
                high - self.acc_first[cols],
                acc,
                high,
            ]
        return features

    def _rates(
        self, cols: IntArray, first: int, rates: FloatArray | None, inside: BoolArray, at: IntArray
    ) -> list[FloatArray]:
        """The ``lr`` features: the rate carried over epochs without one (NaN until one is logged)."""
        height, width = inside.shape
        state = self.lr_state[:, cols]  # last, last level, highest, highest level, first level, level at b
        stored = slice(first, first + height)
        if rates is None and np.isnan(state[0]).all():  # no rate logged yet, none in these rows
            self.lr_rows[stored, cols] = np.nan
            self.lr_state[5, cols] = np.where(inside[-1], np.nan, state[5])
            return [np.full((height, width), value) for value in LR_CONSTANT]
        raw = np.full((height, width), np.nan) if rates is None else np.where(rates < math.inf, rates, np.nan)
        given = ~np.isnan(raw)
        levels = np.full_like(raw, np.nan)
        above = given & (raw > LOG_FLOOR)
        levels[above] = _log(raw[above])
        levels[given & ~above] = _FLOOR_LEVEL
        rate = _carry(raw, state[0], fill=math.nan)
        level = _carry(levels, state[1], fill=math.nan)
        top = _running(np.fmax, state[2], rate)
        top_level = _running(np.fmax, state[3], level)
        logged = ~np.isnan(level)
        first_row = np.argmax(logged, axis=0)  # the first row with a rate, where none was before
        first_level = np.where(np.isnan(state[4]), _take(level, first_row[None])[0], state[4])
        self.lr_rows[stored, cols] = level
        # At b: the level of this block's anchor row, or the one kept (NaN: no rate logged by then).
        at_best = np.where(inside, _take(level, at), state[5])
        self.lr_state[:, cols] = [rate[-1], level[-1], top[-1], top_level[-1], first_level, at_best[-1]]
        then = self.lr_rows[np.ix_(np.maximum(self.rows[first : first + height, 0] - 10, 0), cols)]
        trend = level - np.where(np.isnan(then), first_level, then)
        since = level - np.where(np.isnan(at_best), first_level, at_best)
        return [
            np.where(logged, np.where(top > 0.0, rate / top, 1.0), LR_CONSTANT[0]),
            np.where(logged, np.maximum(level - top_level, -LR_CAP), LR_CONSTANT[1]),
            np.where(logged, np.clip(trend, -LR_CAP, LR_CAP), LR_CONSTANT[2]),
            np.where(logged, np.clip(since, -LR_CAP, LR_CAP), LR_CONSTANT[3]),
        ]


def _levels(values: FloatArray, log: bool) -> FloatArray:
    """The tracker's level of each value, NaN where it is not finite (the tracker carries the last one there)."""
    if not log:
        return np.where(np.isfinite(values), values, np.nan)
    levels = np.full_like(values, np.nan)
    usable = (values > LOG_FLOOR) & (values < math.inf)
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


def _running(ufunc: np.ufunc, before: npt.NDArray[Any], values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Row ``r``: ``ufunc(row r - 1, values[r])``, row -1 being ``before``; one row at a time, in order.

    (``ufunc.accumulate`` along the first axis does the same, several times slower.)
    """
    out = np.empty_like(values, dtype=np.result_type(before, values))
    ufunc(before, values[0], out=out[0])
    for r in range(1, len(values)):
        ufunc(out[r - 1], values[r], out=out[r])
    return out


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
