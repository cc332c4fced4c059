"""Faults in curve files and directories (issue 11, finding 9): absurd epochs, byte order marks, odd directory entries.

* A tiny file whose epoch is huge must be refused before the run's series
  are filled with NaN up to it (which took gigabytes).
* A UTF-8 byte order mark is read as nothing, in every format, gzipped or not.
* In a directory, anything that is not a regular file (a dangling symbolic
  link, a FIFO, a socket) is skipped with a warning naming it, and never
  opened: opening a FIFO blocks until someone writes to it. The tests that
  could hang run the read in a thread with a deadline, so a regression fails
  instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import socket
import threading
import tracemalloc
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from earlystop_core.formats.long_csv import load_curves
from earlystop_core.formats.readers import (
    FormatError,
    detect_format,
    load_any,
    load_directory,
    load_jsonl,
    load_keras_csv,
    load_lightning_csv,
    load_long_csv,
)

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and symbolic links as on POSIX")
DEADLINE = 5.0  # seconds; a read that blocks on a FIFO never returns


def raises_at(where: str, match: str = "") -> Any:
    """pytest.raises for a FormatError whose message starts with ``where`` (file:line:column)."""
    return pytest.raises(FormatError, match=re.escape(where) + ".*" + match)


def peak_memory(call: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """The exception ``call`` raised (None if it returned) and the peak of Python allocations during it, in bytes."""
    error: BaseException | None = None
    tracemalloc.start()
    try:
        call()
    except Exception as raised:
        error = raised
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


def within_deadline(call: Callable[[], Any], fifos: tuple[Path, ...] = ()) -> tuple[Any, list[str]]:
    """``call()``'s result and the warnings it gave, failing (not hanging) if it runs past the deadline.

    A read blocked opening one of ``fifos`` is released by opening its other
    end, so the thread ends even when the test fails.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outcome["value"] = call()
            except Exception as error:
                outcome["error"] = error
        outcome["warnings"] = [str(warning.message) for warning in caught]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    if thread.is_alive():
        for fifo in fifos:
            with contextlib.suppress(OSError):  # no reader blocked on this one
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(DEADLINE)
        pytest.fail(f"the read was still running after {DEADLINE:.0f} s: it opened a FIFO")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], outcome["warnings"]


# -- absurd epochs ---------------------------------------------------------------------------

ABSURD = [
    ("log.jsonl", '{"epoch": 10000000, "val_loss": 0.5}\n', ":1:2: "),
    ("log.jsonl.gz", '{"epoch": 10000000, "val_loss": 0.5}\n', ":1:2: "),
    ("runs.jsonl", '{"run": "a", "epoch": 0, "val_loss": 0.5}\n{"run": "b", "epoch": 9999999, "loss": 1}\n', ":2:14: "),
    ("metrics.csv", "epoch,step,val_loss\n10000000,0,0.5\n", ":2:1: "),
    ("metrics.csv.gz", "step,val_loss,epoch\n0,0.5,0\n9,0.4,1\n10000000,0.3,10000000\n", ":4:3: "),
]


