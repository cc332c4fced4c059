"""The API reference is complete: every public name of the core, its testing kit and each adapter has an entry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import earlystop_core

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = set(re.findall(r"^::: (\S+)$", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), re.M))
ADAPTERS = sorted(path for path in (ROOT / "adapters").glob("*.py") if not path.name.startswith("_"))


def exported(path: Path) -> list[str] | None:
    """A module's ``__all__``, read from its source (importing an adapter needs its framework)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "__all__" for target in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def test_every_public_name_of_the_core_has_an_entry() -> None:
    missing = [name for name in earlystop_core.__all__ if f"earlystop_core.{name}" not in ENTRIES]
    assert not missing, f"docs/api.md has no '::: earlystop_core.NAME' entry for {missing}"


def test_every_public_name_of_each_adapter_has_an_entry() -> None:
    assert ADAPTERS, "no adapter modules found"
    for path in ADAPTERS:
        names = exported(path)
        assert names is not None, f"adapters/{path.name} must say what it exports (__all__)"
        missing = [name for name in names if f"adapters.{path.stem}.{name}" not in ENTRIES]
        assert not missing, f"docs/api.md has no '::: adapters.{path.stem}.NAME' entry for {missing}"


def test_every_public_name_of_the_testing_kit_has_an_entry() -> None:
    names = exported(ROOT / "earlystop_core" / "testing.py")
    assert names, "earlystop_core/testing.py must say what it exports (__all__)"
    missing = [name for name in names if f"earlystop_core.testing.{name}" not in ENTRIES]
    assert not missing, f"docs/api.md has no '::: earlystop_core.testing.NAME' entry for {missing}"


def test_every_entry_names_something_public() -> None:
    for entry in ENTRIES:
        module, _, name = entry.rpartition(".")
        if module == "earlystop_core":
            assert name in earlystop_core.__all__, f"docs/api.md documents {entry}, which is not exported"
        elif module == "earlystop_core.testing":
            assert name in (exported(ROOT / "earlystop_core" / "testing.py") or []), entry
        else:
            assert module.startswith("adapters.") and not module.split(".")[1].startswith("_"), entry
            assert name in (exported(ROOT / "adapters" / f"{module.split('.')[1]}.py") or []), entry


SPHINX_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|exc|data|obj|const):`")


def test_docstrings_use_markdown_cross_references_not_sphinx_roles() -> None:
    # mkdocstrings renders Google-style docstrings as Markdown: a Sphinx role shows as literal text.
    sources = [*(ROOT / "earlystop_core").rglob("*.py"), *(ROOT / "adapters").glob("*.py")]
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if SPHINX_ROLE.search(line)
    ]
    assert not found, f"Sphinx roles (write [`Name`][earlystop_core.Name] or `Name`): {found}"
