"""A long CSV read straight into arrays with pyarrow's CSV reader (the ``arrow`` extra), a chunk of text at a time.

Memory stays near the numbers' own float64 size: the rows go into flat
arrays as each chunk is parsed (never the whole text, never a table of it
all; a gzipped file is decompressed as it is read), and each metric becomes
its ``(runs, epochs)`` array in turn, its flat array freed as it does.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import math
import os
import queue
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from earlystop_core.formats.long_csv import MISSING

__all__ = ["CHUNK", "Arrays", "read_arrays"]

#: Bytes of text parsed at a time (pyarrow spreads a chunk over the cores).
CHUNK = 1 << 23

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Arrays(NamedTuple):
    """A long CSV as arrays, the shape of a [`Bank`][earlystop_core.Bank] (every run logs every metric).

    ``values[name]`` is ``(runs, max epochs)``, NaN past each run's end and
    where not logged; ``missing[name]`` (only for metrics with an unlogged
    cell) marks the cells not logged.
    """

    runs: tuple[str, ...]
    lengths: npt.NDArray[np.int64]
    values: dict[str, FloatArray]
    missing: dict[str, BoolArray]


def read_arrays(path: str | Path, chunk: int = CHUNK) -> Arrays | None:
    """Read a long CSV (optionally gzipped) into arrays, ``chunk`` bytes of text at a time.

    Returns None when pyarrow is not installed, or when the file breaks a rule
    of the format (a bad number, epochs out of order): the list reader
    `load_curves` then reads it and
    names the file, line and column of the fault. The arrays equal what that
    reader gives, packed into a bank.

    Examples:
        >>> from earlystop_core.curves import sample_curves_path
        >>> arrays = read_arrays(sample_curves_path())
        >>> len(arrays.runs), arrays.values["val_loss"].shape
        (120, (120, 200))
    """
    try:
        import pyarrow as pa
    except ImportError:
        return None
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as stream:
            size = None if path.suffix == ".gz" else os.fstat(stream.fileno()).st_size
            rows = _read(stream, chunk, size)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError, EOFError, zlib.error, csv.Error):
        return None
    return None if rows is None else rows.arrays()


def _read(stream: Any, chunk: int, size: int | None) -> _Rows | None:
    """Every row of the file, parsed chunk by chunk; None where the header or a row is not a long CSV's.

    A thread reads and parses the next chunk while this one's rows are copied into the arrays: the copying
    would otherwise leave the parser's threads idle.
    """
    first = stream.readline()
    header = next(csv.reader([first.decode("utf-8-sig")]), [])
    if header[:2] != ["run", "epoch"] or len(header) < 3 or len(set(header)) < len(header):
        return None
    rows = _Rows(header[2:])
    tables: queue.Queue[tuple[Any, int] | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for parsed in _parsed(stream, chunk, header, len(first)):
                if stop.is_set():
                    return
                tables.put(parsed)
            tables.put(None)
        except BaseException as error:  # handed over: raised where the rows are taken
            tables.put(error)

    worker = threading.Thread(target=produce, name="earlystop-csv", daemon=True)
    worker.start()
    try:
        while (item := tables.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            table, done = item
            expected = None if size is None else math.ceil((rows.count + table.num_rows) * size / done * 1.05)
            if not rows.add(table, expected):
                return None
            del table, item
        return rows
    finally:
        stop.set()
        while worker.is_alive():  # unblock a parser waiting to hand over a chunk, then let it end
            with contextlib.suppress(queue.Empty):
                tables.get(timeout=0.01)
        worker.join()


def _parsed(stream: Any, chunk: int, header: list[str], done: int) -> Iterator[tuple[Any, int]]:
    """Each chunk's table of whole lines, and the bytes of the file read up to its end (from ``done`` on)."""
    import pyarrow as pa
    import pyarrow.csv as pv

    metrics = header[2:]
    read = pv.ReadOptions(column_names=header)
    types = {"run": pa.dictionary(pa.int32(), pa.string()), "epoch": pa.int64(), **dict.fromkeys(metrics, pa.float64())}
    convert = pv.ConvertOptions(null_values=list(MISSING), strings_can_be_null=False, column_types=types)
    pool = pa.system_memory_pool()  # malloc's: what a chunk's table frees, the arrays reuse (pyarrow's pool keeps it)
    text = bytearray(chunk)  # one buffer, refilled: fresh memory per chunk costs a page fault per 4 kB
    view, kept = memoryview(text), 0  # kept: the start of a line, carried to the front
    while True:
        if kept == len(text):  # a line longer than the buffer
            view.release()
            text = text + bytearray(len(text))
            view = memoryview(text)
        got = stream.readinto(view[kept:])
        end = kept + got
        cut = text.rfind(b"\n", 0, end) + 1 if got else end  # whole lines; at the end, whatever is left
        if cut:
            table = pv.read_csv(pa.py_buffer(view[:cut]), read_options=read, convert_options=convert,
                                memory_pool=pool)  # fmt: skip  # the table holds copies, not the text
            done += cut
            yield table, done
            del table
        if not got:
            return
        text[: end - cut] = text[cut:end]
        kept = end - cut


