"""Faults, bad states and rejected calls must never lose, swap or silently change the best weights (issue 11).

Real torch and real files throughout; faults are injected where the
operating system would raise them (a full disk, a refused permission, an
allocation out of memory), by replacing the one call that fails. Each test
checks what comes back: the right weights, or an error naming the problem,
and never a message about weights that were not kept.
"""

from __future__ import annotations

import errno
import gc
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from earlystop_core import Decision, Monitor, ReduceLROnPlateau, StateError  # noqa: E402
from earlystop_core.adapters import _disk, _lock, _snapshot  # noqa: E402
from earlystop_core.adapters.torch import EarlyStopper, SnapshotError, SnapshotInUseError  # noqa: E402

MODES = ["device", "cpu", "disk"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_model(seed: int = 0, out: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, out)
    )


def set_weights(model: torch.nn.Module, value: float) -> dict[str, Any]:
    """Give every float tensor of the model ``value`` (the epoch's mark); return a copy of its state."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(value)
    return clone_state(model)


def clone_state(model: torch.nn.Module) -> dict[str, Any]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def assert_same(state: dict[str, Any], expected: dict[str, Any]) -> None:
    assert state.keys() == expected.keys()
    for key, value in state.items():
        assert value.dtype == expected[key].dtype, key
        assert torch.equal(value, expected[key]), key


def stopper_for(mode: str, folder: Path, model: torch.nn.Module | None = None, **kwargs: Any) -> EarlyStopper:
    kwargs.setdefault("patience", 2)
    kwargs.setdefault("restore_best_weights", True)
    path = folder / "best.pt" if mode == "disk" else None
    return EarlyStopper(make_model() if model is None else model, snapshot=mode, path=path, **kwargs)


def snapshot_bytes(stopper: EarlyStopper) -> list[bytes]:
    """What the stopper keeps, byte for byte: its buffers, or its file."""
    store = stopper._store
    if isinstance(store, _disk.DiskSnapshot):
        return [store.path.read_bytes()]
    store._wait()
    return [buffer.cpu().view(torch.uint8).numpy().tobytes() for buffer in store.buffers]


# -- a refused load changes nothing (findings 1 and 3) -------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_foreign_architectures_state_is_refused_before_anything_changes(mode: str, tmp_path: Path) -> None:
    """Same parameter names, another shape in the second layer only: refused, and the first layer not copied."""
    stopper = stopper_for(mode, tmp_path)
    best = set_weights(stopper.model, 1.0)
    stopper.step({"val_loss": 0.5})
    set_weights(stopper.model, 2.0)
    stopper.step({"val_loss": 0.9})
    monitor, kept = stopper.monitor.state_dict(), snapshot_bytes(stopper)

    (tmp_path / "other").mkdir()
    foreign = stopper_for(mode, tmp_path / "other", make_model(seed=1, out=3))  # Linear(16, 3) at the end
    set_weights(foreign.model, 7.0)
    foreign.step({"val_loss": 0.1})
    with pytest.raises(StateError, match=r"'3\.weight' is torch\.float32 of shape \(3, 16\) there"):
        stopper.load_state_dict(foreign.state_dict())

    assert snapshot_bytes(stopper) == kept  # not one layer copied, the file not rewritten
    assert stopper.monitor.state_dict() == monitor
    assert stopper.finish().best_epoch == 0
    assert_same(stopper.model.state_dict(), best)


@pytest.mark.parametrize("mode", MODES)
def test_a_state_with_other_dtypes_is_refused(mode: str, tmp_path: Path) -> None:
    stopper = stopper_for(mode, tmp_path)
    stopper.step({"val_loss": 0.5})
    state = stopper.state_dict()
    state["best"] = {key: value.double() for key, value in state["best"].items()}
    kept = snapshot_bytes(stopper)
    with pytest.raises(StateError, match=r"'0\.weight' is torch\.float64 of shape \(16, 8\) there, torch\.float32"):
        stopper.load_state_dict(state)
    assert snapshot_bytes(stopper) == kept


def test_a_state_naming_a_best_epoch_without_its_weights_is_refused(tmp_path: Path) -> None:
    stopper = stopper_for("device", tmp_path)
    stopper.step({"val_loss": 0.5})
    state = stopper.state_dict()
    state["best"] = None
    fresh = stopper_for("device", tmp_path)
    with pytest.raises(StateError, match="best epoch 0, but no best weights"):
        fresh.load_state_dict(state)
    assert fresh.monitor.best_epoch is None


def test_an_optimizer_state_for_other_parameters_is_refused(tmp_path: Path) -> None:
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    stopper = stopper_for("disk", tmp_path, model, optimizer=optimizer, snapshot_optimizer=True)
    stopper.step({"val_loss": 0.5})
    state = stopper.state_dict()
    state["optimizer"] = {99: {"momentum_buffer": torch.zeros(3)}}
    before = (tmp_path / "best.pt").read_bytes()
    with pytest.raises(StateError, match="names parameter 99; this optimizer has 6"):
        stopper.load_state_dict(state)
    assert (tmp_path / "best.pt").read_bytes() == before


# -- two runs, one path (finding 2) --------------------------------------------


def test_a_second_stopper_on_the_same_path_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = stopper_for("disk", tmp_path)
    first.step({"val_loss": 0.5})
    with pytest.raises(SnapshotInUseError) as refused:
        stopper_for("disk", tmp_path)
    message = str(refused.value)
    assert str(tmp_path / "best.pt") in message
    assert f"pid {os.getpid()} (this process) on host {socket.gethostname()!r}" in message
    assert "Pass another path=, or close the other stopper first" in message
    first.close()
    first.close()  # idempotent
    second = stopper_for("disk", tmp_path)
    assert json.loads((tmp_path / "best.pt.lock").read_text())["run"] == second._store.run  # type: ignore[union-attr]


def test_the_lock_goes_with_the_stopper(tmp_path: Path) -> None:
    with stopper_for("disk", tmp_path) as stopper:
        stopper.step({"val_loss": 0.5})
        assert (tmp_path / "best.pt.lock").exists()
    assert not (tmp_path / "best.pt.lock").exists()  # the end of the block closed it
    stopper = stopper_for("disk", tmp_path)
    del stopper
    gc.collect()
    assert not (tmp_path / "best.pt.lock").exists()  # garbage collection too


def test_a_run_never_restores_weights_another_run_wrote_to_its_path(tmp_path: Path) -> None:
    """Even when the lock is gone (deleted by hand), the file says whose it is."""
    first = stopper_for("disk", tmp_path)
    set_weights(first.model, 1.0)
    first.step({"val_loss": 0.5})
    (tmp_path / "best.pt.lock").unlink()
    other = stopper_for("disk", tmp_path)
    set_weights(other.model, 9.0)
    other.step({"val_loss": 0.1})  # overwrites first's best.pt

    set_weights(first.model, 2.0)
    with pytest.raises(SnapshotError, match=r"best\.pt was written by another run .*Give each run its own path="):
        first.restore()
    assert all(torch.all(t == 2.0) for t in first.model.state_dict().values() if t.is_floating_point())


LOCK_HOLDER = """
import sys, torch
from earlystop_core.adapters.torch import EarlyStopper
stopper = EarlyStopper(torch.nn.Linear(2, 1), snapshot="disk", path=sys.argv[1], restore_best_weights=True)
stopper.step({"val_loss": 1.0})
print("locked", flush=True)
sys.stdin.readline()
"""


def start_holder(path: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    return process


def test_another_process_holding_the_path_is_named_and_a_crashed_one_is_taken_over(tmp_path: Path) -> None:
    exits, crashes = tmp_path / "exits", tmp_path / "crashes"
    exits.mkdir(), crashes.mkdir()
    processes = [start_holder(exits / "best.pt"), start_holder(crashes / "best.pt")]
    try:
        for folder, process in zip((exits, crashes), processes, strict=True):
            with pytest.raises(SnapshotInUseError, match=f"in use by pid {process.pid} on host"):
                stopper_for("disk", folder)
        processes[0].communicate("\n", timeout=60)  # a normal exit releases the lock
        assert not (exits / "best.pt.lock").exists()
        processes[1].kill()  # a crash leaves it behind
        processes[1].wait(timeout=60)
        assert (crashes / "best.pt.lock").exists()
        with pytest.warns(RuntimeWarning, match=f"taking over the lock .* of pid {processes[1].pid}"):
            stopper = stopper_for("disk", crashes)
        stopper.step({"val_loss": 2.0})
        stopper.restore()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def write_lock(folder: Path, pid: int, host: str) -> None:
    (folder / "best.pt.lock").write_text(json.dumps({"pid": pid, "host": host, "run": "f" * 32}))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    write_lock(tmp_path, dead_pid(), socket.gethostname())
    with pytest.warns(RuntimeWarning, match="that process is no longer running"):
        stopper = stopper_for("disk", tmp_path)
    assert json.loads((tmp_path / "best.pt.lock").read_text())["pid"] == os.getpid()
    stopper.close()


@pytest.mark.parametrize(
    ("content", "holder"),
    [
        (json.dumps({"pid": 1, "host": "another-host", "run": "e" * 32}), "pid 1 on host 'another-host'"),
        ("", "an unknown holder (the lock file is unreadable)"),
    ],
)
def test_a_lock_that_cannot_be_checked_is_never_taken_over(content: str, holder: str, tmp_path: Path) -> None:
    (tmp_path / "best.pt.lock").write_text(content)
    with pytest.raises(SnapshotInUseError, match=re.escape(holder) + r".*delete .*best\.pt\.lock"):
        stopper_for("disk", tmp_path)
    assert (tmp_path / "best.pt.lock").read_text() == content


# -- a failed snapshot undoes the step (finding 4) -----------------------------


def full_disk(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def no_permission(*args: Any, **kwargs: Any) -> None:
    raise PermissionError(errno.EACCES, "Permission denied")


def out_of_memory(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


FAULTS = [
    ("disk", "save", full_disk, OSError),
    ("disk", "save", no_permission, PermissionError),
    ("device", "empty", out_of_memory, RuntimeError),
    ("cpu", "empty", out_of_memory, RuntimeError),
]


@pytest.mark.parametrize(("mode", "call", "fault", "error"), FAULTS, ids=[f"{m}-{f.__name__}" for m, _, f, _ in FAULTS])
def test_a_failed_snapshot_undoes_the_step_and_a_loop_that_goes_on_restores_what_it_names(
    mode: str, call: str, fault: Any, error: type[Exception], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epoch 1 is the new best but cannot be kept; the loop catches the error and goes on to a stop."""
    model = make_model()
    stopper = stopper_for(mode, tmp_path, model, patience=2)
    weights = {0: set_weights(model, 1.0)}
    stopper.step({"val_loss": 0.5})
    kept = snapshot_bytes(stopper)
    monitor = stopper.monitor.state_dict()
    if call == "empty":  # an allocation happens only for a new layout: epoch 1's model is float64
        model.double()
    weights[1] = set_weights(model, 2.0)
    with monkeypatch.context() as patch:
        patch.setattr(_snapshot.torch, call, fault)
        with pytest.raises(error):
            stopper.step({"val_loss": 0.1})
    assert stopper.monitor.state_dict() == monitor  # as if epoch 1 had not been seen
    assert snapshot_bytes(stopper) == kept  # the previous snapshot is whole
    decisions = []
    for epoch, loss in ((1, 0.7), (2, 0.8), (3, 0.9)):
        set_weights(model, 3.0 + epoch)
        decisions.append(stopper.step({"val_loss": loss}, epoch=epoch))
        if decisions[-1].should_stop:
            break
    assert decisions[-1].should_stop and decisions[-1].restore
    assert all(decision.best_epoch == 0 for decision in decisions)
    assert "restoring the weights of epoch 0" in decisions[-1].message
    assert_same(model.state_dict(), {k: v.to(model.state_dict()[k].dtype) for k, v in weights[0].items()})


