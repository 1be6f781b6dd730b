"""The package structure the README's layout section promises: no import cycle between the
packages of ``src/skillbank``, the engine (``run/``) importing no operation, and no module
over 400 lines. Imports are read from the source (``ast``), lazy ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "skillbank"
CORE = {"skill", "base", "basefiles", "basestore", "blobstore", "catalog", "arch", "policynet", "fields", "library", "journal", "peft_io",
        "routed", "worlds"}
OPERATIONS = {"acquire", "evaluate", "compose", "localize", "transfer", "continual"}
MAX_LINES = 400


def unit(path: Path) -> str:
    """The package a module belongs to (a top-level module counts as its own unit)."""
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(path: Path) -> set[str]:
    """The skillbank units a module imports (``from ..x``, ``from .x``, ``skillbank.x``)."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(SRC)
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    out.add((base + node.module.split("."))[0])
                else:  # from . import x, y: the package itself, or top-level modules
                    out.update(base[:1] or [a.name for a in node.names])
            elif node.module and node.module.startswith("skillbank."):
                out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("skillbank."):
                    out.add(a.name.split(".")[1])
    return out - {unit(path), "__init__"}


def graph() -> dict[str, set[str]]:
    units = {unit(p) for p in SRC.rglob("*.py")} - {"__init__"}
    g: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        u = unit(path)
        if u != "__init__":
            g.setdefault(u, set()).update(imported_units(path) & units)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_imports(tmp_path):
    g = graph()
    assert "library" in g["acquire"] and "run" in g["acquire"]     # a lazy import counts too
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_cycle_between_packages():
    assert cycles(graph()) == []


def test_run_imports_no_operation_and_core_imports_nothing_above_it():
    g = graph()
    assert g["run"] & (OPERATIONS | {"demo", "repro", "cli", "sweep", "standard"}) == set()
    for u in CORE:
        assert g.get(u, set()) <= CORE, f"core module {u} imports {g[u] - CORE}"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
