"""A long CSV read straight into arrays with pyarrow's CSV reader (the ``arrow`` extra), a chunk of text at a time.

Memory stays near the numbers' own float64 size: never the whole text, never
a table of it all (a plain file is parsed where it is mapped, each chunk's
pages unmapped once parsed; a gzipped file is decompressed as it is read). A
thread per core parses chunks and copies their rows into place
(`long_csv_rows`: straight into the ``(runs, epochs)`` cells for a file
written run after run).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import math
import mmap
import os
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from earlystop_core.formats.long_csv import MISSING
from earlystop_core.formats.long_csv_rows import Arrays, Chunk, Rows

__all__ = ["CHUNK", "WORKERS", "Arrays", "cores", "read_arrays"]

#: Bytes of text a thread parses at a time.
CHUNK = 1 << 23


def cores(quota: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: those it may run on, fewer under a CPU quota (a container's ``--cpus``).

    ``quota`` is cgroup v2's ``cpu.max``: ``"max 100000"`` (none), or ``"150000 100000"`` (1.5 cores: 2 threads).
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError, ZeroDivisionError):
        limit, period = quota.read_text().split()[:2]
        if limit != "max":
            count = min(count, max(1, math.ceil(int(limit) / int(period))))
    return count


#: Threads that parse: one per core the process may use, at most 8 (pandas.read_csv's parallel parse takes 6).
WORKERS = max(1, min(8, cores()))

BoolArray = npt.NDArray[np.bool_]


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
            if path.suffix == ".gz" or not os.fstat(stream.fileno()).st_size:
                rows = _read(stream, chunk, None)
            else:
                # Parsed where the file's pages lie: no copy of the text (5-10% of the reading's time). As with
                # any mapped file (pandas.read_csv's memory_map=True), another process truncating it meanwhile
                # would end this one with SIGBUS: a bank is a finished file, not a log still being written.
                with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    rows = _read(mapped, chunk, len(mapped))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError, EOFError, zlib.error, csv.Error):
        return None
    return None if rows is None else rows.arrays()


def _read(stream: Any, chunk: int, size: int | None) -> Rows | None:
    """Every row of the file, parsed chunk by chunk; None where the header or a row is not a long CSV's.

    Each of a few threads takes the next chunk of text, parses it on its own core and copies its rows into
    the arrays; only handing out the text and placing a chunk's rows (its run ids, in file order) take
    turns. One parse spread over the cores instead would leave them idle at each chunk's end.
    """
    first = stream.readline()
    header = next(csv.reader([first.decode("utf-8-sig")]), [])
    if header[:2] != ["run", "epoch"] or len(header) < 3 or len(set(header)) < len(header):
        return None
    metrics = header[2:]
    rows = Rows(metrics)
    text: _Text | _Mapped = (
        _Mapped(stream, chunk, len(first)) if isinstance(stream, mmap.mmap) else _Text(stream, chunk, len(first))
    )
    turns = _Turns()
    parse = _parser(header)

    def work() -> None:
        # One buffer per thread, refilled (fresh memory per chunk costs a page fault per 4 kB); none for a mapped file.
        buffer = bytearray(chunk if isinstance(text, _Text) else 0)
        while (handed := text.next(buffer)) is not None:
            order, lines, done, buffer = handed
            with lines:  # released even on a fault: a mapped file cannot close while a view of it lives
                parsed = parse(lines)  # copies, not the text
                text.parsed(done, lines.nbytes)
            with turns.condition:
                turns.condition.wait_for(lambda order=order: turns.next == order or turns.over)  # type: ignore[misc]
                if turns.over:
                    return
                if parsed is None:  # an epoch is missing: not a long CSV's row
                    turns.end(None)
                    return
                expected = None if size is None else math.ceil((rows.count + len(parsed.epochs)) * size / done * 1.05)
                place = rows.place(parsed, expected, turns.settle)
                turns.next += 1
                turns.copying += 1
                turns.condition.notify_all()
            try:
                rows.fill(parsed, place)
            finally:
                with turns.condition:
                    turns.copying -= 1
                    turns.condition.notify_all()
            del parsed, place

    def guarded() -> None:
        try:
            work()
        except BaseException as error:  # handed over: raised by the calling thread
            turns.end(error)

    helpers = [threading.Thread(target=guarded, name="earlystop-csv", daemon=True) for _ in range(WORKERS - 1)]
    for helper in helpers:
        helper.start()
    try:
        guarded()
    finally:
        for helper in helpers:
            helper.join()
    if turns.error is not None:  # every thread has ended: none is copying (each copy is uncounted as it ends)
        raise turns.error
    return None if turns.invalid else rows


class _Text:
    """The file's text, handed out in order a chunk of whole lines at a time to whichever thread asks."""

    def __init__(self, stream: Any, chunk: int, done: int) -> None:
        self.lock = threading.Lock()
        self.stream, self.chunk = stream, chunk
        self.carry = b""  # the start of a line, left from the last chunk
        self.done = done  # the bytes handed out so far (the header's included)
        self.order = 0
        self.ended = False

    def next(self, buffer: bytearray) -> tuple[int, memoryview, int, bytearray] | None:
        """The next chunk, read into ``buffer`` (a larger one for a line longer than it): its place in the file's
        order, its whole lines, the bytes handed out through them and the buffer; None at the end."""
        with self.lock:
            while not self.ended:
                kept = len(self.carry)
                if kept >= len(buffer):  # a line longer than the buffer
                    buffer = bytearray(2 * kept)
                buffer[:kept] = self.carry
                with memoryview(buffer) as view:
                    got = self.stream.readinto(view[kept:])
                end = kept + got
                cut = buffer.rfind(b"\n", 0, end) + 1 if got else end  # whole lines; at the end, whatever is left
                self.carry = bytes(buffer[cut:end])
                self.ended = not got
                if cut:
                    self.done += cut
                    self.order += 1
                    return self.order - 1, memoryview(buffer)[:cut], self.done, buffer
            return None

    def parsed(self, end: int, length: int) -> None:
        """Nothing to do once a chunk is parsed: the buffer is refilled."""


