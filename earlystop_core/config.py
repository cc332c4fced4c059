"""A monitor's configuration: validated once, frozen, comparable, JSON-ready."""

from __future__ import annotations

import dataclasses
from typing import Any

from earlystop_core._validate import check_bool, check_choice, check_int, check_real
from earlystop_core.modes import Mode, resolve_mode

ON_MISSING = ("raise", "skip")


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """The settings of a :class:`~earlystop_core.Monitor`, as validated.

    ``mode`` is resolved (never ``"auto"``) and ``min_delta`` is stored as its
    absolute value, which is all that Keras's rule uses.

    Example:
        >>> MonitorConfig.build(monitor="val_accuracy", min_delta=-0.01).mode
        'max'
    """

    monitor: str = "val_loss"
    mode: Mode = "min"
    patience: int = 0
    min_delta: float = 0.0
    baseline: float | None = None
    start_from_epoch: int = 0
    restore_best_weights: bool = False
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    check_finite: bool = True
    on_missing: str = "raise"

    @classmethod
    def build(
        cls,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        restore_best_weights: bool = False,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_finite: bool = True,
        on_missing: str = "raise",
    ) -> MonitorConfig:
        """Validate every argument, with a message naming the argument and the fix."""
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"'monitor' must be a non-empty metric name, got {monitor!r}")
        resolved = resolve_mode(mode, monitor)
        delta = check_real("min_delta", min_delta)
        assert delta is not None
        config = cls(
            monitor=monitor,
            mode=resolved,
            patience=check_int("patience", patience),
            min_delta=abs(delta),
            baseline=check_real("baseline", baseline, optional=True),
            start_from_epoch=check_int("start_from_epoch", start_from_epoch),
            restore_best_weights=check_bool("restore_best_weights", restore_best_weights),
            stopping_threshold=check_real("stopping_threshold", stopping_threshold, optional=True),
            divergence_threshold=check_real("divergence_threshold", divergence_threshold, optional=True),
            check_finite=check_bool("check_finite", check_finite),
            on_missing=check_choice("on_missing", on_missing, ON_MISSING),
        )
        config._check_thresholds()
        return config

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
        return dataclasses.asdict(self)
