"""A monitor's state as strict, versioned JSON, and its careful loading.

Non-finite floats (a NaN best under Keras's rule) are written as the strings
``"nan"``, ``"inf"`` and ``"-inf"``, so the JSON has no NaN or Infinity tokens
and any JSON parser reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from earlystop_core.config import MonitorConfig
from earlystop_core.decision import StopReason
from earlystop_core.errors import StateError

FORMAT = "earlystop_core.Monitor"
VERSION = 1
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


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


def dump_state(config: MonitorConfig, state: MonitorState) -> dict[str, Any]:
    """The JSON-ready dict of a monitor's configuration and state."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_json(),
        "state": {
            "next_epoch": state.next_epoch,
            "best": _float_to_json(state.best),
            "best_epoch": state.best_epoch,
            "wait": state.wait,
            "stopped_epoch": state.stopped_epoch,
            "stop_reason": state.stop_reason.value,
            "restore_requested": state.restore_requested,
            "tracked": _float_to_json(state.tracked),
            "smoothed": _float_to_json(state.smoothed),
            "rule": state.rule,
            "score": state.score,
        },
    }


def load_state(config: MonitorConfig, saved: Mapping[str, Any] | str) -> MonitorState:
    """Check a saved state against ``config`` and return it, or raise ``StateError``.

    Example:
        >>> load_state(MonitorConfig(), {"format": "something else"})
        Traceback (most recent call last):
        ...
        earlystop_core.errors.StateError: not a saved Monitor state: 'format' is 'something else', ...
    """
    if isinstance(saved, str):
        try:
            saved = json.loads(saved)
        except json.JSONDecodeError as error:
            raise StateError(f"saved Monitor state is not valid JSON: {error}") from None
    if not isinstance(saved, Mapping):
        raise StateError(f"a saved Monitor state is a dict from state_dict(), got {type(saved).__name__}")
    if saved.get("format") != FORMAT:
        raise StateError(f"not a saved Monitor state: 'format' is {saved.get('format')!r}, expected {FORMAT!r}")
    if not _same(saved.get("version"), VERSION):
        raise StateError(
            f"saved Monitor state has version {saved.get('version')!r}; this earlystop_core reads version {VERSION}"
        )
    _check_same_config(config, saved.get("config"))
    fields = saved.get("state")
    if not isinstance(fields, Mapping):
        raise StateError("saved Monitor state has no 'state' section")
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
    )
    _check_consistent(config, state)
    return state


def _check_same_config(config: MonitorConfig, saved: object) -> None:
    if not isinstance(saved, Mapping):
        raise StateError("saved Monitor state has no 'config' section")
    mine = config.to_json()
    differences = [
        f"{name}={saved.get(name, '<absent>')!r} (saved) vs {value!r} (this monitor)"
        for name, value in mine.items()
        if not _same(saved.get(name, "<absent>"), value)
    ]
    unknown = sorted(set(saved) - set(mine))
    differences += [f"{name} (unknown setting)" for name in unknown]
    if differences:
        raise StateError(
            "saved Monitor state comes from a monitor configured differently: "
            + "; ".join(differences)
            + ". Build the Monitor with the saved settings to resume."
        )


def _same(saved: object, value: object) -> bool:
    # 1 == True and 0 == 0.0 in Python; a setting saved as another type is another setting.
    return saved == value and type(saved) is type(value)


def _check_consistent(config: MonitorConfig, state: MonitorState) -> None:
    last = state.next_epoch - 1
    if state.wait > state.next_epoch:
        raise StateError(f"corrupt Monitor state: 'wait' ({state.wait}) exceeds the epochs seen ({state.next_epoch})")
    first = max(config.start_from_epoch, config.best_from_epoch)
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
    if (state.stopped_epoch is None) != (state.stop_reason is StopReason.NOT_STOPPED):
        raise StateError("corrupt Monitor state: 'stopped_epoch' and 'stop_reason' disagree")


def _float_to_json(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _field_float(fields: Mapping[str, Any], name: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StateError(f"corrupt Monitor state: {name!r} must be a number, got {value!r}")
    return float(value)


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