class _Mapped:
    """A mapped file's text, handed out in order a chunk of whole lines at a time to whichever thread asks."""

    def __init__(self, mapped: mmap.mmap, chunk: int, done: int) -> None:
        self.lock = threading.Lock()
        self.mapped, self.chunk = mapped, chunk
        self.done = done  # the bytes handed out so far (the header's included)
        self.order = 0

    def next(self, buffer: bytearray) -> tuple[int, memoryview, int, bytearray] | None:
        """The next chunk (longer for a line longer than it), as `_Text.next` gives it; ``buffer`` is not used."""
        with self.lock:
            start, size = self.done, len(self.mapped)
            if start >= size:
                return None
            end = start + self.chunk
            if end < size:
                end = self.mapped.rfind(b"\n", start, end) + 1 or self.mapped.find(b"\n", end) + 1 or size
            else:
                end = size
            self.done = end
            self.order += 1
            return self.order - 1, memoryview(self.mapped)[start:end], end, buffer

    def parsed(self, end: int, length: int) -> None:
        """Unmap a parsed chunk's pages, so that the file does not count as the process's memory (the pages stay
        in the page cache; a thread that touches one again, on this read-only map, just maps it again)."""
        if hasattr(mmap, "MADV_DONTNEED"):
            start = (end - length) // mmap.PAGESIZE * mmap.PAGESIZE
            self.mapped.madvise(mmap.MADV_DONTNEED, start, end - start)


class _Turns:
    """Whose turn it is to place its chunk's rows, how many chunks are copying, and how the read ended."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.next = 0  # the chunk (in file order) to place its rows next
        self.copying = 0
        self.over = False
        self.invalid = False
        self.error: BaseException | None = None

    def settle(self) -> None:
        """Wait (holding the condition) until no chunk is copying: the arrays are about to move."""
        self.condition.wait_for(lambda: not self.copying)

    def end(self, error: BaseException | None) -> None:
        """Stop every thread: a fault (``error``), or a row that is not a long CSV's (None)."""
        with self.condition:
            self.over = True
            if error is None:
                self.invalid = True
            elif self.error is None:
                self.error = error
            self.condition.notify_all()


