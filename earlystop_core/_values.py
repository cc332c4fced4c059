"""Turn whatever a training loop logs into a Python float, or say why not.

Loops log Python floats, numpy scalars, 0-d arrays and 0-d torch tensors.
The common case (a float) is a type check; everything else goes through
``__float__`` duck typing, so neither numpy nor torch is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

#: What `lookup` returns for a metric that is not in the logs.
ABSENT: Final = object()


def coerce_metric(key: str, value: Any) -> float:
    """Return ``value`` as a float, or raise a ``TypeError`` naming ``key``.

    Examples:
        >>> coerce_metric("val_loss", 3)
        3.0
        >>> coerce_metric("val_loss", "0.3")
        Traceback (most recent call last):
        ...
        TypeError: metric 'val_loss' must be a number, got str ('0.3'); log the value itself, e.g. float(x)
    """
    if type(value) is float:
        return value
    if value is None or isinstance(value, (bool, str, bytes)):
        raise TypeError(
            f"metric {key!r} must be a number, got {type(value).__name__} ({value!r}); "
            "log the value itself, e.g. float(x)"
        )
    kind = _kind(value)
    if kind == "boolean":
        raise TypeError(
            f"metric {key!r} must be a number, got a boolean {type(value).__name__}; log a float, e.g. float(x)"
        )
    if kind == "complex":
        raise TypeError(
            f"metric {key!r} must be a real number, got a complex {type(value).__name__} ({value!r}); "
            "log its real part or its magnitude, e.g. float(x.real) or float(abs(x))"
        )
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        size = math.prod(int(n) for n in shape)
        if size != 1:
            raise TypeError(
                f"metric {key!r} must be a single number, got a {type(value).__name__} "
                f"of shape {tuple(int(n) for n in shape)}; reduce it first, e.g. x.mean()"
            )
        value = value.reshape(())
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError) as error:
        raise TypeError(
            f"metric {key!r} must be a number, got {type(value).__name__} ({value!r}); "
            "log a float, a numpy scalar or a 0-d tensor"
        ) from error


def _kind(value: Any) -> str | None:
    """ "boolean" or "complex" for an array or scalar of such a dtype (numpy's or torch's), else None.

    ``float()`` of a numpy complex drops the imaginary part with only a
    warning, and of a boolean array gives 0.0 or 1.0: neither is a metric.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    name = str(dtype)
    if name in {"bool", "torch.bool"}:
        return "boolean"
    return "complex" if "complex" in name else None


def lookup(logs: Mapping[str, Any], key: str) -> Any:
    """``logs[key]``, or `ABSENT` when the key is not there.

    ``key in logs`` is asked first, so a mapping with defaults
    (``collections.defaultdict``, ``Counter``) reads as a plain dict would:
    a missing metric is missing, not a 0.0 made up by the mapping.

    Examples:
        >>> from collections import defaultdict
        >>> lookup(defaultdict(float), "val_loss") is ABSENT
        True
    """
    if type(logs) is dict:
        return logs.get(key, ABSENT)
    return logs[key] if key in logs else ABSENT  # noqa: SIM401 - Mapping.get reads a defaulting __getitem__