class _Rows:
    """The rows read so far, in file order, in flat arrays: each row's run index and epoch, and each metric's
    value and (for a metric with a null) whether it was null."""

    def __init__(self, metrics: list[str]) -> None:
        self.count = 0
        self.ids: dict[str, int] = {}
        self.codes = np.empty(0, dtype=np.int32)
        self.epochs = np.empty(0, dtype=np.int64)
        self.values = {name: np.empty(0) for name in metrics}
        self.nulls: dict[str, BoolArray] = {}

    def add(self, table: Any, expected: int | None) -> bool:
        """Append a chunk's table (``expected``: the file's estimated rows); False if an epoch is missing."""
        rows = table.num_rows
        self._reserve(self.count + rows, expected)
        start, end = self.count, self.count + rows
        at = start
        for part in table.column("run").chunks:  # each part has its own dictionary: mapped to the runs' indices
            index = [self.ids.setdefault(run, len(self.ids)) for run in part.dictionary.to_pylist()]
            np.take(np.array(index, dtype=np.int32), _numpy(part.indices), out=self.codes[at : at + len(part)])
            at += len(part)
        epoch = table.column("epoch")
        if epoch.null_count:
            return False
        _copy(epoch, self.epochs[start:end])
        for name, values in self.values.items():
            column = table.column(name)
            _copy(column, values[start:end])
            if column.null_count and name not in self.nulls:
                self.nulls[name] = np.zeros(len(values), dtype=bool)
            if name in self.nulls:
                at = start
                for part in column.chunks:
                    self.nulls[name][at : at + len(part)] = _nulls(part)
                    at += len(part)
        self.count = end
        return True

    def _reserve(self, needed: int, expected: int | None) -> None:
        """Room for ``needed`` rows: the estimate of the file's rows when known (untouched room costs no memory),
        else twice the room."""
        if needed <= len(self.codes):
            return
        room = max(needed, expected or 0, 2 * len(self.codes))
        self.codes = _grown(self.codes, self.count, room)
        self.epochs = _grown(self.epochs, self.count, room)
        self.values = {name: _grown(array, self.count, room) for name, array in self.values.items()}
        self.nulls = {name: _grown(array, self.count, room) for name, array in self.nulls.items()}

    def arrays(self) -> Arrays | None:
        """The rows as ``(runs, epochs)`` arrays; None if a run's epochs are not 0, 1, 2, ... in file order."""
        count, runs = self.count, len(self.ids)
        codes, epochs = self.codes[:count], self.epochs[:count]
        counts = np.bincount(codes, minlength=runs)
        width = int(counts.max()) if runs else 0
        # Each run's rows, in file order, must be its epochs 0, 1, 2, ...: the rank of a row within its run. A
        # bank written run after run, every run as long, needs no sort: its rows are the cells in order.
        blocks = runs * width == count and bool(
            np.array_equal(codes, np.repeat(np.arange(runs, dtype=np.int32), width))
        )
        if blocks:
            if not np.array_equal(epochs, np.tile(np.arange(width), runs)):
                return None
        else:
            order = np.argsort(codes, kind="stable")
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
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
            if blocks:
                array = np.asfortranarray(column.reshape(runs, width))
            else:
                array = np.full((runs, width), np.nan, order="F")
                array[codes, epochs] = column
            del column
            if name in self.nulls:
                mask = np.zeros((runs, width), dtype=bool, order="F")
                mask[codes, epochs] = self.nulls.pop(name)[:count]
                array[mask] = np.nan  # what the value buffer holds under a null is unspecified
                missing[name] = mask
            values[name] = array
        return Arrays(tuple(self.ids), counts.astype(np.int64), values, missing)


def _grown(array: npt.NDArray[Any], count: int, room: int) -> npt.NDArray[Any]:
    """A larger array starting with ``array``'s first ``count`` values (nulls: the new room False)."""
    grown = np.zeros(room, dtype=array.dtype) if array.dtype == bool else np.empty(room, dtype=array.dtype)
    grown[:count] = array[:count]
    return grown


def _copy(column: Any, out: npt.NDArray[Any]) -> None:
    """A chunked Arrow column's values into ``out`` (under a null: whatever the buffer holds)."""
    at = 0
    for part in column.chunks:
        if part.null_count < len(part):  # an all-null part may have no value buffer
            out[at : at + len(part)] = _numpy(part)
        at += len(part)


def _numpy(array: Any) -> npt.NDArray[Any]:
    """A primitive Arrow array's values as a numpy view of its buffer (``to_numpy`` may import pandas: 0.2 s)."""
    dtype = np.dtype(array.type.to_pandas_dtype())
    values = np.frombuffer(array.buffers()[1], dtype=dtype)
    return values[array.offset : array.offset + len(array)]


def _nulls(array: Any) -> BoolArray:
    """Where a primitive Arrow array holds nulls (from its validity bitmap)."""
    if not array.null_count:
        return np.zeros(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    valid: BoolArray = bits[array.offset : array.offset + len(array)].astype(bool)
    return ~valid
