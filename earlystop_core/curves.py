"""A recorded learning curve as data: ``{metric: values by epoch}``, the bundled sample, the oracle epoch.

The readers of `earlystop_core.formats` return curves; the replay tools read them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path

#: ``{metric: values by epoch}``; None where the metric was not logged that epoch (a logged NaN stays NaN).
Curve = dict[str, list[float | None]]


def sample_curves_path() -> Path:
    """The bundled sample: 120 real runs from the dev bank (12 per problem).

    Examples:
        >>> sample_curves_path().name
        'sample_curves.csv.gz'
    """
    return Path(str(resources.files("earlystop_core.data") / "sample_curves.csv.gz"))


def epochs(curve: Mapping[str, Sequence[float | None]]) -> Iterator[dict[str, float]]:
    """The curve as one logs dict per epoch, as a training loop would log them: a metric not logged is absent.

    Examples:
        >>> list(epochs({"val_loss": [0.5, None], "loss": [0.9, 0.8]}))
        [{'val_loss': 0.5, 'loss': 0.9}, {'loss': 0.8}]
    """
    names = list(curve)
    for values in zip(*(curve[name] for name in names), strict=True):
        yield {name: value for name, value in zip(names, values, strict=True) if value is not None}


def best_epoch(values: Sequence[float | None], mode: str = "min") -> int:
    """The first epoch holding the best value; non-finite values never count.

    Raises:
        ValueError: No value is finite.

    Examples:
        >>> best_epoch([0.5, 0.3, 0.3, 0.4]), best_epoch([0.5, 0.7, 0.7], "max")
        (1, 1)
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be one of 'min', 'max', got {mode!r}")
    sign = 1.0 if mode == "min" else -1.0
    best: int | None = None
    best_value = math.inf
    for epoch, value in enumerate(values):
        if value is None:  # not logged that epoch
            continue
        signed = sign * value
        if math.isfinite(signed) and signed < best_value:
            best, best_value = epoch, signed
    if best is None:
        raise ValueError(f"no finite value among {len(values)} epoch(s): there is no best epoch")
    return best