def test_an_allocation_that_fails_keeps_the_weights_and_the_optimizer_state_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The optimizer's state appears after the first snapshot: the buffers for both are allocated, and fail."""
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    stopper = stopper_for("device", tmp_path, model, optimizer=optimizer, snapshot_optimizer=True)
    best = set_weights(model, 1.0)
    stopper.step({"val_loss": 0.5})  # before any optimizer step: no optimizer state yet
    model(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    with monkeypatch.context() as patch:
        patch.setattr(_snapshot.torch, "empty", out_of_memory)
        with pytest.raises(RuntimeError, match="out of memory"):
            stopper.step({"val_loss": 0.1})
    assert stopper.monitor.best_epoch == 0
    stopper.restore()
    assert_same(model.state_dict(), best)
    assert optimizer.state_dict()["state"] == {}  # epoch 0's optimizer state: none yet


def test_an_unwritable_snapshot_folder_is_refused_when_the_stopper_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(_lock.os, "open", no_permission)
        with pytest.raises(PermissionError, match=rf"cannot create files in {re.escape(str(tmp_path))}.*writable"):
            stopper_for("disk", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_path_that_is_a_folder_is_refused_when_the_stopper_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must be a file.*best\.pt"):
        EarlyStopper(torch.nn.Linear(2, 1), restore_best_weights=True, snapshot="disk", path=tmp_path)
    assert list(tmp_path.iterdir()) == []


def refuses_files(folder: str) -> bool:
    """Whether even this process (root, in CI) cannot create a file in ``folder``."""
    try:
        descriptor, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return os.path.isdir(folder)
    os.close(descriptor)
    os.unlink(name)
    return False


@pytest.mark.skipif(not refuses_files("/sys"), reason="needs a folder where no file can be created: /sys")
def test_a_read_only_folder_is_refused_when_the_stopper_is_built() -> None:
    """Root may write anywhere chmod allows; a read-only filesystem refuses root too."""
    with pytest.raises(OSError, match=r"cannot create files in /sys .*pass a path= in a writable directory"):
        EarlyStopper(make_model(), snapshot="disk", path="/sys/best.pt")


# -- files know whose they are (finding 10) ------------------------------------


def flip_a_weight_byte(path: Path, weight: torch.Tensor) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(weight.detach().numpy().tobytes())
    assert at >= 0
    data[at + 5] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_snapshot_file_is_refused_not_restored(tmp_path: Path) -> None:
    stopper = stopper_for("disk", tmp_path)
    set_weights(stopper.model, 1.0)
    with torch.no_grad():
        stopper.model[0].weight.copy_(torch.arange(128.0).reshape(16, 8))
    stopper.step({"val_loss": 0.5})
    flip_a_weight_byte(tmp_path / "best.pt", stopper.model[0].weight)
    now = set_weights(stopper.model, 2.0)
    with pytest.raises(SnapshotError, match=r"best\.pt is damaged: its contents do not match its checksum"):
        stopper.restore()
    with pytest.raises(SnapshotError, match="is damaged"):
        stopper.state_dict()  # nor copied into a checkpoint
    assert_same(stopper.model.state_dict(), now)


def test_a_truncated_snapshot_file_is_refused(tmp_path: Path) -> None:
    stopper = stopper_for("disk", tmp_path)
    stopper.step({"val_loss": 0.5})
    path = tmp_path / "best.pt"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SnapshotError, match=r"best\.pt is damaged: it does not load"):
        stopper.restore()


def test_weights_and_optimizer_state_are_one_file_that_loads_with_weights_only(tmp_path: Path) -> None:
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(4, 8)).sum().backward()
    optimizer.step()
    stopper = stopper_for("disk", tmp_path, model, optimizer=optimizer, snapshot_optimizer=True)
    stopper.step({"val_loss": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "best.pt.lock"]
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert saved["format"] == "earlystop_core.adapters.torch.snapshot" and saved["version"] == 1
    assert (saved["run"], saved["epoch"], saved["sections"]) == (stopper._store.run, 0, ["model", "optimizer"])  # type: ignore[union-attr]
    assert saved["checksum"].startswith("sha256:")
    assert_same(dict(saved["model"]), clone_state(model))
    assert torch.equal(saved["optimizer"][(0, "exp_avg")], optimizer.state[model[0].weight]["exp_avg"])


def test_a_resumed_run_writes_the_file_as_its_own(tmp_path: Path) -> None:
    first = stopper_for("disk", tmp_path)
    best = set_weights(first.model, 1.0)
    first.step({"val_loss": 0.5})
    state = first.state_dict()
    first.close()

    second = stopper_for("disk", tmp_path)
    second.load_state_dict(state)
    assert torch.load(tmp_path / "best.pt", weights_only=True)["run"] == second._store.run  # type: ignore[union-attr]
    set_weights(second.model, 2.0)
    second.step({"val_loss": 0.9})
    second.step({"val_loss": 0.9})
    assert second.step({"val_loss": 0.9}).restore
    assert_same(second.model.state_dict(), best)


def test_a_failed_restore_after_an_error_is_attached_to_the_error_not_raised_instead(tmp_path: Path) -> None:
    stopper = stopper_for("disk", tmp_path, restore_on_exception=True)

    def train_then_fail() -> None:
        with stopper:
            stopper.step({"val_loss": 0.5})
            (tmp_path / "best.pt").write_bytes(b"not a snapshot")
            raise RuntimeError("data loader died")

    with pytest.raises(RuntimeError, match="data loader died") as raised:
        train_then_fail()
    if sys.version_info >= (3, 11):
        notes = raised.value.__notes__
        assert len(notes) == 1
        assert "EarlyStopper could not restore the best weights after this error: SnapshotError" in notes[0]
        assert "best.pt is damaged" in notes[0]
    assert not (tmp_path / "best.pt.lock").exists()  # closed all the same


def test_a_failed_restore_without_an_error_is_raised(tmp_path: Path) -> None:
    stopper = stopper_for("disk", tmp_path)

    def train() -> None:
        with stopper:
            stopper.step({"val_loss": 0.5})
            (tmp_path / "best.pt").write_bytes(b"not a snapshot")

    with pytest.raises(SnapshotError, match="is damaged"):
        train()
    assert not (tmp_path / "best.pt.lock").exists()


# -- learning rates (finding 7) ------------------------------------------------


def test_a_resumed_state_with_a_nan_rate_is_refused_and_the_optimizer_keeps_its_rate(tmp_path: Path) -> None:
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stopper = stopper_for("device", tmp_path, model, optimizer=optimizer)
    stopper.step({"val_loss": 0.5})
    state = stopper.state_dict()
    state["monitor"]["state"]["lr"] = "nan"
    fresh = stopper_for("device", tmp_path, model, optimizer=optimizer)
    with pytest.raises(StateError):
        fresh.load_state_dict(state)
    for loss in (0.6, 0.4, 0.7):
        fresh.step({"val_loss": loss})
    assert optimizer.param_groups[0]["lr"] == 0.1


class NaNRate(Monitor):
    """A Monitor whose decisions carry a NaN rate: what a bug or a corrupt state slipped past the core would do."""

    def update(self, logs: Any, epoch: int | None = None, lr: float | None = None) -> Decision:
        return super().update(logs, epoch, lr)._replace(lr=math.nan)


def test_a_nan_rate_is_never_applied_and_the_step_is_undone(tmp_path: Path) -> None:
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = NaNRate(patience=2, restore_best_weights=True, plateau=ReduceLROnPlateau(patience=1))
    stopper = EarlyStopper(model, monitor, optimizer=optimizer)
    before = monitor.state_dict()
    with pytest.raises(ValueError, match="learning rate nan, which is not finite and > 0: not applied"):
        stopper.step({"val_loss": 0.5})
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert monitor.state_dict() == before
    assert not stopper._store.captured
