"""Prechelt's criteria (1998, "Early Stopping — But When?"): GL, PQ and UP.

``E_va`` is the monitored value (a validation error or loss), ``E_opt`` the
best of it so far, ``E_tr`` the training loss; a *strip* is ``k`` consecutive
epochs, and strips end at epochs ``k-1, 2k-1, ...`` (0-based). The formulas
assume positive errors; here the generalisation loss is taken relative to
``|E_opt|``, which is Prechelt's ``100 * (E_va / E_opt - 1)`` for a positive
loss and the relative drop for a maximised metric such as an accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from earlystop_core._json import float_from_json, float_to_json, floats_from_json
from earlystop_core._validate import check_int, check_positive
from earlystop_core._values import coerce_metric
from earlystop_core.errors import MissingMetricError, StateError
from earlystop_core.rules.base import Rule


def generalization_loss(value: float, best: float | None) -> float:
    """``GL = 100 * (E_va / E_opt - 1)`` in percent, for signed values (lower is better).

    Examples:
        >>> generalization_loss(1.1, 1.0)
        10.000000000000009
        >>> generalization_loss(-0.9, -1.0)  # an accuracy of 0.9 after a best of 1.0
        9.999999999999998
    """
    if best is None or best == 0.0:
        return 0.0
    return 100.0 * (value - best) / abs(best)


def _strip_end(epoch: int, strip: int) -> bool:
    return (epoch + 1) % strip == 0


class GL(Rule):
    """Generalisation loss: stop at the first epoch with ``GL > alpha`` percent.

    Examples:
        >>> from earlystop_core import Monitor
        >>> monitor = Monitor("val_loss", rule=GL(alpha=5))
        >>> [monitor.update({"val_loss": loss}).should_stop for loss in [1.0, 1.03, 1.06]]  # 3%, then 6% above
        [False, False, True]
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = check_positive("alpha", alpha)
        self._last = 0.0

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        self._last = generalization_loss(value, best)
        return self._last > self.alpha

    def spec(self) -> dict[str, Any]:
        return {"rule": "GL", "alpha": self.alpha}

    def explain(self) -> str:
        return f"generalisation loss {self._last:.3g}% > {self.alpha:g}% (GL)"


class UP(Rule):
    """Stop when the value got worse at the end of ``strips`` successive strips of ``strip`` epochs.

    Examples:
        >>> from earlystop_core import Monitor
        >>> monitor = Monitor("val_loss", rule=UP(strips=2, strip=2))
        >>> [monitor.update({"val_loss": loss}).should_stop for loss in [1.0, 0.9, 0.95, 1.0, 1.0, 1.1]]
        [False, False, False, False, False, True]
    """

    def __init__(self, strips: int, strip: int = 5) -> None:
        self.strips = check_int("strips", strips, minimum=1)
        self.strip = check_int("strip", strip, minimum=1)
        self.reset()

    def reset(self) -> None:
        self._previous: float | None = None
        self._ups = 0

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        if not _strip_end(epoch, self.strip):
            return False
        went_up = self._previous is not None and value > self._previous
        self._ups = self._ups + 1 if went_up else 0
        self._previous = value
        return self._ups >= self.strips

    def spec(self) -> dict[str, Any]:
        return {"rule": "UP", "strips": self.strips, "strip": self.strip}

    def explain(self) -> str:
        return f"worse at the end of {self._ups} successive strips of {self.strip} epochs (UP)"

    def state_dict(self) -> Any:
        return {"previous": float_to_json(self._previous), "ups": self._ups}

    def remembered(self) -> list[float]:
        return [] if self._previous is None else [self._previous]

    def load_state_dict(self, state: Any) -> None:
        fields = _fields(self, state, ("previous", "ups"))
        previous = float_from_json(fields["previous"], f"{self!r} previous")
        ups = _count(self, fields["ups"])
        if previous is None and ups:
            raise StateError(f"corrupt Monitor state: {self!r} counts {ups} worse strip(s) but remembers none")
        self._previous, self._ups = previous, ups


class PQ(Rule):
    """Quotient of generalisation loss and training progress: stop when ``GL / P_k > alpha``.

    ``P_k = 1000 * (mean training loss over the last strip / its minimum - 1)``
    is checked at the end of each strip; a training loss that no longer moves
    (``P_k = 0``) with any generalisation loss stops.

    Examples:
        >>> from earlystop_core import Monitor
        >>> monitor = Monitor("val_loss", rule=PQ(alpha=0.5, strip=2))
        >>> monitor.update({"val_loss": 1.0, "loss": 0.5}).should_stop
        False
        >>> monitor.update({"val_loss": 1.2, "loss": 0.49}).should_stop  # GL 20% over a progress of about 10
        True
    """

    def __init__(self, alpha: float, strip: int = 5, train_monitor: str = "loss") -> None:
        self.alpha = check_positive("alpha", alpha)
        self.strip = check_int("strip", strip, minimum=2)
        if not isinstance(train_monitor, str) or not train_monitor:
            raise TypeError(f"'train_monitor' must be a non-empty metric name, got {train_monitor!r}")
        self.train_monitor = train_monitor
        self.requires = frozenset({train_monitor})
        self.reset()

    def reset(self) -> None:
        self._train: list[float] = []
        self._last = (0.0, 0.0)

    def check(
        self, epoch: int, value: float, best: float | None, wait: int, improved: bool, logs: Mapping[str, Any]
    ) -> bool:
        try:
            raw = logs[self.train_monitor]
        except KeyError:
            raise MissingMetricError(self.train_monitor, logs.keys()) from None
        self._train.append(coerce_metric(self.train_monitor, raw))
        del self._train[: -self.strip]
        if not _strip_end(epoch, self.strip) or len(self._train) < self.strip:
            return False
        lowest = min(self._train)
        progress = 1000.0 * (sum(self._train) / (self.strip * lowest) - 1.0) if lowest > 0 else math.inf
        loss = generalization_loss(value, best)
        self._last = (loss, progress)
        if progress == 0.0:
            return loss > 0.0
        return loss / progress > self.alpha

    def spec(self) -> dict[str, Any]:
        return {"rule": "PQ", "alpha": self.alpha, "strip": self.strip, "train_monitor": self.train_monitor}

    def explain(self) -> str:
        loss, progress = self._last
        return f"GL {loss:.3g}% / training progress {progress:.3g} > {self.alpha:g} (PQ)"

    def state_dict(self) -> Any:
        return {"train": [float_to_json(v) for v in self._train]}

    def load_state_dict(self, state: Any) -> None:
        train = _fields(self, state, ("train",))["train"]
        if not isinstance(train, list) or len(train) > self.strip:
            raise StateError(f"corrupt Monitor state: {self!r} 'train' must be a list of <= {self.strip} numbers")
        self._train = floats_from_json(train, f"{self!r} train")


def _fields(rule: Rule, state: Any, names: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(state, Mapping) or set(state) != set(names):
        raise StateError(f"corrupt Monitor state: {rule!r} needs fields {', '.join(names)}, got {state!r}")
    return state


def _count(rule: Rule, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateError(f"corrupt Monitor state: {rule!r} count must be an int >= 0, got {value!r}")
    return value
