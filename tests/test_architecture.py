"""Dependencies point one way: no import cycle, and no module imports from a layer above its own.

The layers, bottom to top (the README's Layout section draws them):

0. internals: ``earlystop_core._*``, ``errors``, ``decision``, ``modes``, ``curves``, ``data`` (the sample)
1. the parts a Monitor is made of: ``rules/``, ``signals``; and the readers, ``formats/``
2. ``config``, ``state``
3. ``monitor``
4. ``policy/``
5. ``replay/``
6. ``cli``

The adapters sit beside the CLI and use the front door (``earlystop_core``) and the internals only; so does
the testing kit (``earlystop_core.testing``, which imports hypothesis), and nothing in the package imports it.
Function-level imports count as much as top-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"earlystop_core": ROOT / "earlystop_core", "earlystop_core.adapters": ROOT / "adapters"}
LAYERS = {
    "earlystop_core._": 0,
    "earlystop_core.errors": 0,
    "earlystop_core.decision": 0,
    "earlystop_core.modes": 0,
    "earlystop_core.curves": 0,
    "earlystop_core.data": 0,
    "earlystop_core.rules.": 1,
    "earlystop_core.signals": 1,
    "earlystop_core.formats.": 1,
    "earlystop_core.config": 2,
    "earlystop_core.state": 2,
    "earlystop_core.monitor": 3,
    "earlystop_core.policy.": 4,
    "earlystop_core.replay.": 5,
    "earlystop_core.cli": 6,
}
FRONT_DOOR = "earlystop_core"
KIT = "earlystop_core.testing"  # for users' tests: on the public API, imported by nothing in the package


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name; a package's ``__init__`` under the package's name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports() -> dict[str, set[str]]:
    """Each module and the package modules it imports, wherever the import stands (the front door excluded)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        if name == FRONT_DOOR:
            continue  # the flat API re-exports everything: the front door, not a layer
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # `from ._snapshot import y`, `from . import y`
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                submodules = {f"{base}.{alias.name}" for alias in node.names} & set(known)
                # `from earlystop_core import _policies` imports a module, not the front door's names
                found |= submodules if len(submodules) == len(node.names) else {base} | submodules
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {other for other in found if other in known and other != name}
    return graph


def layer(module: str) -> int | None:
    """The layer of an ``earlystop_core`` module (None for the adapters and the subpackages' docstrings)."""
    for prefix, level in LAYERS.items():
        if module == prefix.rstrip(".") and prefix.endswith("."):
            return None  # a subpackage's __init__: documentation only, see test_subpackages_are_documentation
        if module.startswith(prefix) if prefix.endswith((".", "_")) else module == prefix:
            return level
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while component[-1:] != [module]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a module to one in a higher layer, or from an adapter past the front door."""
    found = []
    for module, others in sorted(graph.items()):
        for other in sorted(others):
            if module.startswith("earlystop_core.adapters"):
                if not other.startswith("earlystop_core.adapters") and other != FRONT_DOOR and layer(other) != 0:
                    found.append(f"{module} -> {other} (an adapter uses the public API and the internals only)")
                continue
            if module == KIT:
                if other != FRONT_DOOR and layer(other) != 0:
                    found.append(f"{module} -> {other} (the testing kit uses the public API and the internals only)")
                continue
            mine, theirs = layer(module), layer(other)
            if mine is not None and (theirs is None or theirs > mine):
                found.append(f"{module} (layer {mine}) -> {other} (layer {theirs})")
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(imports()) == []


def test_dependencies_point_down_the_layers() -> None:
    assert upward(imports()) == []


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in modules() if name.startswith("earlystop_core") and layer(name) is None]
    adapters = [name for name in unplaced if name.startswith("earlystop_core.adapters")]
    subpackages = {prefix.rstrip(".") for prefix in LAYERS if prefix.endswith(".")}
    assert sorted(set(unplaced) - set(adapters) - subpackages - {FRONT_DOOR, KIT}) == []


def test_nothing_in_the_package_imports_the_testing_kit() -> None:
    """The kit imports hypothesis, an optional dependency: only users' tests import it."""
    graph = imports()
    assert KIT in graph and graph[KIT] <= {FRONT_DOOR}
    assert [module for module, others in graph.items() if KIT in others] == []
    assert upward({"earlystop_core.monitor": {KIT}, KIT: {"earlystop_core.monitor"}}) == [
        "earlystop_core.monitor (layer 3) -> earlystop_core.testing (layer None)",
        "earlystop_core.testing -> earlystop_core.monitor (the testing kit uses the public API and the internals only)",
    ]


@pytest.mark.parametrize("package", ["rules", "policy", "replay", "formats"])
def test_subpackages_are_documentation(package: str) -> None:
    """A subpackage's ``__init__`` only describes it: importing one module never drags in its neighbours."""
    tree = ast.parse((ROOT / "earlystop_core" / package / "__init__.py").read_text(encoding="utf-8"))
    assert [type(node).__name__ for node in tree.body] == ["Expr"]


def test_the_checks_find_a_cycle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = {
        "earlystop_core.monitor": {"earlystop_core.policy.learned"},
        "earlystop_core.adapters.torch": {"earlystop_core.monitor"},
    }
    assert upward(graph) == [
        "earlystop_core.adapters.torch -> earlystop_core.monitor (an adapter uses the public API and the internals "
        "only)",
        "earlystop_core.monitor (layer 3) -> earlystop_core.policy.learned (layer 4)",
    ]
