"""Two real ranks (gloo, CPU, loopback only) train a data-parallel model and must stop together.

The pair of processes runs every scenario once (``workers`` fixture); each
test checks one scenario's records from both ranks. Lightning's
long-standing hang (a rank whose metric is NaN skipped a collective the other
rank then waited in forever) would show here as a timeout: the process group
times out after 30 s and the subprocesses after 120 s, so a hang fails the
test instead of blocking CI. Each training step averages the gradients over
the ranks with an ``all_reduce``, as DDP does, so a rank that stopped alone
would also hang its peer there. (DDP itself and ``torch.optim`` are left out:
their first use imports ``torch._dynamo``, 5-6 s per process here.)

Run one rank by hand: python tests/test_distributed.py RANK WORLD INIT_FILE FOLDER
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from earlystop_core import Monitor, StopReason  # noqa: E402
from earlystop_core.adapters.torch import EarlyStopper  # noqa: E402

WORLD = 2


# -- what each rank runs -------------------------------------------------------


def train(rank: int, stopper: EarlyStopper, metric: Any, epochs: int = 30) -> dict[str, Any]:
    """Data-parallel training; ``metric(epoch, val_loss)`` gives this rank's logs. Records every decision."""
    model = stopper.model
    generator = torch.Generator().manual_seed(rank)  # each rank its own data
    x = torch.randn(32, 8, generator=generator)
    y = x.sum(1, keepdim=True) + torch.randn(32, 1, generator=generator)
    x_val, y_val = x[:8], y[:8]
    history, decisions = {}, []
    for epoch in range(epochs):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x[8:]), y[8:]).backward()
        with torch.no_grad():
            for parameter in model.parameters():
                dist.all_reduce(parameter.grad)  # a collective every step, as in DDP's backward
                parameter.sub_(0.02 * parameter.grad / WORLD)
        history[epoch] = digest(model)
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        decision = stopper.step(metric(epoch, val_loss))
        decisions.append([decision.should_stop, decision.improved, decision.restore, decision.reason.name])
        if decision.should_stop:
            break
    best = stopper.monitor.best_epoch
    return {
        "decisions": decisions,
        "best_epoch": best,
        "restored_best": best is not None and digest(model) == history[best],
        "weights": digest(model),
        "monitor": stopper.monitor.state_dict(),
    }


def digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values())).hexdigest()


def scenario(rank: int, folder: Path, name: str) -> dict[str, Any]:
    torch.manual_seed(0)  # the same initial weights on both ranks
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    settings: dict[str, Any] = {"restore_best_weights": True, "patience": 5}
    if name == "reduce_nan":  # rank 1's metric turns NaN at epoch 4; snapshots on disk, one file per rank
        stopper = EarlyStopper(model, snapshot="disk", path=folder / "best-{rank}.pt", **settings)
        return train(rank, stopper, lambda e, v: {"val_loss": math.nan if rank == 1 and e >= 4 else v})
    if name == "reduce_diverging":  # rank 1 diverges from epoch 3: the mean crosses the threshold
        stopper = EarlyStopper(model, divergence_threshold=50.0, snapshot="cpu", **settings)
        return train(rank, stopper, lambda e, v: {"val_loss": v * 4.0 ** (e - 2) if rank == 1 and e > 2 else v})
    if name == "reduce_missing":  # rank 1 logs nothing at even epochs: the mean is rank 0's there
        stopper = EarlyStopper(model, on_missing="skip", **settings)
        return train(rank, stopper, lambda e, v: {} if rank == 1 and e % 2 == 0 else {"val_loss": v}, epochs=12)
    if name == "reduce_policy":  # every metric the policy reads differs per rank: all are reduced
        stopper = EarlyStopper(model, Monitor(policy="recommended", restore_best_weights=True))
        accuracy = (lambda e: 0.5 + 0.01 * e) if rank == 0 else (lambda e: 0.9 - 0.01 * e)  # mean: 0.7, a tie
        return train(rank, stopper, lambda e, v: {"val_loss": v, "loss": v * (1 + rank), "val_accuracy": accuracy(e)})
    if name == "rank0":  # only rank 0 has the metric; rank 1 logs garbage
        stopper = EarlyStopper(model, Monitor(patience=3, restore_best_weights=True), sync="rank0")
        return train(rank, stopper, lambda e, v: {"val_loss": v} if rank == 0 else {"junk": "x"})
    if name in ("rank0_error", "reduce_bad_value"):  # rank 0 cannot decide / rank 1 logs a string, at epoch 2
        sync = "rank0" if name == "rank0_error" else "reduce"
        bad = 0 if sync == "rank0" else 1
        stopper = EarlyStopper(model, sync=sync, **settings)
        try:
            return train(rank, stopper, lambda e, v: {"val_loss": "oops" if rank == bad and e == 2 else v})
        except Exception as error:
            return {"error": type(error).__name__, "message": str(error), "epoch": stopper.monitor.epoch}
    raise ValueError(name)


