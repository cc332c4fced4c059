"""``Monitor``: one dict of metrics per epoch in, one decision out.

The patience rule is Keras 3's ``EarlyStopping`` step for step, and the
guards (non-finite values, stopping and divergence thresholds) are Lightning's,
checked in Lightning's order. Values are compared as the peers compare them,
in float32 (see ``_float32``). Internally every value is multiplied by a sign
(+1 to minimise, -1 to maximise) so there is one code path: lower is better.

Two bests are kept apart when smoothing, warming up (``best_from_epoch``) or
keeping by another metric (``keep_best_by``): the *tracked* best (of the
smoothed value, from ``best_from_epoch`` on) drives patience and the rules,
while the *kept* best (of the raw value, or of ``keep_best_by``, over every
monitored epoch) is the epoch whose weights are snapshotted and restored.
Measured on the dev curves, restoring the best smoothed epoch nearly doubles
regret, barring warm-up epochs from being restored triples it, and keeping
the most accurate epoch instead of the lowest-loss one lowers it by 0.5 pp.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from earlystop_core import _policies
from earlystop_core._float32 import less32
from earlystop_core._json import check_seal
from earlystop_core._values import ABSENT, coerce_metric, lookup
from earlystop_core.config import MonitorConfig
from earlystop_core.decision import Decision, StopReason
from earlystop_core.errors import MissingMetricError, StateError, missing_keep_metric
from earlystop_core.rules.auto_patience import AutoPatience
from earlystop_core.rules.base import AllOf, AnyOf, Rule, own_copy
from earlystop_core.rules.plateau import ReduceLROnPlateau
from earlystop_core.signals import WeightedScore
from earlystop_core.state import FORMAT as STATE_FORMAT
from earlystop_core.state import MonitorState, dump_state, load_state

T = TypeVar("T")
_new_tuple = tuple.__new__
_INF = float("inf")
_ABSENT = ABSENT
# The fields an update changes before it asks the rule (put back if a rule of the user's own raises).
_UPDATED: tuple[str, ...] = ("_next_epoch", "_restore_requested", "_ema", "_wait", "_tracked", "_best")
_UPDATED += ("_best_signed", "_best_epoch", "_kept_by")
_NOT_STOPPED = StopReason.NOT_STOPPED
_PATIENCE = StopReason.PATIENCE_EXHAUSTED
_THRESHOLD = StopReason.STOPPING_THRESHOLD
_DIVERGENCE = StopReason.DIVERGENCE_THRESHOLD
_NON_FINITE = StopReason.NON_FINITE_METRIC


class _Setting(Generic[T]):
    """A read-only view of one field of the monitor's configuration."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, monitor: None, owner: type) -> _Setting[T]: ...
    @overload
    def __get__(self, monitor: Monitor, owner: type) -> T: ...
    def __get__(self, monitor: Monitor | None, owner: type) -> T | _Setting[T]:
        if monitor is None:
            return self
        value: T = getattr(monitor.config, self.name)
        return value

    def __set__(self, monitor: Monitor, value: object) -> None:
        raise AttributeError(
            f"{self.name!r} is fixed when the Monitor is built; build a new Monitor with {self.name}={value!r} instead"
        )


