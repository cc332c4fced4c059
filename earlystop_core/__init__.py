"""earlystop_core: a framework-agnostic early-stopping engine.

Feed one dict of metrics per epoch to a [`Monitor`][earlystop_core.Monitor]; it returns a
[`Decision`][earlystop_core.Decision]: continue or stop, snapshot now, restore the best weights.

Examples:
    >>> from earlystop_core import Monitor
    >>> m = Monitor(monitor="val_loss", patience=2)
    >>> [m.update({"val_loss": v}).should_stop for v in [3.0, 2.0, 2.5, 2.4]]
    [False, False, False, True]
"""

from typing import TYPE_CHECKING

from earlystop_core._version import __version__ as __version__
from earlystop_core.config import MonitorConfig
from earlystop_core.decision import Decision, StopReason
from earlystop_core.errors import FormatError, MissingMetricError, StateError
from earlystop_core.modes import infer_mode
from earlystop_core.monitor import Monitor
from earlystop_core.policy.learned import LearnedPolicy, PolicyError, recommended_policy
from earlystop_core.rules.adaptive import DynamicPatience, RelativePatience
from earlystop_core.rules.auto_patience import AutoPatience, suggest_patience
from earlystop_core.rules.base import AllOf, AnyOf, Patience, Rule, never
from earlystop_core.rules.budget import TimeBudget
from earlystop_core.rules.plateau import ReduceLROnPlateau
from earlystop_core.rules.prechelt import GL, PQ, UP
from earlystop_core.rules.trend import Stalled
from earlystop_core.signals import WeightedScore

if TYPE_CHECKING:  # for type checkers and the API reference: at run time these load lazily (below)
    from earlystop_core.formats.readers import load_any
    from earlystop_core.policy.fit import fit_policy
    from earlystop_core.replay.bank import Bank
    from earlystop_core.replay.engine import Evaluation, evaluate

# The replay tools import numpy; load them only when asked for, so that
# `from earlystop_core import Monitor` stays free of numpy.
_LAZY = {
    "Bank": "earlystop_core.replay.bank",
    "Evaluation": "earlystop_core.replay.engine",
    "evaluate": "earlystop_core.replay.engine",
    "fit_policy": "earlystop_core.policy.fit",
    "load_any": "earlystop_core.formats.readers",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'earlystop_core' has no attribute {name!r}")


__all__ = [
    "AllOf",
    "AnyOf",
    "AutoPatience",
    "Bank",
    "Decision",
    "DynamicPatience",
    "Evaluation",
    "FormatError",
    "GL",
    "LearnedPolicy",
    "MissingMetricError",
    "Monitor",
    "MonitorConfig",
    "PQ",
    "Patience",
    "PolicyError",
    "ReduceLROnPlateau",
    "RelativePatience",
    "Rule",
    "Stalled",
    "StateError",
    "StopReason",
    "TimeBudget",
    "UP",
    "WeightedScore",
    "evaluate",
    "fit_policy",
    "infer_mode",
    "load_any",
    "never",
    "recommended_policy",
    "suggest_patience",
]
