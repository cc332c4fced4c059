"""A long CSV read straight into arrays (pyarrow) is the bank the list readers give; NaN and unlogged kept apart."""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop_core.curves import sample_curves_path
from earlystop_core.errors import FormatError
from earlystop_core.formats.long_csv import load_curves
from earlystop_core.formats.long_csv_arrays import Arrays, read_arrays
from earlystop_core.replay.bank import Bank

pytest.importorskip("pyarrow")

CELLS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["", "NA", "nan", "inf", "-inf", "0", "1e-300", "null", '"0.5"', '""', '"NA"']),
)
#: How a run id is written: plain, or in quotes (with a comma or a doubled quote inside): parsed first without
#: quotes, then with them where that reads otherwise.
RUN_IDS = ["r{}", '"r{}"', '"r,{}"', '"r""{}"', '" r{}"']


def same_bank(a: Bank, b: Bank) -> None:
    assert a.runs == b.runs and np.array_equal(a.lengths, b.lengths) and a.metrics == b.metrics
    for name in a.metrics:
        assert np.array_equal(a.values[name], b.values[name], equal_nan=True), name
        assert np.array_equal(a.present[name], b.present[name]), name
        assert (name in a.missing) == (name in b.missing), name
        if name in a.missing:
            assert np.array_equal(a.missing[name], b.missing[name]), name


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_arrays_equal_the_list_reader(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    metrics = data.draw(st.integers(1, 3))
    runs = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))  # epochs per run
    rows = [(f"r{run}", epoch) for run, length in enumerate(runs) for epoch in range(length)]
    rows = data.draw(st.permutations(rows)) if data.draw(st.booleans()) else rows
    rows = sorted(rows, key=lambda row: row[1])  # runs interleaved, each run's epochs still in order
    lines = ["run,epoch," + ",".join(f"m{k}" for k in range(metrics))]
    spelling = data.draw(st.sampled_from(RUN_IDS))
    for run, epoch in rows:
        cells = data.draw(st.lists(CELLS, min_size=metrics, max_size=metrics))
        lines.append(spelling.format(run) + f",{epoch}," + ",".join(cells))
        if data.draw(st.integers(0, 9)) == 0:
            lines.append("")  # a blank line: skipped by both readers
    ending = data.draw(st.sampled_from(["\n", "\r\n"]))
    text = ending.join(lines) + ending
    path = tmp_path_factory.mktemp("long") / ("bank.csv.gz" if data.draw(st.booleans()) else "bank.csv")
    if path.suffix == ".gz":
        import gzip

        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_bytes(text.encode())
    assert read_arrays(path) is not None
    same_bank(Bank.load(path), Bank.from_curves(load_curves(path)))
    # Read a few bytes at a time: chunk boundaries anywhere, lines longer than the buffer, the arrays regrown.
    chunk = data.draw(st.integers(1, 40))
    small, whole = read_arrays(path, chunk), read_arrays(path)
    assert small is not None and whole is not None
    same_bank(as_bank(small), as_bank(whole))


@pytest.mark.parametrize(
    "text",
    [
        b"run,epoch,loss\n\n",  # a first chunk of blank lines only
        b"run,epoch,loss\n" + b"\n" * 10 + b"a,0,1\na,1,2\n",
        b"run,epoch,loss\n",  # a header alone: no run, no metric
        b"run,epoch,loss\n\xef\xbb\xbfa,0,1\n",  # a stray byte order mark opening a row (pyarrow drops it)
        b"run,epoch,loss\na,0,1\n\xef\xbb\xbfb,0,1\n",
        b"run,epoch,loss\na,0x0,1\na,0X1,2\n",  # epochs in hexadecimal, which pyarrow reads
        b"run,epoch,loss\na,0,nan(1)\na,1,-NaN(x_2)\n",  # NaN with a payload, as strtod writes it
    ],
)
@pytest.mark.parametrize("chunk", [1, 6, 1 << 23])
def test_the_edges_a_fuzzer_found_read_the_same_both_ways(tmp_path: Path, text: bytes, chunk: int) -> None:
    """Found by a differential fuzzer (each failed before: a crash on a blank first chunk, metrics without runs,
    a stray BOM dropped, tokens pyarrow reads and the list reader refused)."""
    path = tmp_path / "bank.csv"
    path.write_bytes(text)
    arrays = read_arrays(path, chunk)
    want = Bank.from_curves(load_curves(path))
    got = Bank.load(path) if arrays is None else as_bank(arrays)
    same_bank(got, want)


