"""The plugin surface is what four ``__all__`` declare, split by who uses it: every name
resolves, nothing public is left out of them, the built-in plugins import nothing else, the
plugin guide lists all of it, and importing ``launcher`` stays cheap."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.docs import SURFACES

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SOURCES = sorted(REPO.glob("plugins/*/asgi_launcher_*/*.py"))


@pytest.mark.parametrize("module_name", SURFACES)
def test_all_resolves_and_a_package_exports_nothing_else(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    if not hasattr(module, "__path__"):
        return  # a plain module (h11_head) also holds what it uses itself
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(module.__all__) - {"__version__"}


def test_built_in_plugins_import_only_the_surface() -> None:
    surfaces = {name: set(importlib.import_module(name).__all__) for name in SURFACES}
    assert len(PLUGIN_SOURCES) >= 9
    offenders = []
    for path in PLUGIN_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("launcher"):
                names = {alias.name for alias in node.names}
                if node.module not in surfaces or not names <= surfaces[node.module]:
                    offenders.append(
                        f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import {names}"
                    )
            elif isinstance(node, ast.Import) and any(a.name.startswith("launcher") for a in node.names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


def test_the_plugin_guide_lists_every_name() -> None:
    guide = (REPO / "docs" / "plugins.md").read_text()
    for module_name in SURFACES:
        module = importlib.import_module(module_name)
        missing = [
            n for n in module.__all__ if n != "__version__" and f"from {module_name} import {n}`" not in guide
        ]
        assert not missing, (module_name, missing)


def test_importing_launcher_imports_no_server_master_or_worker() -> None:
    code = (
        "import sys, launcher\n"
        "heavy = {'asyncio', 'launcher.worker', 'launcher.master', 'launcher.observability.logs',"
        " 'gunicorn', 'hypercorn', 'granian', 'uvicorn'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "[]", out.stdout
