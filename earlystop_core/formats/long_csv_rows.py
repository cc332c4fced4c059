"""Where a long CSV's rows go as its chunks are parsed, into the ``(runs, epochs)`` arrays of a bank.

A file written run after run, each run's epochs 0, 1, 2, ... and every run
as long as the first (the last may be shorter), goes straight into its
cells: row ``i`` is run ``i // width``, epoch ``i % width``. Any other file,
found out at its first row that breaks that pattern, goes into flat arrays
of rows, put into their cells at the end. Chunks are placed in file order
(`Rows.place`, one at a time) and copied (`Rows.fill`) by several threads at
once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["Arrays", "Chunk", "Place", "Rows"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Cell = TypeVar("Cell", bound=np.generic)


class Arrays(NamedTuple):
    """A long CSV as arrays, the shape of a [`Bank`][earlystop_core.Bank] (every run logs every metric).

    ``values[name]`` is ``(runs, max epochs)`` in Fortran order (each epoch's
    runs side by side), NaN past each run's end and where not logged;
    ``missing[name]`` (only for metrics with an unlogged cell) marks the cells
    not logged.
    """

    runs: tuple[str, ...]
    lengths: IntArray
    values: dict[str, FloatArray]
    missing: dict[str, BoolArray]


class Chunk(NamedTuple):
    """A parsed chunk's rows: its runs (each part's run ids, in order of first appearance as Arrow's dictionary
    builder numbers them, and each row's index into them), epochs, each metric's values, and where a metric has
    nulls, where (under a null a value is unspecified)."""

    runs: list[tuple[list[str], npt.NDArray[np.integer]]]
    epochs: IntArray
    values: dict[str, FloatArray]
    nulls: dict[str, BoolArray]


class Place(NamedTuple):
    """Where a placed chunk's rows go: its first row, the layout they go into, and (flat) their runs' indices."""

    start: int
    layout: _Cells | _Flat
    codes: npt.NDArray[np.int32]


class Rows:
    """A long CSV's rows read so far, in the layout that fits the file (see the module).

    Examples:
        Two runs of two epochs, run after run, in one chunk: straight into cells.

        >>> chunk = Chunk([(["a", "b"], np.array([0, 0, 1, 1]))], np.array([0, 1, 0, 1]),
        ...               {"val_loss": np.array([0.9, 0.5, 0.8, 0.7])}, {})
        >>> rows = Rows(["val_loss"])
        >>> rows.fill(chunk, rows.place(chunk, None, settle=lambda: None))
        >>> arrays = rows.arrays()
        >>> arrays.runs, arrays.values["val_loss"].tolist(), type(rows.layout).__name__
        (('a', 'b'), [[0.9, 0.5], [0.8, 0.7]], '_Cells')
    """

    def __init__(self, metrics: list[str]) -> None:
        self.metrics = metrics
        self.count = 0
        self.ids: dict[str, int] = {}
        self.layout: _Cells | _Flat | None = None

    def place(self, chunk: Chunk, expected: int | None, settle: Callable[[], None]) -> Place:
        """Room for a chunk's rows after those placed so far (``expected``: the file's estimated rows).

        Called in file order; ``settle`` returns once no chunk is copying, and
        is called before the arrays move (they grow, or the cells become flat).
        """
        codes = self._codes(chunk)
        start, end = self.count, self.count + len(codes)
        if not len(codes):  # blank lines only: nothing to place, nor to tell the layout by
            return Place(start, _Flat(self.metrics, 0), codes)
        if self.layout is None:
            self.layout = _first_layout(codes, self.metrics, expected)
        if isinstance(self.layout, _Cells):
            if not self.layout.holds(codes, chunk.epochs, start):
                settle()
                self.layout = self.layout.flat(start, max(end, expected or 0))
            elif self.layout.room < (needed := -(-end // self.layout.width)):
                settle()
                estimate = -(-(expected or 0) // self.layout.width)  # untouched room costs no memory
                self.layout.grow(max(needed, estimate, 2 * self.layout.room))
        if isinstance(self.layout, _Flat) and len(self.layout.codes) < end:
            settle()
            self.layout.grow(start, max(end, expected or 0, 2 * len(self.layout.codes)))
        self.layout.nulls_for(chunk.nulls)
        self.count = end
        return Place(start, self.layout, codes)

    def fill(self, chunk: Chunk, place: Place) -> None:
        """Copy a placed chunk's rows into the arrays."""
        place.layout.fill(chunk, place.start, place.codes)

    def arrays(self) -> Arrays | None:
        """The rows as ``(runs, epochs)`` arrays; None if a run's epochs are not 0, 1, 2, ... in file order."""
        runs = tuple(self.ids)
        if not runs:  # a header and no rows: no metric logged, as the list reader has it
            return Arrays(runs, np.zeros(0, dtype=np.int64), {}, {})
        if isinstance(self.layout, _Cells):
            return self.layout.arrays(runs, self.count)
        layout = self.layout if self.layout is not None else _Flat(self.metrics, 0)
        return layout.arrays(runs, self.count)

    def _codes(self, chunk: Chunk) -> npt.NDArray[np.int32]:
        """Each row's run index (runs numbered in order of first appearance)."""
        parts = []
        for names, index in chunk.runs:  # each part has its own dictionary: mapped to the runs' indices
            ids = np.array([self.ids.setdefault(name, len(self.ids)) for name in names], dtype=np.int32)
            parts.append(ids[index])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _first_layout(codes: npt.NDArray[np.int32], metrics: list[str], expected: int | None) -> _Cells | _Flat:
    """Cells as wide as the first run when the first chunk ends it, else flat rows."""
    width = int(np.argmax(codes != 0))  # the first row of the second run
    if not width:
        return _Flat(metrics, max(len(codes), expected or 0))
    runs = -(-max(len(codes), expected or 0) // width)
    return _Cells(metrics, width, runs)


class _Cells:
    """Each metric's cells, ``(width, room)`` in C order: row ``i`` of the file is ``[i % width, i // width]``,
    and the first ``runs`` columns, packed, are the bank's ``(runs, width)`` array in Fortran order."""

    def __init__(self, metrics: list[str], width: int, room: int) -> None:
        self.width, self.room = width, room
        self.values = {name: np.empty((width, room)) for name in metrics}  # untouched room costs no memory
        self.nulls: dict[str, BoolArray] = {}
        # Rows 0, 1, 2, ...'s epochs and runs, as long as a chunk needs: each chunk's rows compare with a slice
        # of them (a tenth of the time of dividing its row numbers, in the turn that places chunks in order).
        self.epochs_in_order = np.empty(0, dtype=np.int64)
        self.runs_in_order = np.empty(0, dtype=np.int32)

    def holds(self, codes: npt.NDArray[np.int32], epochs: IntArray, start: int) -> bool:
        """Whether rows from ``start`` on are run ``i // width``, epoch ``i % width``."""
        run, epoch = divmod(start, self.width)
        end = epoch + len(codes)
        if len(self.epochs_in_order) < end:
            runs = -(-2 * end // self.width)
            self.epochs_in_order = np.tile(np.arange(self.width, dtype=np.int64), runs)
            self.runs_in_order = np.repeat(np.arange(runs, dtype=np.int32), self.width)
        return bool(
            np.array_equal(epochs, self.epochs_in_order[epoch:end])
            and np.array_equal(codes - np.int32(run), self.runs_in_order[epoch:end])
        )

    def grow(self, room: int) -> None:
        """Room for ``room`` runs (the new room's nulls False)."""
        self.values = {name: _wider(cells, room) for name, cells in self.values.items()}
        self.nulls = {name: _wider(cells, room) for name, cells in self.nulls.items()}
        self.room = room

    def nulls_for(self, nulls: dict[str, BoolArray]) -> None:
        """A mask for each metric with its first nulls."""
        for name in nulls:
            if name not in self.nulls:
                self.nulls[name] = np.zeros((self.width, self.room), dtype=bool)

    def fill(self, chunk: Chunk, start: int, codes: npt.NDArray[np.int32]) -> None:
        for name, values in chunk.values.items():
            _scatter(self.values[name], start, values)
        for name, nulls in chunk.nulls.items():
            _scatter(self.nulls[name], start, nulls)

    def flat(self, count: int, room: int) -> _Flat:
        """The first ``count`` rows as flat rows, with room for ``room``."""
        flat = _Flat(list(self.values), room)
        rows = np.arange(count)
        flat.codes[:count] = rows // self.width
        flat.epochs[:count] = rows % self.width
        for name, cells in self.values.items():
            _gather(flat.values[name], cells, count)
        for name, mask in self.nulls.items():
            flat.nulls[name] = np.zeros(room, dtype=bool)
            _gather(flat.nulls[name], mask, count)
        return flat

    def arrays(self, runs: tuple[str, ...], count: int) -> Arrays:
        width, total = self.width, len(runs)
        lengths = np.full(total, width, dtype=np.int64)
        lengths[-1] = count - (total - 1) * width  # the last run may be shorter
        values: dict[str, FloatArray] = {}
        missing: dict[str, BoolArray] = {}
        for name in list(self.values):
            array = _packed(self.values.pop(name), total)
            array[total - 1, lengths[-1] :] = np.nan  # past the last run's end
            if name in self.nulls:
                mask = _packed(self.nulls.pop(name), total)
                array[mask] = np.nan  # what the value buffer holds under a null is unspecified
                missing[name] = mask
            values[name] = array
        return Arrays(runs, lengths, values, missing)


class _Flat:
    """Rows in file order, in flat arrays: each row's run index and epoch, each metric's value and (for a
    metric with a null) whether it was null."""

    def __init__(self, metrics: list[str], room: int) -> None:
        self.codes = np.empty(room, dtype=np.int32)  # untouched room costs no memory
        self.epochs = np.empty(room, dtype=np.int64)
        self.values = {name: np.empty(room) for name in metrics}
        self.nulls: dict[str, BoolArray] = {}

    def grow(self, count: int, room: int) -> None:
        """Room for ``room`` rows, the first ``count`` kept (the new room's nulls False)."""
        self.codes = _grown(self.codes, count, room)
        self.epochs = _grown(self.epochs, count, room)
        self.values = {name: _grown(array, count, room) for name, array in self.values.items()}
        self.nulls = {name: _grown(array, count, room) for name, array in self.nulls.items()}

    def nulls_for(self, nulls: dict[str, BoolArray]) -> None:
        """A mask for each metric with its first nulls."""
        for name in nulls:
            if name not in self.nulls:
                self.nulls[name] = np.zeros(len(self.codes), dtype=bool)

    def fill(self, chunk: Chunk, start: int, codes: npt.NDArray[np.int32]) -> None:
        end = start + len(codes)
        self.codes[start:end] = codes
        self.epochs[start:end] = chunk.epochs
        for name, values in chunk.values.items():
            self.values[name][start:end] = values
        for name, nulls in chunk.nulls.items():
            self.nulls[name][start:end] = nulls

    def arrays(self, ids: tuple[str, ...], count: int) -> Arrays | None:
        runs = len(ids)
        codes, epochs = self.codes[:count], self.epochs[:count]
        counts = np.bincount(codes, minlength=runs)
        width = int(counts.max()) if runs else 0
        # Each run's rows, in file order, must be its epochs 0, 1, 2, ...: the rank of a row within its run.
        order = np.argsort(codes, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.arange(count) - np.repeat(starts, counts)
        del order
        if not np.array_equal(epochs, rank):
            return None
        del rank
        values: dict[str, FloatArray] = {}
        missing: dict[str, BoolArray] = {}
        for name in list(self.values):
            column = self.values.pop(name)[:count]  # its flat array goes as its (runs, epochs) array comes
            array = np.full((runs, width), np.nan, order="F")
            array[codes, epochs] = column
            del column
            if name in self.nulls:
                mask = np.zeros((runs, width), dtype=bool, order="F")
                mask[codes, epochs] = self.nulls.pop(name)[:count]
                array[mask] = np.nan  # what the value buffer holds under a null is unspecified
                missing[name] = mask
            values[name] = array
        return Arrays(ids, counts.astype(np.int64), values, missing)


def _scatter(cells: npt.NDArray[Cell], start: int, values: npt.NDArray[Cell]) -> None:
    """Rows ``start, start + 1, ...`` into their cells: row ``i`` into ``cells[i % width, i // width]``."""
    width = cells.shape[0]
    run, epoch = divmod(start, width)
    head = min(len(values), (width - epoch) % width)  # the rest of a run begun in the chunk before
    if head:
        cells[epoch : epoch + head, run] = values[:head]
        run += 1
    runs = (len(values) - head) // width
    if runs:
        cells[:, run : run + runs] = values[head : head + runs * width].reshape(runs, width).T
    tail = len(values) - head - runs * width  # a run the next chunk ends
    if tail:
        cells[:tail, run + runs] = values[len(values) - tail :]


def _gather(flat: npt.NDArray[Cell], cells: npt.NDArray[Cell], count: int) -> None:
    """The first ``count`` rows from their cells into ``flat`` (`_scatter` undone)."""
    width = cells.shape[0]
    runs, tail = divmod(count, width)
    flat[: runs * width].reshape(runs, width)[...] = cells[:, :runs].T
    if tail:
        flat[runs * width : count] = cells[:tail, runs]


def _packed(cells: npt.NDArray[Cell], runs: int) -> npt.NDArray[Cell]:
    """The first ``runs`` columns of ``(width, room)`` cells as a ``(runs, width)`` Fortran-order array, packed
    in place: each epoch's runs moved next to the epoch before's (an overlapping move: numpy copies safely)."""
    width, room = cells.shape
    flat = cells.reshape(-1)
    if room != runs:
        for epoch in range(1, width):
            flat[epoch * runs : (epoch + 1) * runs] = flat[epoch * room : epoch * room + runs]
    return flat[: width * runs].reshape(width, runs).T


def _grown(array: npt.NDArray[Cell], count: int, room: int) -> npt.NDArray[Cell]:
    """A larger array starting with ``array``'s first ``count`` values."""
    grown = _room(room, array.dtype)
    grown[:count] = array[:count]
    return grown


def _wider(cells: npt.NDArray[Cell], room: int) -> npt.NDArray[Cell]:
    """``(width, runs)`` cells with room for ``room`` runs."""
    wider = _room((cells.shape[0], room), cells.dtype)
    wider[:, : cells.shape[1]] = cells
    return wider


def _room(shape: int | tuple[int, int], dtype: np.dtype[Cell]) -> npt.NDArray[Cell]:
    """Room for rows to come: False for nulls (a row without any is not null), else unset."""
    room: npt.NDArray[Cell] = np.zeros(shape, dtype=dtype) if dtype.kind == "b" else np.empty(shape, dtype=dtype)
    return room
