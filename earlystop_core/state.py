"""A monitor's state as strict, versioned JSON, and its careful loading.

Non-finite floats (a NaN best under Keras's rule) are written as the strings
``"nan"``, ``"inf"`` and ``"-inf"``, so the JSON has no NaN or Infinity tokens
and any JSON parser reads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from earlystop_core._json import float_from_json, float_to_json, open_envelope, seal
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
    return seal(
        {
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
    )


def load_state(config: MonitorConfig, saved: Mapping[str, Any] | str) -> MonitorState:
    """Check a saved state against ``config`` and return it, or raise ``StateError``.

    Examples:
        >>> load_state(MonitorConfig(), {"format": "something else"})
        Traceback (most recent call last):
        ...
        earlystop_core.errors.StateError: not a saved earlystop_core.Monitor state: 'format' is 'something else'
    """
    fields = open_envelope(saved, FORMAT, VERSION, config.to_json())
    missing = [name for name in MonitorState._fields if name not in fields]
    unknown = sorted(set(fields) - set(MonitorState._fields))
    problems = [f"missing field(s) {', '.join(map(repr, missing))}"] if missing else []
    problems += [f"unknown field(s) {', '.join(map(repr, unknown))}"] if unknown else []
    if problems:
        raise StateError("corrupt Monitor state: " + "; ".join(problems))
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
        rule=fields["rule"],
        score=fields["score"],
        plateau=fields["plateau"],
        lr=_field_float(fields, "lr"),
        kept_by=_field_float(fields, "kept_by"),
    )
    _check_consistent(config, state)
    return state


def _check_consistent(config: MonitorConfig, state: MonitorState) -> None:
    last = state.next_epoch - 1
    monitored = max(0, state.next_epoch - config.start_from_epoch)  # at most this many epochs counted
    if state.wait > monitored:
        raise StateError(
            f"corrupt Monitor state: 'wait' ({state.wait}) exceeds the epochs seen ({monitored} monitored, from "
            f"epoch {config.start_from_epoch} to {last})"
        )
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
    _check_bests(config, state)
    _check_parts(config, state)


def _check_bests(config: MonitorConfig, state: MonitorState) -> None:
    """The tracked best (what patience counts from) against the kept best (what is restored).

    A wrong ``tracked`` would silently change every later decision (a null one
    makes the next epoch the best, however bad), so it is checked against what
    a Monitor can reach.
    """
    split = config.smoothing > 0 or config.best_from_epoch > 0 or config.keep_best_by is not None
    if config.check_finite:
        for name in ("tracked", "smoothed"):
            value = getattr(state, name)
            if value is not None and not math.isfinite(value):
                raise StateError(f"corrupt Monitor state: {name!r} {value!r} is not finite, but check_finite=True")
    if state.tracked is not None and state.best is None:
        raise StateError("corrupt Monitor state: 'tracked' is set but there is no 'best'")
    if not split and not _same_float(state.tracked, state.best):
        raise StateError(
            f"corrupt Monitor state: 'tracked' ({state.tracked!r}) must equal 'best' ({state.best!r}) "
            "without smoothing, best_from_epoch or keep_best_by"
        )
    first_tracked = max(config.start_from_epoch, config.best_from_epoch)
    if state.tracked is not None and state.next_epoch <= first_tracked:
        raise StateError(
            f"corrupt Monitor state: 'tracked' is set after {state.next_epoch} epoch(s), but nothing is tracked "
            f"before epoch {first_tracked}"
        )
    if state.tracked is None and state.best_epoch is not None and state.best_epoch >= config.best_from_epoch:
        raise StateError(
            f"corrupt Monitor state: 'tracked' is null, but epoch {state.best_epoch} (the kept best) would have set it"
        )
    if config.smoothing == 0 and state.smoothed is not None:
        raise StateError(f"corrupt Monitor state: 'smoothed' is {state.smoothed!r} without smoothing")
    if config.smoothing > 0 and (state.smoothed is None) != (state.best_epoch is None):
        raise StateError(
            "corrupt Monitor state: 'smoothed' and 'best_epoch' must both be set or both be null (every epoch "
            "smoothed is also a candidate for the kept best)"
        )
    if config.keep_best_by is None and state.kept_by is not None:
        raise StateError(f"corrupt Monitor state: 'kept_by' is {state.kept_by!r} without keep_best_by")
    worst = math.inf if config.keep_best_mode != "max" else -math.inf
    if state.kept_by is not None and not math.isfinite(state.kept_by) and state.kept_by != worst:
        raise StateError(
            f"corrupt Monitor state: 'kept_by' is {state.kept_by!r}; a non-finite {config.keep_best_by} is kept "
            f"as the worst value, {worst!r}"
        )


def _check_parts(config: MonitorConfig, state: MonitorState) -> None:
    """The rule's, the score's and the plateau's sections exist exactly when the Monitor has those parts."""
    has_rule = config.rule is not None or config.patience == "auto"
    if not has_rule and state.rule is not None:
        raise StateError(f"corrupt Monitor state: a rule's state {state.rule!r}, but this Monitor has no rule")
    if (isinstance(config.monitor, str) or config.normalize is None) and state.score is not None:
        raise StateError(f"corrupt Monitor state: normalisation scales {state.score!r}, but nothing is normalised")
    if config.normalize is not None and state.best_epoch is not None and state.score is None:
        raise StateError(
            "corrupt Monitor state: no normalisation scales, but a best epoch: the first epoch read fixes them"
        )
    if config.plateau is None:
        if state.plateau is not None or state.lr is not None:
            raise StateError(
                "corrupt Monitor state: a learning rate or plateau state, but this Monitor has no plateau "
                "(a learning rate would be applied to the optimizer)"
            )
        return
    if state.plateau is None:
        raise StateError("corrupt Monitor state: the plateau's state is missing")
    if state.lr is None and state.next_epoch > 0:
        raise StateError(f"corrupt Monitor state: 'lr' is null after {state.next_epoch} epoch(s) with a plateau")
    if state.lr is not None and not 0.0 < state.lr < math.inf:
        raise StateError(f"corrupt Monitor state: 'lr' must be a finite learning rate > 0, got {state.lr!r}")


def _same_float(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


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
