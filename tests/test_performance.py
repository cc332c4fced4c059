"""The issue's performance target, checked in the same run as the peers.

``benchmarks/bench_update.py`` is the full benchmark; this runs a shorter
version of it and asserts the target: a decision at least 10x cheaper than the
faster of Keras's and Lightning's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_update.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_update", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_update_is_ten_times_cheaper_than_the_faster_peer() -> None:
    pytest.importorskip("keras")
    pytest.importorskip("pytorch_lightning")
    medians = load_benchmark().measure(epochs=1000, repeats=9)
    ours = medians.pop("earlystop Monitor.update")
    assert ours < 5.0, f"Monitor.update takes {ours:.2f} us: no longer 'low microseconds'"
    assert min(medians.values()) / ours >= 10, medians


def test_update_does_not_import_numpy_or_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from earlystop_core import Monitor; m = Monitor(patience=2);"
        "[m.update({'val_loss': v}) for v in (1.0, 2.0, 3.0)];"
        "print(sorted(k for k in ('numpy', 'torch', 'keras') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
