"""Dependencies point one way: no import cycle among the package's modules, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"earlystop_core": ROOT / "earlystop_core", "earlystop_core.adapters": ROOT / "adapters"}


def imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, wherever the import stands."""
    modules = {f"{package}.{path.stem}": path for package, folder in PACKAGES.items() for path in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if name.endswith(".__init__"):
            continue  # the flat API re-exports everything: the front door, not a layer
        package = name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                relative = f"{package}.{node.module}" if node.module else package  # `from ._snapshot import y`
                base = relative if node.level else node.module or ""
                found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {
            other for other in found if other in modules and other != name and not other.endswith("__init__")
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
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


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(imports()) == []


def test_the_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
