"""The shared backend conformance kit, run against the Uvicorn backend in both of its modes."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from launcher.testing.conformance import BackendConformance

pytestmark = pytest.mark.slow


class TestConformance(BackendConformance):
    """Supervised: the launcher's process is the master of forked Uvicorn workers.

    The kit runs its one-worker checks with ``WEB_CONCURRENCY=1``, which under this backend is
    single-process mode (``TestSingleProcessConformance``); here they get one supervised worker
    instead, as a computed count of 1 gives it (``MAX_WORKERS=1``), so every check of this class
    is of the supervisor.
    """

    backend = "uvicorn"
    serves_http2 = False  # Uvicorn speaks HTTP/1.1 only: HTTP2=true is exit 2

    def env(self, app_dir: Path, **more: str) -> dict[str, str]:
        env = super().env(app_dir, **more)
        if env.get("WEB_CONCURRENCY") == "1":
            del env["WEB_CONCURRENCY"]
            env["MAX_WORKERS"] = "1"
        return env


class TestSingleProcessConformance(BackendConformance):
    """``WEB_CONCURRENCY=1``: the app served in the launcher's own process.

    Every launch that does not ask for a worker count itself is single-process; the kit's few
    checks that ask for 2 (a failing lifespan startup, the operations listener's sums across
    workers) run supervised, as that setting asks.

    Switched off: what needs a master acting on separate workers. There is no worker to count
    (``supports_multiple_workers``), replace, restart on SIGHUP or leave behind, no worker whose
    OOM score is raised above a master's, and TIMEOUT, MAX_REQUESTS and MAX_WORKER_MEMORY end the
    process for the orchestrator to restart instead of replacing a worker under it: those are
    checked in ``test_single_process.py``, as are SIGUSR1 and the ignored signals.
    """

    backend = "uvicorn"
    serves_http2 = False
    extra_env: ClassVar[dict[str, str]] = {"WEB_CONCURRENCY": "1"}
    supports_multiple_workers = False
    supports_worker_replacement = False
    supports_timeout = False
    supports_max_requests = False
    supports_max_worker_memory = False
    supports_worker_oom_score = False
    supports_signal_table = False
    supports_orphan_exit = False
