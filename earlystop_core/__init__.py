"""earlystop_core: a framework-agnostic early-stopping engine.

Feed one dict of metrics per epoch to a :class:`Monitor`; it returns a
:class:`Decision`: continue or stop, snapshot now, restore the best weights.

Examples:
    >>> from earlystop_core import Monitor
    >>> m = Monitor(monitor="val_loss", patience=2)
    >>> [m.update({"val_loss": v}).should_stop for v in [3.0, 2.0, 2.5, 2.4]]
    [False, False, False, True]
"""

from earlystop_core.adaptive import DynamicPatience, RelativePatience
from earlystop_core.auto_patience import AutoPatience, suggest_patience
from earlystop_core.config import MonitorConfig
from earlystop_core.decision import Decision, StopReason
from earlystop_core.errors import MissingMetricError, StateError
from earlystop_core.modes import infer_mode
from earlystop_core.monitor import Monitor
from earlystop_core.plateau import ReduceLROnPlateau
from earlystop_core.prechelt import GL, PQ, UP
from earlystop_core.rules import AllOf, AnyOf, Patience, Rule, never
from earlystop_core.signals import WeightedScore
from earlystop_core.trend import Stalled

__all__ = [
    "AllOf",
    "AnyOf",
    "AutoPatience",
    "Decision",
    "DynamicPatience",
    "GL",
    "MissingMetricError",
    "Monitor",
    "MonitorConfig",
    "PQ",
    "Patience",
    "ReduceLROnPlateau",
    "RelativePatience",
    "Rule",
    "Stalled",
    "StateError",
    "StopReason",
    "UP",
    "WeightedScore",
    "infer_mode",
    "never",
    "suggest_patience",
]
__version__ = "0.1.0"
