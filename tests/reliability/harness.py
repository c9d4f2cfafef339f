"""The conformance kit's process helpers, plus this repository's demo app and backends."""

from __future__ import annotations

import shutil
from pathlib import Path

from launcher.testing import BACKENDS  # noqa: F401 - every backend, for the backend fixture
from launcher.testing.process import (  # noqa: F401 - re-exported for the reliability tests
    Load,
    Outcome,
    Server,
    base_env,
    free_port,
    launcher,
    request,
    rss_kb,
    run_launcher,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo"


def copy_demo(dest: Path) -> Path:
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def backend_skip_reason(name: str) -> str | None:
    """Why a backend cannot be exercised here (plugin missing or broken), or None."""
    result = run_launcher({"SERVER_BACKEND": name, "APP_DIR": str(DEMO)})
    return None if result.returncode == 0 else f"backend {name} is not usable here: {result.stderr.strip()}"
