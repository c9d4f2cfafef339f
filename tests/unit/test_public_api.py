"""The plugin surface is what ``launcher.__all__`` says: the built-in plugins use nothing else,
the plugin guide lists all of it, and importing ``launcher`` stays cheap."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import launcher

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SOURCES = sorted(REPO.glob("plugins/*/asgi_launcher_*/*.py"))

SURFACE = {
    "ENTRY_POINT_GROUP",
    "EXIT_CONFIG",
    "EXIT_WORKERS_FAILING",
    "Backend",
    "Config",
    "ConfigError",
    "FileSettings",
    "HeadLimits",
    "memory_over",
    "ServerTraits",
    "Supervision",
    "WorkerApp",
    "WorkerProcess",
    "WorkerSupervisor",
    "__version__",
    "accept_stop_signals",
    "build_worker_app",
    "configure_logging",
    "describe_exit",
    "exit_code",
    "forking",
    "import_app",
    "launcher_line",
    "master_log",
    "origin_form",
    "parse_address",
    "parse_bind_address",
    "parse_setting",
}


def test_all_is_the_documented_surface_and_every_name_resolves() -> None:
    assert set(launcher.__all__) == SURFACE
    for name in launcher.__all__:
        assert getattr(launcher, name) is not None, name


def test_built_in_plugins_import_only_the_surface() -> None:
    assert len(PLUGIN_SOURCES) >= 9
    offenders = []
    for path in PLUGIN_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("launcher"):
                names = {alias.name for alias in node.names}
                if node.module != "launcher" or not names <= SURFACE:
                    offenders.append(
                        f"{path.relative_to(REPO)}:{node.lineno} from {node.module} import {names}"
                    )
            elif isinstance(node, ast.Import) and any(a.name.startswith("launcher") for a in node.names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


def test_the_plugin_guide_lists_every_name() -> None:
    guide = (REPO / "README.md").read_text().split("## Writing a backend plugin", 1)[1]
    missing = [name for name in SURFACE - {"__version__"} if f"`{name}" not in guide]
    assert not missing, missing


def test_importing_launcher_imports_no_server_and_not_the_pipeline() -> None:
    code = (
        "import sys, launcher\n"
        "heavy = {'asyncio', 'launcher.worker.pipeline', 'launcher.master.policy', 'gunicorn', 'hypercorn', 'granian'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "[]", out.stdout
