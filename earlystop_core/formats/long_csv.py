"""The long CSV of the project's curve banks: ``run,epoch,<metrics...>``, one row per run and epoch."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from earlystop_core.curves import Curve
from earlystop_core.errors import FormatError

if TYPE_CHECKING:  # numpy is imported where arrays are made: reading curves as lists needs none
    import numpy as np
    import numpy.typing as npt

__all__ = ["Arrays", "is_long_csv", "load_curves", "read_arrays"]

#: How a cell says a metric was not logged: empty, or how loggers write an absent value (the CSV readers share it).
MISSING = ("", "NA", "N/A", "null", "None")


def load_curves(path: str | Path) -> dict[str, Curve]:
    """Read a long CSV (optionally gzipped) into ``{run: {metric: values by epoch}}``.

    Epochs of each run must be 0, 1, 2, ... in order (so no epoch can reach
    past the rows the file holds); an empty cell (or ``NA``) is None, not
    logged at that epoch, and ``nan`` is NaN; a
    UTF-8 byte order mark is skipped.

    Raises:
        FormatError: The file is malformed (the message names its file, line and column).

    Examples:
        >>> from earlystop_core.curves import sample_curves_path
        >>> curves = load_curves(sample_curves_path())
        >>> len(curves), sorted(curves["0"])[:3]
        (120, ['accuracy', 'loss', 'test_accuracy'])
    """
    path = Path(path)
    try:
        return _read(path)
    except UnicodeDecodeError:
        raise FormatError(path, None, None, "not UTF-8 text") from None
    except (csv.Error, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise FormatError(path, None, None, f"unreadable ({type(error).__name__}: {error})") from None


def _read(path: Path) -> dict[str, Curve]:
    runs: dict[str, Curve] = {}
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or header[:2] != ["run", "epoch"] or len(header) < 3:
            raise FormatError(path, 1, None, f"expected a header 'run,epoch,<metric>,...', got {header!r}")
        metrics = header[2:]
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                raise FormatError(path, line, None, f"expected {len(header)} columns, got {len(row)}")
            run, epoch = row[0], _parse_epoch(path, line, row[1])
            curve = runs.setdefault(run, {name: [] for name in metrics})
            expected = len(curve[metrics[0]])
            if epoch != expected:
                raise FormatError(path, line, 2, f"run {run!r} jumps to epoch {epoch}, expected epoch {expected}")
            for column, (name, cell) in enumerate(zip(metrics, row[2:], strict=True), start=3):
                curve[name].append(_parse_value(path, line, column, cell))
    return runs


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: a file saved by Excel or Notepad starts with a byte order mark, which plain utf-8 would glue to
    # the first column's name ('\ufeffrun'), refusing the header; without a mark it reads as utf-8.
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _parse_epoch(path: Path, line: int, cell: str) -> int:
    try:
        epoch = int(cell)
    except ValueError:
        raise FormatError(path, line, 2, f"epoch must be an integer, got {cell!r}") from None
    if epoch < 0:
        raise FormatError(path, line, 2, f"epoch must be >= 0, got {epoch}")
    return epoch


def _parse_value(path: Path, line: int, column: int, cell: str) -> float | None:
    if cell in MISSING:
        return None
    try:
        return float(cell)
    except ValueError:
        raise FormatError(path, line, column, f"expected a number, got {cell!r}") from None


class Arrays(NamedTuple):
    """A long CSV as arrays, the shape of a :class:`~earlystop_core.replay.bank.Bank` (every run logs every metric).

    ``values[name]`` is ``(runs, max epochs)``, NaN past each run's end and
    where not logged; ``missing[name]`` (only for metrics with an unlogged
    cell) marks the cells not logged.
    """

    runs: tuple[str, ...]
    lengths: npt.NDArray[np.int64]
    values: dict[str, npt.NDArray[np.float64]]
    missing: dict[str, npt.NDArray[np.bool_]]


def is_long_csv(path: str | Path) -> bool:
    """Whether the file's first line is a long CSV header (``run,epoch,...``), reading that line only.

    Examples:
        >>> from earlystop_core.curves import sample_curves_path
        >>> is_long_csv(sample_curves_path())
        True
    """
    try:
        with _open_text(Path(path)) as stream:
            first = stream.readline(65536)
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error):
        return False
    header = next(csv.reader([first]), [])
    return header[:2] == ["run", "epoch"] and len(header) > 2


def read_arrays(path: str | Path) -> Arrays | None:
    """Read a long CSV straight into arrays with pyarrow's CSV reader (streamed, gzip included).

    Returns None when pyarrow is not installed, or when the file breaks a rule
    of the format (a bad number, epochs out of order): :func:`load_curves`
    then reads it and names the file, line and column of the fault. The
    arrays equal what :func:`load_curves` gives, packed into a bank.
    """
    import numpy as np

    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pv
    except ImportError:
        return None
    path = Path(path)
    convert = pv.ConvertOptions(
        null_values=list(MISSING), strings_can_be_null=False, column_types={"run": pa.string(), "epoch": pa.int64()}
    )
    try:
        with pa.input_stream(str(path), compression="gzip" if path.suffix == ".gz" else None) as stream:
            table = pv.read_csv(stream, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError):
        return None
    names = table.column_names
    if names[:2] != ["run", "epoch"] or len(names) < 3 or table.column("epoch").null_count:
        return None
    numeric = (pa.types.is_floating, pa.types.is_integer, pa.types.is_null)  # null: a column never logged
    if not all(any(kind(table.schema.field(name).type) for kind in numeric) for name in names[2:]):
        return None
    encoded = pc.dictionary_encode(table.column("run")).combine_chunks()
    codes = _numpy(encoded.indices)
    runs = tuple(encoded.dictionary.to_pylist())
    epochs = _numpy(table.column("epoch").combine_chunks())
    table = table.drop_columns(["run", "epoch"])
    del encoded
    counts = np.bincount(codes, minlength=len(runs))
    width = int(counts.max()) if runs else 0
    # Each run's rows, in file order, must be its epochs 0, 1, 2, ...: the rank of a row within its run. A bank
    # written run after run, every run as long, needs no sort: its rows are the cells in order.
    blocks = len(runs) * width == len(codes) and bool(
        np.array_equal(codes, np.repeat(np.arange(len(runs), dtype=codes.dtype), width))
    )
    if blocks:
        if not np.array_equal(epochs, np.tile(np.arange(width), len(runs))):
            return None
    else:
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(len(codes), dtype=np.int64)
        rank[order] = np.arange(len(codes)) - np.repeat(starts, counts)
        del order
        if not np.array_equal(epochs, rank):
            return None
        del rank
    values: dict[str, npt.NDArray[np.float64]] = {}
    missing: dict[str, npt.NDArray[np.bool_]] = {}
    for name in names[2:]:
        column = table.column(name).combine_chunks().cast(pa.float64())
        table = table.drop_columns([name])  # the column goes as its array comes: never the text and all floats
        if blocks:
            array = np.asfortranarray(_numpy(column).reshape(len(runs), width))
        else:
            array = np.full((len(runs), width), np.nan, order="F")
            array[codes, epochs] = _numpy(column)
        if column.null_count:
            mask = np.zeros((len(runs), width), dtype=bool, order="F")
            mask[codes, epochs] = _nulls(column)
            array[mask] = np.nan  # what the value buffer holds under a null is unspecified
            missing[name] = mask
        values[name] = array
        del column
        pa.default_memory_pool().release_unused()
    return Arrays(runs, counts.astype(np.int64), values, missing)


def _numpy(array: Any) -> npt.NDArray[Any]:
    """A primitive Arrow array's values as a numpy view of its buffer (``to_numpy`` may import pandas: 0.2 s)."""
    import numpy as np

    dtype = np.dtype(array.type.to_pandas_dtype())
    values = np.frombuffer(array.buffers()[1], dtype=dtype)
    return values[array.offset : array.offset + len(array)]


def _nulls(array: Any) -> npt.NDArray[np.bool_]:
    """Where a primitive Arrow array holds nulls (from its validity bitmap)."""
    import numpy as np

    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    valid: npt.NDArray[np.bool_] = bits[array.offset : array.offset + len(array)].astype(bool)
    return ~valid
