"""A monitor's state as strict, versioned JSON, and its careful loading.

Non-finite floats (a NaN best under Keras's rule) are written as the strings
``"nan"``, ``"inf"`` and ``"-inf"``, so the JSON has no NaN or Infinity tokens
and any JSON parser reads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from earlystop_core._json import float_from_json, float_to_json, open_envelope
from earlystop_core.config import MonitorConfig
from earlystop_core.decision import StopReason
from earlystop_core.errors import StateError

FORMAT = "earlystop_core.Monitor"
VERSION = 1


class MonitorState(NamedTuple):
    """Everything a monitor remembers between epochs."""

    next_epoch: int
    best: float | None
    best_epoch: int | None
    wait: int
    stopped_epoch: int | None
    stop_reason: StopReason
    restore_requested: bool
    tracked: float | None = None
    smoothed: float | None = None
    rule: Any = None
    score: Any = None
    plateau: Any = None
    lr: float | None = None
    kept_by: float | None = None


def dump_state(config: MonitorConfig, state: MonitorState) -> dict[str, Any]:
    """The JSON-ready dict of a monitor's configuration and state."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_json(),
        "state": {
            "next_epoch": state.next_epoch,
            "best": float_to_json(state.best),
            "best_epoch": state.best_epoch,
            "wait": state.wait,
            "stopped_epoch": state.stopped_epoch,
            "stop_reason": state.stop_reason.value,
            "restore_requested": state.restore_requested,
            "tracked": float_to_json(state.tracked),
            "smoothed": float_to_json(state.smoothed),
            "rule": state.rule,
            "score": state.score,
            "plateau": state.plateau,
            "lr": state.lr,
            "kept_by": float_to_json(state.kept_by),
        },
    }


def load_state(config: MonitorConfig, saved: Mapping[str, Any] | str) -> MonitorState:
    """Check a saved state against ``config`` and return it, or raise ``StateError``.

    Examples:
        >>> load_state(MonitorConfig(), {"format": "something else"})
        Traceback (most recent call last):
        ...
        earlystop_core.errors.StateError: not a saved earlystop_core.Monitor state: 'format' is 'something else'
    """
    fields = open_envelope(saved, FORMAT, VERSION, config.to_json())
    state = MonitorState(
        next_epoch=_field_int(fields, "next_epoch"),
        best=_field_float(fields, "best"),
        best_epoch=_field_int(fields, "best_epoch", optional=True),
        wait=_field_int(fields, "wait"),
        stopped_epoch=_field_int(fields, "stopped_epoch", optional=True),
        stop_reason=_field_reason(fields),
        restore_requested=_field_bool(fields, "restore_requested"),
        tracked=_field_float(fields, "tracked"),
        smoothed=_field_float(fields, "smoothed"),
        rule=fields.get("rule"),
        score=fields.get("score"),
        plateau=fields.get("plateau"),
        lr=_field_float(fields, "lr"),
        kept_by=_field_float(fields, "kept_by"),
    )
    _check_consistent(config, state)
    return state


def _check_consistent(config: MonitorConfig, state: MonitorState) -> None:
    last = state.next_epoch - 1
    if state.wait > state.next_epoch:
        raise StateError(f"corrupt Monitor state: 'wait' ({state.wait}) exceeds the epochs seen ({state.next_epoch})")
    first = config.start_from_epoch  # warm-up (best_from_epoch) epochs can still be the kept best
    if state.best_epoch is not None and state.best_epoch < first:
        raise StateError(f"corrupt Monitor state: 'best_epoch' ({state.best_epoch}) is before epoch {first}")
    if config.check_finite and state.best is not None and not math.isfinite(state.best):
        raise StateError(f"corrupt Monitor state: best {state.best!r} is not finite, but check_finite=True")
    if (state.best is None) != (state.best_epoch is None):
        raise StateError("corrupt Monitor state: 'best' and 'best_epoch' must both be set or both be null")
    for name in ("best_epoch", "stopped_epoch"):
        epoch = getattr(state, name)
        if epoch is not None and epoch > last:
            raise StateError(f"corrupt Monitor state: {name!r} ({epoch}) is after the last epoch seen ({last})")
    if config.keep_best_by is not None and (state.kept_by is None) != (state.best_epoch is None):
        raise StateError(
            f"corrupt Monitor state: 'kept_by' (the {config.keep_best_by} of the kept epoch) and 'best_epoch' "
            "must both be set or both be null"
        )
    if (state.stopped_epoch is None) != (state.stop_reason is StopReason.NOT_STOPPED):
        raise StateError("corrupt Monitor state: 'stopped_epoch' and 'stop_reason' disagree")


def _field_float(fields: Mapping[str, Any], name: str) -> float | None:
    return float_from_json(fields.get(name), repr(name))


def _field_int(fields: Mapping[str, Any], name: str, optional: bool = False) -> Any:
    if name not in fields:
        raise StateError(f"corrupt Monitor state: {name!r} is missing")
    value = fields[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateError(f"corrupt Monitor state: {name!r} must be an int >= 0, got {value!r}")
    return value


def _field_bool(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name)
    if not isinstance(value, bool):
        raise StateError(f"corrupt Monitor state: {name!r} must be true or false, got {value!r}")
    return value


def _field_reason(fields: Mapping[str, Any]) -> StopReason:
    value = fields.get("stop_reason")
    try:
        return StopReason(value)
    except ValueError:
        choices = ", ".join(repr(r.value) for r in StopReason)
        raise StateError(f"corrupt Monitor state: 'stop_reason' must be one of {choices}, got {value!r}") from None
