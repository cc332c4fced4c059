"""Comparisons made the way Keras and Lightning make them: in float32.

Keras compares through ``keras.ops`` and Lightning through torch tensors; both
hold Python floats as float32 there. Two values that differ only beyond
float32 precision (``0.7 + 0.1`` against ``0.8``, say) are equal to them, so
they must be equal to us too, or a stop would come an epoch earlier or later
than the peers'. Rounding costs a struct round trip, so it is done only when
the two values are close enough for rounding to matter.
"""

from __future__ import annotations

import struct

_FLOAT32 = struct.Struct("<f")
# At and above 2**128 - 2**103 a double rounds to float32 infinity.
_OVERFLOW = 2.0**128 - 2.0**103
# Two doubles further apart than this (relative to the larger magnitude)
# never round to the same float32; 2**-22 is twice the float32 spacing.
_RELATIVE_GAP = 2.0**-22
# Float32 subnormals are 2**-149 apart; anything wider is safely distinct.
_ABSOLUTE_GAP = 1e-44
_SAFE_MAGNITUDE = 3.4e38


def to_float32(value: float) -> float:
    """Round a double to the nearest float32 (ties to even), as a double.

    Examples:
        >>> to_float32(0.1)
        0.10000000149011612
        >>> to_float32(1e39)
        inf
    """
    if value >= _OVERFLOW:
        return float("inf")
    if value <= -_OVERFLOW:
        return float("-inf")
    result: float = _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    return result


def less32(a: float, b: float) -> bool:
    """Whether ``a < b`` once both are rounded to float32.

    Examples:
        >>> 0.7 + 0.1 < 0.8, less32(0.7 + 0.1, 0.8)
        (True, False)
    """
    if not a < b:  # also False for NaN, as in float32
        return False
    magnitude = b if b > -a else -a
    if b - a > magnitude * _RELATIVE_GAP + _ABSOLUTE_GAP and magnitude < _SAFE_MAGNITUDE:
        return True
    return to_float32(a) < to_float32(b)
