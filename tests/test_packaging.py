"""The wheel installs ``adapters/`` as ``earlystop_core.adapters`` and nothing at top level but the core."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    pytest.importorskip("setuptools")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "earlystop_core", "adapters"):
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("earlystop-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_has_no_top_level_adapters(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"earlystop_core"}


def test_wheel_ships_adapters_types_and_sample(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "earlystop_core/adapters/__init__.py" in names
    assert "earlystop_core/py.typed" in names
    assert "earlystop_core/data/sample_curves.csv.gz" in names
    sample = wheel.getinfo("earlystop_core/data/sample_curves.csv.gz")
    assert sample.file_size < 1_000_000


def test_runtime_dependency_is_numpy_only(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [
        line.split(":", 1)[1].strip()
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert [r.split(">")[0].split("=")[0].strip() for r in requires] == ["numpy"]


def test_public_api_is_sorted_and_complete() -> None:
    import earlystop_core

    assert earlystop_core.__all__ == sorted(earlystop_core.__all__)
    for name in earlystop_core.__all__:
        assert getattr(earlystop_core, name).__module__.startswith("earlystop_core")
