"""Errors with messages that name the problem and the fix."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

from earlystop_core.modes import held_out

_SKIP = "Pass on_missing='skip' if it is logged only on some epochs."


class MissingMetricError(KeyError):
    """The monitored metric is not in the logs of this epoch.

    A ``KeyError`` subclass, so ``except KeyError`` keeps working; its message
    lists the keys that were logged and the closest one to what was asked.

    Examples:
        >>> raise MissingMetricError("val_los", ["loss", "val_loss"])
        Traceback (most recent call last):
        ...
        earlystop_core.errors.MissingMetricError: metric 'val_los' is not in the logs; ... Did you mean 'val_loss'? ...
    """

    def __init__(self, key: str, available: Iterable[object], fix: str | None = None) -> None:
        self.key = key
        self.available = [str(k) for k in available]
        logged = ", ".join(repr(k) for k in self.available) or "nothing"
        close = closest(key, self.available)
        hint = f" Did you mean {close!r}?" if close else ""
        self.message = f"metric {key!r} is not in the logs; logged: {logged}.{hint} {fix or _SKIP}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.message


def closest(name: str, available: Iterable[str]) -> str | None:
    """The logged metric most likely meant by ``name``, None if none is close.

    A training metric is not offered for a validation one, nor the other way
    round (a missing ``loss`` is ``train_loss``, not ``val_loss``); a name
    holding the one asked for, or held in it, comes first.

    Examples:
        >>> closest("loss", ["val_loss", "train_loss", "val_acc"])
        'train_loss'
        >>> closest("val_loss", ["loss", "val_loss/dataloader_idx_0", "val_loss/dataloader_idx_1"])
        'val_loss/dataloader_idx_0'
        >>> closest("val_los", ["loss", "val_loss"]), closest("val_loss", ["lr"])
        ('val_loss', None)
    """
    names = list(available)
    pool = [other for other in names if held_out(other) == held_out(name)] or names
    holding = [other for other in pool if name in other or other in name]

    def ratio(other: str) -> float:
        return difflib.SequenceMatcher(None, name, other).ratio()

    close = holding or [other for other in pool if ratio(other) >= 0.6]  # difflib's own cutoff
    return max(close, key=ratio) if close else None  # the first logged among equals


def missing_keep_metric(name: str, available: Iterable[object], monitored: str) -> MissingMetricError:
    """The error for a ``keep_best_by`` metric absent from an epoch's logs (on_missing does not apply to it)."""
    return MissingMetricError(
        name, available, f"keep_best_by={name!r} needs it in every epoch's logs, beside {monitored!r}."
    )


class StateError(ValueError):
    """A saved monitor state cannot be loaded into this monitor."""


class FormatError(ValueError):
    """A curve file is malformed; the message starts with ``file:line:column:``.

    Attributes:
        path: The file.
        line: The 1-based line (None when the problem is the file as a whole).
        column: The 1-based column (a CSV field, or a character of a JSON line), or None.

    Examples:
        >>> str(FormatError("metrics.csv", 14, 3, "expected a number, got 'abc'"))
        "metrics.csv:14:3: expected a number, got 'abc'"
    """

    def __init__(self, path: str | os.PathLike[str], line: int | None, column: int | None, problem: str) -> None:
        self.path, self.line, self.column, self.problem = str(path), line, column, problem
        where = ":".join(str(part) for part in (self.path, line, column) if part is not None)
        super().__init__(f"{where}: {problem}")
