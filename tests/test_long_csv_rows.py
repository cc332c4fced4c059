"""A long CSV's rows, placed chunk by chunk and copied in any order, give the arrays of a plain reference.

The threads of the reader are modelled: a placed chunk is copied at any
later time, except that every placed chunk is copied before the arrays move
(`settle`), as the reader guarantees.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop_core.formats.long_csv_rows import Arrays, Chunk, Rows, _Cells, _Flat

METRICS = ["a", "b"]


def reference(rows: list[tuple[str, int, float, bool]]) -> Arrays | None:
    """The arrays, by the definition: each run's epochs 0, 1, 2, ... in file order, runs in order of first row."""
    runs: dict[str, list[tuple[int, float, bool]]] = {}
    for run, epoch, value, null in rows:
        runs.setdefault(run, []).append((epoch, value, null))
    if any([epoch for epoch, _, _ in cells] != list(range(len(cells))) for cells in runs.values()):
        return None
    width = max((len(cells) for cells in runs.values()), default=0)
    values = {name: np.full((len(runs), width), np.nan) for name in METRICS}
    masks = {name: np.zeros((len(runs), width), dtype=bool) for name in METRICS}
    for index, cells in enumerate(runs.values()):
        for epoch, value, null in cells:
            for offset, name in enumerate(METRICS):
                values[name][index, epoch] = np.nan if null and offset == 0 else value + offset
                masks[name][index, epoch] = null and offset == 0
    missing = {name: masks[name] for name in METRICS if masks[name].any()}
    lengths = np.array([len(cells) for cells in runs.values()], dtype=np.int64)
    return Arrays(tuple(runs), lengths, values, missing)


def chunk_of(rows: list[tuple[str, int, float, bool]]) -> Chunk:
    """The rows as the parser hands them over: the run ids in order of first appearance (as Arrow's dictionary
    builder numbers them) and each row's index into them."""
    names = list(dict.fromkeys(run for run, _, _, _ in rows))
    index = np.array([names.index(run) for run, _, _, _ in rows], dtype=np.int8)
    nulls = np.array([null for _, _, _, null in rows], dtype=bool)
    first = np.array([value for _, _, value, _ in rows])
    first[nulls] = 12345.0  # under a null the value buffer holds anything
    values = {"a": first, "b": np.array([value + 1 for _, _, value, _ in rows])}
    return Chunk(
        [(names, index)],
        np.array([epoch for _, epoch, _, _ in rows], dtype=np.int64),
        values,
        {"a": nulls} if nulls.any() else {},
    )


@st.composite
def files(draw: st.DrawFn) -> list[tuple[str, int, float, bool]]:
    """Rows of a bank written run after run (most often, every run as long but perhaps the last), or not."""
    width = draw(st.integers(1, 5))
    lengths = [width] * draw(st.integers(1, 6))
    if draw(st.booleans()):
        lengths[-1] = draw(st.integers(1, width))
    if draw(st.integers(0, 3)) == 0:  # a run of another length, somewhere
        lengths[draw(st.integers(0, len(lengths) - 1))] = draw(st.integers(1, 7))
    rows = [(f"r{run}", epoch) for run, length in enumerate(lengths) for epoch in range(length)]
    if len(lengths) > 1 and draw(st.integers(0, 4)) == 0:  # a fault: a run written again, under an earlier one's id
        earlier, again = sorted(draw(st.lists(st.integers(0, len(lengths) - 1), min_size=2, max_size=2, unique=True)))
        rows = [(f"r{earlier}" if run == f"r{again}" else run, epoch) for run, epoch in rows]
    if draw(st.integers(0, 3)) == 0:  # interleaved runs, each run's epochs in order
        rows = sorted(draw(st.permutations(rows)), key=lambda row: row[1])
    if draw(st.integers(0, 5)) == 0:  # a fault: an epoch out of order
        at = draw(st.integers(0, len(rows) - 1))
        rows[at] = (rows[at][0], rows[at][1] + draw(st.integers(1, 2)))
    return [(run, epoch, float(draw(st.integers(0, 99))), draw(st.integers(0, 6)) == 0) for run, epoch in rows]


@given(files(), st.data())
@settings(max_examples=300, deadline=None)
def test_rows_placed_and_filled_in_any_order_give_the_reference(
    rows: list[tuple[str, int, float, bool]], data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(1, max(1, len(rows) - 1)), max_size=6, unique=True)))
    chunks = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True) if rows[a:b]]
    estimate = data.draw(st.sampled_from([None, 1, len(rows), 3 * len(rows)]))
    random.seed(data.draw(st.integers(0, 2**16)))
    bank = Rows(METRICS)
    pending: list[tuple[Chunk, object]] = []

    def settle() -> None:  # every placed chunk is copied before the arrays move, in any order
        random.shuffle(pending)
        while pending:
            chunk, place = pending.pop()
            bank.fill(chunk, place)  # type: ignore[arg-type]

    for rows_of_chunk in chunks:
        chunk = chunk_of(rows_of_chunk)
        pending.append((chunk, bank.place(chunk, estimate, settle)))
        if data.draw(st.booleans()):
            settle()
    settle()
    got, want = bank.arrays(), reference(rows)
    assert (got is None) == (want is None)
    if got is None or want is None:
        return
    assert got.runs == want.runs and np.array_equal(got.lengths, want.lengths)
    for name in METRICS:
        assert np.array_equal(got.values[name], want.values[name], equal_nan=True), name
        assert got.values[name].flags.f_contiguous, name
        assert (name in got.missing) == (name in want.missing), name
        if name in want.missing:
            assert np.array_equal(got.missing[name], want.missing[name]), name


def test_a_file_written_run_after_run_goes_straight_into_cells_and_the_others_into_flat_rows() -> None:
    blocks = [(f"r{run}", epoch, 1.0, False) for run in range(3) for epoch in range(4)]
    interleaved = sorted(blocks, key=lambda row: row[1])
    for rows, layout in ((blocks, _Cells), (interleaved, _Flat), (blocks[:-5] + blocks[-4:], _Flat)):
        bank = Rows(METRICS)
        for at in range(0, len(rows), 5):
            chunk = chunk_of(rows[at : at + 5])
            bank.fill(chunk, bank.place(chunk, None, lambda: None))
        assert isinstance(bank.layout, layout)
