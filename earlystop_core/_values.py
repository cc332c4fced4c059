"""Turn whatever a training loop logs into a Python float, or say why not.

Loops log Python floats, numpy scalars, 0-d arrays and 0-d torch tensors.
The common case (a float) is a type check; everything else goes through
``__float__`` duck typing, so neither numpy nor torch is imported here.
"""

from __future__ import annotations

import math
from typing import Any


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
    if _is_boolean_array(value):
        raise TypeError(
            f"metric {key!r} must be a number, got a boolean {type(value).__name__}; log a float, e.g. float(x)"
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
    except (TypeError, ValueError, OverflowError) as error:
        raise TypeError(
            f"metric {key!r} must be a number, got {type(value).__name__} ({value!r}); "
            "log a float, a numpy scalar or a 0-d tensor"
        ) from error


def _is_boolean_array(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and str(dtype) in {"bool", "torch.bool"}
