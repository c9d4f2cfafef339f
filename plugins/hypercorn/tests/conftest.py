"""Fixtures for the Hypercorn plugin's tests; the helpers live in ``hypercorn_helpers``.

Each launcher runs in its own session (process group) so teardown can kill it and every
worker it spawned, whatever state the test left them in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from launcher.procfs import group_exists

sys.path.insert(0, str(Path(__file__).parent))  # --import-mode=importlib: make the helpers importable

from hypercorn_helpers import DEMO, Launcher, free_port


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Launcher]]:
    started: list[Launcher] = []

    def start(env: Mapping[str, str] | None = None, app_dir: Path = DEMO, workers: int = 1) -> Launcher:
        port = free_port()
        full = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        full.update(
            {
                "SERVER_BACKEND": "hypercorn",
                "APP_DIR": str(app_dir),
                "BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": str(workers),
                "GRACEFUL_TIMEOUT": "10",
                "PYTHONUNBUFFERED": "1",
            }
        )
        full.update(env or {})
        n = len(started)
        out, err = tmp_path / f"launcher{n}.out", tmp_path / f"launcher{n}.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [sys.executable, "-m", "launcher"],
                env=full,
                stdout=o,
                stderr=e,
                cwd=tmp_path,
                start_new_session=True,
            )
        launcher = Launcher(proc, port, out, err)
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        if launcher.proc.returncode is None or group_exists(launcher.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(launcher.proc.pid, signal.SIGKILL)
        launcher.proc.wait(10)
