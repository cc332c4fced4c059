"""The stopping rules a Monitor can ask (``rule=``), and the learning-rate plateau it can coordinate.

``base`` holds the [`Rule`][earlystop_core.Rule] protocol, fixed patience and the
combinators; each other module is one family: ``adaptive`` (dynamic and relative patience),
``auto_patience``, ``prechelt`` (GL, PQ, UP), ``trend`` (Stalled), ``budget`` (TimeBudget),
``plateau`` (ReduceLROnPlateau).
They depend only on the package's internals, never on the Monitor. Import them from ``earlystop_core``.
"""
