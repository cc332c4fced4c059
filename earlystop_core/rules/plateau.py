"""``ReduceLROnPlateau``: Keras 3's learning-rate rule, without Keras.

Decisions are those of ``keras.callbacks.ReduceLROnPlateau`` (3.15), compared
as Keras compares them, in float32 (see ``_float32``). As in [`Monitor`][earlystop_core.Monitor],
values are multiplied by a sign (+1 to minimise, -1 to maximise), so there is
one code path: lower is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from earlystop_core._float32 import less32
from earlystop_core._json import check_seal, float_from_json, float_to_json, open_envelope, seal
from earlystop_core._validate import check_choice, check_int, check_real
from earlystop_core._values import ABSENT, coerce_metric, lookup
from earlystop_core.errors import MissingMetricError, StateError
from earlystop_core.modes import resolve_mode

FORMAT = "earlystop_core.ReduceLROnPlateau"
VERSION = 1
_COUNTERS = ("wait", "cooldown_counter", "reductions")
_SETTINGS: tuple[str, ...] = ("monitor", "mode", "factor", "patience", "min_delta", "cooldown", "min_lr")
_SETTINGS += ("min_delta_mode", "max_reductions", "on_missing")


class ReduceLROnPlateau:
    """Lower the learning rate when a metric stops improving: call `update` once per epoch.

    Arguments and decisions are Keras 3's ``ReduceLROnPlateau``: after
    ``patience`` epochs without improvement the rate is multiplied by
    ``factor`` (never below ``min_lr``), then ``cooldown`` epochs pass before
    epochs count again. The rate returned is the float64 ``max(lr * factor,
    min_lr)``; Keras's optimizer stores it in float32, so feed back what your
    optimizer holds and the decisions stay Keras's.

    Args:
        monitor: Name of the metric to watch in each epoch's logs.
        factor: Multiplier of the rate at each reduction, in (0, 1).
        patience: Epochs without improvement before a reduction (0 acts as 1).
        min_delta: Smallest change that counts as an improvement (sign ignored).
        cooldown: Epochs after a reduction during which epochs are not counted.
        min_lr: The rate is never lowered below this.
        mode: ``"min"``, ``"max"``, or ``"auto"`` to infer it from the name.
        min_delta_mode: ``"abs"`` (Keras) or ``"rel"``: improve by more than
            ``min_delta * abs(best)``, which is also right for negative metrics.
        max_reductions: Reduce at most this many times (None: no limit).
        on_missing: ``"raise"`` (a [`MissingMetricError`][earlystop_core.MissingMetricError]) or ``"skip"``:
            return the rate unchanged, leaving best, wait and the counters as they are.

    Attributes:
        best: The best value seen, or None (as in Keras, a NaN never improves).
        wait: Epochs counted without improvement (it keeps growing at ``min_lr``).
        cooldown_counter: Cooldown epochs still to pass.
        reductions: How many reductions so far.
        last_reduced: Whether the last `update` reduced the rate.

    Examples:
        >>> p = ReduceLROnPlateau(patience=1, factor=0.5, min_lr=0.2)
        >>> lr = 1.0
        >>> for loss in [0.9, 0.8, 0.8, 0.8, 0.8, 0.8]:
        ...     lr = p.update({"val_loss": loss}, lr)
        >>> lr, p.reductions, p.exhausted(lr)
        (0.2, 3, True)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        mode: str = "auto",
        min_delta_mode: str = "abs",
        max_reductions: int | None = None,
        on_missing: str = "raise",
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"'monitor' must be a non-empty metric name, got {monitor!r}")
        self.monitor = monitor
        self.mode = resolve_mode(mode, monitor)
        self.factor = _real("factor", factor)
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"'factor' must be {'> 0' if self.factor <= 0 else '< 1.0'}, got {self.factor!r}")
        self.patience = check_int("patience", patience)
        self.min_delta = abs(_real("min_delta", min_delta))
        self.cooldown = check_int("cooldown", cooldown)
        self.min_lr = _real("min_lr", min_lr)
        if self.min_lr < 0.0:
            raise ValueError(f"'min_lr' must be >= 0, got {self.min_lr!r}")
        self.min_delta_mode = check_choice("min_delta_mode", min_delta_mode, ("abs", "rel"))
        self.max_reductions = None if max_reductions is None else check_int("max_reductions", max_reductions)
        self.on_missing = check_choice("on_missing", on_missing, ("raise", "skip"))
        self._sign = 1.0 if self.mode == "min" else -1.0
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far, as Keras does at the start of ``fit()``."""
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0
        self.reductions = 0
        self.last_reduced = False

    def update(self, logs: Mapping[str, Any], lr: float) -> float:
        """Take one epoch's metrics and the rate used now; return the rate to use next.

        Raises:
            MissingMetricError: The metric is absent and ``on_missing="raise"``.
            ValueError: ``lr`` is not a finite number > 0.

        Examples:
            >>> p = ReduceLROnPlateau(monitor="val_acc", patience=2, factor=0.5)
            >>> [p.update({"val_acc": acc}, 0.1) for acc in [0.7, 0.8, 0.8, 0.79]]
            [0.1, 0.1, 0.1, 0.05]
        """
        lr = _check_lr(lr)
        # A plain dict makes up no value; for other mappings `in` comes first (a defaultdict's 0.0 is no metric).
        raw = logs.get(self.monitor, ABSENT) if type(logs) is dict else lookup(logs, self.monitor)
        if raw is ABSENT:
            if self.on_missing == "raise":
                raise MissingMetricError(self.monitor, logs.keys())
            self.last_reduced = False
            return lr
        x = raw if type(raw) is float else coerce_metric(self.monitor, raw)
        self.last_reduced = False  # only now: an update that raises changes nothing
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(x):
            self.best = x
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and not self.exhausted(lr):
                self.cooldown_counter = self.cooldown
                self.wait = 0
                self.reductions += 1
                self.last_reduced = True
                return max(lr * self.factor, self.min_lr)
        return lr

    def exhausted(self, lr: float) -> bool:
        """Whether no further reduction can happen from ``lr``.

        That is when ``lr`` is not above ``min_lr`` in float32 (Keras's test:
        its optimizer holds the rate in float32), or ``max_reductions`` is reached.

        Examples:
            >>> ReduceLROnPlateau(min_lr=0.1).exhausted(0.1 + 1e-12)
            True
        """
        limit = self.max_reductions
        return not less32(self.min_lr, _check_lr(lr)) or (limit is not None and self.reductions >= limit)

    def save_counters(self) -> tuple[Any, ...]:
        """Everything `update` changes, for `restore_counters` to put back (a Monitor's rollback)."""
        return self.best, self.wait, self.cooldown_counter, self.reductions, self.last_reduced

    def restore_counters(self, saved: tuple[Any, ...]) -> None:
        """Put back what `save_counters` returned."""
        self.best, self.wait, self.cooldown_counter, self.reductions, self.last_reduced = saved

    def _improves(self, x: float) -> bool:
        best = self.best
        if best is None:
            return True
        margin = self.min_delta * abs(best) if self.min_delta_mode == "rel" else self.min_delta
        return less32(x * self._sign + margin, best * self._sign)

    def _config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SETTINGS}

    def renamed(self, names: Mapping[str, str]) -> ReduceLROnPlateau:
        """A fresh schedule like this one, watching its metric under the logged name ``names`` gives it.

        Examples:
            >>> ReduceLROnPlateau("val_loss", patience=2).renamed({"val_loss": "eval_loss"}).monitor
            'eval_loss'
        """
        if self.monitor not in names:
            return self
        return type(self)(**{**self._config(), "monitor": names[self.monitor]})

    def state_dict(self) -> dict[str, Any]:
        """The whole state as strict, versioned JSON (no NaN or Infinity tokens).

        Examples:
            >>> import json
            >>> p = ReduceLROnPlateau(patience=0, factor=0.5)
            >>> lr = p.update({"val_loss": 1.0}, 0.1)
            >>> resumed = ReduceLROnPlateau(patience=0, factor=0.5)
            >>> resumed.load_state_dict(json.dumps(p.state_dict(), allow_nan=False))
            >>> resumed.best, resumed.update({"val_loss": 1.0}, lr)
            (1.0, 0.05)
        """
        state = {name: getattr(self, name) for name in _COUNTERS}
        state.update(best=float_to_json(self.best), last_reduced=self.last_reduced)
        return seal({"format": FORMAT, "version": VERSION, "config": self._config(), "state": state})

    def load_state_dict(self, saved: Mapping[str, Any] | str) -> None:
        """Continue from a `state_dict` of an identically configured instance.

        Raises:
            StateError: The state is corrupt, of another format or version, or
                was saved with other settings.
        """
        state = open_envelope(saved, FORMAT, VERSION, self._config())
        best = float_from_json(state.get("best"), "'best'")
        for name in _COUNTERS:
            if type(state.get(name)) is not int or state[name] < 0:
                raise StateError(f"corrupt ReduceLROnPlateau state: {name!r} must be an int >= 0")
        if type(state.get("last_reduced")) is not bool:
            raise StateError("corrupt ReduceLROnPlateau state: 'last_reduced' must be true or false")
        _check_counters(state, self.cooldown, self.max_reductions)
        check_seal(saved, FORMAT)
        self.best = best
        self.wait, self.cooldown_counter, self.reductions = (state[name] for name in _COUNTERS)
        self.last_reduced = state["last_reduced"]

    def __repr__(self) -> str:
        state = ", ".join(f"{name}={getattr(self, name)!r}" for name in ("best", *_COUNTERS))
        return f"ReduceLROnPlateau(monitor={self.monitor!r}, mode={self.mode!r}, factor={self.factor!r}; {state})"


