"""The Hypercorn backend as users run it: real launcher, real workers, real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypercorn_helpers import Launcher, wait_for, write_app

pytestmark = pytest.mark.slow

Launch = Callable[..., Launcher]

# A raw ASGI app: /slow says when it started (a file), so a test can signal mid-request
# without guessing with sleeps.
SLOW_APP = """
import asyncio, os, pathlib

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        pathlib.Path(os.environ["SLOW_MARKER"]).write_text(str(os.getpid()))
        await asyncio.sleep(float(os.environ.get("SLOW_SECONDS", "2")))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"done"})
"""


def test_serves_the_demo_app_with_the_requested_workers(launch: Launch) -> None:
    server = launch(workers=2, env={"LOG_LEVEL": "warning"})
    server.wait_ready()
    status, body = server.request("/")
    assert (status, body) == (200, b'{"message":"Hello World!"}')
    assert len(server.children()) == 2
    # Both workers serve: new connections are spread over the shared socket.
    pids = wait_for(
        lambda: len(seen := {server.info()["pid"] for _ in range(20)}) == 2 and seen,
        15,
        "both workers to answer",
    )
    assert pids == server.children()
    # LOG_LEVEL=warning does not silence the access log: ACCESS_LOG alone decides.
    wait_for(lambda: '"GET /info HTTP/1.1" 200' in server.stdout(), 30, "an access log line")
    assert "Running on" not in server.stderr()  # Hypercorn's INFO lines obey LOG_LEVEL


def test_killed_worker_is_replaced_and_service_keeps_answering(launch: Launch) -> None:
    server = launch(workers=2, env={"ACCESS_LOG": ""})
    server.wait_ready()
    before = wait_for(lambda: len(c := server.children()) == 2 and c, 10, "two workers")
    victim = server.info()["pid"]
    os.kill(victim, signal.SIGKILL)
    after = wait_for(
        lambda: len(c := server.children()) == 2 and victim not in c and c, 15, "a replacement worker"
    )
    assert len(after - before) == 1
    server.wait_ready()
    assert all(server.request("/")[0] == 200 for _ in range(10))
    assert f"worker {victim} died (killed by SIGKILL); starting a replacement" in server.stderr()
    assert server.proc.poll() is None
    assert "GET /" not in server.stdout()  # ACCESS_LOG empty: access log off


def test_app_failing_in_workers_exits_non_zero_fast(launch: Launch, tmp_path: Path) -> None:
    # Imports fine in the launcher's preflight (main process), raises in every spawned worker.
    app_dir = write_app(
        tmp_path / "broken",
        "main",
        "import multiprocessing\n"
        "if multiprocessing.current_process().name != 'MainProcess':\n"
        "    raise RuntimeError('no database in the worker')\n"
        "async def app(scope, receive, send):\n"
        "    pass\n",
    )
    server = launch(workers=2, app_dir=app_dir)
    started = time.monotonic()
    status = server.wait_exit(30)
    assert status == 3, server.stderr()
    assert time.monotonic() - started < 30
    err = server.stderr()
    assert "RuntimeError: no database in the worker" in err
    assert "workers cannot boot: giving up (exit 3)" in err


def test_lifespan_startup_failure_is_a_failed_boot(launch: Launch, tmp_path: Path) -> None:
    app_dir = write_app(
        tmp_path / "nostart",
        "main",
        "async def app(scope, receive, send):\n"
        "    if scope['type'] == 'lifespan':\n"
        "        await receive()\n"
        "        await send({'type': 'lifespan.startup.failed', 'message': 'cache unreachable'})\n",
    )
    server = launch(app_dir=app_dir)
    assert server.wait_exit(30) == 3, server.stderr()
    assert "failed to boot" in server.stderr()


def _slow_request(server: Launcher, results: list[Any]) -> threading.Thread:
    def go() -> None:
        try:
            results.append(server.request("/slow", timeout=30))
        except OSError as exc:
            results.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_sigterm_drains_the_request_in_flight_and_exits_0(launch: Launch, tmp_path: Path) -> None:
    marker = tmp_path / "slow-started"
    app_dir = write_app(tmp_path / "slow", "main", SLOW_APP)
    server = launch(app_dir=app_dir, env={"SLOW_MARKER": str(marker), "SLOW_SECONDS": "2"})
    server.wait_ready()
    results: list[Any] = []
    thread = _slow_request(server, results)
    wait_for(marker.exists, 30, "the slow request to reach the app")
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0, server.stderr()
    thread.join(5)
    assert results == [(200, b"done")]
    assert not server.children()


def test_request_longer_than_graceful_timeout_is_cut_and_exit_is_0(launch: Launch, tmp_path: Path) -> None:
    marker = tmp_path / "slow-started"
    app_dir = write_app(tmp_path / "slow", "main", SLOW_APP)
    server = launch(
        app_dir=app_dir, env={"SLOW_MARKER": str(marker), "SLOW_SECONDS": "120", "GRACEFUL_TIMEOUT": "1"}
    )
    server.wait_ready()
    results: list[Any] = []
    _slow_request(server, results)
    wait_for(marker.exists, 30, "the slow request to reach the app")
    sent = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0, server.stderr()
    assert time.monotonic() - sent < 30  # cut after GRACEFUL_TIMEOUT, not the request's 120 s
    wait_for(lambda: results, 30, "the cut request to fail")
    assert results[0] != (200, b"done")


@pytest.mark.parametrize(
    "signals", [[signal.SIGQUIT], [signal.SIGTERM, signal.SIGINT]], ids=["SIGQUIT", "second-signal"]
)
def test_immediate_stop(launch: Launch, tmp_path: Path, signals: list[signal.Signals]) -> None:
    marker = tmp_path / "slow-started"
    app_dir = write_app(tmp_path / "slow", "main", SLOW_APP)
    server = launch(
        app_dir=app_dir, env={"SLOW_MARKER": str(marker), "SLOW_SECONDS": "120", "GRACEFUL_TIMEOUT": "120"}
    )
    server.wait_ready()
    _slow_request(server, [])
    wait_for(marker.exists, 30, "the slow request to reach the app")
    sent = time.monotonic()
    for signum in signals:
        server.proc.send_signal(signum)
        if signum == signal.SIGTERM:  # the second signal must find the shutdown already begun
            wait_for(lambda: "got SIGTERM: stopping;" in server.stderr(), 30, "the graceful stop to begin")
    assert server.wait_exit(30) == 0, server.stderr()
    assert time.monotonic() - sent < 30  # GRACEFUL_TIMEOUT is 120: it did not wait for it


def test_workers_exit_when_the_supervisor_is_killed(launch: Launch) -> None:
    server = launch()
    server.wait_ready()
    workers = server.children()
    assert workers
    server.proc.kill()
    server.proc.wait(30)

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in workers)

    wait_for(gone, 30, "orphaned workers to exit")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def test_max_requests_restarts_are_not_crashes(launch: Launch) -> None:
    # Each retirement is a clean exit after booting: far more of them than the boot-failure
    # limit (3) must leave the launcher running.
    server = launch(env={"MAX_REQUESTS": "1"})
    server.wait_ready()
    pids = set()
    for _ in range(6):
        pids.add(wait_for(lambda: _pid_or_none(server), 30, "a worker to answer"))
    # MAX_REQUESTS=1: workers retire after each request (a connection accepted while one
    # retires is still served by it, so not every request meets a fresh worker); without
    # recycling the 2 workers would answer all 6.
    assert len(pids) >= 3
    assert server.proc.poll() is None
    wait_for(
        lambda: server.stderr().count("retired after MAX_REQUESTS=1") >= 3 or None,
        5,
        "the retirements logged",
    )
    assert "failed to boot" not in server.stderr()


def _pid_or_none(server: Launcher) -> int | None:
    try:
        pid: int = server.info()["pid"]
        return pid
    except (OSError, AssertionError):
        return None


def test_proxy_headers_only_from_trusted_peers(launch: Launch) -> None:
    # The server sees 127.0.0.2 as the peer when we connect from it: trusted; 127.0.0.1 is not.
    server = launch(env={"FORWARDED_ALLOW_IPS": "127.0.0.2"})
    server.wait_ready()
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    trusted = server.info(headers=headers, source="127.0.0.2")
    assert (trusted["client"], trusted["scheme"]) == ("203.0.113.7", "https")
    untrusted = server.info(headers=headers, source="127.0.0.1")
    assert (untrusted["client"], untrusted["scheme"]) == ("127.0.0.1", "http")
