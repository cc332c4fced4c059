"""The online features of a learned stopping policy: O(1) time and memory per epoch, state as JSON.

A `FeatureTracker` is fed what a rule's ``check`` gets (epoch, signed
value, best, wait, improved, logs) and returns the features of that epoch.
Every feature at epoch ``t`` depends on epochs ``<= t`` only. Window means
come from a history of cumulative sums over the last 10 monitored epochs, so
no feature costs more than a few arithmetic operations.

The monitored value enters through its *level*: ``log(value)`` with
``log=True`` (a positive loss; values below `LOG_FLOOR` count as the
floor, since real cross-entropies do reach 0.0), else the value itself. A
non-finite value, training loss or accuracy carries the last finite one.

Features, by family. ``n`` counts the monitored epochs seen (this one
included), ``b`` is the epoch of the last improvement (or the first epoch
seen), "epochs since" counts monitored epochs, and the windows are over
monitored epochs:

``value``
    ``log_wait`` = log(1 + wait); ``wait_share`` = wait / n;
    ``log_best_epoch`` = log(1 + b); ``log_epoch`` = log(1 + epoch);
    ``gl`` = level − level(best), the generalisation loss (a log ratio for a
    loss), capped at 50; ``trend5`` = mean level over the last 5 epochs minus
    the mean over the 5 before (0 until 10 are seen); ``noise10`` = mean
    absolute level step over the last 10 steps; ``gl_over_noise`` =
    gl / max(noise10, 1e-6), capped at 50; ``recent_gain10`` =
    level(best 10 epochs ago) − level(best) (from the first level until then).
``budget`` (needs ``max_epochs`` = M)
    ``budget_position`` = epoch / M; ``budget_left`` = log(1 + max(M − 1 − epoch, 0));
    ``wait_budget`` = wait / M.
``train`` (the training loss, through ``log``)
    ``train_since_best`` = log training loss now minus at epoch b;
    ``train_log_wait`` = log(1 + epochs since the lowest training loss);
    ``train_gap`` = level − log training loss.
``accuracy`` (a validation accuracy, higher is better)
    ``acc_log_wait`` = log(1 + epochs since the best accuracy, first on ties);
    ``acc_best_gap`` = best accuracy − accuracy at epoch b; ``acc_progress`` =
    best − first; ``acc_level`` = now; ``acc_best`` = best.
``lr`` (the learning rate, when the logs carry it; higher is faster)
    With ``r`` the rate now, ``M`` the highest rate so far and ``lvl(r)`` =
    ``log(r)`` (``r`` below `LOG_FLOOR` counting as the floor):
    ``lr_to_max`` = r / M (1 when M is 0); ``lr_log_to_max`` =
    lvl(r) − lvl(M), floored at −10; ``lr_trend10`` = lvl(r) − lvl(rate 10
    epochs ago, or at the first epoch seen until then), in [−10, 10];
    ``lr_since_best`` = lvl(r) − lvl(rate at epoch b), in [−10, 10].

    The rate is **optional** in the logs: it is not in a policy's ``requires``.
    An epoch that does not log it (or logs NaN or an infinity) carries the last
    rate logged; before any rate is logged the features are those of a constant
    rate (``lr_to_max`` 1, the others 0), and epochs before the first rate
    logged count as having had that first rate. So a policy fitted with these
    features decides logs without a rate as it would a constant-rate run. A
    negative rate is an error.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from earlystop_core._json import float_from_json, float_to_json
from earlystop_core._validate import check_bool, check_int
from earlystop_core._values import coerce_metric
from earlystop_core.errors import MissingMetricError, StateError

__all__ = [
    "FAMILIES",
    "FEATURES",
    "HISTORY",
    "LOG_FLOOR",
    "LR_CAP",
    "LR_CONSTANT",
    "FeatureTracker",
    "check_metric_name",
]

#: Every feature, by family, in the order a tracker returns them.
FAMILIES: dict[str, tuple[str, ...]] = {
    "value": (
        "log_wait",
        "wait_share",
        "log_best_epoch",
        "log_epoch",
        "gl",
        "trend5",
        "noise10",
        "gl_over_noise",
        "recent_gain10",
    ),
    "budget": ("budget_position", "budget_left", "wait_budget"),
    "train": ("train_since_best", "train_log_wait", "train_gap"),
    "accuracy": ("acc_log_wait", "acc_best_gap", "acc_progress", "acc_level", "acc_best"),
    "lr": ("lr_to_max", "lr_log_to_max", "lr_trend10", "lr_since_best"),
}
#: Feature name -> its family.
FEATURES: dict[str, str] = {name: family for family, names in FAMILIES.items() for name in names}

#: Lowest value a logarithm is taken of (a cross-entropy of exactly 0.0 happens: float underflow).
LOG_FLOOR = 1e-12
#: Cumulative records kept: the last 10 epochs and the one before them.
HISTORY = 11
_FLOOR_LEVEL = math.log(LOG_FLOOR)
_INF = math.inf
_log = math.log
_log1p = math.log1p
_NOISE_FLOOR = 1e-6
_CAP = 50.0
_FLOATS = (
    "first",
    "last",
    "train_last",
    "train_at_best",
    "train_best",
    "acc_first",
    "acc_last",
    "acc_best",
    "acc_at_best",
)
_COUNTS = ("seen", "best_epoch", "train_best_seen", "acc_best_seen")
_STATE_FIELDS = ("history", *_COUNTS, *_FLOATS, "features")
#: The learning-rate memory, saved under ``"lr"`` (only by a tracker with an ``lr_metric``).
_LR_FLOATS = ("first", "last", "max", "max_level", "at_best")
_LR_FIELDS = ("levels", *_LR_FLOATS)
#: The learning-rate features' bound: a log ratio beyond ±10 (a factor of 22,000) reads as ±10.
LR_CAP = 10.0
#: The learning-rate features of a run whose logs have carried no rate yet: a constant rate's.
LR_CONSTANT = (1.0, 0.0, 0.0, 0.0)

#: (sum of levels, sum of absolute level steps, best level), cumulative from the first epoch seen.
Record = tuple[float, float, float]


class FeatureTracker:
    """Computes a policy's features online (see the module docstring for the definitions).

    Args:
        log: Take ``log`` of the (signed, lower-is-better) monitored value: for
            a positive loss.
        max_epochs: The epoch budget; enables the ``budget`` family.
        train_metric: Training-loss key in the logs; enables the ``train`` family.
        accuracy_metric: Validation-accuracy key in the logs; enables the ``accuracy`` family.
        lr_metric: Learning-rate key in the logs; enables the ``lr`` family (the logs may lack it).

    Examples:
        >>> tracker = FeatureTracker(max_epochs=10, accuracy_metric="val_accuracy")
        >>> for epoch, (loss, best, acc) in enumerate([(0.9, 0.9, 0.5), (0.8, 0.8, 0.6), (0.85, 0.8, 0.7)]):
        ...     features = tracker.step(epoch, loss, best, max(epoch - 1, 0), epoch < 2, {"val_accuracy": acc})
        >>> named = dict(zip(tracker.names, features))
        >>> named["budget_position"], named["log_best_epoch"] == math.log(2), round(named["acc_progress"], 2)
        (0.2, True, 0.2)
    """

    __slots__ = (
        "_acc_at_best",
        "_acc_best",
        "_acc_best_seen",
        "_acc_first",
        "_acc_last",
        "_best_epoch",
        "_features",
        "_first",
        "_history",
        "_last",
        "_log_best_epoch",
        "_lr_at_best",
        "_lr_first",
        "_lr_last",
        "_lr_levels",
        "_lr_max",
        "_lr_max_level",
        "_seen",
        "_train_at_best",
        "_train_best",
        "_train_best_seen",
        "_train_last",
        "accuracy_metric",
        "families",
        "log",
        "lr_metric",
        "max_epochs",
        "names",
        "train_metric",
    )

    def __init__(
        self,
        log: bool = True,
        max_epochs: int | None = None,
        train_metric: str | None = None,
        accuracy_metric: str | None = None,
        lr_metric: str | None = None,
    ) -> None:
        self.log = check_bool("log", log)
        self.max_epochs = None if max_epochs is None else check_int("max_epochs", max_epochs, minimum=1)
        self.train_metric = check_metric_name("train_metric", train_metric)
        self.accuracy_metric = check_metric_name("accuracy_metric", accuracy_metric)
        self.lr_metric = check_metric_name("lr_metric", lr_metric)
        families = ["value"]
        if self.max_epochs is not None:
            families.append("budget")
        if self.train_metric is not None:
            families.append("train")
        if self.accuracy_metric is not None:
            families.append("accuracy")
        if self.lr_metric is not None:
            families.append("lr")
        #: The enabled families, in `FAMILIES` order.
        self.families = tuple(families)
        #: The names of the features `step` returns, in order.
        self.names = tuple(name for family in self.families for name in FAMILIES[family])
        self.reset()

    def __deepcopy__(self, memo: dict[int, Any]) -> FeatureTracker:
        # A Monitor copies its policy, and the policy its tracker: only the history and the last features
        # are mutable (everything else is a number, a string or a tuple), so a copy is cheap.
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone._history = deque(self._history, maxlen=HISTORY)
        clone._lr_levels = deque(self._lr_levels, maxlen=HISTORY)
        clone._features = list(self._features)
        return clone

    def reset(self) -> None:
        """Forget every epoch seen."""
        self._history: deque[Record] = deque(maxlen=HISTORY)
        self._seen = 0
        self._best_epoch = -1
        self._log_best_epoch = 0.0
        self._first = math.nan
        self._last = math.nan
        self._train_last = math.nan
        self._train_at_best = math.nan
        self._train_best = _INF
        self._train_best_seen = -1
        self._acc_first = math.nan
        self._acc_last = math.nan
        self._acc_best = -_INF
        self._acc_best_seen = -1
        self._acc_at_best = math.nan
        # The rate's levels of the last 11 epochs seen (NaN before the first rate logged), the first rate's
        # level, the last rate (raw) and the highest (raw and level), and the level at epoch b (NaN: not yet).
        self._lr_levels: deque[float] = deque(maxlen=HISTORY)
        self._lr_first = math.nan
        self._lr_last = math.nan
        self._lr_max = math.nan
        self._lr_max_level = math.nan
        self._lr_at_best = math.nan
        self._features: list[float] = []

    def level(self, value: float) -> float:
        """The monitored value as the features see it: its log (floored) with ``log=True``.

        Examples:
            >>> FeatureTracker().level(0.0) == math.log(LOG_FLOOR)
            True
        """
        if not self.log:
            return value
        if value < 0:
            raise ValueError(
                f"a policy with log=True takes logarithms of a non-negative minimised metric, got {value!r}; "
                "fit the policy with log=False"
            )
        return _log(value) if value > LOG_FLOOR else _FLOOR_LEVEL

    def step(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> list[float]:
        """Take one monitored epoch, as a rule's ``check`` gets it; return the features of `names`."""
        # The hot path of a LearnedPolicy: locals, few attribute reads, no helper calls on finite values.
        rate = math.nan
        lr_name = self.lr_metric
        if lr_name is not None:  # read first: a negative rate raises before anything changes
            raw = logs.get(lr_name)
            if raw is not None:
                rate = raw if type(raw) is float else coerce_metric(lr_name, raw)
                if rate < 0.0:
                    raise ValueError(f"the learning rate {lr_name!r} must be >= 0, got {rate!r}")
        if not self.log:
            level = value
        elif value > LOG_FLOOR:
            level = _log(value)
        elif value >= 0.0:
            level = _FLOOR_LEVEL
        else:
            level = _INF if math.isnan(value) else self.level(value)  # a negative value raises
        if not -_INF < level < _INF:  # NaN or infinite: carry the last finite level
            level = self._last
            if math.isnan(level):
                level = 0.0
        history = self._history
        # The best's level is taken when the best is adopted and kept (in the history) until the next one, so
        # that a resumed tracker goes on with it: an infinite best's is the level of the epoch that adopted it.
        if best is None or best != best:  # noqa: PLR0124 - no best yet, or a NaN one (Keras's): this epoch's level
            best_level = level
        elif improved or not self._seen:
            best_level = self.level(best)
            if not -_INF < best_level < _INF:
                best_level = level
        else:
            best_level = history[-1][2]
        seen = self._seen = self._seen + 1
        if seen == 1:
            self._first = level
            history.append((0.0, 0.0, level))
            step = 0.0
        else:
            step = level - self._last
            if step < 0.0:
                step = -step
        if improved or seen == 1:
            self._best_epoch = epoch
            self._log_best_epoch = _log1p(epoch)
        self._last = level
        previous = history[-1]
        current = (previous[0] + level, previous[1] + step, best_level)
        history.append(current)
        # history[-1 - k] is the record of k epochs ago; len(history) == min(seen + 1, HISTORY).
        gl = level - best_level
        if gl > _CAP:  # noqa: PLR1730 - the hot path: a comparison is cheaper than a call to min()
            gl = _CAP
        if seen >= 10:
            ten = history[-11]
            trend5 = (current[0] - 2.0 * history[-6][0] + ten[0]) * 0.2
            recent = ten[2] - best_level
            noise = (current[1] - ten[1]) * 0.1 if seen > 10 else current[1] / 9.0
        else:
            trend5 = 0.0
            recent = self._first - best_level
            noise = current[1] / (seen - 1) if seen > 1 else 0.0
        ratio = gl / noise if noise > _NOISE_FLOOR else gl / _NOISE_FLOOR
        features = [
            _log1p(wait),
            wait / seen,
            self._log_best_epoch,
            _log1p(epoch),
            gl,
            trend5,
            noise,
            ratio if ratio < _CAP else _CAP,
            recent,
        ]
        budget = self.max_epochs
        if budget is not None:
            left = budget - 1 - epoch
            features += (epoch / budget, _log1p(left) if left > 0 else 0.0, wait / budget)
        name = self.train_metric
        if name is not None:
            try:
                raw = logs[name]
            except KeyError:
                raise MissingMetricError(name, logs.keys()) from None
            loss = raw if type(raw) is float else coerce_metric(name, raw)
            if LOG_FLOOR < loss < _INF:
                train = self._train_last = _log(loss)
            elif 0.0 <= loss < _INF:
                train = self._train_last = _FLOOR_LEVEL
            else:  # NaN, infinite or an impossible negative loss: carry the last level
                train = self._train_last
                if math.isnan(train):
                    train = 0.0
            if improved or seen == 1:
                self._train_at_best = train
            if train < self._train_best:
                self._train_best = train
                self._train_best_seen = seen
            features += (train - self._train_at_best, _log1p(seen - self._train_best_seen), level - train)
        name = self.accuracy_metric
        if name is not None:
            try:
                raw = logs[name]
            except KeyError:
                raise MissingMetricError(name, logs.keys()) from None
            acc = raw if type(raw) is float else coerce_metric(name, raw)
            if -_INF < acc < _INF:
                self._acc_last = acc
            else:  # NaN or infinite: carry the last finite accuracy
                acc = self._acc_last
                if math.isnan(acc):
                    acc = 0.0
            if seen == 1:
                self._acc_first = acc
            if improved or seen == 1:
                self._acc_at_best = acc
            best_acc = self._acc_best
            if acc > best_acc:
                best_acc = self._acc_best = acc
                self._acc_best_seen = seen
            features += (
                _log1p(seen - self._acc_best_seen),
                best_acc - self._acc_at_best,
                best_acc - self._acc_first,
                acc,
                best_acc,
            )
        if lr_name is not None:
            features += self._lr_step(rate, improved or seen == 1)
        self._features = features
        return features

    def _lr_step(self, rate: float, at_best: bool) -> tuple[float, float, float, float]:
        """The ``lr`` features of this epoch, from the rate it logs (NaN: none, carry the last one)."""
        levels = self._lr_levels
        if rate < _INF:  # a finite rate (>= 0): NaN and +inf fail the test
            level = _log(rate) if rate > LOG_FLOOR else _FLOOR_LEVEL
            self._lr_last = rate
            if math.isnan(self._lr_first):
                self._lr_first = level
            if not rate <= self._lr_max:  # also the first rate (the highest is NaN until then)
                self._lr_max = rate
                self._lr_max_level = level
        elif levels:
            level = levels[-1]  # NaN until a rate is logged
        else:
            level = math.nan
        levels.append(level)
        if at_best:
            self._lr_at_best = level
        if math.isnan(level):  # no rate logged yet: a constant rate's features
            return LR_CONSTANT
        first = self._lr_first
        top = self._lr_max
        ratio = self._lr_last / top if top > 0.0 else 1.0
        below = level - self._lr_max_level
        then = levels[0]  # 10 epochs ago, or the first epoch seen (a rate not yet logged counts as the first)
        trend = level - (first if math.isnan(then) else then)
        then = self._lr_at_best
        since = level - (first if math.isnan(then) else then)
        return (
            ratio,
            below if below > -LR_CAP else -LR_CAP,
            -LR_CAP if trend < -LR_CAP else (LR_CAP if trend > LR_CAP else trend),
            -LR_CAP if since < -LR_CAP else (LR_CAP if since > LR_CAP else since),
        )

    def remembered(self) -> list[float]:
        """The levels of the monitored values kept, and the features made of them (see ``Rule.remembered``)."""
        if not self._seen:
            return []
        return [self._first, self._last, *(level for record in self._history for level in record), *self._features]

    def last_features(self) -> list[float]:
        """What `step` returned last (empty before the first epoch)."""
        return list(self._features)

    # -- saving and resuming ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The tracker's memory as strict JSON (non-finite floats as strings).

        Examples:
            >>> tracker = FeatureTracker()
            >>> _ = tracker.step(0, 0.5, 0.5, 0, True, {})
            >>> again = FeatureTracker()
            >>> again.load_state_dict(tracker.state_dict())
            >>> again.step(1, 0.4, 0.4, 0, True, {}) == tracker.step(1, 0.4, 0.4, 0, True, {})
            True
        """
        state: dict[str, Any] = {"history": [[float_to_json(x) for x in record] for record in self._history]}
        state.update((name, getattr(self, f"_{name}")) for name in _COUNTS)
        state.update((name, float_to_json(getattr(self, f"_{name}"))) for name in _FLOATS)
        state["features"] = [float_to_json(x) for x in self._features]
        if self.lr_metric is not None:
            lr: dict[str, Any] = {"levels": [float_to_json(x) for x in self._lr_levels]}
            lr.update((name, float_to_json(getattr(self, f"_lr_{name}"))) for name in _LR_FLOATS)
            state["lr"] = lr
        return state

    def load_state_dict(self, state: Any) -> None:
        """Restore memory saved by `state_dict`; raises [`StateError`][earlystop_core.StateError] when it is corrupt.

        A tracker with an ``lr_metric`` needs the ``"lr"`` memory too: a state saved by one without (an
        earlier version's, or a policy without learning-rate features) is refused, and the other way round.
        """
        fields = (*_STATE_FIELDS, "lr") if self.lr_metric is not None else _STATE_FIELDS
        if isinstance(state, Mapping) and set(state) == set(_STATE_FIELDS) and self.lr_metric is not None:
            raise StateError(
                "corrupt Monitor state: this policy reads the learning rate, but the state has no 'lr' memory "
                "(it was saved by a policy without learning-rate features, or by an earlier earlystop_core): "
                "start the run's Monitor afresh or resume it with the policy it was saved with"
            )
        if not isinstance(state, Mapping) or set(state) != set(fields):
            raise StateError(
                f"corrupt Monitor state: a policy's features need the fields {', '.join(fields)}, got {state!r}"
            )
        history = state["history"]
        if not isinstance(history, list) or len(history) > HISTORY:
            raise StateError(f"corrupt Monitor state: a policy's history must be a list of <= {HISTORY} records")
        records: list[Record] = []
        for record in history:
            if not isinstance(record, list) or len(record) != 3:
                raise StateError("corrupt Monitor state: each record of a policy's history is a list of 3 numbers")
            a, b, c = (_number(x, "history") for x in record)
            records.append((a, b, c))
        counts: dict[str, int] = {}
        for name in _COUNTS:
            count = state[name]
            lowest = 0 if name == "seen" else -1
            if isinstance(count, bool) or not isinstance(count, int) or count < lowest:
                raise StateError(
                    f"corrupt Monitor state: a policy's {name!r} must be an int >= {lowest}, got {count!r}"
                )
            counts[name] = count
        seen = counts["seen"]
        if len(records) != (min(seen + 1, HISTORY) if seen else 0):
            raise StateError(
                f"corrupt Monitor state: a policy's history holds {len(records)} records after {seen} epochs"
            )
        features = state["features"]
        if not isinstance(features, list) or len(features) not in (0, len(self.names)):
            raise StateError(f"corrupt Monitor state: a policy's 'features' must list {len(self.names)} numbers")
        floats = {name: _number(state[name], name) for name in _FLOATS}
        self._check_reachable(counts, floats)
        lr = _lr_memory(state["lr"], min(seen, HISTORY)) if self.lr_metric is not None else None
        self._features = [_number(x, "features") for x in features]
        self._history = deque(records, maxlen=HISTORY)
        self._seen = seen
        self._best_epoch = counts["best_epoch"]
        self._train_best_seen = counts["train_best_seen"]
        self._acc_best_seen = counts["acc_best_seen"]
        self._log_best_epoch = _log1p(self._best_epoch) if self._best_epoch >= 0 else 0.0
        self._first = floats["first"]
        self._last = floats["last"]
        self._train_last = floats["train_last"]
        self._train_at_best = floats["train_at_best"]
        self._train_best = floats["train_best"]
        self._acc_first = floats["acc_first"]
        self._acc_last = floats["acc_last"]
        self._acc_best = floats["acc_best"]
        self._acc_at_best = floats["acc_at_best"]
        if lr is not None:
            levels, lr_floats = lr
            self._lr_levels = deque(levels, maxlen=HISTORY)
            for name in _LR_FLOATS:
                setattr(self, f"_lr_{name}", lr_floats[name])

    def _check_reachable(self, counts: dict[str, int], floats: dict[str, float]) -> None:
        """Refuse counters and levels no sequence of epochs leads to (a damaged state would change the features)."""
        fresh = FeatureTracker()
        unused = [] if counts["seen"] else ["first", "last", "best_epoch"]
        if self.train_metric is None or not counts["seen"]:
            unused += ["train_last", "train_at_best", "train_best", "train_best_seen"]
        if self.accuracy_metric is None or not counts["seen"]:
            unused += ["acc_first", "acc_last", "acc_best", "acc_at_best", "acc_best_seen"]
        for name in unused:  # still as reset() left them
            value = counts[name] if name in counts else floats[name]
            if repr(value) != repr(getattr(fresh, f"_{name}")):
                raise StateError(f"corrupt Monitor state: a policy's {name!r} is {value!r} where nothing set it")
        if not counts["seen"]:
            return
        finite = []  # levels made finite as they are read (a non-finite loss or accuracy carries the last one)
        if self.train_metric is not None:
            finite += ["train_at_best", "train_best"]
        if self.accuracy_metric is not None:
            finite += ["acc_first", "acc_best", "acc_at_best"]
        for name in ("first", "last", *finite):
            value = floats[name]
            if math.isnan(value) or (name in finite and not math.isfinite(value)):
                raise StateError(
                    f"corrupt Monitor state: a policy's {name!r} is {value!r} after {counts['seen']} epochs"
                )
        if counts["best_epoch"] < 0:  # the first epoch seen is an improvement
            raise StateError(f"corrupt Monitor state: a policy's 'best_epoch' is {counts['best_epoch']} after epochs")
        for name in ("train_best_seen", "acc_best_seen"):
            if name not in unused and not 1 <= counts[name] <= counts["seen"]:
                raise StateError(
                    f"corrupt Monitor state: a policy's {name!r} ({counts[name]}) is not in 1..{counts['seen']}"
                )


def check_metric_name(name: str, value: Any) -> str | None:
    """``value`` if it is a non-empty metric name or None.

    Examples:
        >>> check_metric_name("train_metric", "")
        Traceback (most recent call last):
        ...
        TypeError: 'train_metric' must be a metric name or None, got ''
    """
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{name!r} must be a metric name or None, got {value!r}")
    return value


def _lr_level(rate: float) -> float:
    return _log(rate) if rate > LOG_FLOOR else _FLOOR_LEVEL


def _lr_memory(state: Any, count: int) -> tuple[list[float], dict[str, float]]:
    """The learning-rate memory of a saved state (``count`` levels), or `StateError` if no run leads to it."""
    if not isinstance(state, Mapping) or set(state) != set(_LR_FIELDS):
        raise StateError(f"corrupt Monitor state: a policy's 'lr' memory needs the fields {', '.join(_LR_FIELDS)}")
    levels = state["levels"]
    if not isinstance(levels, list) or len(levels) != count:
        raise StateError(f"corrupt Monitor state: a policy's learning-rate levels must be a list of {count} numbers")
    values = [_number(x, "learning-rate level") for x in levels]
    floats = {name: _number(state[name], f"lr {name}") for name in _LR_FLOATS}
    first, last, top, top_level, at_best = (floats[name] for name in _LR_FLOATS)
    unset = next((k for k, x in enumerate(values) if not math.isnan(x)), len(values))  # the NaN prefix
    if any(math.isnan(x) for x in values[unset:]):
        raise StateError("corrupt Monitor state: a policy's learning-rate levels are NaN after a rate was logged")
    if math.isnan(first):  # no rate logged yet
        if unset != len(values) or any(not math.isnan(floats[name]) for name in _LR_FLOATS):
            raise StateError("corrupt Monitor state: a policy's learning-rate memory holds a rate none was logged")
        return values, floats
    if unset == len(values):  # a rate once logged is carried: the last level is set
        raise StateError("corrupt Monitor state: a policy's learning-rate levels are all NaN after a rate was logged")
    if not (0.0 <= last <= top < math.inf) or top_level != _lr_level(top) or values[-1] != _lr_level(last):
        raise StateError(
            f"corrupt Monitor state: a policy's last and highest learning rates ({last!r}, {top!r}) do not match "
            "its levels"
        )
    kept = [first, *values[unset:], *([] if math.isnan(at_best) else [at_best])]
    if any(not _FLOOR_LEVEL <= x <= top_level for x in kept):
        raise StateError("corrupt Monitor state: a policy's learning-rate levels are not within the rates logged")
    return values, floats


def _number(value: Any, what: str) -> float:
    number = float_from_json(value, f"policy {what}")
    if number is None:
        raise StateError(f"corrupt Monitor state: policy {what} must be a number, got null")
    return number