def _check_counters(state: Mapping[str, Any], cooldown: int, max_reductions: int | None) -> None:
    """Refuse counters that no run of this schedule can reach."""
    if "best" not in state:
        raise StateError("corrupt ReduceLROnPlateau state: 'best' is missing")
    if state["cooldown_counter"] > cooldown:
        raise StateError(
            f"corrupt ReduceLROnPlateau state: 'cooldown_counter' ({state['cooldown_counter']}) exceeds "
            f"cooldown ({cooldown})"
        )
    if max_reductions is not None and state["reductions"] > max_reductions:
        raise StateError(
            f"corrupt ReduceLROnPlateau state: 'reductions' ({state['reductions']}) exceeds "
            f"max_reductions ({max_reductions})"
        )
    if state["last_reduced"] and (state["reductions"] == 0 or state["wait"] != 0):
        raise StateError("corrupt ReduceLROnPlateau state: 'last_reduced' is true, but no reduction was counted")


def _real(name: str, value: Any) -> float:
    number = check_real(name, value)
    assert number is not None
    return number


def _check_lr(lr: Any) -> float:
    value = lr if type(lr) is float else _real("lr", lr)
    if not 0.0 < value < math.inf:
        raise ValueError(f"'lr' must be a finite learning rate > 0, got {value!r}")
    return value
