"""A stopping policy learned from past runs: logistic regression on what a Monitor sees online.

[`LearnedPolicy`][earlystop_core.LearnedPolicy] is a [`Rule`][earlystop_core.Rule]. Each epoch it
updates a few running sums (O(1) time and memory; see
`earlystop_core.policy.features`), computes its features from the epochs
seen so far — never the future — and scores, with a fitted logistic model,
how likely stopping *now* is to cost target accuracy (keeping the best
weights so far, as a Monitor with ``restore_best_weights=True`` does, against
the best epoch of the whole run). It stops on a non-improving epoch once
``wait >= min_wait`` and the predicted probability is below ``threshold``,
and always once ``wait >= max_wait``.

``Monitor(policy=...)`` decides with one (`with_policy`);
[`fit_policy`][earlystop_core.fit_policy] fits one on recorded curves, choosing the threshold and the
waits by cross-validation with whole groups of runs held out;
[`LearnedPolicy.save`][earlystop_core.LearnedPolicy.save] and ``LearnedPolicy.load(path)`` keep it as
versioned JSON. [`recommended_policy`][earlystop_core.recommended_policy] is the one fitted on the project's
dev curves (see ``docs/policy.md``).

Examples:
    >>> from earlystop_core import Monitor
    >>> m = Monitor(policy="recommended", restore_best_weights=True)  # set as fitted: see with_policy
    >>> losses = [1.0 / (1 + t) for t in range(30)] + [0.04] * 60
    >>> logs = [{"val_loss": v, "loss": v, "val_accuracy": 0.9} for v in losses]
    >>> stop = next(t for t, entry in enumerate(logs) if m.update(entry).should_stop)
    >>> 30 < stop < 90
    True
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import math
from collections.abc import Mapping, Sequence
from operator import mul as _mul
from pathlib import Path
from typing import Any

from earlystop_core import _policies
from earlystop_core._files import write_atomically
from earlystop_core._json import digest, float_from_json, float_to_json, matches_checksum
from earlystop_core._validate import check_bool, check_int, check_real
from earlystop_core.config import MonitorConfig
from earlystop_core.errors import StateError
from earlystop_core.modes import resolve_mode
from earlystop_core.monitor import Monitor
from earlystop_core.policy.default import RECOMMENDED
from earlystop_core.policy.features import FAMILIES, FEATURES, FeatureTracker, check_metric_name
from earlystop_core.rules.base import Rule

__all__ = [
    "FAMILIES",
    "FEATURES",
    "FORMAT",
    "VERSION",
    "LearnedPolicy",
    "PolicyError",
    "load_policy",
    "recommended_policy",
    "with_policy",
]

#: The ``format`` field of a saved policy.
FORMAT = "earlystop_core.LearnedPolicy"
#: The version of the saved format this module reads and writes.
VERSION = 1
_REQUIRED = ("features", "means", "scales", "weights", "bias", "threshold", "min_wait", "max_wait", "log")
_OPTIONAL = (
    "format",
    "version",
    "families",
    "train_metric",
    "accuracy_metric",
    "lr_metric",
    "monitor",
    "info",
    "checksum",
)


class PolicyError(ValueError):
    """A saved policy cannot be read: not JSON, another format or version, or an invalid field."""


class LearnedPolicy(Rule):
    """Stop when a fitted logistic model says stopping now is unlikely to cost accuracy.

    Build one with [`fit_policy`][earlystop_core.fit_policy], ``LearnedPolicy.load(path)`` or
    [`recommended_policy`][earlystop_core.recommended_policy]; the constructor takes the fitted numbers. The
    policy reads ``value``, ``best``, ``wait`` and ``improved`` as the Monitor
    passes them (signed: lower is better), and ``train_metric`` and
    ``accuracy_metric`` from the logs when its features use them (``requires``
    names them, so the Monitor checks them before changing anything), and
    the learning rate ``lr_metric`` when its features use it and the logs
    carry it (``optional`` names it: logs without it are decided as a
    constant rate would be; see `earlystop_core.policy.features`).

    Args:
        features: The names of the features used, each in `FEATURES`.
        means: Per feature, the mean subtracted before weighting.
        scales: Per feature, the (positive) scale divided by before weighting.
        weights: Per feature, the logistic weight of the standardised feature.
        bias: The logistic intercept.
        threshold: Stop when the predicted probability that stopping costs
            accuracy is below this, in (0, 1).
        min_wait: The model may stop only once ``wait`` reaches this (>= 1).
        max_wait: A safety cap: always stop (on a non-improving epoch) once
            ``wait`` reaches this.
        max_epochs: The run's epoch budget. Needed, before the policy decides
            anything, when it uses a ``budget`` feature (see `needs_budget`).
        log: Whether the features take the log of the monitored value (a loss).
        train_metric: The training-loss key, when a ``train`` feature is used.
        accuracy_metric: The validation-accuracy key, when an ``accuracy`` feature is used.
        lr_metric: The learning-rate key, when an ``lr`` feature is used.
        monitor: The Monitor settings the policy was fitted under, applied by
            ``Monitor(policy=...)`` and `make_monitor`, e.g.
            ``{"monitor": "val_loss", "mode": "min", "keep_best_by": "val_accuracy"}``.
        info: Free JSON metadata (how it was fitted, cross-validated figures).

    Examples:
        >>> policy = LearnedPolicy(["log_wait"], [0.0], [1.0], [-3.0], 4.0, threshold=0.5, min_wait=1, max_wait=10)
        >>> [policy.check(t, 1.0, 0.5, wait, False, {}) for t, wait in [(1, 1), (2, 2), (3, 3)]]
        [False, False, True]
    """

    def __init__(
        self,
        features: Sequence[str],
        means: Sequence[float],
        scales: Sequence[float],
        weights: Sequence[float],
        bias: float,
        threshold: float,
        min_wait: int,
        max_wait: int,
        *,
        max_epochs: int | None = None,
        log: bool = True,
        train_metric: str | None = "loss",
        accuracy_metric: str | None = "val_accuracy",
        lr_metric: str | None = "lr",
        monitor: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(features, str) or not isinstance(features, Sequence):
            raise TypeError(f"'features' must be a list of feature names, got {features!r}")
        names = list(features)
        if not names:
            raise ValueError("a policy needs at least one feature")
        for name in names:
            if not isinstance(name, str) or name not in FEATURES:
                raise ValueError(f"unknown feature {name!r}; features: {', '.join(FEATURES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"features must be distinct, got {names}")
        self.features = tuple(names)
        count = len(names)
        self.means = _reals("means", means, count)
        self.scales = _reals("scales", scales, count)
        if any(scale <= 0 for scale in self.scales):
            raise ValueError(f"'scales' must all be > 0, got {list(self.scales)}")
        self.weights = _reals("weights", weights, count)
        self.bias = _real("bias", bias)
        self.threshold = _real("threshold", threshold)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"'threshold' must be in (0, 1), got {threshold!r}")
        self.min_wait = check_int("min_wait", min_wait, minimum=1)
        self.max_wait = check_int("max_wait", max_wait, minimum=self.min_wait)
        self.log = check_bool("log", log)
        self.takes_log = self.log
        families = {FEATURES[name] for name in names}
        self.max_epochs = None if max_epochs is None else check_int("max_epochs", max_epochs, minimum=1)
        #: Whether the policy uses the epoch budget (then it needs ``max_epochs`` to decide).
        self.needs_budget = "budget" in families
        self.train_metric = check_metric_name("train_metric", train_metric) if "train" in families else None
        self.accuracy_metric = check_metric_name("accuracy_metric", accuracy_metric) if "accuracy" in families else None
        self.lr_metric = check_metric_name("lr_metric", lr_metric) if "lr" in families else None
        for family, key in (("train", self.train_metric), ("accuracy", self.accuracy_metric), ("lr", self.lr_metric)):
            if family in families and key is None:
                raise ValueError(f"this policy uses {family} features: name the metric ({family}_metric=...)")
        self.requires = frozenset(k for k in (self.train_metric, self.accuracy_metric) if k is not None)
        self.optional = frozenset(() if self.lr_metric is None else (self.lr_metric,))
        self.monitor = _json_object("monitor", monitor)
        self._info = json.dumps(_json_object("info", info))  # immutable: copies of the policy share it
        budget = (self.max_epochs or 1) if self.needs_budget else None  # unbound: never used, see _unbound
        self._tracker = FeatureTracker(self.log, budget, self.train_metric, self.accuracy_metric, self.lr_metric)
        self._step = self._tracker.step
        self._unbound = self.needs_budget and self.max_epochs is None
        # The hot path: one weight per tracked feature (0 for unused ones), the standardisation folded in.
        folded = dict.fromkeys(self._tracker.names, 0.0)
        bias_folded = self.bias
        for name, mean, scale, weight in zip(names, self.means, self.scales, self.weights, strict=True):
            folded[name] = weight / scale
            bias_folded -= weight * mean / scale
        self._folded = tuple(folded.values())
        self._bias_folded = bias_folded
        self._cut = math.log(self.threshold / (1.0 - self.threshold))
        self._logit = math.nan
        self._capped = False

    def __deepcopy__(self, memo: dict[int, Any]) -> LearnedPolicy:
        # A Monitor copies its rule; the fitted numbers are immutable tuples, so only the memory is copied.
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone.monitor = copy.deepcopy(self.monitor, memo)
        clone._tracker = copy.deepcopy(self._tracker, memo)
        clone._step = clone._tracker.step
        return clone

    @property
    def info(self) -> dict[str, Any]:
        """The free JSON metadata given when the policy was made (a fresh copy at each read)."""
        parsed: dict[str, Any] = json.loads(self._info)
        return parsed

    # -- deciding -------------------------------------------------------------------------------------------------

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        if self._unbound:
            self._refuse()
        features = self._step(epoch, value, best, wait, improved, logs)
        logit: float = self._bias_folded + sum(map(_mul, self._folded, features))
        self._logit = logit
        if improved or epoch == 0 or wait < self.min_wait:
            return False
        if wait >= self.max_wait:
            self._capped = True
            return True
        self._capped = False
        return logit < self._cut  # False for a NaN logit

    def probability(self) -> float:
        """The predicted probability, at the last epoch seen, that stopping then costs accuracy (NaN before).

        Examples:
            >>> policy = LearnedPolicy(["log_wait"], [0.0], [1.0], [0.0], 0.0, threshold=0.5, min_wait=1, max_wait=9)
            >>> _ = policy.check(0, 1.0, 1.0, 0, True, {})
            >>> policy.probability()
            0.5
        """
        z = self._logit
        if math.isnan(z):
            return math.nan
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def features_now(self) -> dict[str, float]:
        """The features the policy uses, at the last epoch seen, by name (empty before the first).

        Examples:
            >>> policy = LearnedPolicy(["log_wait"], [0.0], [1.0], [1.0], 0.0, threshold=0.5, min_wait=1, max_wait=9)
            >>> _ = policy.check(3, 1.0, 0.5, 2, False, {})
            >>> round(policy.features_now()["log_wait"], 4)
            1.0986
        """
        values = dict(zip(self._tracker.names, self._tracker.last_features(), strict=False))
        return {name: values[name] for name in self.features if name in values}

    def bind(self, max_epochs: int) -> LearnedPolicy:
        """A copy of this policy for runs of ``max_epochs`` epochs (what budget features need).

        Examples:
            >>> policy = LearnedPolicy(["budget_position"], [0.5], [0.3], [1.0], 0.0, 0.5, 1, 20)
            >>> policy.bind(100).max_epochs
            100
        """
        return type(self).from_json(self.to_json(), max_epochs=max_epochs)

    def spec(self) -> dict[str, Any]:
        return {"rule": "LearnedPolicy", **self._parameters(), "max_epochs": self.max_epochs}

    def explain(self) -> str:
        if self._capped:
            return f"no improvement for {self.max_wait} epoch(s) (the learned policy's max_wait)"
        return (
            f"learned policy: P(stopping now costs accuracy) = {self.probability():.3g} < {self.threshold:.3g} "
            f"after {self.min_wait}+ epoch(s) without improvement"
        )

    def limit(self) -> float | None:
        return self.max_wait

    def reset(self) -> None:
        if self._unbound:
            self._refuse()
        self._tracker.reset()
        self._logit = math.nan
        self._capped = False

    def state_dict(self) -> Any:
        # Not whether the last stop was max_wait's: only explain() reads it, right after the check that set it.
        return {"features": self._tracker.state_dict(), "logit": float_to_json(self._logit)}

    def remembered(self) -> list[float]:
        levels = self._tracker.remembered()  # empty before the first epoch, when the logit is NaN
        return [*levels, self._logit] if levels else []

    def load_state_dict(self, state: Any) -> None:
        """Restore memory saved by `state_dict` (a Monitor's ``load_state_dict`` calls it).

        Raises:
            StateError: The state is corrupt.
        """
        if not isinstance(state, Mapping) or set(state) != {"features", "logit"}:
            raise StateError(f"corrupt Monitor state: {self!r} needs 'features' and 'logit', got {state!r}")
        logit = float_from_json(state["logit"], "policy logit")
        if logit is None:
            raise StateError("corrupt Monitor state: a policy's 'logit' must be a number")
        features = state["features"]
        fresh = isinstance(features, Mapping) and features.get("seen") == 0
        if fresh and not math.isnan(logit):
            raise StateError("corrupt Monitor state: a policy that has seen no epoch has a NaN logit")
        self._tracker.load_state_dict(state["features"])  # last: it checks everything before it changes anything
        self._logit = logit
        self._capped = False

    def renamed(self, names: Mapping[str, str]) -> LearnedPolicy:
        """The policy reading its training loss and accuracy under the logged names ``names`` gives.

        Examples:
            >>> policy = recommended_policy().renamed({"loss": "train_loss", "val_accuracy": "eval_accuracy"})
            >>> sorted(policy.requires)
            ['eval_accuracy', 'train_loss']
        """
        saved = {key: value for key, value in self.to_json().items() if key != "checksum"}  # the names change
        data = dict(saved)
        for field in ("train_metric", "accuracy_metric", "lr_metric"):
            if data.get(field) in names:
                data[field] = names[data[field]]
        return self if data == saved else type(self).from_json(data, max_epochs=self.max_epochs)

    def _refuse(self) -> None:
        budget = [name for name in self.features if FEATURES[name] == "budget"]
        raise ValueError(
            f"this policy uses the epoch budget ({', '.join(budget)}): give the planned number of epochs, "
            "e.g. LearnedPolicy.load(path, max_epochs=100) or policy.bind(max_epochs=100)"
        )

    def __repr__(self) -> str:
        budget = "" if self.max_epochs is None else f", max_epochs={self.max_epochs}"
        return (
            f"LearnedPolicy({len(self.features)} features, threshold={self.threshold:.4g}, "
            f"min_wait={self.min_wait}, max_wait={self.max_wait}{budget})"
        )

    # -- saving and loading -----------------------------------------------------------------------------------------

    def _parameters(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "means": list(self.means),
            "scales": list(self.scales),
            "weights": list(self.weights),
            "bias": self.bias,
            "threshold": self.threshold,
            "min_wait": self.min_wait,
            "max_wait": self.max_wait,
            "log": self.log,
            "train_metric": self.train_metric,
            "accuracy_metric": self.accuracy_metric,
            # Only when used: the spec of a policy without rate features is as it was before they existed
            # (a Monitor state saved with it still loads).
            **({} if self.lr_metric is None else {"lr_metric": self.lr_metric}),
        }

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON-ready dict: what `save` writes (``max_epochs`` is not saved: it is per run).

        Examples:
            >>> policy = LearnedPolicy(["log_wait"], [0.0], [1.0], [-2.0], 4.0, threshold=0.5, min_wait=1, max_wait=9)
            >>> LearnedPolicy.from_json(policy.to_json()) == policy
            True
        """
        data = {
            "format": FORMAT,
            "version": VERSION,
            "families": sorted({FEATURES[name] for name in self.features}),
            **self._parameters(),
            "monitor": dict(self.monitor),
            "info": self.info,
        }
        # A flipped digit in a weight would change every decision silently: from_json checks this.
        data["checksum"] = digest(data)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str, max_epochs: int | None = None) -> LearnedPolicy:
        """Build a policy from `to_json`'s dict (or its JSON text), checking every field.

        Raises:
            PolicyError: Not a saved policy, another version, or a field is missing or invalid.

        Examples:
            >>> LearnedPolicy.from_json({"format": "earlystop_core.LearnedPolicy", "version": 99})
            Traceback (most recent call last):
            ...
            earlystop_core.policy.learned.PolicyError: saved policy has version 99; this earlystop_core reads version 1
        """
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as error:
                raise PolicyError(f"a saved policy must be JSON: {error}") from None
        if not isinstance(data, Mapping):
            raise PolicyError(f"a saved policy is a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise PolicyError(f"not a saved policy: 'format' is {data.get('format')!r}, expected {FORMAT!r}")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
            raise PolicyError(f"saved policy has version {version!r}; this earlystop_core reads version {VERSION}")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise PolicyError(f"saved policy lacks {', '.join(repr(m) for m in missing)}")
        unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise PolicyError(f"saved policy has unknown field(s) {', '.join(repr(u) for u in unknown)}")
        try:
            policy = cls(
                data["features"],
                data["means"],
                data["scales"],
                data["weights"],
                data["bias"],
                data["threshold"],
                data["min_wait"],
                data["max_wait"],
                max_epochs=max_epochs,
                log=data["log"],
                train_metric=data.get("train_metric"),
                accuracy_metric=data.get("accuracy_metric"),
                lr_metric=data.get("lr_metric"),
                monitor=data.get("monitor"),
                info=data.get("info"),
            )
        except (TypeError, ValueError) as error:
            raise PolicyError(f"invalid saved policy: {error}") from None
        families = data.get("families")
        if families is not None and families != sorted({FEATURES[name] for name in policy.features}):
            raise PolicyError(f"saved policy: 'families' {families!r} do not match its features")
        _check_checksum(data)
        return policy

    def save(self, path: str | Path) -> None:
        """Write the policy as JSON (read it back with ``LearnedPolicy.load(path)``).

        Examples:
            >>> import os, tempfile
            >>> policy = LearnedPolicy(["log_wait"], [0.0], [1.0], [-2.0], 4.0, threshold=0.5, min_wait=1, max_wait=9)
            >>> path = os.path.join(tempfile.mkdtemp(), "policy.json")
            >>> policy.save(path)
            >>> LearnedPolicy.load(path) == policy
            True
        """
        text = json.dumps(self.to_json(), indent=1, allow_nan=False)
        data = (text + "\n").encode("utf-8")
        write_atomically(path, lambda file: file.write(data))  # a crash mid-save leaves the old file whole

    @classmethod
    def load(cls, path: str | Path, max_epochs: int | None = None) -> LearnedPolicy:
        """Read a policy written by `save`.

        Args:
            path: The JSON file.
            max_epochs: The planned epochs of the runs it will decide (needed by budget features).

        Raises:
            PolicyError: The file is not a valid saved policy (the message names the file).
        """
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not JSON
        try:
            return cls.from_json(text, max_epochs=max_epochs)
        except PolicyError as error:
            raise PolicyError(f"{path}: {error}") from None

    def make_monitor(self, **overrides: Any) -> Monitor:
        """``Monitor(policy=self, restore_best_weights=True, **overrides)``: set as fitted, restoring the best.

        Examples:
            >>> policy = LearnedPolicy(["log_wait"], [0.0], [1.0], [-2.0], 4.0, threshold=0.5, min_wait=1,
            ...                        max_wait=9, monitor={"monitor": "val_loss", "best_from_epoch": 3})
            >>> monitor = policy.make_monitor()
            >>> monitor.best_from_epoch, monitor.restore_best_weights
            (3, True)
        """
        return Monitor(policy=self, **{"restore_best_weights": True, **overrides})


def recommended_policy() -> LearnedPolicy:
    """The policy fitted on the project's dev curves (1,200 runs of ten problems; see ``docs/policy.md``).

    It monitors ``val_loss`` (minimised, through its log), reads ``loss``
    and ``val_accuracy`` from the logs, and was fitted keeping the weights of
    the most accurate epoch (``keep_best_by="val_accuracy"``, in its
    ``monitor`` settings): use it as ``Monitor(policy="recommended")``,
    which applies them. It needs no ``max_epochs``. Fitted the same way,
    leaving each problem out in turn, it saved 49% of the epochs on the
    problem left out, against 32.5% for patience 20, at a regret no
    measurably different (-0.00 pp against 0.07 pp).

    Examples:
        >>> policy = recommended_policy()
        >>> policy.requires == {"loss", "val_accuracy"}, policy.needs_budget, policy.monitor["keep_best_by"]
        (True, False, 'val_accuracy')
    """
    return copy.deepcopy(_recommended())


@functools.cache
def _recommended() -> LearnedPolicy:
    # Parsed and checked once: Monitor(policy="recommended") copies it (a Monitor per run in a replay).
    return LearnedPolicy.from_json(RECOMMENDED)


def _check_checksum(data: Mapping[str, Any]) -> None:
    """Refuse a saved policy that no longer matches its checksum (one written by hand may have none)."""
    if not matches_checksum(data):
        raise PolicyError(
            "saved policy does not match its checksum: it was changed after it was saved, or damaged. "
            "Save it again with earlystop tune --learn (if you edited it on purpose, delete its 'checksum')"
        )


def load_policy(policy: LearnedPolicy | str | Path, max_epochs: int | None = None) -> LearnedPolicy:
    """A policy from what ``Monitor(policy=...)`` accepts: a policy, ``"recommended"``, or a saved policy's path.

    A policy using budget features is bound to ``max_epochs`` when that is given.

    Examples:
        >>> load_policy("recommended") == recommended_policy()
        True
        >>> load_policy(3)
        Traceback (most recent call last):
        ...
        TypeError: 'policy' must be a LearnedPolicy, 'recommended' or the path of a saved policy (JSON), got int (3)
    """
    if isinstance(policy, LearnedPolicy):
        if max_epochs is not None and policy.needs_budget and policy.max_epochs != max_epochs:
            return policy.bind(max_epochs)
        return policy
    if policy == "recommended":
        return recommended_policy()
    if isinstance(policy, (str, Path)) and str(policy):
        if not Path(policy).is_file():
            raise FileNotFoundError(
                f"policy={str(policy)!r}: no such file; pass 'recommended', a LearnedPolicy, or the path of a "
                "policy saved by `earlystop tune PATH --learn policy.json`"
            )
        return LearnedPolicy.load(policy, max_epochs=max_epochs)
    raise TypeError(
        "'policy' must be a LearnedPolicy, 'recommended' or the path of a saved policy (JSON), "
        f"got {type(policy).__name__} ({policy!r})"
    )


def with_policy(policy: LearnedPolicy | str | Path, options: Mapping[str, Any]) -> dict[str, Any]:
    """Monitor arguments with ``policy=`` resolved: the policy becomes the rule, set as it was fitted.

    The policy's fitted Monitor settings (its `monitor`,
    e.g. ``keep_best_by``) fill in the arguments left at their defaults; an
    argument given otherwise is refused, since the policy's threshold was
    tuned under its own settings.

    Args:
        policy: What `load_policy` accepts.
        options: The Monitor's keyword arguments (every one, defaults included).

    Examples:
        >>> options = with_policy("recommended", {"monitor": "val_loss", "mode": "auto", "rule": None, "patience": 0})
        >>> options["keep_best_by"], options["rule"] == recommended_policy()
        ('val_accuracy', True)
    """
    if options.get("rule") is not None:
        raise ValueError("policy= and rule= both decide when to stop; pass one of them")
    if options.get("patience", 0) != 0:
        raise ValueError(f"policy= and patience={options['patience']!r} both decide when to stop; pass one of them")
    resolved = load_policy(policy, options.get("max_epochs"))
    defaults = _monitor_defaults()
    merged = dict(options, rule=resolved)
    for name, fitted in resolved.monitor.items():
        if name not in defaults or name in ("rule", "patience", "plateau"):
            raise PolicyError(f"the policy's Monitor settings hold {name!r}, which a policy cannot set")
        given = options.get(name, defaults[name])
        if name == "mode" and given == "auto" and "monitor" in resolved.monitor:
            given = resolve_mode("auto", str(merged["monitor"]))
        if given == defaults[name] or given == fitted:
            merged[name] = fitted
        else:
            raise ValueError(
                f"the policy was fitted with {name}={fitted!r}, but {name}={given!r} was given; drop {name}= "
                "(the policy's threshold was tuned under its own settings) or fit a policy with it"
            )
    return merged


@functools.cache
def _monitor_defaults() -> dict[str, Any]:
    """Every Monitor setting's default (read once: a replay builds a Monitor per run)."""
    return {name: parameter.default for name, parameter in inspect.signature(MonitorConfig.build).parameters.items()}


def _real(name: str, value: Any) -> float:
    number = check_real(name, value)
    assert number is not None
    return number


def _reals(name: str, values: Any, count: int) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name!r} must be a list of {count} numbers, got {values!r}")
    if len(values) != count:
        raise ValueError(f"{name!r} must hold one number per feature ({count}), got {len(values)}")
    return tuple(_real(f"{name}[{i}]", v) for i, v in enumerate(values))


def _json_object(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name!r} must be a dict, got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name!r} must be strict JSON: {error}") from None
    copied: dict[str, Any] = json.loads(text)
    return copied


_policies.register(with_policy)  # Monitor(policy=...) resolves through it