@pytest.mark.parametrize(("name", "text", "where"), ABSURD)
def test_a_tiny_file_with_an_absurd_epoch_is_refused_before_allocating(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    error, peak = peak_memory(lambda: load_any(path))
    assert peak < 50 * 2**20, f"reading a {len(data)}-byte file peaked at {peak / 2**20:.0f} MiB"
    assert isinstance(error, FormatError), f"expected a FormatError, got {error!r}"
    message = str(error)
    assert message.startswith(f"{path}{where}"), message
    assert re.search(r"epoch (10,000,000|9,999,999)", message), message
    assert "fix the epoch" in message, message


def test_the_bound_counts_the_metrics_a_run_fills_not_only_its_lines(tmp_path: Path) -> None:
    # One line names 2,000 metrics; ten more lines of bare epochs reach epoch 10,000: 20 million values of NaN
    # (160 MB) from a 30 KB file. Ten lines would justify 10,000 epochs of one metric, not of 2,000.
    first = {"epoch": 0, **{f"m{index}": 0.5 for index in range(2000)}}
    lines = [json.dumps(first)] + [json.dumps({"epoch": epoch}) for epoch in range(1000, 10_001, 1000)]
    path = tmp_path / "wide.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with raises_at(f"{path}:11:2: ", "epoch 10,000 "):
        load_jsonl(path)


def test_real_sparse_logs_are_read_and_absurd_ones_refused(tmp_path: Path) -> None:
    # Validation every 100 epochs, a run resumed late, a Lightning log validating every 50 epochs: all real.
    every_100 = tmp_path / "every_100.jsonl"
    every_100.write_text("".join(f'{{"epoch": {e}, "val_loss": 0.5}}\n' for e in range(0, 10_001, 100)))
    assert len(load_jsonl(every_100)["every_100"]["val_loss"]) == 10_001
    resumed = tmp_path / "resumed.jsonl"
    resumed.write_text("".join(f'{{"epoch": {e}, "val_loss": 0.5}}\n' for e in range(400_000, 400_010)))
    assert len(load_jsonl(resumed)["resumed"]["val_loss"]) == 400_010
    lightning = tmp_path / "version_0" / "metrics.csv"
    lightning.parent.mkdir()
    rows = [f"{e},{e * 10},0.9,{'0.5' if e % 50 == 0 else ''}" for e in range(1000)]
    lightning.write_text("epoch,step,train_loss,val_loss\n" + "\n".join(rows) + "\n")
    assert len(load_lightning_csv(lightning)["version_0"]["val_loss"]) == 1000
    # ...but one line every 10,000 epochs is not a training log.
    sparse = tmp_path / "sparse.jsonl"
    sparse.write_text("".join(f'{{"epoch": {e}, "val_loss": 0.5}}\n' for e in range(0, 5_000_001, 10_000)))
    with raises_at(f"{sparse}:501:2: ", "epoch 5,000,000 "):
        load_jsonl(sparse)


# -- byte order marks ------------------------------------------------------------------------

BOM = "\ufeff"
FILES = {
    "curves.csv": ("run,epoch,val_loss\na,0,0.5\na,1,0.4\n", {"a": {"val_loss": [0.5, 0.4]}}),
    "training.log": ("epoch,val_loss\n0,0.5\n1,0.4\n", {"training": {"val_loss": [0.5, 0.4]}}),
    "metrics.csv": ("epoch,step,val_loss\n0,9,0.5\n1,19,0.4\n", {"metrics": {"val_loss": [0.5, 0.4]}}),
    "log.jsonl": ('{"epoch": 0, "val_loss": 0.5}\n{"epoch": 1, "val_loss": 0.4}\n', {"log": {"val_loss": [0.5, 0.4]}}),
}


def bom_file(path: Path, text: str) -> Path:
    """Write ``text`` after a UTF-8 byte order mark, gzipped if the name ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (BOM + text).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_utf8_byte_order_mark_is_read_in_every_format_gzipped_or_not(tmp_path: Path, suffix: str) -> None:
    for name, (text, expected) in FILES.items():
        path = bom_file(tmp_path / "files" / (name + suffix), text)
        curves = load_any(path)
        assert list(curves.values()) == list(expected.values()), (path, curves)
    long = tmp_path / "files" / ("curves.csv" + suffix)
    assert load_curves(long) == load_long_csv(long) == load_any(long, format="long") == FILES["curves.csv"][1]
    assert detect_format(long) == "long"
    folder = tmp_path / "folder"  # a directory of them, each with its mark
    for name in ("curves.csv", "training.log", "log.jsonl"):
        bom_file(folder / (name + suffix), FILES[name][0])
    bom_file(folder / "version_0" / ("metrics.csv" + suffix), FILES["metrics.csv"][0])
    assert load_directory(folder) == {
        "a": {"val_loss": [0.5, 0.4]},
        "log": {"val_loss": [0.5, 0.4]},
        "training": {"val_loss": [0.5, 0.4]},
        "version_0": {"val_loss": [0.5, 0.4]},
    }


# -- directories: what is not a regular file --------------------------------------------------


@posix_only
def test_a_directory_skips_dangling_links_fifos_and_sockets_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("epoch,val_loss\n0,0.5\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "target.log").write_text("epoch,val_loss\n0,0.4\n")
    (tmp_path / "b.csv").symlink_to(tmp_path / "elsewhere" / "target.log")  # a link to a file is read
    (tmp_path / "gone.csv").symlink_to(tmp_path / "missing.csv")
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    os.mkfifo(tmp_path / "notes")  # not a curve file's name: neither read nor reported
    sock = tmp_path / "s.jsonl"
    server = socket.socket(socket.AF_UNIX) if len(str(sock)) < 100 else None
    try:
        if server is not None:
            server.bind(str(sock))
        curves, caught = within_deadline(lambda: load_any(tmp_path), (fifo,))
    finally:
        if server is not None:
            server.close()
    assert curves == {"a": {"val_loss": [0.5]}, "b": {"val_loss": [0.4]}, "elsewhere/target": {"val_loss": [0.4]}}
    assert len(caught) == 1, caught
    message = caught[0]
    assert f"{tmp_path / 'gone.csv'} (dangling symbolic link" in message, message
    assert f"{tmp_path / 'loop.jsonl'} (dangling symbolic link" in message, message
    assert f"{fifo} (not a regular file: FIFO" in message, message
    if server is not None:
        assert f"{sock} (not a regular file: socket)" in message, message
    assert "notes" not in message, message


@posix_only
def test_a_directory_of_nothing_readable_says_so_after_warning(tmp_path: Path) -> None:
    (tmp_path / "gone.csv").symlink_to(tmp_path / "missing.csv")
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match=re.escape(f"{tmp_path}: no curve files")):
        within_deadline(lambda: load_directory(tmp_path), (fifo,))


@posix_only
@pytest.mark.parametrize(
    "read",
    [load_any, load_long_csv, load_keras_csv, load_lightning_csv, load_jsonl, detect_format],
    ids=lambda read: read.__name__,
)
def test_reading_a_fifo_or_a_dangling_link_itself_is_a_clear_error(tmp_path: Path, read: Callable[[Path], Any]) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with raises_at(f"{fifo}: ", "not a regular file: FIFO"):
        within_deadline(lambda: read(fifo), (fifo,))
    dangling = tmp_path / "gone.csv"
    dangling.symlink_to(tmp_path / "missing.csv")
    with raises_at(f"{dangling}: ", "dangling symbolic link"):
        within_deadline(lambda: read(dangling))


def test_a_gzip_bomb_is_refused_before_it_fills_memory(tmp_path: Path) -> None:
    """200 MB of newlines in 200 kB: refused once 64 MB are out, not read whole (like an absurd epoch)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\n" * 2**20
    body = b"".join(packer.compress(chunk) for _ in range(200)) + packer.flush()
    path = tmp_path / "log.jsonl.gz"
    path.write_bytes(body)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match="decompresses to more than"):
            load_any(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_a_gzip_file_of_several_members_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(b"epoch,val_loss\n0,0.5\n") + gzip.compress(b"1,0.4\n"))
    assert load_any(path) == {"log": {"val_loss": [0.5, 0.4]}}