def test_a_metric_twice_in_the_header_is_refused_naming_both_columns(tmp_path: Path) -> None:
    path = tmp_path / "bank.csv"
    path.write_text("run,epoch,loss,loss\na,0,1,2\na,1,3,4\n")
    with pytest.raises(FormatError, match=r"bank.csv:1:4: column 'loss' again \(first in column 3\)"):
        Bank.load(path)


def as_bank(arrays: Arrays) -> Bank:
    present = {name: np.ones(len(arrays.runs), dtype=bool) for name in arrays.values}
    return Bank(arrays.runs, arrays.lengths, arrays.values, present, arrays.missing)


def test_the_sample_reads_the_same_both_ways() -> None:
    same_bank(Bank.load(sample_curves_path()), Bank.from_curves(load_curves(sample_curves_path())))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("run,epoch,val_loss\na,0,1.0\na,1,abc\n", ":3:3: expected a number, got 'abc'"),
        ("run,epoch,val_loss\na,0,1.0\na,2,0.5\n", "run 'a' jumps to epoch 2, expected epoch 1"),
        ("run,epoch,val_loss\na,1,1.0\n", "run 'a' jumps to epoch 1, expected epoch 0"),
        ("run,epoch,val_loss\na,0,1.0\na,1,0.9\na,1,0.8\n", ":4:2: run 'a' logs epoch 1 again: each run's epochs"),
        ("run,epoch,val_loss\na,0,1.0,2.0\n", "expected 3 columns, got 4"),
    ],
)
def test_a_faulty_file_gets_the_list_readers_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bank.csv"
    path.write_text(text)
    assert read_arrays(path) is None
    with pytest.raises(FormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Bank.load(path)


def test_without_pyarrow_the_list_reader_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert read_arrays(sample_curves_path()) is None
    bank = Bank.load(sample_curves_path())
    assert len(bank) == 120 and math.isfinite(float(bank.values["val_loss"][0, 0]))


@pytest.mark.parametrize(
    "fault",
    ["a,{epoch},abc", "a,,1.0", "a,{epoch},1.0,2.0"],  # a bad number, a missing epoch, a row too long: far down
)
def test_a_fault_far_down_ends_the_parsing_threads_too(tmp_path: Path, fault: str) -> None:
    """Chunks are parsed by several threads at once: a fault found by any of them ends them all."""
    lines = ["run,epoch,val_loss"] + [f"a,{epoch},{1.0 / (epoch + 1)}" for epoch in range(2000)]
    lines.append(fault.format(epoch=2000))
    lines += [f"a,{epoch},0.5" for epoch in range(2001, 4000)]
    path = tmp_path / "bank.csv"
    path.write_text("\n".join(lines) + "\n")
    assert read_arrays(path, chunk=64) is None
    assert not [thread for thread in threading.enumerate() if thread.name == "earlystop-csv"]


def test_the_parsing_threads_end_with_the_file() -> None:
    assert read_arrays(sample_curves_path(), chunk=1 << 12) is not None
    assert not [thread for thread in threading.enumerate() if thread.name == "earlystop-csv"]


@pytest.mark.parametrize("workers", [1, 2, 5])
@pytest.mark.parametrize("gzipped", [True, False])  # read as it is decompressed, or where its pages are mapped
def test_any_number_of_threads_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, gzipped: bool
) -> None:
    """Chunks are handed out, placed and copied by however many threads there are (one: the caller alone)."""
    import gzip

    from earlystop_core.formats import long_csv_arrays

    path = sample_curves_path()
    if not gzipped:
        path = tmp_path / "bank.csv"
        path.write_bytes(gzip.decompress(sample_curves_path().read_bytes()))
    monkeypatch.setattr(long_csv_arrays, "WORKERS", workers)
    arrays = read_arrays(path, chunk=1 << 12)
    assert arrays is not None
    same_bank(as_bank(arrays), Bank.from_curves(load_curves(sample_curves_path())))


