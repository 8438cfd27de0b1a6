"""The layer order of DESIGN.md, enforced: every import (module-level or inside a function) points to
the same layer or below, and no two modules import each other through any chain.

cli > api > viz, harness, explore > training > models, hspace > data, diffusion, metrics
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "diffdrl"

# top-level name under diffdrl -> layer (higher may import lower and its own layer, never higher)
LAYERS = {
    "atomic": 0,
    "version": 0,
    "configs": 0,
    "data": 0,
    "diffusion": 0,
    "metrics": 0,
    "models": 1,
    "hspace": 1,
    "training": 2,
    "viz": 3,
    "harness": 3,
    "explore": 3,
    "api": 4,
    "cli": 5,
    "__main__": 5,
    "__init__": 5,  # the package's facade re-exports the api
}


def module_files() -> dict[str, Path]:
    files = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def layer_of(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return LAYERS["__init__"]
    top = parts[1]
    if top.startswith("cli"):  # cli.py and its helpers cli_*.py
        return LAYERS["cli"]
    if top not in LAYERS:
        raise AssertionError(f"{module}: no layer for '{top}' (add it to LAYERS and DESIGN.md)")
    return LAYERS[top]


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The diffdrl modules that ``module`` imports anywhere in its file."""
    found = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
                base = base.rstrip(".")
            # ``from pkg import sub`` imports the submodule when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n == PACKAGE or n.startswith(PACKAGE + "."))
    found.discard(module)
    return {n for n in found if n in known}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def test_every_import_points_down_or_sideways(graph):
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in graph.items()
        for b in targets
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_no_import_cycles(graph):
    # package __init__ files import their submodules, and a submodule importing its own package's
    # __init__ is not a cycle of code: leave parent-package edges out
    edges = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_an_upward_and_a_cyclic_import(tmp_path):
    """The two checks above can fail: on a made-up pair of modules they report both problems."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from diffdrl.api import load_run\n")
    b.write_text("def f():\n    from diffdrl.models import b\n")
    known = {"diffdrl.api", "diffdrl.models", "diffdrl.models.b", "diffdrl.data.a"}
    assert imports_of("diffdrl.data.a", a, known) == {"diffdrl.api"}
    assert layer_of("diffdrl.api") > layer_of("diffdrl.data.a")
    assert imports_of("diffdrl.models.c", b, known) == {"diffdrl.models.b"}
