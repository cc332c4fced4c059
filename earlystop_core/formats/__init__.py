"""Readers of recorded learning curves, one module per format family: ``long_csv`` (the curve banks'
``run,epoch,<metrics...>``) and ``readers`` (Keras and Lightning CSV loggers, JSON lines, directories,
and [`load_any`][earlystop_core.load_any], which tells them apart). Each returns
``{run: {metric: values by epoch}}``; they depend on nothing above ``earlystop_core.errors``.
"""