PEAK = """
import sys
import pyarrow.csv  # its own memory is not the reading's
from earlystop_core.formats.long_csv_arrays import read_arrays

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

before = peak()
arrays = read_arrays(sys.argv[1])
print(peak() - before, sum(array.nbytes for array in arrays.values.values()))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident high-water mark (Linux)")
def test_reading_a_large_file_peaks_under_twice_the_numbers(tmp_path: Path) -> None:
    """The file's text is never held whole: a mapped file's parsed pages are unmapped as the chunks go by."""
    import subprocess

    import pyarrow as pa
    import pyarrow.csv as pv

    runs, epochs = 12000, 200  # large enough that the chunks in flight (tens of MB) are not what counts
    rng = np.random.default_rng(0)
    columns: dict[str, object] = {
        "run": np.repeat([f"run{run}" for run in range(runs)], epochs),
        "epoch": np.tile(np.arange(epochs), runs),
    }
    columns.update({f"m{k}": rng.random(runs * epochs) for k in range(6)})
    path = tmp_path / "bank.csv"
    pv.write_csv(pa.table(columns), str(path))
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True)
    peak, numbers = map(int, out.stdout.split())
    assert path.stat().st_size > 2.5 * numbers  # the text alone would break the bound
    assert peak <= 2 * numbers, f"peak {peak / 1e6:.0f} MB for {numbers / 1e6:.0f} MB of numbers"


@pytest.mark.parametrize("method", ["place", "fill"])
@pytest.mark.parametrize("call", [1, 2, 5, 9])
def test_a_fault_in_any_thread_ends_the_read_and_every_thread(
    monkeypatch: pytest.MonkeyPatch, method: str, call: int
) -> None:
    """A thread that fails while placing or copying (others may be copying, or waiting for the arrays to settle
    before they grow) ends the read: its error is raised, no thread is left and nothing waits forever."""
    from earlystop_core.formats import long_csv_arrays
    from earlystop_core.formats.long_csv_rows import Rows

    monkeypatch.setattr(long_csv_arrays, "WORKERS", 3)
    calls = []
    original = getattr(Rows, method)

    def failing(self: Rows, *args: object) -> object:
        calls.append(1)
        if len(calls) == call:
            raise RuntimeError("injected")
        return original(self, *args)

    monkeypatch.setattr(Rows, method, failing)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_arrays(sample_curves_path(), chunk=1 << 12)  # gzipped: no size, the arrays grow as they fill
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the read hung"
    assert isinstance(outcome[0], RuntimeError) and str(outcome[0]) == "injected"
    assert not [thread for thread in threading.enumerate() if thread.name == "earlystop-csv"]


def test_the_threads_follow_the_cores_this_process_may_use_under_a_cgroup_quota(tmp_path: Path) -> None:
    """A container's CPU quota (cgroup v2's ``cpu.max``) bounds the threads, rounded up; none, or no such file, or
    one that cannot be read as a quota, leaves the cores the process may run on."""
    from earlystop_core.formats.long_csv_arrays import cores

    quota = tmp_path / "cpu.max"
    free = cores(tmp_path / "absent")
    assert free == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    for text, want in (("max 100000\n", free), ("50000 100000\n", 1), ("150000 100000\n", min(free, 2)),
                       ("100000000 100000\n", free), ("garbage\n", free), ("100 0\n", free)):  # fmt: skip
        quota.write_text(text)
        assert cores(quota) == want, text
