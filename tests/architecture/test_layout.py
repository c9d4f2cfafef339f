"""The layout shows the architecture: the core's packages import one way only, and no module of
the core is part of an import cycle (``TYPE_CHECKING`` imports aside, function-level imports
counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "launcher"

#: Bottom to top: a part may import from its own level and the ones before it, never after.
LAYERS = [
    {"errors", "signals", "procfs", "statedir"},
    {"config"},
    {"backend"},
    {"observability"},
    {"worker"},
    {"master"},
    {"launch"},
    {"cli", "docs", "__main__", "__init__", "testing"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part(module: str) -> str:
    """``launcher.master.facade`` -> ``master``; ``launcher`` -> ``__init__``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def imports(path: Path) -> set[str]:
    """The launcher modules ``path`` imports, anywhere in it but under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("launcher"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(
                    candidate
                    if (CORE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                    or (CORE.parent / candidate.replace(".", "/")).is_dir()
                    else node.module
                )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("launcher"))
    return found


GRAPH = {module_name(p): imports(p) for p in CORE.rglob("*.py") if "testing" not in p.parts}


def test_no_module_is_part_of_an_import_cycle() -> None:
    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt != node and not nxt.startswith(node + "."):  # a package importing its own parts
                cycle = visit(nxt, [*path, node])
                if cycle:
                    return cycle
        return None

    for start in sorted(GRAPH):
        cycle = visit(start, [])
        assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_run_down_the_layers(module: str) -> None:
    level = next(i for i, names in enumerate(LAYERS) if part(module) in names)
    upward = [m for m in GRAPH[module] if next(i for i, n in enumerate(LAYERS) if part(m) in n) > level]
    assert not upward, f"{module} imports from above it: {upward}"
