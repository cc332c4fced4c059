"""Recorded runs as arrays: the form every vectorised replay reads ([`Bank`][earlystop_core.Bank])."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from earlystop_core.formats.long_csv import is_long_csv
from earlystop_core.formats.long_csv_arrays import read_arrays
from earlystop_core.formats.readers import load_any

__all__ = ["Bank", "Curves"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Curves = Mapping[str, Mapping[str, Sequence[float | None]]]  # None: not logged that epoch


@dataclasses.dataclass(frozen=True, eq=False)
class Bank:
    """Recorded runs as arrays: per metric, runs x epochs, NaN past each run's end.

    Build one with `from_curves` (from ``{run: {metric: values}}``, as
    `load_curves` and the readers of
    `earlystop_core.formats.readers` return) or `load` (any supported file
    or directory). The arrays are read-only.

    Attributes:
        runs: The run ids, in order.
        lengths: Each run's number of epochs.
        values: ``{metric: float64 array (runs, max_epochs)}``, NaN-padded.
        present: ``{metric: bool array (runs,)}``: which runs log the metric
            at all (a run without it has NaN there, but a replay sees no key).
        missing: ``{metric: bool array (runs, max_epochs)}`` for the metrics some
            run did not log at some of its epochs (validation every other epoch):
            NaN in ``values`` there, but a replay sees no key. A metric absent
            from it was logged at every epoch of the runs that log it.

    Examples:
        >>> bank = Bank.from_curves({"a": {"val_loss": [0.5, 0.4]}, "b": {"val_loss": [0.6]}})
        >>> bank
        Bank(2 runs, 1 metric, 1 to 2 epochs)
        >>> bank.values["val_loss"].tolist(), bank.lengths.tolist()
        ([[0.5, 0.4], [0.6, nan]], [2, 1])
    """

    runs: tuple[str, ...]
    lengths: IntArray
    values: Mapping[str, FloatArray]
    present: Mapping[str, BoolArray]
    missing: Mapping[str, BoolArray] = dataclasses.field(default_factory=dict)
    _local: threading.local = dataclasses.field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        count = len(self.runs)
        if self.lengths.shape != (count,):
            raise ValueError(f"'lengths' must have one entry per run ({count}), got shape {self.lengths.shape}")
        if count and int(self.lengths.min()) < 0:
            raise ValueError("'lengths' must be >= 0")
        width = int(self.lengths.max()) if count else 0
        if set(self.values) != set(self.present):
            raise ValueError("'values' and 'present' must name the same metrics")
        for name, array in self.values.items():
            if array.ndim != 2 or array.shape[0] != count or array.shape[1] < width:
                raise ValueError(
                    f"metric {name!r}: expected an array of shape ({count}, >= {width}), got {array.shape}"
                )
            if self.present[name].shape != (count,):
                raise ValueError(f"metric {name!r}: 'present' must have one entry per run")
        for name, mask in self.missing.items():
            if name not in self.values or mask.shape != self.values[name].shape:
                raise ValueError(f"metric {name!r}: 'missing' must be a mask shaped like its values")
        if len(set(self.runs)) != count:
            raise ValueError("run ids must be unique")

    def __getitem__(self, rows: slice) -> Bank:
        """The runs in ``rows`` (a slice), sharing this bank's arrays.

        Examples:
            >>> bank = Bank.from_curves({"a": {"loss": [1.0, 0.5]}, "b": {"loss": [2.0]}, "c": {"loss": [3.0]}})
            >>> bank[1:], bank[1:].runs
            (Bank(2 runs, 1 metric, 1 epochs), ('b', 'c'))
        """
        if not isinstance(rows, slice):
            raise TypeError(f"a bank is sliced by runs (bank[start:stop]), got {type(rows).__name__}")
        return Bank(
            self.runs[rows],
            self.lengths[rows],
            {name: array[rows] for name, array in self.values.items()},
            {name: flags[rows] for name, flags in self.present.items()},
            {name: mask[rows] for name, mask in self.missing.items()},
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_local"]  # work arrays, per thread: not part of the bank
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _local=threading.local())
        for array in (self.lengths, *self.values.values(), *self.present.values(), *self.missing.values()):
            array.setflags(write=False)

    @classmethod
    def from_curves(cls, curves: Curves) -> Bank:
        """Pack ``{run: {metric: values by epoch}}`` into arrays.

        Raises:
            TypeError: A run id is not a string, or a value is not a number.
            ValueError: The metrics of a run have different lengths.

        Examples:
            >>> Bank.from_curves({"r": {"loss": [1.0, 0.5], "acc": [0.1, 0.2]}}).metrics
            ('loss', 'acc')
        """
        runs = tuple(curves)
        for run in runs:
            if not isinstance(run, str):
                raise TypeError(f"run ids must be strings, got {type(run).__name__} ({run!r})")
        items = [curves[run] for run in runs]
        lengths = np.zeros(len(runs), dtype=np.int64)
        for row, (run, curve) in enumerate(zip(runs, items, strict=True)):
            sizes = {name: len(series) for name, series in curve.items()}
            if len(set(sizes.values())) > 1:
                raise ValueError(f"run {run!r}: every metric needs one value per epoch, got lengths {sizes}")
            lengths[row] = next(iter(sizes.values()), 0)
        metrics = list(dict.fromkeys(name for curve in items for name in curve))
        width = int(lengths.max()) if runs else 0
        inside = np.arange(width) < lengths[:, None]
        values: dict[str, FloatArray] = {}
        present: dict[str, BoolArray] = {}
        missing: dict[str, BoolArray] = {}
        for name in metrics:
            has = np.fromiter((name in curve for curve in items), dtype=bool, count=len(items))
            count = int(lengths[has].sum())
            series = [curve[name] for curve in items if name in curve]
            try:  # numpy reads None as NaN: where NaN appears, look for None (not logged that epoch)
                flat = np.fromiter(itertools.chain.from_iterable(series), dtype=np.float64, count=count)
            except (TypeError, ValueError) as error:
                raise TypeError(f"metric {name!r}: every value must be a number or None ({error})") from None
            absent = _missing(series, count) if np.isnan(flat).any() else None
            cells = inside & has[:, None]
            array = np.full((len(runs), width), np.nan, order="F")  # each epoch's values contiguous
            array[cells] = flat
            values[name] = _frozen(array)
            present[name] = _frozen(has)
            if absent is not None:
                mask = np.zeros((len(runs), width), dtype=bool, order="F")
                mask[cells] = absent
                missing[name] = _frozen(mask)
        return cls(runs, _frozen(lengths), values, present, missing)

    @classmethod
    def load(cls, path: str | Path) -> Bank:
        """Read a curve file or directory in any supported format ([`load_any`][earlystop_core.load_any]).

        A long CSV is read straight into arrays when pyarrow is installed
        (``pip install 'earlystop[arrow]'``): no Python float per value.

        Examples:
            >>> from earlystop_core.curves import sample_curves_path
            >>> len(Bank.load(sample_curves_path()))
            120
        """
        if Path(path).is_file() and is_long_csv(path):
            arrays = read_arrays(path)  # straight into arrays (pyarrow), when installed and the file is sound
            if arrays is not None:
                present = {name: np.ones(len(arrays.runs), dtype=bool) for name in arrays.values}
                return cls(
                    arrays.runs,
                    _frozen(arrays.lengths),
                    {name: _frozen(array) for name, array in arrays.values.items()},
                    {name: _frozen(flags) for name, flags in present.items()},
                    {name: _frozen(mask) for name, mask in arrays.missing.items()},
                )
        return cls.from_curves(load_any(path))

    def renamed(self, names: Mapping[str, str]) -> Bank:
        """The same runs with metrics renamed (``{logged name: new name}``; others keep theirs).

        Examples:
            >>> Bank.from_curves({"a": {"eval_loss": [0.5]}}).renamed({"eval_loss": "val_loss"}).metrics
            ('val_loss',)
        """
        clash = [new for old, new in names.items() if old in self.values and new in self.values and new not in names]
        if clash:
            raise ValueError(f"the bank logs {clash[0]!r} already: it cannot also be the name of another metric")
        return type(self)(
            self.runs,
            self.lengths,
            {names.get(old, old): array for old, array in self.values.items()},
            {names.get(old, old): flags for old, flags in self.present.items()},
            {names.get(old, old): mask for old, mask in self.missing.items()},
        )

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names, in order of first appearance."""
        return tuple(self.values)

    @property
    def max_epochs(self) -> int:
        """The length of the longest run (the arrays' width)."""
        return int(self.lengths.max()) if len(self.runs) else 0

    def __len__(self) -> int:
        return len(self.runs)

    def __repr__(self) -> str:
        metrics = len(self.values)
        shortest = int(self.lengths.min()) if len(self.runs) else 0
        span = f"{shortest} to {self.max_epochs}" if shortest != self.max_epochs else f"{shortest}"
        return f"Bank({len(self.runs)} runs, {metrics} metric{'s' * (metrics != 1)}, {span} epochs)"

    def curve(self, index: int) -> dict[str, list[float | None]]:
        """The run at ``index`` as ``{metric: values}`` (only the metrics it logs).

        Examples:
            >>> Bank.from_curves({"a": {"loss": [1.0, 0.5]}, "b": {"loss": [2.0]}}).curve(1)
            {'loss': [2.0]}
        """
        n = int(self.lengths[index])
        curve: dict[str, list[float | None]] = {}
        for name, array in self.values.items():
            if self.present[name][index]:
                values: list[float | None] = array[index, :n].tolist()
                if name in self.missing:
                    for epoch in np.flatnonzero(self.missing[name][index, :n]).tolist():
                        values[epoch] = None
                curve[name] = values
        return curve

    def curves(self) -> dict[str, dict[str, list[float | None]]]:
        """The whole bank back as ``{run: {metric: values}}`` (the input of `from_curves`).

        Examples:
            >>> curves = {"a": {"loss": [1.0, 0.5]}, "b": {"loss": [2.0]}}
            >>> Bank.from_curves(curves).curves() == curves
            True
        """
        return {run: self.curve(index) for index, run in enumerate(self.runs)}

    def lazy_curves(self) -> Mapping[str, dict[str, list[float | None]]]:
        """The bank as a read-only ``{run: curve}`` mapping that makes each curve as it is read.

        One run at a time is held as Python floats, where `curves` holds every run (about four times
        the arrays' memory): what a replay that visits each run once should read.

        Examples:
            >>> curves = {"a": {"loss": [1.0, 0.5]}, "b": {"loss": [2.0]}}
            >>> view = Bank.from_curves(curves).lazy_curves()
            >>> len(view), view["b"], view == curves
            (2, {'loss': [2.0]}, True)
        """
        return _LazyCurves(self)


class _LazyCurves(Mapping[str, dict[str, list[float | None]]]):
    """A bank's runs as a mapping, each curve made by `Bank.curve` when read (see `Bank.lazy_curves`)."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank
        self._index = {run: index for index, run in enumerate(bank.runs)}

    def __getitem__(self, run: str) -> dict[str, list[float | None]]:
        return self._bank.curve(self._index[run])

    def __iter__(self) -> Iterator[str]:
        return iter(self._bank.runs)

    def __len__(self) -> int:
        return len(self._bank.runs)


def _missing(series: list[Sequence[float | None]], count: int) -> BoolArray | None:
    """Where the values, flattened, are None; None when none is."""
    absent = np.fromiter((value is None for value in itertools.chain.from_iterable(series)), dtype=bool, count=count)
    return absent if absent.any() else None


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.setflags(write=False)
    return array