class Monitor:
    """An early-stopping state machine: call `update` once per epoch.

    Arguments are those of ``keras.callbacks.EarlyStopping`` plus Lightning's
    guards, so moving over is a change of import. Stop and best epochs are
    identical to Keras 3's ``EarlyStopping`` on finite values, and the guards
    stop at the epoch Lightning's ``EarlyStopping`` stops.

    Args:
        monitor: Name of the metric to watch in each epoch's logs, or a dict
            ``{metric: weight}`` to watch a weighted score (see
            [`WeightedScore`][earlystop_core.WeightedScore]).
        mode: ``"min"``, ``"max"``, or ``"auto"`` to infer it from the name
            (for a weighted score, also a dict of per-metric modes).
        patience: Epochs without improvement before stopping (0 acts as 1,
            as in Keras), or ``"auto"`` to size it from ``max_epochs`` and
            ``n_samples`` and the noise of the first epochs
            ([`suggest_patience`][earlystop_core.suggest_patience]).
        min_delta: Smallest change that counts as an improvement (its sign is
            ignored, as in Keras).
        baseline: A value to beat: until it is beaten, improvements do not
            reset the patience count.
        start_from_epoch: Epochs before this one are not monitored at all.
        restore_best_weights: Ask (through ``Decision.restore``) for the best
            weights back when training ends, by a stop or otherwise.
        stopping_threshold: Stop as soon as the metric is better than this.
        divergence_threshold: Stop as soon as the metric is worse than this.
        check_finite: Stop on a NaN or infinite value. ``False`` applies
            Keras's rule instead: such a value never improves (and a NaN
            first value becomes the best, after which nothing improves).
        on_missing: ``"raise"`` (a [`MissingMetricError`][earlystop_core.MissingMetricError]) or ``"skip"``
            when the metric is absent from the logs; a skipped epoch still
            advances the epoch counter.
        min_delta_mode: ``"abs"`` (Keras) or ``"rel"``: improve by more than
            ``min_delta * abs(best)`` — right for negative metrics too.
        best_from_epoch: Epochs before this one cannot become the best that
            patience counts from (smoothing and rules still see them, guards
            apply, and their weights are kept if they stay the lowest); unlike
            ``start_from_epoch``, which ignores them entirely.
        smoothing: EMA factor in [0, 1): patience and rules see
            ``ema = smoothing * ema + (1 - smoothing) * value``; the restored
            epoch is still the best *raw* one. 0 turns smoothing off.
        normalize: For a weighted score: ``None`` or ``"initial"`` (divide
            each metric by its first value).
        rule: A stopping [`Rule`][earlystop_core.Rule] replacing fixed
            patience, e.g. ``Patience(20) | GL(5)``.
        max_epochs: The planned number of epochs (for ``patience="auto"``).
        n_samples: Training-set size (for ``patience="auto"``).
        plateau: A [`ReduceLROnPlateau`][earlystop_core.ReduceLROnPlateau] to coordinate
            with (the seed guide's section 4.2: lower the learning rate first,
            stop only once that stops helping). Each decision then carries the
            learning rate to use next (``Decision.lr``); a reduction gives the
            new rate a full patience (``wait`` restarts), and patience or a
            rule can stop training only once the schedule is exhausted
            (``min_lr`` reached or ``max_reductions`` made). Pass the
            optimizer's rate as ``update(logs, lr=...)``.
        keep_best_by: Another metric that picks the epoch whose weights are
            kept and restored, e.g. ``"val_accuracy"`` while stopping on
            ``"val_loss"`` (as Lightning users pair ``EarlyStopping`` with a
            ``ModelCheckpoint`` on another metric). The kept epoch is the one
            with the best value of this metric over the monitored epochs; ties
            go to the better monitored value, then to the earlier epoch;
            ``min_delta`` and ``best_from_epoch`` do not apply to it, and a
            non-finite value counts as the worst. ``Decision.improved`` and
            ``best_epoch`` follow it, and ``best`` is the monitored value at
            that epoch; patience and rules still count from the monitored
            metric's best. Measured on the dev curves, restoring the best
            ``val_accuracy`` epoch instead of the lowest ``val_loss`` one ends
            runs 0.5 pp more accurate on the test sets (docs/rules/keep_best_by.md).
        keep_best_mode: The direction of ``keep_best_by``: ``"min"``,
            ``"max"``, or ``"auto"`` to infer it from the name.
        policy: A learned stopping policy as the rule: ``"recommended"``
            ([`recommended_policy`][earlystop_core.recommended_policy], fitted on the
            project's dev curves), the path of one saved by ``earlystop tune
            PATH --learn policy.json``, or a
            [`LearnedPolicy`][earlystop_core.LearnedPolicy]. The Monitor settings it
            was fitted under (e.g. ``keep_best_by="val_accuracy"``) fill in
            the arguments left at their defaults; see
            `with_policy`.
        names: Read metrics under the names the logs use, ``{name: logged
            name}``: ``Monitor(policy="recommended", names={"val_loss":
            "eval_loss", "val_accuracy": "eval_accuracy"})`` runs the
            recommended policy on a Hugging Face Trainer's logs. It renames
            the monitored metric(s), ``keep_best_by``, the plateau's metric
            and the metrics a learned policy reads; entries for metrics this
            Monitor does not read are allowed (one mapping serves every
            Monitor of a framework). A rule of your own reading a renamed
            metric itself is refused.

    Examples:
        >>> m = Monitor(monitor="val_loss", patience=2, restore_best_weights=True)
        >>> for loss in [0.9, 0.7, 0.8, 0.75]:
        ...     decision = m.update({"val_loss": loss})
        >>> decision.should_stop, decision.restore, m.best_epoch, m.best
        (True, True, 1, 0.7)
    """

    __slots__ = (
        "_baseline",
        "_best",
        "_best_epoch",
        "_best_from",
        "_best_signed",
        "_check_finite",
        "_checks_inputs",
        "_delta",
        "_divergence",
        "_ema",
        "_goal",
        "_guard_rule",
        "_hold",
        "_keep_key",
        "_keep_sign",
        "_kept_by",
        "_key",
        "_lr",
        "_name",
        "_next_epoch",
        "_patience",
        "_plateau",
        "_relative",
        "_restore",
        "_restore_requested",
        "_rule",
        "_score",
        "_sign",
        "_smoothing",
        "_split",
        "_start",
        "_stop_reason",
        "_stopped_epoch",
        "_tracked",
        "_wait",
        "config",
    )

    monitor: _Setting[str | dict[str, float]] = _Setting()
    mode: _Setting[str] = _Setting()
    patience: _Setting[int | str] = _Setting()
    min_delta: _Setting[float] = _Setting()
    baseline: _Setting[float | None] = _Setting()
    start_from_epoch: _Setting[int] = _Setting()
    restore_best_weights: _Setting[bool] = _Setting()
    stopping_threshold: _Setting[float | None] = _Setting()
    divergence_threshold: _Setting[float | None] = _Setting()
    check_finite: _Setting[bool] = _Setting()
    on_missing: _Setting[str] = _Setting()
    min_delta_mode: _Setting[str] = _Setting()
    best_from_epoch: _Setting[int] = _Setting()
    smoothing: _Setting[float] = _Setting()
    keep_best_by: _Setting[str | None] = _Setting()
    keep_best_mode: _Setting[str | None] = _Setting()

    def __init__(
        self,
        monitor: str | Mapping[str, float] = "val_loss",
        mode: str | Mapping[str, str] = "auto",
        patience: int | str = 0,
        min_delta: float = 0.0,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        restore_best_weights: bool = False,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_finite: bool = True,
        on_missing: str = "raise",
        *,
        min_delta_mode: str = "abs",
        best_from_epoch: int = 0,
        smoothing: float = 0.0,
        normalize: str | None = None,
        rule: Rule | None = None,
        max_epochs: int | None = None,
        n_samples: int | None = None,
        plateau: ReduceLROnPlateau | None = None,
        keep_best_by: str | None = None,
        keep_best_mode: str = "auto",
        policy: Rule | str | Path | None = None,
        names: Mapping[str, str] | None = None,
    ) -> None:
        options: dict[str, Any] = dict(
            monitor=monitor,
            mode=mode,
            patience=patience,
            min_delta=min_delta,
            baseline=baseline,
            start_from_epoch=start_from_epoch,
            restore_best_weights=restore_best_weights,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_finite=check_finite,
            on_missing=on_missing,
            min_delta_mode=min_delta_mode,
            best_from_epoch=best_from_epoch,
            smoothing=smoothing,
            normalize=normalize,
            rule=rule,
            max_epochs=max_epochs,
            n_samples=n_samples,
            plateau=plateau,
            keep_best_by=keep_best_by,
            keep_best_mode=keep_best_mode,
        )
        if policy is not None:  # the learned policy's own with_policy, registered in _policies
            options = _policies.resolve(policy, options)
        if names is not None:
            options = _renamed(options, names)
        self.config = config = MonitorConfig.build(**options)
        # The hot path reads plain slots, not the frozen config.
        sign = 1.0 if config.mode == "min" else -1.0
        self._sign = sign
        self._name = config.name
        self._key = config.monitor if isinstance(config.monitor, str) else None
        self._score = (
            None
            if isinstance(config.monitor, str)
            else WeightedScore(config.monitor, config.metric_modes or "auto", config.normalize)
        )
        self._delta = config.min_delta
        self._relative = config.min_delta_mode == "rel"
        self._start = config.start_from_epoch
        self._best_from = config.best_from_epoch
        self._smoothing = config.smoothing
        self._keep_key = config.keep_best_by
        self._keep_sign = 1.0 if config.keep_best_mode != "max" else -1.0
        # Keep the kept best apart from the tracked best when they can differ.
        self._split = config.smoothing > 0 or config.best_from_epoch > 0 or config.keep_best_by is not None
        self._restore = config.restore_best_weights
        self._check_finite = config.check_finite
        self._baseline = _signed(config.baseline, sign)
        self._goal = _signed(config.stopping_threshold, sign)
        self._divergence = _signed(config.divergence_threshold, sign)
        self._rule = _own_rule(config)
        self._checks_inputs = self._rule is not None and (
            bool(self._rule.requires) or bool(self._rule.optional) or self._rule.takes_log
        )
        if self._rule is not None and self._rule.takes_log and config.mode == "max":
            raise ValueError(
                f"{self._rule!r} takes logarithms of the monitored value, which needs a positive metric to "
                f"minimise; {config.name!r} is maximised. Use log=False"
            )
        self._plateau = None if config.plateau is None else copy.deepcopy(config.plateau)
        # The built-in rules cannot raise once their inputs are checked; a rule of the user's own might,
        # so for it each update keeps what it changes, to put back (through its state_dict()/load_state_dict()).
        self._guard_rule = self._rule is not None and not _built_in(self._rule)
        # Fixed patience runs inline (no rule object) when nothing else needs the slow path.
        self._patience = config.patience if isinstance(config.patience, int) else 0
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far, as at construction (reuse across runs).

        Examples:
            >>> m = Monitor(patience=0)
            >>> _ = m.update({"val_loss": 1.0}); _ = m.update({"val_loss": 2.0})
            >>> m.reset(); m.best is None and m.wait == 0
            True
        """
        self._next_epoch = 0
        self._best: float | None = None
        self._best_signed: float | None = None
        self._best_epoch: int | None = None
        self._tracked: float | None = None
        self._kept_by: float | None = None
        self._ema: float | None = None
        self._wait = 0
        self._stopped_epoch: int | None = None
        self._stop_reason = _NOT_STOPPED
        self._restore_requested = False
        if self._rule is not None:
            self._rule.reset()
        if self._score is not None:
            self._score.reset()
        self._hold = False
        self._lr: float | None = None
        if self._plateau is not None:
            self._plateau.reset()

    def update(self, logs: Mapping[str, Any], epoch: int | None = None, lr: float | None = None) -> Decision:
        """Take one epoch's metrics and decide: continue, snapshot, stop, restore.

        Args:
            logs: The metrics of this epoch, by name.
            epoch: The epoch's 0-based index; by default one more than the
                last (0 at first), so pass it only when resuming or when the
                loop starts at ``initial_epoch``.
            lr: With a ``plateau``: the learning rate used this epoch (by
                default the one the last decision asked for).

        Returns:
            The [`Decision`][earlystop_core.Decision] for this epoch.

        An update that raises changes nothing: every input is checked before
        the Monitor, its rule, its score or its plateau change.

        Raises:
            MissingMetricError: A metric the Monitor reads is absent (``key not
                in logs``) and ``on_missing="raise"``.
            TypeError: ``logs`` is not a mapping, or a value is not a real number.
            ValueError: ``epoch`` is negative or does not come after the last
                epoch seen, or ``lr`` is given without a plateau (or, with
                one, is not a finite number > 0).

        Examples:
            >>> m = Monitor(monitor="val_accuracy", patience=1)
            >>> m.update({"val_accuracy": 0.8}, epoch=10).improved
            True
            >>> m.update({"val_accuracy": 0.8}).epoch
            11
        """
        if self._plateau is not None:
            return self._update_coordinated(logs, epoch, lr)
        if lr is not None:
            raise ValueError("lr= is for a Monitor built with plateau=ReduceLROnPlateau(...); this one has none")
        return self._update(logs, epoch)

    def _update(self, logs: Mapping[str, Any], epoch: int | None) -> Decision:
        # Everything that can raise comes before the first change of state, so
        # an update that raises changes nothing (tests/test_faults.py).
        if epoch is None:
            epoch = self._next_epoch
        elif type(epoch) is not int or epoch < self._next_epoch:
            epoch = self._check_epoch(epoch)
        key = self._key
        if key is None:
            if type(logs) is not dict:
                _check_logs(logs, "<metric>")
            try:
                x = self._score.read(logs)  # type: ignore[union-attr]  # a score whenever there is no key
            except MissingMetricError:
                if self.config.on_missing == "raise":
                    raise
                return self._missing(logs, epoch)
        else:
            if type(logs) is dict:  # a plain dict makes up no value for a missing key
                try:
                    raw = logs[key]
                except KeyError:
                    return self._missing(logs, epoch)
            else:  # `in` first: a defaultdict's or Counter's made-up 0.0 is not a metric
                raw = _read_other(logs, key)
                if raw is _ABSENT:
                    return self._missing(logs, epoch)
            x = raw if type(raw) is float else coerce_metric(key, raw)
        s = x * self._sign
        if self._checks_inputs:
            self._check_rule_inputs(logs, s)
        k = 0.0 if self._keep_key is None else self._keep_value(logs)
        undo = self._undo_record() if self._guard_rule else None  # a rule of the user's own may raise
        self._next_epoch = epoch + 1  # only now: an update that raises changes nothing
        self._restore_requested = False
        if key is None and self._score.normalize is not None:  # type: ignore[union-attr]
            self._score.fix_scales(logs)  # type: ignore[union-attr]  # from the first accepted epoch

        if s - s != 0.0 and self._check_finite:  # NaN and +-inf: x - x is NaN
            return self._stop(epoch, x, _NON_FINITE, False, None)
        goal = self._goal
        reached = goal is not None and less32(s, goal)
        if not reached:
            limit = self._divergence
            if limit is not None and less32(limit, s):
                return self._stop(epoch, x, _DIVERGENCE, False, self.config.divergence_threshold)
        tracked = self._smooth(s) if self._smoothing and epoch >= self._start else s

        improved = False
        if epoch >= self._start:
            self._wait += 1
            best = self._tracked
            if self._relative:
                improves = self._improves_relative(tracked, best)
            else:
                shifted = tracked + self._delta
                # The float64 test first: most epochs do not improve, and a call costs.
                improves = best is None or (shifted < best and less32(shifted, best))
            adopted = improves and epoch >= self._best_from
            if adopted:
                self._tracked = tracked
                if self._split:
                    improved = self._keep_raw_best(x, s, epoch, k)
                else:
                    self._best = x
                    self._best_signed = s
                    self._best_epoch = epoch
                    improved = True
                if self._beats_baseline(tracked):
                    self._wait = 0
            elif self._split:
                improved = self._keep_raw_best(x, s, epoch, k)
            rule = self._rule
            if rule is None:
                if (
                    not improves
                    and not reached
                    and self._wait >= self._patience
                    and epoch > 0
                    and best is not None
                    and not self._hold
                ):
                    return self._stop(epoch, x, _PATIENCE, improved, self._patience)
            elif (
                (
                    rule.check(epoch, tracked, self._tracked, self._wait, adopted, logs)
                    if undo is None
                    else self._check_guarded(rule, (epoch, tracked, self._tracked, self._wait, adopted, logs), undo)
                )
                and not (reached or self._hold)
                and self._tracked is not None  # as for patience: no stop before a best exists
            ):
                fired = rule.firing()
                return self._stop(epoch, x, fired.reason, improved, fired.limit(), fired.explain())
        if reached:
            return self._stop(epoch, x, _THRESHOLD, improved, self.config.stopping_threshold)
        # tuple.__new__ skips NamedTuple's Python-level __new__: a third of the cost.
        return _new_tuple(
            Decision,
            (
                False,
                improved,
                False,
                _NOT_STOPPED,
                epoch,
                x,
                self._best,
                self._best_epoch,
                self._wait,
                self._name,
                None,  # limit
                False,  # final
                None,  # detail
                self._lr,
                self._keep_key,
            ),
        )

    def finish(self) -> Decision:
        """Say that training has ended; the decision says whether to restore.

        ``restore`` is set when ``restore_best_weights`` is on, a best epoch
        exists and no stop decision has already asked for the restore; so it
        also covers training that ran to its last epoch or was stopped by
        something else.

        Examples:
            >>> m = Monitor(patience=5, restore_best_weights=True)
            >>> for loss in [0.5, 0.4, 0.45]:
            ...     _ = m.update({"val_loss": loss})
            >>> d = m.finish()
            >>> d.restore, d.best_epoch
            (True, 1)
        """
        restore = self._restore and self._best_epoch is not None and not self._restore_requested
        self._restore_requested = True
        return Decision(
            False,
            False,
            restore,
            _NOT_STOPPED,
            self._next_epoch - 1,
            None,
            self._best,
            self._best_epoch,
            self._wait,
            self._name,
            final=True,
            kept_by=self._keep_key,
        )

    # -- the slower paths ----------------------------------------------------

    def _update_coordinated(self, logs: Mapping[str, Any], epoch: int | None, lr: float | None) -> Decision:
        plateau = self._plateau
        assert plateau is not None
        if lr is None:
            lr = self._lr
            if lr is None:
                raise ValueError(
                    "a Monitor with a plateau needs the learning rate: pass update(logs, lr=optimizer_lr) "
                    "(at least on the first epoch)"
                )
        # Before the plateau counts the epoch: a refused epoch changes nothing.
        if epoch is not None and (type(epoch) is not int or epoch < self._next_epoch):
            epoch = self._check_epoch(epoch)
        self._check_inputs(logs)
        saved = plateau.save_counters()
        next_lr = plateau.update(logs, lr)
        previous = self._lr, self._hold
        self._hold = plateau.last_reduced or not plateau.exhausted(next_lr)
        self._lr = next_lr
        try:
            decision = self._update(logs, epoch)
        except BaseException:
            plateau.restore_counters(saved)
            self._lr, self._hold = previous
            raise
        if not plateau.last_reduced or decision.should_stop:
            return decision
        self._wait = 0  # the new rate gets a full patience
        return decision._replace(wait=0, detail=f"learning rate lowered to {next_lr:g}")

    def _check_inputs(self, logs: Mapping[str, Any]) -> None:
        """Raise now whatever ``_update`` would raise on these logs, changing nothing."""
        key = self._key
        if (
            key is not None
            and type(logs) is dict
            and type(logs.get(key)) is float
            and not self._checks_inputs
            and self._keep_key is None
        ):
            return  # the common case, cheaply
        if key is None:
            assert self._score is not None
            if not isinstance(logs, Mapping):
                _check_logs(logs, "<metric>")
            try:
                x = self._score.read(logs)
            except MissingMetricError:
                if self.config.on_missing == "raise":
                    raise
                return
        else:
            if not isinstance(logs, Mapping):
                _check_logs(logs, key)
            if key not in logs:
                if self.config.on_missing == "raise":
                    raise MissingMetricError(key, logs.keys())
                return
            x = coerce_metric(key, logs[key])
        if self._checks_inputs:
            self._check_rule_inputs(logs, x * self._sign)
        if self._keep_key is not None:
            self._keep_value(logs)

    def _undo_record(self) -> tuple[list[Any], Any, Any]:
        """What an update changes, for `_check_guarded` to put back if a rule raises."""
        score = None if self._score is None else self._score.state_dict()
        rule = None if self._rule is None else self._rule.state_dict()
        return [getattr(self, name) for name in _UPDATED], score, rule

    def _check_guarded(self, rule: Rule, arguments: tuple[Any, ...], undo: tuple[list[Any], Any, Any]) -> bool:
        """``rule.check(*arguments)``; if it raises, the Monitor, its score and the rule are put back first."""
        try:
            return rule.check(*arguments)
        except BaseException:
            fields, score, saved = undo
            for name, value in zip(_UPDATED, fields, strict=True):
                setattr(self, name, value)
            if self._score is not None:
                self._score.load_state_dict(score)
            rule.load_state_dict(saved)  # what its own state_dict() said before this epoch
            raise

    def _check_epoch(self, epoch: Any) -> int:
        """``epoch`` as an int, if it is one and comes after every epoch seen; else the error that says why."""
        if isinstance(epoch, bool) or not hasattr(epoch, "__index__"):
            raise TypeError(f"'epoch' must be an int, got {type(epoch).__name__} ({epoch!r})")
        value = int(epoch.__index__())
        if value < 0:
            raise ValueError(f"'epoch' must be >= 0, got {value}")
        if value < self._next_epoch:
            raise ValueError(
                f"epoch {value} does not come after epoch {self._next_epoch - 1}, the last one this Monitor saw: "
                "epochs must increase. To start a new run call reset(); to resume from a checkpoint, load the "
                "Monitor state saved with it (see docs/resuming.md)"
            )
        return value

    def _check_rule_inputs(self, logs: Mapping[str, Any], s: float) -> None:
        rule = self._rule
        assert rule is not None
        for name in rule.requires:
            if name not in logs:
                fix = f"The stopping rule reads it at every epoch (it requires {', '.join(sorted(rule.requires))})."
                raise MissingMetricError(name, logs.keys(), fix)
            coerce_metric(name, logs[name])
        for name in rule.optional:
            if name in logs and coerce_metric(name, logs[name]) < 0.0:
                raise ValueError(
                    f"{name!r} must be >= 0 (the stopping rule reads it as a learning rate), got {logs[name]!r}"
                )
        if rule.takes_log and s < 0:
            raise ValueError(
                f"{rule!r} takes logarithms of {self._name}, which must be >= 0, got {s * self._sign!r}; use log=False"
            )

    def _keep_value(self, logs: Mapping[str, Any]) -> float:
        """The signed ``keep_best_by`` value of these logs; a non-finite one is the worst possible."""
        name = self._keep_key
        assert name is not None
        raw = logs.get(name, _ABSENT) if type(logs) is dict else lookup(logs, name)
        if raw is _ABSENT:
            raise missing_keep_metric(name, logs.keys(), self._name)
        k = (raw if type(raw) is float else coerce_metric(name, raw)) * self._keep_sign
        return k if k - k == 0.0 else _INF

    def _smooth(self, s: float) -> float:
        ema = self._ema
        factor = self._smoothing
        ema = s if ema is None else factor * ema + (1.0 - factor) * s
        self._ema = ema
        return ema

    def _improves_relative(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        shifted = value + self._delta * abs(best)
        return shifted < best and less32(shifted, best)

    def _beats_baseline(self, value: float) -> bool:
        baseline = self._baseline
        if baseline is None:
            return True
        margin = self._delta * abs(baseline) if self._relative else self._delta
        return less32(value + margin, baseline)

    def _keep_raw_best(self, x: float, s: float, epoch: int, k: float) -> bool:
        """Whether this epoch's weights are now the kept ones (smoothing, warm-up or ``keep_best_by``).

        ``k`` is the signed ``keep_best_by`` value (lower is better). By that
        metric, ties (in float32) go to the better monitored value, then to
        the earlier epoch; without it, the raw monitored value decides.
        """
        best = self._best_signed
        if self._keep_key is not None:
            kept = self._kept_by
            # Not better, and not a tie won by the monitored value: keep what is kept.
            if kept is not None and not less32(k, kept) and (less32(kept, k) or best is None or not less32(s, best)):
                return False
            self._kept_by = k
        elif best is not None:
            shifted = s + (self._delta * abs(best) if self._relative else self._delta)
            if not less32(shifted, best):
                return False
        self._best = x
        self._best_signed = s
        self._best_epoch = epoch
        return True

    def _stop(
        self,
        epoch: int,
        value: float,
        reason: StopReason,
        improved: bool,
        limit: float | None,
        detail: str | None = None,
    ) -> Decision:
        self._stopped_epoch = epoch
        self._stop_reason = reason
        restore = self._restore and self._best_epoch is not None
        self._restore_requested = restore
        return Decision(
            True,
            improved,
            restore,
            reason,
            epoch,
            value,
            self._best,
            self._best_epoch,
            self._wait,
            self._name,
            limit,
            detail=detail,
            lr=self._lr,
            kept_by=self._keep_key,
        )

    def _missing(self, logs: Mapping[str, Any], epoch: int) -> Decision:
        if self.config.on_missing == "raise":
            assert self._key is not None
            raise MissingMetricError(self._key, logs.keys())
        self._next_epoch = epoch + 1
        return Decision(
            False,
            False,
            False,
            _NOT_STOPPED,
            epoch,
            None,
            self._best,
            self._best_epoch,
            self._wait,
            self._name,
            lr=self._lr,
            kept_by=self._keep_key,
        )

    # -- read-only state -----------------------------------------------------

    @property
    def best(self) -> float | None:
        """The best value seen (None before the first monitored epoch)."""
        return self._best

    @property
    def best_epoch(self) -> int | None:
        """The epoch of `best` (None before the first monitored epoch)."""
        return self._best_epoch

    @property
    def wait(self) -> int:
        """Epochs counted since the last reset of the patience count."""
        return self._wait

    @property
    def stopped_epoch(self) -> int | None:
        """The epoch of the last stop decision, or None."""
        return self._stopped_epoch

    @property
    def stop_reason(self) -> StopReason:
        """Why the last stop happened (``NOT_STOPPED`` if none did)."""
        return self._stop_reason

    @property
    def epoch(self) -> int:
        """The epoch the next `update` will be about, unless told otherwise."""
        return self._next_epoch

    @property
    def smoothed(self) -> float | None:
        """The current smoothed value (None without smoothing or before the first epoch)."""
        return None if self._ema is None else self._ema * self._sign

    @property
    def plateau(self) -> ReduceLROnPlateau | None:
        """This monitor's own copy of its learning-rate schedule (None without one)."""
        return self._plateau

    @property
    def lr(self) -> float | None:
        """The learning rate the last decision asked for (None without a plateau)."""
        return self._lr

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every log key this monitor reads: its metric(s), ``keep_best_by``, the plateau's, the rule's ``requires``.

        What a distributed loop must agree on across ranks (the PyTorch adapter reduces exactly these).

        Examples:
            >>> from earlystop_core import PQ, Patience
            >>> Monitor("val_loss", rule=Patience(3) | PQ(0.5), keep_best_by="val_accuracy").metrics
            ('val_loss', 'val_accuracy', 'loss')
        """
        config = self.config
        names = [config.monitor] if isinstance(config.monitor, str) else list(config.monitor)
        if config.keep_best_by is not None:
            names.append(config.keep_best_by)
        if self._plateau is not None:
            names.append(self._plateau.monitor)
        if self._rule is not None:
            names.extend(sorted(self._rule.requires))
        return tuple(dict.fromkeys(names))

    @property
    def rule(self) -> Rule | None:
        """This monitor's own copy of its stopping rule (None for plain fixed patience)."""
        return self._rule

    # -- saving and resuming -------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The whole state as strict JSON (no NaN or Infinity tokens), versioned.

        Examples:
            >>> import json
            >>> m = Monitor(patience=3)
            >>> _ = m.update({"val_loss": 0.5})
            >>> resumed = Monitor(patience=3)
            >>> resumed.load_state_dict(json.loads(json.dumps(m.state_dict())))
            >>> resumed.best, resumed.epoch
            (0.5, 1)
        """
        state = MonitorState(
            next_epoch=self._next_epoch,
            best=self._best,
            best_epoch=self._best_epoch,
            wait=self._wait,
            stopped_epoch=self._stopped_epoch,
            stop_reason=self._stop_reason,
            restore_requested=self._restore_requested,
            tracked=_signed(self._tracked, self._sign),
            smoothed=self.smoothed,
            rule=None if self._rule is None else self._rule.state_dict(),
            score=None if self._score is None else self._score.state_dict(),
            plateau=None if self._plateau is None else self._plateau.state_dict(),
            lr=self._lr,
            kept_by=_signed(self._kept_by, self._keep_sign),
        )
        return dump_state(self.config, state)

    def load_state_dict(self, state: Mapping[str, Any] | str) -> None:
        """Continue from a `state_dict` of an identically configured monitor.

        Everything is checked before anything changes: a refused state leaves
        the Monitor exactly as it was.

        Raises:
            StateError: The state is corrupt, of another format or version, or
                was saved by a monitor configured differently.
        """
        loaded = load_state(self.config, state)
        # Every part loads into a throwaway copy first: a refused state leaves this Monitor as it was.
        parts = [(part, loaded_part) for part, loaded_part in self._parts(loaded) if part is not None]
        for part, saved in parts:
            trial = copy.deepcopy(part)
            trial.load_state_dict(saved)  # a plateau's missing section is refused by load_state, others by its envelope
            if isinstance(trial, Rule) and self._check_finite:
                _check_finite_memory(trial)
        check_seal(state, STATE_FORMAT)  # last: a field's own error names the problem better
        for part, saved in parts:
            part.load_state_dict(saved)  # checked above: cannot fail now
        self._hold = False  # recomputed from the plateau at the next update
        self._lr = loaded.lr
        self._next_epoch = loaded.next_epoch
        self._best = loaded.best
        self._best_signed = _signed(loaded.best, self._sign)
        self._best_epoch = loaded.best_epoch
        self._tracked = _signed(loaded.tracked, self._sign)
        self._kept_by = _signed(loaded.kept_by, self._keep_sign)
        self._ema = _signed(loaded.smoothed, self._sign)
        self._wait = loaded.wait
        self._stopped_epoch = loaded.stopped_epoch
        self._stop_reason = loaded.stop_reason
        self._restore_requested = loaded.restore_requested

    def _parts(self, loaded: MonitorState) -> list[tuple[Rule | WeightedScore | ReduceLROnPlateau | None, Any]]:
        return [(self._rule, loaded.rule), (self._score, loaded.score), (self._plateau, loaded.plateau)]

    def __repr__(self) -> str:
        c = self.config
        best = "none" if self._best_epoch is None else f"{self._best:.6g}@{self._best_epoch}"
        how = f"rule={self._rule!r}" if self._rule is not None else f"patience={c.patience}"
        return (
            f"Monitor(monitor={c.monitor!r}, mode={c.mode!r}, {how}, min_delta={c.min_delta:g}; "
            f"epoch={self._next_epoch}, best={best}, wait={self._wait}, stop_reason={self._stop_reason.name})"
        )


def _built_in(rule: Rule) -> bool:
    parts = rule.rules if isinstance(rule, (AnyOf, AllOf)) else ()
    if parts:
        return type(rule) in (AnyOf, AllOf) and all(_built_in(part) for part in parts)
    return type(rule).__module__.startswith("earlystop_core.")


def _check_finite_memory(rule: Rule) -> None:
    odd = [value for value in rule.remembered() if value - value != 0.0]
    if odd:
        raise StateError(
            f"corrupt Monitor state: {rule!r} remembers {odd[0]!r}, but with check_finite=True no "
            "non-finite value reaches a rule"
        )


def _renamed(options: dict[str, Any], names: Any) -> dict[str, Any]:
    """The Monitor's arguments reading every metric under the logged name ``names`` gives it (others as they are).

    Entries for metrics this Monitor does not read are allowed: one mapping serves every Monitor of a framework.
    """
    if not isinstance(names, Mapping) or not all(
        isinstance(key, str) and key and isinstance(value, str) and value for key, value in names.items()
    ):
        raise TypeError(f"'names' must map metric names to the names in the logs, e.g. {{'val_loss': 'eval_loss'}}, "
                        f"got {names!r}")  # fmt: skip
    logged = list(names.values())
    if len(set(logged)) != len(logged):
        raise ValueError(f"'names' gives two metrics one logged name: {dict(names)!r}")
    renamed = dict(options)
    monitor = options["monitor"]
    if isinstance(monitor, str):
        renamed["monitor"] = names.get(monitor, monitor)
    elif isinstance(monitor, Mapping):
        renamed["monitor"] = {names.get(key, key): weight for key, weight in monitor.items()}
        if isinstance(options["mode"], Mapping):
            renamed["mode"] = {names.get(key, key): mode for key, mode in options["mode"].items()}
    if isinstance(options["keep_best_by"], str):
        renamed["keep_best_by"] = names.get(options["keep_best_by"], options["keep_best_by"])
    for part in ("rule", "plateau"):
        value = options[part]
        if hasattr(value, "renamed"):  # a Rule, a ReduceLROnPlateau; anything else is refused by the config
            renamed[part] = value.renamed(names)
    return renamed


def _own_rule(config: MonitorConfig) -> Rule | None:
    """The monitor's private, mutable copy of its rule (the user's object stays untouched)."""
    if config.patience == "auto":
        assert config.max_epochs is not None
        return AutoPatience(config.max_epochs, config.n_samples)
    return None if config.rule is None else own_copy(config.rule)


def _signed(value: float | None, sign: float) -> float | None:
    return None if value is None else value * sign


def _check_logs(logs: object, key: str) -> None:
    if not isinstance(logs, Mapping):
        raise TypeError(
            f"logs must be a mapping of metric names to values, got {type(logs).__name__}; pass e.g. {{{key!r}: value}}"
        ) from None


def _read_other(logs: Mapping[str, Any], key: str) -> Any:
    """The metric from logs that are not a plain dict (``ABSENT`` if not there), or a ``TypeError``."""
    if not isinstance(logs, Mapping):
        _check_logs(logs, key)
    return lookup(logs, key)
