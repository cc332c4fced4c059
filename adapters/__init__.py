"""Framework adapters, installed as ``earlystop_core.adapters``.

Each adapter imports its framework only inside its own module, so
``earlystop_core`` itself never needs Keras or PyTorch.
"""
