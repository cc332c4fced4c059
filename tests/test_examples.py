"""The examples run as a user would run them, in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *arguments: str) -> str:
    environment = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_keras_digits_stops_early_and_restores() -> None:
    pytest.importorskip("keras")
    pytest.importorskip("sklearn")
    out = run_example("keras_digits.py", "--epochs", "60", "--patience", "3")
    ran = int(out.split("ran ")[1].split(" of")[0])
    assert ran < 60
    assert "PATIENCE_EXHAUSTED" in out
    assert float(out.rsplit(": ", 1)[1]) > 0.9


def test_keras_digits_with_the_recommended_policy() -> None:
    pytest.importorskip("keras")
    pytest.importorskip("sklearn")
    out = run_example("keras_digits.py", "--epochs", "200", "--policy", "recommended")
    ran = int(out.split("ran ")[1].split(" of")[0])
    assert ran < 200 and "CRITERION_MET" in out
    assert float(out.rsplit(": ", 1)[1]) > 0.9


def test_demo_command_prints_each_decision() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "earlystop_core.cli", "demo", "--run", "7", "--strategy", "patience=5"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("epoch 0: val_loss=")
    assert lines[-1].startswith("run 7: ran ")
    assert "restoring the weights of epoch" in lines[-2]
