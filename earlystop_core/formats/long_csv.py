"""The long CSV of the project's curve banks: ``run,epoch,<metrics...>``, one row per run and epoch."""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from earlystop_core.curves import Curve
from earlystop_core.errors import FormatError

__all__ = ["MISSING", "csv_rows", "is_long_csv", "load_curves"]

#: How a cell says a metric was not logged: empty, or how loggers write an absent value (the CSV readers share it).
MISSING = ("", "NA", "N/A", "null", "None")


# What pyarrow's reader (the arrays path, `long_csv_arrays`) also reads, so that the two read the same files: an
# epoch in hexadecimal, and a NaN with a payload, as C's strtod writes it.
_HEX = re.compile(r"\s*0[xX][0-9a-fA-F]+\s*")
_NAN_PAYLOAD = re.compile(r"\s*[+-]?nan\(\w*\)\s*", re.IGNORECASE | re.ASCII)


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


def csv_rows(path: Path, reader: Any) -> Iterator[list[str]]:
    """A CSV reader's rows; a CSV syntax error (a field over the csv module's size limit, say) names its line."""
    while True:
        try:
            row: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise FormatError(path, reader.line_num, None, f"unreadable CSV ({error})") from None
        yield row


def _read(path: Path) -> dict[str, Curve]:
    runs: dict[str, Curve] = {}
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or header[:2] != ["run", "epoch"] or len(header) < 3:
            raise FormatError(path, 1, None, f"expected a header 'run,epoch,<metric>,...', got {header!r}")
        metrics = header[2:]
        for column, name in enumerate(header[2:], start=3):
            if name in header[: column - 1]:
                raise FormatError(path, 1, column, f"column {name!r} again (first in column {header.index(name) + 1})")
        for row in csv_rows(path, reader):
            if not row:  # a blank line (a file ending in two newlines): skipped, as pandas and pyarrow skip it
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise FormatError(path, line, None, f"expected {len(header)} columns, got {len(row)}")
            run, epoch = row[0], _parse_epoch(path, line, row[1])
            curve = runs.setdefault(run, {name: [] for name in metrics})
            expected = len(curve[metrics[0]])
            if epoch < expected:
                raise FormatError(
                    path,
                    line,
                    2,
                    f"run {run!r} logs epoch {epoch} again: each run's epochs are 0, 1, 2, ... once each "
                    "(two runs under one id? give each its own)",
                )
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
        epoch = int(cell, 16) if _HEX.fullmatch(cell) else int(cell)
    except ValueError:
        raise FormatError(path, line, 2, f"epoch must be an integer, got {cell!r}") from None
    if epoch < 0:
        raise FormatError(path, line, 2, f"epoch must be >= 0, got {epoch}")
    return epoch


def _parse_value(path: Path, line: int, column: int, cell: str) -> float | None:
    if cell in MISSING:
        return None
    try:
        return float(cell.partition("(")[0] if _NAN_PAYLOAD.fullmatch(cell) else cell)
    except ValueError:
        raise FormatError(path, line, column, f"expected a number, got {cell!r}") from None


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
