"""An optimizer seen as flat tensors: its per-parameter state for a snapshot, its rates for a decision.

``optimizer.state_dict()["state"]`` is ``{param_index: {name: value}}``:
tensors (Adam's moments, its ``step``) go to a snapshot keyed by
``(param_index, name)``; the few other values (a ``None`` momentum buffer, a
float) are kept aside. Hyperparameters (``param_groups``, the learning rate
among them) are not part of a snapshot: restoring the best state leaves them
as they are now, so a rate the Monitor lowered stays lowered.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from ._checks import checked_lr, missing_rates

Tensors = dict[tuple[int, str], torch.Tensor]


def split(state: Mapping[int, Mapping[str, Any]]) -> tuple[Tensors, dict[int, dict[str, Any]]]:
    """``{index: {name: value}}`` as ``({(index, name): tensor}, {index: {name: other value}})``.

    The tensors are the given ones (not copies); the other values are deep copies.

    Examples:
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model(torch.ones(1, 2)).sum().backward(); optimizer.step()
        >>> tensors, others = split(optimizer.state_dict()["state"])
        >>> sorted(tensors), others
        ([(0, 'momentum_buffer'), (1, 'momentum_buffer')], {})
    """
    tensors: Tensors = {}
    others: dict[int, dict[str, Any]] = {}
    for index, entry in state.items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[(index, name)] = value
            else:
                others.setdefault(index, {})[name] = copy.deepcopy(value)
    return tensors, others


def join(tensors: Mapping[tuple[int, str], torch.Tensor], others: Mapping[int, Mapping[str, Any]]) -> dict[int, Any]:
    """`split` undone, each tensor cloned (an optimizer must not share a snapshot's memory).

    Examples:
        >>> join({(0, "step"): torch.tensor(3.0)}, {0: {"note": None}})
        {0: {'note': None, 'step': tensor(3.)}}
    """
    state: dict[int, Any] = {index: copy.deepcopy(dict(entry)) for index, entry in others.items()}
    for (index, name), tensor in tensors.items():
        state.setdefault(index, {})[name] = tensor.clone()
    return state


def checked_state(optimizer: torch.optim.Optimizer, state: Any) -> dict[int, dict[str, Any]]:
    """``state`` if it can be this optimizer's per-parameter state (``{param_index: {name: value}}``), else an error.

    Raises:
        ValueError: It is not such a mapping, or names a parameter the optimizer does not have.

    Examples:
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> checked_state(optimizer, {5: {"momentum_buffer": torch.zeros(1)}})
        Traceback (most recent call last):
        ...
        ValueError: the saved optimizer state names parameter 5; this optimizer has 2 (0 to 1)
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"the saved optimizer state must be a mapping, got {type(state).__name__}")
    count = sum(len(group["params"]) for group in optimizer.param_groups)
    for index, entry in state.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise ValueError(
                f"the saved optimizer state names parameter {index!r}; this optimizer has {count} (0 to {count - 1})"
            )
        if not isinstance(entry, Mapping) or not all(isinstance(name, str) for name in entry):
            raise ValueError(f"the saved optimizer state of parameter {index} must map names to values")
    return {index: dict(entry) for index, entry in state.items()}


def load(optimizer: torch.optim.Optimizer, state: dict[int, Any]) -> None:
    """Load per-parameter ``state`` into the optimizer, keeping its current hyperparameters."""
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate: groups at the first group's rate get ``lr``, the others are scaled alike.

    Raises:
        ValueError: ``lr`` is not finite and > 0 (nothing is changed).

    Examples:
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.2}], lr=0.1)
        >>> set_lr(optimizer, 0.05)
        >>> [group["lr"] for group in optimizer.param_groups]
        [0.05, 0.1]
        >>> set_lr(optimizer, float("nan"))
        Traceback (most recent call last):
        ...
        ValueError: the Monitor asked for the learning rate nan, which is not finite and > 0: not applied, ...
    """
    lr = checked_lr(lr)
    base = float(optimizer.param_groups[0]["lr"])
    if lr == base:
        return
    for group in optimizer.param_groups:
        old = group["lr"]
        new = lr if float(old) == base else float(old) * (lr / base)
        if isinstance(old, torch.Tensor):  # a tensor rate (capturable optimizers) is updated in place
            old.fill_(new)
        else:
            group["lr"] = new


def rates(rule: Any, logs: Mapping[str, Any], optimizer: Any) -> dict[str, float]:
    """The optimizer's learning rate (its first group's) for a rule that reads one, where the logs lack it
    (`missing_rates`); ``{}`` without an optimizer.

    Examples:
        >>> from earlystop_core import Monitor
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> rates(Monitor(policy="recommended").rule, {"val_loss": 1.0}, optimizer)
        {'lr': 0.1}
    """
    if optimizer is None or not optimizer.param_groups:
        return {}
    return missing_rates(rule, logs, lambda: float(optimizer.param_groups[0]["lr"]))
