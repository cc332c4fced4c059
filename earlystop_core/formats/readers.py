"""Read learning curves from the files training loops write, into ``{run: {metric: values by epoch}}``.

Every reader returns what `load_curves` returns,
so whatever was logged can be replayed (`earlystop_core.replay.scalar`) or
packed into a [`Bank`][earlystop_core.Bank]:

* the long CSV ``run,epoch,<metrics...>`` of the project's curve banks
  (`load_long_csv`, which is `load_curves`);
* a Keras ``CSVLogger`` file, ``epoch,<metrics...>``, one run
  (`load_keras_csv`);
* a Lightning ``CSVLogger`` ``metrics.csv``, sparse rows with ``epoch`` and
  ``step`` columns, one run (`load_lightning_csv`);
* JSON lines, one object per line with ``epoch``, the metrics and optionally
  ``run`` (`load_jsonl`);
* a directory of such files, one run each (`load_directory`);
* an Optuna storage, an SQLite file: each trial's reported values
  (`load_optuna`, with Optuna installed);
* a Ray Tune results folder: each trial's ``result.json`` or ``progress.csv``
  (`load_ray`).

[`load_any`][earlystop_core.load_any] tells them apart by their content. Gzipped files
(``.gz``) are read too, with or without a UTF-8 byte order mark. A
malformed file raises [`FormatError`][earlystop_core.FormatError], whose message starts with
``file:line:column``; so does a run whose last epoch lies absurdly far past
what its file holds (far sparser than any real log: see ``MAX_EPOCH``), and
a path that is not a regular file (a FIFO, a dangling symbolic link), which
is never opened.

Examples:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "run_a.csv").write_text("epoch,loss,val_loss\\n0,0.9,1.0\\n1,0.7,0.8\\n")
    >>> load_any(folder / "run_a.csv")
    {'run_a': {'loss': [0.9, 0.7], 'val_loss': [1.0, 0.8]}}
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import stat
import warnings
import zlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from earlystop_core.errors import FormatError
from earlystop_core.formats.huggingface import TRAINER_STATE, is_trainer_state, trainer_state_from_text
from earlystop_core.formats.huggingface import run_name as hf_run_name
from earlystop_core.formats.json_lines import json_lines
from earlystop_core.formats.long_csv import MISSING, csv_rows, load_curves
from earlystop_core.formats.mlflow import is_mlflow_store, load_mlflow
from earlystop_core.formats.optuna import is_optuna_storage, load_optuna
from earlystop_core.formats.ray import is_ray_results, load_ray
from earlystop_core.formats.tensorboard import EVENTS, is_event_file, load_tensorboard
from earlystop_core.modes import held_out

__all__ = [
    "FORMATS",
    "FormatError",
    "MAX_EPOCH",
    "detect_format",
    "load_any",
    "load_directory",
    "load_jsonl",
    "load_keras_csv",
    "load_lightning_csv",
    "load_long_csv",
]

Curve = dict[str, list[float | None]]  # None: not logged at that epoch (a logged NaN stays NaN)
Curves = dict[str, Curve]

FORMATS = ("auto", "long", "keras", "lightning", "jsonl", "huggingface", "tensorboard", "mlflow", "optuna", "ray")
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "infinity": math.inf}
_NON_FINITE.update({"+infinity": math.inf, "-infinity": -math.inf})
_CURVE_SUFFIXES = (".csv", ".tsv", ".log", ".jsonl", ".ndjson")  # looked for in a directory (also gzipped)
_LIGHTNING_FILE = "metrics.csv"
#: Epochs past this are refused outright: a run is as long as its last epoch, and a typo should not allocate gigabytes.
MAX_EPOCH = 10_000_000
# MAX_EPOCH alone still let a 40-byte line with epoch 10,000,000 fill 170 MB of NaN: a run's series are filled up to
# its last epoch, so what it costs is set by that epoch, not by the file. _check_span bounds the slots a run fills
# (its last epoch + 1, times its metrics + 1) by _SPARSITY per value the file holds for it, plus _SLACK_SLOTS:
# * real logs are dense: Keras and the long CSV log every epoch (their readers insist on it), Lightning writes its
#   training rows every epoch even when it validates every N, and a hand-made JSON log that logs every 100 epochs
#   is already rare, so one value per 1,000 epochs is far past any real log (a Lightning row of w cells accounts
#   for w values, so there it reads "a row per 1,000 epochs");
# * counting values, not lines, keeps one 2,000-metric line from vouching for 1,000 epochs of 2,000 series;
# * the slack (8 MB of list slots) lets a short log of a run resumed late (epochs 400,000 to 400,009) through,
#   and caps what a tiny file can cost: at most 8 kB of slots per value read, plus 8 MB, never gigabytes.
_SPARSITY = 1_000
_SLACK_SLOTS = 1_000_000
_FILE_KINDS = {
    stat.S_IFDIR: "directory",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


# -- detection ---------------------------------------------------------------------------


def detect_format(path: str | os.PathLike[str]) -> str:
    """Which format a curve file is in: ``"long"``, ``"keras"``, ``"lightning"`` or ``"jsonl"``.

    Decided by the content: a first line starting with ``{`` is JSON lines;
    otherwise the CSV header tells (``run,epoch,...`` long; ``epoch`` and
    ``step`` columns Lightning; ``epoch`` first Keras).

    Raises:
        FormatError: None of these.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = path.write_text("epoch,step,train_loss,val_loss\\n0,9,0.5,\\n0,9,,0.6\\n")
        >>> detect_format(path)
        'lightning'
    """
    text = _read_text(Path(path))
    return _detect(Path(path), text)


def _detect(path: Path, text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise FormatError(path, None, None, "the file is empty: no header and no epochs")
    if first.strip() == "{":  # an indented JSON object, not JSON lines
        try:
            if is_trainer_state(json.loads(text)):
                return "huggingface"
        except json.JSONDecodeError:
            pass
    if first.lstrip().startswith("{"):
        return "jsonl"
    header = next(csv.reader([first], delimiter=_delimiter(text)))
    if header[:2] == ["run", "epoch"]:
        if _delimiter(text) != ",":
            raise FormatError(path, 1, None, "a long CSV (run,epoch,<metrics...>) is comma-separated")
        return "long"
    if "epoch" in header and "step" in header:
        return "lightning"
    if header[:1] == ["epoch"]:
        return "keras"
    raise FormatError(
        path,
        1,
        None,
        f"cannot tell the format from the header {first[:80]!r}: expected 'run,epoch,<metrics...>' (long CSV), "
        "'epoch,<metrics...>' (Keras CSVLogger), a header with 'epoch' and 'step' columns (Lightning CSVLogger), "
        "or JSON lines",
    )


def load_any(path: str | os.PathLike[str], format: str = "auto") -> Curves:
    """Read curves from a file in any supported format, or from a directory of them.

    Args:
        path: A file (format detected from its content unless ``format`` is
            given) or a directory (see `load_directory`).
        format: ``"auto"``, or one of ``"long"``, ``"keras"``, ``"lightning"``, ``"jsonl"``.

    Raises:
        FormatError: The file is malformed, or its format cannot be told.
        OSError: The file cannot be read.

    Examples:
        >>> from earlystop_core.curves import sample_curves_path
        >>> len(load_any(sample_curves_path()))
        120
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    path = Path(path)
    if format == "tensorboard" or (format == "auto" and is_event_file(path)):
        return load_tensorboard(path)
    if format == "mlflow" or (format == "auto" and path.is_file() and is_mlflow_store(path)):
        return load_mlflow(path)
    if format == "optuna" or (format == "auto" and path.is_file() and is_optuna_storage(path)):
        return load_optuna(path)
    if format == "ray" or (format == "auto" and is_ray_results(path)):
        return load_ray(path)
    if path.is_dir():
        if format != "auto":
            raise ValueError(f"{path} is a directory: its files' formats are detected one by one (format='auto')")
        return load_mlflow(path) if is_mlflow_store(path) else load_directory(path)
    if format == "long":
        return load_long_csv(path)
    text = _read_text(path)
    kind = _detect(path, text) if format == "auto" else format
    return _load_text(path, text, kind, _run_id(path))


def _has_event_files(root: Path) -> bool:
    """Whether any TensorBoard event file lies under ``root``."""
    return any(name.startswith(EVENTS) for _, _, files in os.walk(root) for name in files)


def _load_file(path: str | os.PathLike[str], kind: str, run: str | None) -> Curves:
    """Read a file in a known format other than ``"long"``; a single run is named ``run``, by default after the file."""
    path = Path(path)
    return _load_text(path, _read_text(path), kind, _run_id(path) if run is None else run)


def _load_text(path: Path, text: str, kind: str, run: str) -> Curves:
    if kind == "long":
        return load_long_csv(path)
    if kind == "huggingface":
        return {run: trainer_state_from_text(path, text)}
    if kind == "keras":
        return {run: _keras(path, text)}
    if kind == "lightning":
        return {run: _lightning(path, text)}
    return _jsonl(path, text, run)


def _run_id(path: Path) -> str:
    """A run's id from its file: the file name without suffixes, or for Lightning's ``metrics.csv`` its folder's."""
    name = path.name.removesuffix(".gz")
    if name == _LIGHTNING_FILE and path.parent.name:
        return path.parent.name
    if name == TRAINER_STATE:
        return hf_run_name(path)
    return name.rsplit(".", 1)[0] if "." in name[1:] else name


# -- the readers -------------------------------------------------------------------------


def load_long_csv(path: str | os.PathLike[str]) -> Curves:
    """Read the long CSV ``run,epoch,<metrics...>`` (`load_curves`).

    Examples:
        >>> from earlystop_core.curves import sample_curves_path
        >>> sorted(load_long_csv(sample_curves_path())["0"])[:2]
        ['accuracy', 'loss']
    """
    path = Path(path)
    _check_file(path)
    return load_curves(path)


def load_keras_csv(path: str | os.PathLike[str], run: str | None = None) -> Curves:
    """Read a Keras ``CSVLogger`` file (``epoch,<metrics...>``): one run, by default named after the file.

    Epochs must be 0, 1, 2, ... in order; an empty cell or ``NA`` (Keras's
    absent value) is None, not logged that epoch; ``nan`` is NaN. Epochs that
    go back (``CSVLogger(append=True)`` after resuming from an earlier
    checkpoint) are a resumed training: its rows replace those logged before
    from that epoch on, with a warning.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "training.log"
        >>> _ = path.write_text("epoch,accuracy,loss\\n0,0.5,0.9\\n1,0.6,NA\\n")
        >>> load_keras_csv(path)
        {'training': {'accuracy': [0.5, 0.6], 'loss': [0.9, None]}}
    """
    return _load_file(path, "keras", run)


def _keras(path: Path, text: str) -> Curve:
    reader, header = _csv(path, text)
    if header[:1] != ["epoch"] or len(header) < 2:
        raise FormatError(path, reader.line_num, 1, f"expected a header 'epoch,<metric>,...', got {','.join(header)!r}")
    curve: Curve = {name: [] for name in header[1:]}
    series = list(curve.values())
    resumed = []  # (line, epoch): where a training resumed from an earlier epoch
    for row in _rows(path, reader):
        line = reader.line_num
        if len(row) != len(header):
            appended = " (another training appended with other metrics? give each training its own file)"
            _check_width(path, line, row[: len(header)], len(header))  # too few: said as always
            raise FormatError(path, line, len(header) + 1, f"expected {len(header)} columns, got {len(row)}{appended}")
        epoch = _parse_epoch(path, line, 1, row[0])
        expected = len(series[0])
        if epoch < expected:  # CSVLogger(append=True) after a resume from an earlier checkpoint: the later rows hold
            resumed.append((line, epoch))  # what the weights went on from
            for values in series:
                del values[epoch:]
        elif epoch > expected:
            raise FormatError(path, line, 1, f"expected epoch {expected} (epochs must be 0, 1, 2, ...), got {epoch}")
        for column, (values, cell) in enumerate(zip(series, row[1:], strict=True), start=2):
            values.append(_parse_number(path, line, column, cell))
    if resumed:
        where = ", ".join(f"epoch {epoch} at line {line}" for line, epoch in resumed[:3])
        warnings.warn(
            f"{path}: the epochs go back ({where}{', ...' if len(resumed) > 3 else ''}): read as a training resumed "
            "from an earlier epoch into the same file (CSVLogger(append=True)), its later rows replacing the earlier "
            "ones; a new training belongs in a file of its own",
            stacklevel=4,
        )
    return curve


def load_lightning_csv(path: str | os.PathLike[str], run: str | None = None) -> Curves:
    """Read a Lightning ``CSVLogger`` ``metrics.csv``: one run, by default named after its folder.

    Lightning writes a row per logging call: training steps, validation,
    epoch ends, each with the metrics logged then and the others empty. The
    rows of an epoch are merged, each metric taking its last non-empty value
    in that epoch; a metric not logged in an epoch (validation every N
    epochs, say) is None there: not logged. The ``step`` column is dropped. The run has
    ``max(epoch) + 1`` epochs. A validation or test step's own log
    (``self.log(..., on_step=True)`` in ``validation_step``) has no epoch: it
    is skipped, and so is a ``*_step`` column logged only there.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "version_0" / "metrics.csv"
        >>> path.parent.mkdir()
        >>> rows = ["epoch,step,train_loss,val_loss", "0,9,0.9,", "0,9,,1.0", "1,19,0.7,", "1,19,0.6,"]
        >>> _ = path.write_text("\\n".join(rows) + "\\n")
        >>> load_lightning_csv(path)
        {'version_0': {'train_loss': [0.9, 0.6], 'val_loss': [1.0, None]}}
    """
    return _load_file(path, "lightning", run)


def _lightning(path: Path, text: str) -> Curve:
    reader, header = _csv(path, text)
    for required in ("epoch", "step"):
        if required not in header:
            raise FormatError(path, reader.line_num, None, f"a Lightning metrics.csv needs a {required!r} column")
    epoch_column, step_column = header.index("epoch"), header.index("step")
    metrics = [(column, name) for column, name in enumerate(header) if column not in (epoch_column, step_column)]
    merged: dict[int, dict[str, float]] = {}
    checks: dict[tuple[int, str], set[str]] = {}  # the steps each held-out metric was logged at, per epoch
    rows = 0
    for rows, row in enumerate(_rows(path, reader), start=1):  # noqa: B007 - rows counts them, for after the loop
        line = reader.line_num
        _check_width(path, line, row, len(header))
        if row[epoch_column].strip() in MISSING:
            if all(name.endswith("_step") or row[column].strip() in MISSING for column, name in metrics):
                continue  # a validation or test step's own log (on_step=True): Lightning gives it no epoch
            raise FormatError(
                path, line, epoch_column + 1, "the epoch is empty: every row but a step's own log (*_step) needs one"
            )
        epoch = _parse_epoch(path, line, epoch_column + 1, row[epoch_column])
        _parse_number(path, line, step_column + 1, row[step_column])
        logged = merged.setdefault(epoch, {})
        for column, name in metrics:
            number = _parse_number(path, line, column + 1, row[column])
            if number is not None:
                logged[name] = number
                if held_out(name) and not name.endswith("_step"):
                    checks.setdefault((epoch, name), set()).add(row[step_column].strip())
    # Each row holds a value in every column, the empty ones too (Lightning writes them all).
    _check_span(path, merged, len(metrics), rows * len(header), partial(_csv_line, text, epoch_column))
    several = sorted({name for (_, name), steps in checks.items() if len(steps) > 1})
    if several:
        warnings.warn(
            f"{path}: {', '.join(map(repr, several))} validated several times within an epoch (val_check_interval "
            "below 1): the last check of each epoch is read, and patience counts epochs, not checks",
            stacklevel=4,
        )
    seen = {name for values in merged.values() for name in values}  # a *_step column of skipped rows only: none
    return _by_epoch(merged, [name for _, name in metrics if name in seen or not name.endswith("_step")])


def load_jsonl(path: str | os.PathLike[str], run: str | None = None) -> Curves:
    """Read JSON lines: one object per line with ``epoch``, the metrics and, for several runs, ``run``.

    Without ``run`` keys the file is one run, by default named after the file.
    Lines of the same run and epoch are merged (the last non-null value of
    each metric wins); a metric absent from an epoch (or ``null``) is None there. Values are
    numbers, ``null`` (absent), or the non-finite ``NaN``/``Infinity``
    (as tokens or strings).

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> lines = ['{"run": "a", "epoch": 0, "val_loss": 0.5}', '{"run": "a", "epoch": 1, "val_loss": NaN}']
        >>> _ = path.write_text("\\n".join(lines))
        >>> load_jsonl(path)
        {'a': {'val_loss': [0.5, nan]}}
    """
    return _load_file(path, "jsonl", run)


def _jsonl(path: Path, text: str, default_run: str) -> Curves:
    runs: dict[str, dict[int, dict[str, float]]] = {}
    names: dict[str, list[str]] = {}
    keyed: bool | None = None
    first: tuple[int, str, int, str] | None = None  # where a metric is first logged twice in one epoch
    again = 0
    for number, line, item in json_lines(path, text.splitlines()):
        if not isinstance(item, dict):
            raise FormatError(path, number, 1, f"expected an object {{...}}, got {type(item).__name__}")
        if keyed is None:
            keyed = "run" in item
        elif keyed != ("run" in item):
            problem = (
                "has no 'run' key, unlike the lines before" if keyed else "has a 'run' key, unlike the lines before"
            )
            raise FormatError(path, number, 1, f"this line {problem}")
        run = default_run
        if keyed:
            run = item.pop("run")
            if isinstance(run, bool) or not isinstance(run, (str, int)):
                raise FormatError(
                    path, number, _key_column(line, "run"), f"'run' must be a string or an integer, got {run!r}"
                )
            run = str(run)
        if "epoch" not in item:
            raise FormatError(path, number, 1, "no 'epoch' key")
        epoch = _json_epoch(path, number, line, item.pop("epoch"))
        logged = runs.setdefault(run, {}).setdefault(epoch, {})
        known = names.setdefault(run, [])
        for name, value in item.items():
            parsed = _json_number(path, number, line, name, value)
            if name not in known:
                known.append(name)
            if parsed is not None:
                if name in logged:
                    again += 1
                    first = first or (number, run, epoch, name)
                logged[name] = parsed
    if first is not None:
        number, run, epoch, name = first
        warnings.warn(
            f"{path}:{number}: {name!r} logged again at epoch {epoch}{f' of run {run!r}' if keyed else ''} ({again} "
            "value(s) logged again in all): the last of each epoch is read (a training resumed from an earlier epoch?)",
            stacklevel=4,
        )
    for run, epochs in runs.items():  # every run checked before any is filled
        # What the file holds for the run, counted after merging: its epochs and their non-null values (so
        # neither repeated lines nor null keys can vouch for more epochs).
        values = len(epochs) + sum(map(len, epochs.values()))
        _check_span(path, epochs, len(names[run]), values, partial(_jsonl_line, text, run if keyed else None))
    return {run: _by_epoch(epochs, names[run]) for run, epochs in runs.items()}


def load_directory(path: str | os.PathLike[str]) -> Curves:
    """Read every curve file under a directory (recursively), one run per file.

    Files ending in ``.csv``, ``.tsv``, ``.log``, ``.jsonl`` or ``.ndjson`` (or those
    gzipped) and Hugging Face ``trainer_state.json`` files are read, each in
    the format its content shows (a folder of TensorBoard event files and
    nothing else is read as TensorBoard logs); hidden files and folders are
    skipped, and so are CSV and ``.log`` files without an
    ``epoch`` column (``runs.csv`` beside a curve bank, other logs). Symbolic
    links to files are followed (links to folders are not, as they may
    loop); an entry with a curve file's name that is not a regular file (a
    dangling link, a FIFO, a socket) is skipped unopened, with one warning
    naming each such entry and why. A run is
    named after its file's path under the directory without suffixes, or for
    a Lightning ``metrics.csv`` after its folder's (``version_0``); files
    holding several runs (a long CSV, JSON lines with ``run``) keep their own
    run ids.

    Raises:
        FormatError: A file is malformed, two files give the same run id, or
            no curve file was found.

    Warns:
        UserWarning: Entries were skipped as not regular files.

    Examples:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.csv").write_text("epoch,val_loss\\n0,0.5\\n")
        >>> _ = (folder / "b.jsonl").write_text('{"epoch": 0, "val_loss": 0.4}\\n')
        >>> load_directory(folder)
        {'a': {'val_loss': [0.5]}, 'b': {'val_loss': [0.4]}}
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    curves: Curves = {}
    origin: dict[str, Path] = {}
    files, skipped = _curve_files(root)
    events = _has_event_files(root)
    if not files and events:  # TensorBoard logs only
        return load_tensorboard(root)
    if files and events:
        warnings.warn(
            f"{root} holds TensorBoard event files beside other logs; they are not read here: "
            "give the folder of the event files to read them",
            stacklevel=2,
        )
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} of {root} that "
            f"{'is not a regular file' if len(skipped) == 1 else 'are not regular files'}: {', '.join(skipped)}",
            stacklevel=2,
        )
    for file in files:
        text = _read_text(file)
        name = file.name.removesuffix(".gz")
        if name.endswith((".csv", ".tsv", ".log")) and "epoch" not in _first_row(text):
            continue  # not a curve file: metadata (runs.csv), some other log
        folder = file.relative_to(root).parent
        if name == TRAINER_STATE:  # a Trainer's output folder: checkpoint-N/trainer_state.json
            if folder.name.startswith("checkpoint-"):
                folder = folder.parent
            run = folder.as_posix() if folder != Path(".") else root.resolve().name
        elif name == _LIGHTNING_FILE:
            run = folder.as_posix() if folder != Path(".") else root.resolve().name
        else:
            run = (folder / _run_id(Path(name))).as_posix()
        for found, curve in _load_text(file, text, _detect(file, text), run).items():
            if found in curves:
                raise FormatError(file, None, None, f"run {found!r} is also in {origin[found]}")
            curves[found], origin[found] = curve, file
    if not curves:
        unread = f" (and {len(skipped)} skipped as not regular files: see the warning)" if skipped else ""
        raise FormatError(
            root, None, None, f"no curve files ({', '.join(_CURVE_SUFFIXES)}, or gzipped) in the directory{unread}"
        )
    return curves


def _curve_files(root: Path) -> tuple[list[Path], list[str]]:
    """The regular files under ``root`` named as curve files, and ``'path (why)'`` for those named so that are not."""
    found: list[Path] = []
    skipped: list[str] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and (
                name.removesuffix(".gz").endswith(_CURVE_SUFFIXES) or name == TRAINER_STATE
            ):
                file = Path(folder) / name
                problem = _not_a_file(file)
                if problem is None:
                    found.append(file)
                else:
                    skipped.append(f"{file} ({problem})")
    return _latest_checkpoints(found), skipped


def _latest_checkpoints(files: list[Path]) -> list[Path]:
    """The files, keeping of a Trainer's ``checkpoint-N/trainer_state.json`` only the highest N per output folder,
    and of that and the folder's own ``trainer_state.json`` (``trainer.save_state()``) the one saved later.

    (Each state holds the whole history up to it: the last one holds the run.)
    """
    latest: dict[Path, tuple[int, Path]] = {}
    kept = []
    for file in files:
        checkpoint = file.parent.name.removeprefix("checkpoint-")
        if file.name != TRAINER_STATE or not checkpoint.isdigit():
            kept.append(file)
            continue
        number = int(checkpoint)
        if file.parent.parent not in latest or number > latest[file.parent.parent][0]:
            latest[file.parent.parent] = (number, file)
    for folder, (_, newest) in list(latest.items()):
        top = folder / TRAINER_STATE  # trainer.save_state() at the end of training: the whole run, usually
        if top in kept and _global_step(newest) > _global_step(top):
            kept.remove(top)
        elif top in kept:
            del latest[folder]
    return kept + [file for _, file in latest.values()]


def _global_step(state: Path) -> int:
    """The step a Trainer's state was saved at (-1 if it does not say): the later state holds more of the run."""
    try:
        step = json.loads(_read_text(state)).get("global_step", -1)
    except (ValueError, AttributeError, OSError):
        return -1
    return step if isinstance(step, int) else -1


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file (or a link to one), or None if it is; it is never opened.

    Opening a FIFO blocks until something writes to it, and a socket or a
    device is no log: ``os.stat``, which follows links, tells them apart
    before anything opens them.

    Raises:
        FileNotFoundError: There is nothing at ``path`` (not even a link).

    Examples:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _not_a_file(folder)
        'not a regular file: directory'
        >>> _ = (folder / "run.csv").write_text("epoch,loss\\n")
        >>> _not_a_file(folder / "run.csv") is None
        True
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if not os.path.islink(path):
            raise
        why = "" if error.errno == errno.ENOENT else f": {str(error.strerror or error).lower()}"  # a loop, say
        return f"dangling symbolic link to {os.readlink(path)}{why}"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file: {_FILE_KINDS.get(stat.S_IFMT(mode), 'of an unknown kind')}"


def _check_file(path: Path) -> None:
    """Refuse, before opening it, a path that is not a regular file (or a link to one): see `_not_a_file`."""
    problem = _not_a_file(path)
    if problem is None:
        return
    if problem.startswith("dangling"):
        fix = "point the link at a curve file, or remove it"
    elif problem.endswith("FIFO"):  # a shell's <(...) is one: it would be read twice, detecting then loading
        fix = "curves are read from regular files only (opening a FIFO waits for a writer): save them to a file"
    else:
        fix = "curves are read from regular files only: save them to a file and read that"
    raise FormatError(path, None, None, f"{problem}; {fix}")


# -- cells and values ---------------------------------------------------------------------


def _read_text(path: Path) -> str:
    _check_file(path)
    with open(path, "rb") as stream:
        data = stream.read()
    if path.suffix == ".gz":
        data = _gunzip(path, data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise FormatError(path, line, column, "not UTF-8 text") from None


#: A gzipped log may decompress to this many times its size (text logs compress 3-10x), or to 64 MB.
GZIP_MAX_RATIO, GZIP_FLOOR = 100, 64 * 2**20


def _gunzip(path: Path, data: bytes) -> bytes:
    """``data`` decompressed, refusing a gzip bomb before it fills memory (as absurd epochs are refused)."""
    limit = max(GZIP_FLOOR, GZIP_MAX_RATIO * len(data))
    parts: list[bytes] = []
    size = 0
    rest = data
    try:
        while rest:  # a file appended to in gzip's "a" mode holds several members
            member = zlib.decompressobj(16 + zlib.MAX_WBITS)
            parts.append(member.decompress(rest, limit + 1 - size))
            size += len(parts[-1])
            if size > limit:
                raise FormatError(
                    path,
                    None,
                    None,
                    f"decompresses to more than {limit:,} bytes ({GZIP_MAX_RATIO}x its size or 64 MB): a damaged or "
                    "malicious file? Decompress it yourself (gunzip) if it really is a log that large",
                )
            if not member.eof:
                raise EOFError("the compressed stream ends before its end marker")
            rest = member.unused_data.lstrip(b"\0")  # gzip pads members with zeros
    except (zlib.error, EOFError) as error:
        raise FormatError(path, None, None, f"not a readable gzip file ({error})") from None
    return b"".join(parts)


def _csv(path: Path, text: str) -> tuple[Any, list[str]]:
    """A CSV reader over ``text``, past the header, and the header (see `_header`)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    return reader, _header(path, reader)


def _delimiter(text: str) -> str:
    """What separates the cells: a comma, unless the header splits on a semicolon or a tab into an ``epoch`` column
    (Keras's ``CSVLogger(separator=";")``).

    Examples:
        >>> _delimiter("epoch;loss;val_loss\\n0;0.5;0.6\\n"), _delimiter("epoch,loss\\n"), _delimiter("a;b\\n")
        (';', ',', ',')
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "epoch" in next(csv.reader([first]), []):
        return ","
    return next((other for other in (";", "\t") if "epoch" in next(csv.reader([first], delimiter=other), [])), ",")


def _header(path: Path, reader: Any) -> list[str]:
    try:
        header: list[str] = next(row for row in reader if row)
    except StopIteration:
        raise FormatError(path, None, None, "the file is empty: no header and no epochs") from None
    except csv.Error as error:
        raise FormatError(path, reader.line_num, None, f"unreadable CSV ({error})") from None
    seen: dict[str, int] = {}
    for column, name in enumerate(header, start=1):
        if not name.strip():
            raise FormatError(path, reader.line_num, column, "a column has no name")
        if name in seen:
            raise FormatError(path, reader.line_num, column, f"column {name!r} again (first in column {seen[name]})")
        seen[name] = column
    return header


def _first_row(text: str) -> list[str]:
    """The cells of the first non-blank line (the header of a CSV)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return next(csv.reader([first], delimiter=_delimiter(text)), [])


def _rows(path: Path, reader: Any) -> Iterator[list[str]]:
    """The data rows, blank lines skipped; a CSV syntax error names its line."""
    return (row for row in csv_rows(path, reader) if any(cell.strip() for cell in row))


def _check_width(path: Path, line: int, row: list[str], width: int) -> None:
    if len(row) < width:
        raise FormatError(path, line, len(row) + 1, f"expected {width} columns, got {len(row)}")
    if len(row) > width:
        raise FormatError(path, line, width + 1, f"expected {width} columns, got {len(row)}")


def _parse_number(path: Path, line: int, column: int, cell: str) -> float | None:
    """A cell's value: None when empty or marked absent, NaN for ``nan``."""
    text = cell.strip()
    if text in MISSING:
        return None
    try:
        return float(text)
    except ValueError:
        raise FormatError(path, line, column, f"expected a number, got {cell!r}") from None


def _parse_epoch(path: Path, line: int, column: int, cell: str) -> int:
    try:
        number = float(cell)
    except ValueError:
        number = math.nan
    if not number.is_integer() or not 0 <= number <= MAX_EPOCH:
        raise FormatError(path, line, column, f"the epoch must be an integer from 0 to {MAX_EPOCH:,}, got {cell!r}")
    return int(number)


def _key_column(line: str, key: str) -> int:
    """The 1-based column where ``key`` appears in a JSON line (1 if it cannot be found)."""
    return line.find(json.dumps(key)) + 1 or 1


def _json_epoch(path: Path, number: int, line: str, value: Any) -> int:
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral or not 0 <= value <= MAX_EPOCH:
        raise FormatError(
            path,
            number,
            _key_column(line, "epoch"),
            f"the epoch must be an integer from 0 to {MAX_EPOCH:,}, got {value!r}",
        )
    return int(value)


def _json_number(path: Path, number: int, line: str, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _NON_FINITE:
        return _NON_FINITE[value.strip().lower()]
    raise FormatError(path, number, _key_column(line, name), f"metric {name!r}: expected a number, got {value!r}")


def _check_span(
    path: Path,
    logged: dict[int, dict[str, float]],
    metrics: int,
    values: int,
    locate: Callable[[int], tuple[int, int]],
) -> None:
    """Refuse a run whose last epoch lies absurdly far past what its file holds, before its series are filled.

    The run's ``metrics`` series, and the index of its rows, are filled up to
    its last epoch: ``(last + 1) * (metrics + 1)`` slots of 8 bytes, whatever
    the file's size. They may take at most ``_SPARSITY`` (1,000) slots per
    value the file holds for the run, plus ``_SLACK_SLOTS`` (1,000,000); see
    the comment at `MAX_EPOCH` for why. All is computed after parsing,
    so the readers' loops pay nothing for it.

    Args:
        path: The file.
        logged: The run's merged rows by epoch.
        metrics: How many metrics the run has.
        values: How many values the file holds for the run.
        locate: The line and column of a given epoch in the file, for the
            error only (it may read the file again).

    Raises:
        FormatError: The run would take more.

    Examples:
        >>> every_100 = {epoch: {"val_loss": 0.5} for epoch in range(0, 10_001, 100)}
        >>> _check_span(Path("log.jsonl"), every_100, 1, 202, lambda epoch: (101, 2))  # fine
        >>> _check_span(Path("log.jsonl"), {10_000_000: {"val_loss": 0.5}}, 1, 2, lambda epoch: (1, 2))
        Traceback (most recent call last):
        ...
        earlystop_core.errors.FormatError: log.jsonl:1:2: epoch 10,000,000 is absurdly far past what the file holds ...
    """
    last = max(logged, default=-1)
    slots = (last + 1) * (metrics + 1)
    if slots <= _SPARSITY * values + _SLACK_SLOTS:
        return
    line, column = locate(last)
    raise FormatError(
        path,
        line,
        column,
        f"epoch {last:,} is absurdly far past what the file holds for this run: filling its {metrics:,} "
        f"metric{'s' if metrics != 1 else ''} with NaN up to it would take {slots * 8 / 1e6:,.0f} MB for "
        f"{values:,} logged value{'s' if values != 1 else ''} (no real log is that sparse: the readers "
        f"allow {_SPARSITY:,} filled values per logged one); fix the epoch (a typo?), or if the run really "
        "resumed this late, number its epochs from 0",
    )


def _csv_line(text: str, column: int, epoch: int) -> tuple[int, int]:
    """The line and column of the first row of a (valid) CSV whose ``column`` (0-based) is ``epoch``.

    Examples:
        >>> _csv_line("\\nepoch,step\\n0,1\\n\\n7,2\\n", 0, 7)
        (5, 1)
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    for row in reader:
        try:
            if float(row[column]) == epoch:
                return reader.line_num, column + 1
        except (IndexError, ValueError):
            continue  # a blank line, the header
    return reader.line_num, column + 1  # not reached on a file the reader accepted


def _jsonl_line(text: str, run: str | None, epoch: int) -> tuple[int, int]:
    """The line and column of the first JSON line (of ``run``, unless None) whose epoch is ``epoch``.

    Examples:
        >>> _jsonl_line('{"run": 1, "epoch": 7}\\n\\n{"run": 2, "epoch": 7}\\n', "2", 7)
        (3, 12)
    """
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            item = json.loads(line)
            if item["epoch"] == epoch and (run is None or str(item["run"]) == run):
                return number, _key_column(line, "epoch")
    return len(lines), 1  # not reached on a file the reader accepted


def _by_epoch(logged: dict[int, dict[str, float]], names: list[str]) -> Curve:
    """Merged rows by epoch into one series per metric, None where an epoch lacks a metric (not logged then)."""
    length = max(logged, default=-1) + 1
    empty: dict[str, float] = {}
    rows = [logged.get(epoch, empty) for epoch in range(length)]
    return {name: [row.get(name) for row in rows] for name in names}
