"""A monitor's configuration: validated once, frozen, comparable, JSON-ready."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from earlystop_core._validate import check_bool, check_choice, check_int, check_real
from earlystop_core.modes import Mode, resolve_mode
from earlystop_core.rules.base import Rule
from earlystop_core.rules.plateau import ReduceLROnPlateau
from earlystop_core.signals import WeightedScore

ON_MISSING = ("raise", "skip")
MIN_DELTA_MODES = ("abs", "rel")


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """The settings of a [`Monitor`][earlystop_core.Monitor], as validated.

    ``mode`` is resolved (never ``"auto"``) and ``min_delta`` is stored as its
    absolute value, which is all that Keras's rule uses. For a weighted
    ``monitor``, ``mode`` is the direction of the combined score and
    ``metric_modes`` those of its metrics.

    Examples:
        >>> MonitorConfig.build(monitor="val_accuracy", min_delta=-0.01).mode
        'max'
    """

    monitor: str | dict[str, float] = "val_loss"
    mode: Mode = "min"
    patience: int | str = 0
    min_delta: float = 0.0
    baseline: float | None = None
    start_from_epoch: int = 0
    restore_best_weights: bool = False
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    check_finite: bool = True
    on_missing: str = "raise"
    min_delta_mode: str = "abs"
    best_from_epoch: int = 0
    smoothing: float = 0.0
    normalize: str | None = None
    metric_modes: dict[str, Mode] | None = None
    rule: Rule | None = None
    max_epochs: int | None = None
    n_samples: int | None = None
    plateau: ReduceLROnPlateau | None = None
    keep_best_by: str | None = None
    keep_best_mode: Mode | None = None

    @classmethod
    def build(
        cls,
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
    ) -> MonitorConfig:
        """Validate every argument, with a message naming the argument and the fix."""
        metric_modes: dict[str, Mode] | None = None
        if isinstance(monitor, Mapping):
            score = WeightedScore(monitor, mode, normalize)
            name: str | dict[str, float] = dict(score.weights)
            resolved, metric_modes = score.mode, score.modes
        elif isinstance(monitor, str) and monitor:
            if normalize is not None:
                raise ValueError("normalize applies to a weighted monitor (a dict of metric: weight); drop it here")
            if not isinstance(mode, str):
                raise TypeError(f"mode must be one of 'auto', 'min', 'max' for a single metric, got {mode!r}")
            name, resolved = monitor, resolve_mode(mode, monitor)
        else:
            raise TypeError(f"'monitor' must be a metric name or a dict of metric: weight, got {monitor!r}")
        delta = check_real("min_delta", min_delta)
        assert delta is not None
        config = cls(
            monitor=name,
            mode=resolved,
            patience=_check_patience(patience, rule, max_epochs),
            min_delta=abs(delta),
            baseline=check_real("baseline", baseline, optional=True),
            start_from_epoch=check_int("start_from_epoch", start_from_epoch),
            restore_best_weights=check_bool("restore_best_weights", restore_best_weights),
            stopping_threshold=check_real("stopping_threshold", stopping_threshold, optional=True),
            divergence_threshold=check_real("divergence_threshold", divergence_threshold, optional=True),
            check_finite=check_bool("check_finite", check_finite),
            on_missing=check_choice("on_missing", on_missing, ON_MISSING),
            min_delta_mode=check_choice("min_delta_mode", min_delta_mode, MIN_DELTA_MODES),
            best_from_epoch=check_int("best_from_epoch", best_from_epoch),
            smoothing=_check_smoothing(smoothing),
            normalize=normalize,
            metric_modes=metric_modes,
            rule=rule,
            max_epochs=None if max_epochs is None else check_int("max_epochs", max_epochs, minimum=1),
            n_samples=None if n_samples is None else check_int("n_samples", n_samples, minimum=1),
            plateau=_check_plateau(plateau),
            keep_best_by=_check_keep_best_by(keep_best_by, name),
            keep_best_mode=None if keep_best_by is None else _check_keep_best_mode(keep_best_mode, keep_best_by),
        )
        if keep_best_by is None and keep_best_mode != "auto":
            raise ValueError(
                f"keep_best_mode={keep_best_mode!r} applies to the metric of keep_best_by=, which is not given; "
                "pass keep_best_by='<metric>' or drop keep_best_mode"
            )
        config._check_thresholds()
        return config

    @property
    def name(self) -> str:
        """The monitored quantity, for messages: a metric name or the weighted sum."""
        if isinstance(self.monitor, str):
            return self.monitor
        modes = self.metric_modes or {}
        terms = [
            ("+" if modes.get(metric, self.mode) == self.mode else "-", f"{weight:g}*{metric}")
            for metric, weight in self.monitor.items()
        ]
        text = " ".join(f"{sign} {term}" for sign, term in terms)
        return text[2:] if text.startswith("+ ") else text

    def _check_thresholds(self) -> None:
        goal, limit = self.stopping_threshold, self.divergence_threshold
        if goal is None or limit is None:
            return
        contradictory = goal >= limit if self.mode == "min" else goal <= limit
        if contradictory:
            side = "below" if self.mode == "min" else "above"
            raise ValueError(
                f"stopping_threshold ({goal:g}) must be {side} divergence_threshold ({limit:g}) "
                f"in mode {self.mode!r}, or every epoch would stop training"
            )

    def to_json(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        fields["rule"] = None if self.rule is None else self.rule.spec()
        fields["plateau"] = None if self.plateau is None else self.plateau.state_dict()["config"]
        return fields


def _check_patience(patience: Any, rule: Rule | None, max_epochs: int | None) -> int | str:
    if patience == "auto" and isinstance(patience, str):
        if rule is not None:
            raise ValueError("patience='auto' and rule= both decide when to stop; pass one of them")
        if max_epochs is None:
            raise ValueError("patience='auto' needs max_epochs= (the planned number of epochs) to size the patience")
        return "auto"
    value = check_int("patience", patience)
    if rule is not None:
        if not isinstance(rule, Rule):
            raise TypeError(f"'rule' must be a Rule (e.g. Patience(10) | GL(5)), got {type(rule).__name__}")
        if value != 0:
            raise ValueError(
                f"patience={value} and rule= both decide when to stop; put the patience in the rule, "
                f"e.g. rule=Patience({value}) | {rule!r}"
            )
    return value


def _check_keep_best_by(keep_best_by: Any, monitor: str | dict[str, float]) -> str | None:
    if keep_best_by is None:
        return None
    if not isinstance(keep_best_by, str) or not keep_best_by:
        raise TypeError(f"'keep_best_by' must be a metric name such as 'val_accuracy', got {keep_best_by!r}")
    if keep_best_by == monitor:
        raise ValueError(
            f"keep_best_by={keep_best_by!r} is the monitored metric, whose best epoch is kept anyway; drop keep_best_by"
        )
    return keep_best_by


def _check_keep_best_mode(mode: Any, metric: str) -> Mode:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"keep_best_mode must be one of 'auto', 'min', 'max', got {mode!r}")
    return resolve_mode(mode, metric)


def _check_plateau(plateau: Any) -> ReduceLROnPlateau | None:
    if plateau is not None and not isinstance(plateau, ReduceLROnPlateau):
        raise TypeError(f"'plateau' must be a ReduceLROnPlateau, got {type(plateau).__name__} ({plateau!r})")
    return plateau


def _check_smoothing(smoothing: Any) -> float:
    value = check_real("smoothing", smoothing)
    assert value is not None
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'smoothing' must be in [0, 1), got {smoothing!r}")
    return value