def _parser(header: list[str]) -> Callable[[memoryview], Chunk | None]:
    """A chunk of whole lines to its rows, with each column's type fixed, parsed on the calling thread; None if
    an epoch is missing, or the chunk opens with a byte order mark (a stray one, the file's own is read with its
    header: pyarrow would drop it where the list reader keeps it in the run id).

    Parsed first without quotes, a few percent faster: a run id in quotes is unquoted after, and a chunk that
    reads otherwise than with quotes (a quote elsewhere, a comma or doubled quote inside quotes) fails to
    convert or keeps a quote in a run id, and is parsed again with them.
    """
    import pyarrow as pa
    import pyarrow.csv as pv

    metrics = header[2:]
    read = pv.ReadOptions(column_names=header, use_threads=False, block_size=1 << 30)  # one block: the chunk
    types = {"run": pa.dictionary(pa.int32(), pa.string()), "epoch": pa.int64(), **dict.fromkeys(metrics, pa.float64())}
    convert = pv.ConvertOptions(null_values=list(MISSING), strings_can_be_null=False, column_types=types)
    quoted, plain = pv.ParseOptions(), pv.ParseOptions(quote_char=False)
    pool = pa.system_memory_pool()  # malloc's: what a chunk's table frees, the arrays reuse (pyarrow's pool keeps it)

    def parse(lines: memoryview) -> Chunk | None:
        if lines[:3] == _BOM:  # pyarrow drops a byte order mark opening its buffer; the list reader keeps it there
            return None
        text = pa.py_buffer(lines)
        try:
            with contextlib.suppress(pa.ArrowInvalid):
                table = pv.read_csv(text, read_options=read, parse_options=plain, convert_options=convert,
                                    memory_pool=pool)  # fmt: skip
                chunk = _chunk(table, metrics, unquote=True)
                if chunk is not _QUOTED:
                    return chunk
            table = pv.read_csv(text, read_options=read, parse_options=quoted, convert_options=convert,
                                memory_pool=pool)  # fmt: skip
            return _chunk(table, metrics, unquote=False)
        finally:
            del text  # a fault's traceback must not keep the lines: their view is released after (a mapped file)

    return parse


_BOM = b"\xef\xbb\xbf"
#: `_chunk`'s answer for a run id with a quote left in it once unquoted (this very object).
_QUOTED = Chunk([], np.empty(0, dtype=np.int64), {}, {})


def _chunk(table: Any, metrics: list[str], unquote: bool) -> Chunk | None:
    """A parsed chunk's columns as numpy arrays (views of Arrow's buffers where they can be); None if an epoch
    is missing; `_QUOTED` if ``unquote`` and a run id, its enclosing quotes taken off, still has a quote."""
    epoch = table.column("epoch")
    if epoch.null_count:
        return None
    runs = []
    for part in table.column("run").chunks:
        names = part.dictionary.to_pylist()
        if unquote:
            names = [name[1:-1] if len(name) > 1 and name[0] == name[-1] == '"' else name for name in names]
            if any('"' in name for name in names):
                return _QUOTED
        runs.append((names, _numpy(part.indices)))
    values = {name: _values(table.column(name)) for name in metrics}
    nulls = {name: _joined([_nulls(part) for part in table.column(name).chunks]) for name in metrics
             if table.column(name).null_count}  # fmt: skip
    return Chunk(runs, _values(epoch), values, nulls)


def _values(column: Any) -> npt.NDArray[Any]:
    """A chunked Arrow column's values (under a null: whatever the buffer holds; an all-null part may have no
    value buffer)."""
    return _joined([_numpy(part) if part.null_count < len(part) else np.zeros(len(part), dtype=np.dtype(
        part.type.to_pandas_dtype())) for part in column.chunks])  # fmt: skip


def _joined(parts: list[npt.NDArray[Any]]) -> npt.NDArray[Any]:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


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
