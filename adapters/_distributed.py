"""Keeping ranks in step: every rank makes the same decision at the same epoch.

The rule that keeps this hang-free: each step, every rank calls the same
collectives in the same order, whatever its metric is (NaN included) and
even when it fails to read it. A rank never returns early before a
collective, so no rank waits in one that another skips (Lightning's
long-standing hang: a rank whose metric is NaN stopped before the reduction
the other ranks were waiting in).

- ``mean_metrics`` ("reduce", the default): one ``all_reduce`` of the watched
  metrics per step, then every rank updates its own Monitor with the same
  values, so the monitors stay identical. A NaN on any rank makes the mean
  NaN, so all ranks stop together.
- ``decide_on_rank0`` ("rank0"): rank 0 alone reads its logs and decides; one
  ``broadcast_object_list`` per step carries its decision and its monitor's
  state to the other ranks, whose monitors load it (so ``state_dict`` and
  ``finish`` agree on every rank).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist

from earlystop_core import Decision, Monitor
from earlystop_core._values import coerce_metric


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks ((0, 1) without ``torch.distributed``).

    Examples:
        >>> rank_and_world()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def watched_metrics(monitor: Monitor) -> tuple[str, ...]:
    """The names of the logs the monitor reads (`Monitor.metrics`): what the ranks must agree on.

    Examples:
        >>> from earlystop_core import Patience, PQ, ReduceLROnPlateau
        >>> watched_metrics(Monitor("val_loss", rule=Patience(3) | PQ(0.5), plateau=ReduceLROnPlateau("val_acc")))
        ('val_loss', 'val_acc', 'loss')
    """
    return monitor.metrics


def mean_metrics(logs: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``logs`` with each watched metric replaced by its mean over the ranks that logged it.

    Exactly one ``all_reduce`` per call, on every rank: a rank that cannot
    read its metrics contributes NaN (so every rank stops) and raises only
    after the collective.
    """
    values = [0.0] * (2 * len(names))  # sums, then counts
    failure: Exception | None = None
    try:
        for i, name in enumerate(names):
            if name in logs:
                values[i] = coerce_metric(name, logs[name])
                values[len(names) + i] = 1.0
    except Exception as error:
        failure = error
        values = [math.nan] * len(names) + [1.0] * len(names)
    reduced = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(reduced)
    if failure is not None:
        raise failure
    totals = reduced.tolist()
    merged = dict(logs)
    for i, name in enumerate(names):
        count = totals[len(names) + i]
        if count:
            merged[name] = totals[i] / count
    return merged


def decide_on_rank0(monitor: Monitor, logs: Mapping[str, Any], epoch: int | None, lr: float | None) -> Decision:
    """Rank 0's decision on every rank: one ``broadcast_object_list`` per call, on every rank."""
    rank = dist.get_rank()
    payload: list[Any] = [None]
    failure: Exception | None = None
    if rank == 0:
        try:
            decision = monitor.update(logs, epoch, lr)
            payload[0] = ("decision", decision, monitor.state_dict())
        except Exception as error:
            failure = error
            payload[0] = ("error", f"{type(error).__name__}: {error}")
    dist.broadcast_object_list(payload, src=0)
    if failure is not None:
        raise failure
    if payload[0][0] == "error":
        raise RuntimeError(f"rank 0 could not decide this epoch ({payload[0][1]}), so rank {rank} stops too")
    _, decision, state = payload[0]
    if rank != 0:
        monitor.load_state_dict(state)
    assert isinstance(decision, Decision)
    return decision


def _collective_device() -> torch.device:
    """CPU for gloo and MPI; the current accelerator for NCCL and the like."""
    backend = str(dist.get_backend())
    if backend in ("gloo", "mpi") or "cpu:" in backend:
        return torch.device("cpu")
    accelerator = torch.accelerator.current_accelerator()
    if accelerator is None:
        return torch.device("cpu")
    return torch.device(accelerator.type, torch.accelerator.current_device_index())
