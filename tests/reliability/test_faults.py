"""Faults while serving, under every backend: signals under load, killed workers, broken apps."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from harness import Load, copy_demo, launcher

pytestmark = pytest.mark.slow

#: Seconds any wait for the launcher may take: a deadline a loaded machine cannot miss, not a
#: figure (the figures, printed at the end of the run, say how long things took).
DEADLINE = 30

CRASHING_APP = """
import asyncio, os

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Dies 0.3 s after every boot: a worker that keeps dying, not one that cannot boot.
                asyncio.get_running_loop().call_later(0.3, os._exit, 1)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""

# What Starlette and FastAPI do when a startup handler raises: report it, per the ASGI spec.
# (An app that merely raises on the lifespan scope is, by the spec, one without lifespan support.)
LIFESPAN_FAILS = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable at startup"})
        return
"""


def test_sigterm_under_load_answers_every_accepted_request(
    backend: str, tmp_path: Path, figures: list[str]
) -> None:
    app_dir = copy_demo(tmp_path / "app")
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(app_dir),
        "WEB_CONCURRENCY": "2",
        "GRACEFUL_TIMEOUT": "10",
    }
    with launcher({**env, "ACCESS_LOG": ""}) as server:
        load = Load(server.port, "/slow?seconds=0.2", clients=32, limit=60).start()
        # Under load: however slow the machine, more than 50 requests answered before the signal.
        server.wait_until(lambda: len(load.outcomes) > 60, DEADLINE, "60 requests answered")
        time.sleep(0.2)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.wait_exit(DEADLINE)
        stopped_after = time.monotonic() - signalled
        load.stop()
    # Sent at least 100 ms before the signal: the server had surely accepted it by then.
    accepted = [o for o in load.outcomes if o.sent < signalled - 0.1]
    failed = [o for o in accepted if o.status != 200]
    late = [o for o in load.outcomes if o.sent >= signalled - 0.1]
    figures.append(
        f"SIGTERM under load [{backend}]: {len(accepted) - len(failed)} accepted requests completed, "
        f"{len(failed)} failed; {sum(o.status == 200 for o in late)} around/after the signal completed, "
        f"{load.refused} refused after it; exit {code} after {stopped_after:.1f}s"
    )
    assert code == 0
    assert len(accepted) > 50
    assert not failed, [o.error for o in failed][:5]


def test_a_killed_worker_is_replaced_under_load(backend: str, tmp_path: Path, figures: list[str]) -> None:
    app_dir = copy_demo(tmp_path / "app")
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(app_dir), "WEB_CONCURRENCY": "2", "ACCESS_LOG": ""}
    with launcher(env) as server:
        server.wait_until(lambda: len(server.workers()) == 2, 15, "two workers")
        before = set(server.workers())
        load = Load(server.port, "/plaintext", clients=8, limit=60).start()
        time.sleep(1.0)
        killed_at = time.monotonic()
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)
        recovered = server.wait_until(
            lambda: len(server.workers()) == 2 and victim not in server.workers() and server.ok(),
            DEADLINE,
            "recovery",
        )
        time.sleep(0.5)
        load.stop()
        assert server.proc.poll() is None
    after_kill = [o for o in load.outcomes if o.sent >= killed_at]
    failed = [o for o in load.outcomes if o.status != 200]
    figures.append(
        f"worker SIGKILL under load [{backend}]: back to 2 workers and answering in {recovered:.2f}s; "
        f"{len(failed)} of {len(load.outcomes)} requests failed ({len(after_kill)} sent after the kill)"
    )
    assert sum(o.status == 200 for o in after_kill) > 0


# Each process that imports the app (the launcher's check, then every worker), or that runs its
# lifespan startup (workers only), leaves a marker, then takes a second: a SIGTERM sent meanwhile
# reaches workers that are still booting.
SLOW_BOOT_APP = """
import asyncio, os, time
from pathlib import Path

MARKERS = Path(os.environ["BOOT_MARKERS"])
PHASE = os.environ["BOOT_PHASE"]
if PHASE == "import":
    (MARKERS / f"import-{os.getpid()}").touch()
    time.sleep(1.0)

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if PHASE == "lifespan":
                    (MARKERS / f"lifespan-{os.getpid()}").touch()
                    await asyncio.sleep(1.0)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.mark.parametrize(("phase", "markers"), [("import", 3), ("lifespan", 2)])
def test_sigterm_while_workers_boot_stops_promptly_with_0(
    backend: str, tmp_path: Path, phase: str, markers: int, figures: list[str]
) -> None:
    """A container stopped while it starts must not hang until the graceful timeout (or SIGKILL)."""
    app_dir, marker_dir = tmp_path / "app", tmp_path / "markers"
    app_dir.mkdir()
    marker_dir.mkdir()
    (app_dir / "main.py").write_text(SLOW_BOOT_APP)
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(app_dir),
        "WEB_CONCURRENCY": "2",
        "GRACEFUL_TIMEOUT": str(4 * DEADLINE),
        "BOOT_MARKERS": str(marker_dir),
        "BOOT_PHASE": phase,
    }
    with launcher(env, ready=False) as server:
        server.wait_until(lambda: len(list(marker_dir.iterdir())) >= markers, DEADLINE, f"{markers} markers")
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # to the launcher alone, as a container runtime does
        code = server.wait_exit(DEADLINE)
        took = time.monotonic() - signalled
    figures.append(
        f"SIGTERM while workers {'import the app' if phase == 'import' else 'run lifespan startup'} [{backend}]: exit {code} after {took:.1f}s"
    )
    assert code == 0, server.output()[-2000:]
    assert took < DEADLINE  # GRACEFUL_TIMEOUT is 4 times that: nothing waited for it


@pytest.mark.parametrize(
    ("source", "what"), [(CRASHING_APP, "keeps dying"), (LIFESPAN_FAILS, "lifespan fails")]
)
def test_a_broken_app_stops_the_launcher_non_zero(
    backend: str, tmp_path: Path, source: str, what: str, figures: list[str]
) -> None:
    (tmp_path / "main.py").write_text(source)
    started = time.monotonic()
    with launcher(
        {"SERVER_BACKEND": backend, "APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2"}, ready=False
    ) as server:
        code = server.wait_exit(2 * DEADLINE)
        output = server.output()
    took = time.monotonic() - started
    figures.append(f"app that {what} [{backend}]: launcher exited {code} after {took:.1f}s")
    assert code not in (0, None), output[-2000:]
    # Neither app raises: any traceback would be the launcher's or the server's own.
    assert "Traceback" not in output, output[-3000:]


def test_max_requests_recycles_workers(backend: str, tmp_path: Path) -> None:
    import json

    from harness import request

    app_dir = copy_demo(tmp_path / "app")
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(app_dir), "WEB_CONCURRENCY": "2", "MAX_REQUESTS": "10"}
    with launcher({**env, "ACCESS_LOG": ""}) as server:
        pids: set[int] = set()
        deadline = time.monotonic() + 2 * DEADLINE
        while len(pids) < 4 and time.monotonic() < deadline:
            try:
                status, body = request(server.port, "/info", timeout=5)
            except OSError:
                continue  # a retiring worker may drop a connection; the next one is answered
            if status == 200:
                pids.add(json.loads(body)["pid"])
        assert len(pids) >= 4, f"workers were not recycled: {pids}"
        assert server.proc.poll() is None
