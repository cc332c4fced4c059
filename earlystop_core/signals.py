"""Signals: what value the rules see, computed from one epoch's logs.

A plain metric name is the common case and the Monitor reads it inline; this
module holds the other signal, a weighted score of several metrics. Each metric
keeps its own direction, so a loss and an accuracy combine correctly (the seed
guide's sketch adds them blindly, rewarding a rising loss).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from earlystop_core._validate import check_choice, check_real
from earlystop_core._values import ABSENT, coerce_metric, lookup
from earlystop_core.errors import MissingMetricError, StateError
from earlystop_core.modes import Mode, resolve_mode

NORMALIZE = (None, "initial")


class WeightedScore:
    """A weighted sum of metrics, each entering with its direction.

    When all metrics share a direction the score has it too (``val_loss`` and
    ``val_mae`` give a score to minimise); when they differ, the score is
    maximised and lower-is-better metrics enter negated (``0.7 * val_accuracy -
    0.3 * val_loss``). With ``normalize="initial"`` each metric is divided by
    the magnitude of its first value, so metrics on different scales count by
    their relative change: a loss falling from 2.0 to 1.0 weighs as much as an
    accuracy rising from 0.4 to 0.6: both change by 50%. A metric whose first
    value is 0 cannot be scaled by it and is left in its own units.

    Examples:
        >>> score = WeightedScore({"val_accuracy": 0.7, "val_loss": 0.3})
        >>> score.mode, round(score.read({"val_accuracy": 0.9, "val_loss": 0.5}), 6)
        ('max', 0.48)
    """

    def __init__(
        self, weights: Mapping[str, float], mode: str | Mapping[str, str] = "auto", normalize: str | None = None
    ) -> None:
        if not isinstance(weights, Mapping) or not weights:
            raise TypeError(f"'monitor' as weights must be a non-empty dict of metric: weight, got {weights!r}")
        self.weights: dict[str, float] = {}
        for name, weight in weights.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"metric names in 'monitor' must be non-empty strings, got {name!r}")
            number = check_real(f"weight of {name}", weight)
            assert number is not None
            if number <= 0:
                raise ValueError(f"'weight of {name}' must be > 0, got {weight!r}; leave the metric out instead")
            self.weights[name] = number
        self.modes = self._resolve_modes(mode)
        directions = set(self.modes.values())
        self.mode: Mode = directions.pop() if len(directions) == 1 else "max"
        # Each metric's coefficient in a score that points in self.mode's direction.
        self._terms = [
            (name, weight if self.modes[name] == self.mode else -weight) for name, weight in self.weights.items()
        ]
        self.normalize: str | None = check_choice("normalize", normalize, NORMALIZE)
        self.name = " + ".join(f"{weight:g}*{name}" for name, weight in self.weights.items())
        self.reset()

    def _resolve_modes(self, mode: str | Mapping[str, str]) -> dict[str, Mode]:
        if isinstance(mode, Mapping):
            unknown = sorted(set(mode) - set(self.weights))
            if unknown:
                raise ValueError(f"mode names metrics that are not monitored: {', '.join(map(repr, unknown))}")
            return {name: resolve_mode(mode.get(name, "auto"), name) for name in self.weights}
        return {name: resolve_mode(mode, name) for name in self.weights}

    def reset(self) -> None:
        """Forget the first values used for normalisation."""
        self._scales: dict[str, float] | None = None

    def read(self, logs: Mapping[str, Any]) -> float:
        """The score of this epoch's logs; reading changes nothing (see `fix_scales`).

        With ``normalize="initial"`` and no scales fixed yet, this epoch's own
        values are the scales (the score of a first epoch).

        Raises:
            MissingMetricError: A weighted metric is not in the logs.
            TypeError: A value is not a number.
        """
        if self.normalize is None and type(logs) is dict:  # the common case, inline: a plain dict makes up nothing
            total = 0.0
            for name, coefficient in self._terms:
                try:
                    raw = logs[name]
                except KeyError:
                    raise MissingMetricError(name, logs.keys()) from None
                total += coefficient * (raw if type(raw) is float else coerce_metric(name, raw))
            return total
        values = self._values(logs)
        if self.normalize is not None:
            scales = self._scales if self._scales is not None else _scales_from(self.weights, values)
            values = [value / scale for value, scale in zip(values, scales.values(), strict=True)]
        total = 0.0
        for (_, coefficient), value in zip(self._terms, values, strict=True):
            total += coefficient * value
        return total

    def fix_scales(self, logs: Mapping[str, Any]) -> None:
        """With ``normalize="initial"``: take these (already read) logs' values as the scales, unless fixed.

        The Monitor calls it once an epoch is accepted, so an epoch refused for
        any reason leaves the scales unfixed.
        """
        if self.normalize is not None and self._scales is None:
            self._scales = _scales_from(self.weights, self._values(logs))

    def _values(self, logs: Mapping[str, Any]) -> list[float]:
        values = []
        plain = type(logs) is dict
        for name, _ in self._terms:
            raw = logs.get(name, ABSENT) if plain else lookup(logs, name)
            if raw is ABSENT:
                raise MissingMetricError(name, logs.keys())
            values.append(raw if type(raw) is float else coerce_metric(name, raw))
        return values

    def spec(self) -> dict[str, Any]:
        """The score's definition as JSON."""
        return {"weights": self.weights, "modes": self.modes, "normalize": self.normalize}

    def state_dict(self) -> Any:
        """The normalisation scales seen so far (None before the first epoch)."""
        return self._scales

    def load_state_dict(self, state: Any) -> None:
        """Restore what `state_dict` saved."""
        if state is None:
            self._scales = None
            return
        if (
            not isinstance(state, Mapping)
            or set(state) != set(self.weights)
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in state.values()
            )
        ):
            raise StateError(
                f"corrupt Monitor state: score scales must map {sorted(self.weights)} to finite numbers > 0, "
                f"got {state!r}"
            )
        self._scales = {name: float(value) for name, value in state.items()}


def _scales_from(weights: Mapping[str, float], values: list[float]) -> dict[str, float]:
    """Each metric's first magnitude; a metric starting at 0 (an accuracy of 0) is left unscaled."""
    scales = {}
    for name, value in zip(weights, values, strict=True):
        scale = abs(value)
        if not math.isfinite(scale):
            raise ValueError(
                f"normalize='initial' divides each metric by its first value, but {name!r} starts at {value!r}; "
                "use normalize=None and weights that reflect the metrics' scales"
            )
        scales[name] = scale if scale > 0.0 else 1.0
    return scales
