"""earlystop_core: a framework-agnostic early-stopping engine.

Feed one dict of metrics per epoch to a :class:`Monitor`; it returns a
:class:`Decision`: continue or stop, snapshot now, restore the best weights.

Example:
    >>> from earlystop_core import Monitor
    >>> m = Monitor(monitor="val_loss", patience=2)
    >>> [m.update({"val_loss": v}).should_stop for v in [3.0, 2.0, 2.5, 2.4]]
    [False, False, False, True]
"""

from earlystop_core.config import MonitorConfig
from earlystop_core.decision import Decision, StopReason
from earlystop_core.errors import MissingMetricError, StateError
from earlystop_core.modes import infer_mode
from earlystop_core.monitor import Monitor
from earlystop_core.plateau import ReduceLROnPlateau

__all__ = [
    "Decision",
    "MissingMetricError",
    "Monitor",
    "MonitorConfig",
    "ReduceLROnPlateau",
    "StateError",
    "StopReason",
    "infer_mode",
]
__version__ = "0.1.0"