SCENARIOS = [
    "reduce_nan",
    "reduce_diverging",
    "reduce_missing",
    "reduce_policy",
    "rank0",
    "rank0_error",
    "reduce_bad_value",
]


def main(rank: int, world: int, init_file: str, folder: str) -> None:
    torch.set_num_threads(1)  # two ranks share two cores
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=30)
    )
    try:
        results = {name: scenario(rank, Path(folder), name) for name in SCENARIOS}
        dist.barrier()  # both ranks got through every scenario: no collective was left waiting
    finally:
        dist.destroy_process_group()
    print(json.dumps(results))


# -- the tests -----------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("distributed")
    command = [sys.executable, __file__, "{rank}", str(WORLD), str(folder / "init"), str(folder)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [part.format(rank=rank) for part in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for rank in range(WORLD)
    ]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err[-3000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return outputs


def both(workers: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    first, second = (worker[name] for worker in workers)
    return first, second


def test_a_nan_on_one_rank_stops_both_at_the_same_epoch(workers: list[dict[str, Any]]) -> None:
    first, second = both(workers, "reduce_nan")
    assert first["decisions"] == second["decisions"]
    assert len(first["decisions"]) == 5  # epochs 0..4
    assert first["decisions"][-1] == [True, False, True, StopReason.NON_FINITE_METRIC.name]
    assert first["restored_best"] and second["restored_best"]
    assert first["weights"] == second["weights"]


def test_a_diverging_rank_stops_both_on_the_mean(workers: list[dict[str, Any]]) -> None:
    first, second = both(workers, "reduce_diverging")
    assert first["decisions"] == second["decisions"]
    assert first["decisions"][-1][3] == StopReason.DIVERGENCE_THRESHOLD.name
    assert first["restored_best"] and second["restored_best"] and first["weights"] == second["weights"]


def test_a_metric_missing_on_one_rank_uses_the_others(workers: list[dict[str, Any]]) -> None:
    first, second = both(workers, "reduce_missing")
    assert first["decisions"] == second["decisions"]
    assert first["monitor"] == second["monitor"]


def test_every_metric_a_policy_reads_is_reduced(workers: list[dict[str, Any]]) -> None:
    first, second = both(workers, "reduce_policy")
    assert first["decisions"] == second["decisions"]
    assert first["monitor"] == second["monitor"]  # the policy's features and the kept epoch agree
    # val_accuracy's mean is the same every epoch: the tie goes to the lowest val_loss, on both ranks
    assert first["best_epoch"] == second["best_epoch"] and first["weights"] == second["weights"]


def test_rank0_decides_for_everyone(workers: list[dict[str, Any]]) -> None:
    first, second = both(workers, "rank0")
    assert first["decisions"] == second["decisions"]
    assert first["decisions"][-1][3] == StopReason.PATIENCE_EXHAUSTED.name
    assert first["monitor"] == second["monitor"]  # rank 1's monitor follows rank 0's state
    assert first["restored_best"] and second["restored_best"] and first["weights"] == second["weights"]


def test_an_error_on_rank0_reaches_the_other_rank_instead_of_a_hang(workers: list[dict[str, Any]]) -> None:
    first, second = both(workers, "rank0_error")
    assert (first["error"], first["epoch"]) == ("TypeError", 2)
    assert second["error"] == "RuntimeError"
    assert "rank 0 could not decide this epoch (TypeError: metric 'val_loss' must be a number" in second["message"]


def test_a_bad_value_on_one_rank_raises_there_and_stops_the_other(workers: list[dict[str, Any]]) -> None:
    first, second = both(workers, "reduce_bad_value")
    assert first["decisions"][-1] == [True, False, True, StopReason.NON_FINITE_METRIC.name]
    assert len(first["decisions"]) == 3
    assert (second["error"], second["epoch"]) == ("TypeError", 2)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
