"""How ``Monitor(policy=...)`` reaches the learned policy without importing it.

The learned policy sits above the Monitor (``LearnedPolicy.make_monitor``
builds one), so the Monitor cannot import it back. `earlystop_core.policy.learned`
registers its resolver here when it is imported, which ``import
earlystop_core`` always does, so the dependency points one way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: ``resolver(policy, options)``: the Monitor's keyword arguments with ``policy=`` applied.
Resolver = Callable[[Any, Mapping[str, Any]], dict[str, Any]]
_resolver: list[Resolver] = []


def register(resolver: Resolver) -> None:
    """Make ``resolver`` the one `resolve` calls (the policy module's ``with_policy``)."""
    _resolver[:] = [resolver]


def resolve(policy: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with ``policy=`` applied by the registered resolver.

    Examples:
        >>> resolve("recommended", {"monitor": "val_loss", "rule": None, "patience": 0})["keep_best_by"]
        'val_accuracy'
    """
    if not _resolver:  # only if earlystop_core.policy.learned failed to import
        raise RuntimeError("Monitor(policy=...) needs earlystop_core.policy.learned, which is not imported")
    return _resolver[0](policy, options)
