"""Single-process mode (``WEB_CONCURRENCY=1`` under the uvicorn backend), with real processes.

What the conformance kit cannot check without a master: that the launcher's process is the
only one and serves itself, and that TIMEOUT, MAX_REQUESTS and MAX_WORKER_MEMORY end it (for the
orchestrator to restart) instead of replacing a worker under it; and the signal table without
workers. Every launch is in its own process group, killed on the way out (``start_launcher``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.conformance import BLOCKING, SLOW_STARTED, json_lines
from launcher.testing.process import Launcher, start_launcher

pytestmark = pytest.mark.slow


def env(app_dir: Path, **more: str) -> dict[str, str]:
    return {"SERVER_BACKEND": "uvicorn", "APP_DIR": str(app_dir), "WEB_CONCURRENCY": "1", **more}


def serve(app_dir: Path, **more: str) -> Launcher:
    server = start_launcher(env(app_dir, **more))
    try:
        server.wait_ready("/", 30)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    apps.install("hello", tmp_path)
    return tmp_path


def in_flight(server: Launcher, path: str, timeout: float) -> dict[str, object]:
    result: dict[str, object] = {}

    def run() -> None:
        try:
            status, _, body = server.get(path, timeout=timeout)
            result["response"] = (status, body)
        except OSError as exc:
            result["response"] = exc
        result["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def test_one_process_serves_and_sigterm_drains_the_request_in_flight(hello: Path) -> None:
    with serve(hello, GRACEFUL_TIMEOUT="120") as server:
        # Exactly one process below the test (the init's place): the launcher, holding the socket.
        assert server.children() == [], server.children()
        assert server.listener_pids() == [server.proc.pid]
        assert int(server.get("/pid")[2]) == server.proc.pid  # the launcher's own process answers
        result = in_flight(server, "/slow?seconds=2", 15)
        server.wait_until(lambda: SLOW_STARTED in server.output(), 30, "the slow request in flight")
        sigterm = time.monotonic()
        server.signal(signal.SIGTERM)
        code = server.wait(30)
        took = time.monotonic() - sigterm
        result["thread"].join(15)  # type: ignore[attr-defined]
        output = server.output()
    assert result.get("response") == (200, b"slow done"), output[-3000:]
    assert result["at"] > sigterm  # type: ignore[operator]
    assert code == 0, output[-3000:]
    assert took < 30, f"{took:.1f}s"  # GRACEFUL_TIMEOUT is 120: not waited out
    assert "single-process mode" in output


def test_sigquit_stops_at_once(hello: Path) -> None:
    with serve(hello, GRACEFUL_TIMEOUT="120") as server:
        in_flight(server, "/slow?seconds=120", 130)
        server.wait_until(lambda: SLOW_STARTED in server.output(), 30, "the slow request in flight")
        sent = time.monotonic()
        server.signal(signal.SIGQUIT)
        code = server.wait(30)
        assert (code, time.monotonic() - sent < 30) == (0, True), server.output()[-3000:]


def test_a_failing_lifespan_startup_exits_non_zero(tmp_path: Path) -> None:
    apps.install("startup_raises", tmp_path)
    with start_launcher(env(tmp_path)) as server:
        code = server.wait(30)
        assert code == 3, server.output()[-3000:]
        assert server.children() == []


def test_timeout_exits_non_zero_with_one_line(hello: Path) -> None:
    with serve(hello, TIMEOUT="1", ACCESS_LOG="") as server:
        in_flight(server, "/block?seconds=120", 130)
        server.wait_until(lambda: BLOCKING.search(server.output()), 10, "the /block request in flight")
        blocked = time.monotonic()
        code = server.wait(30)
        took = time.monotonic() - blocked
        output = server.output()
    lines = [line for line in output.splitlines() if "TIMEOUT=1" in line]
    assert code == 3, output[-3000:]
    assert len(lines) == 1 and f"worker {server.proc.pid} timed out" in lines[0], lines
    assert 0.9 < took < 30, f"exited {took:.1f}s after the loop blocked"  # (blocked for 120 s)


def test_max_requests_drains_and_exits_0(hello: Path) -> None:
    with serve(hello, MAX_REQUESTS="3", ACCESS_LOG="") as server:
        # wait_ready's probe was the first request.
        answers = [server.get("/pid")[0] for _ in range(2)]
        code = server.wait(30)
        output = server.output()
    assert answers == [200, 200] and code == 0, output[-3000:]
    assert len([line for line in output.splitlines() if "MAX_REQUESTS=3" in line]) == 1, output[-3000:]


def test_max_worker_memory_drains_and_exits_0(hello: Path) -> None:
    with serve(hello, MAX_WORKER_MEMORY="60", ACCESS_LOG="") as server:
        status, _, body = server.get("/grow?mb=80", timeout=20)
        assert status == 200 and int(json.loads(body)["pid"]) == server.proc.pid
        code = server.wait(30)
        output = server.output()
    line = re.compile(
        rf"worker {server.proc.pid} uses ([\d.]+) MiB \((USS|RSS)\), over MAX_WORKER_MEMORY=60\b"
    )
    found = [m for m in map(line.search, output.splitlines()) if m]
    assert code == 0 and len(found) == 1 and float(found[0].group(1)) > 60, output[-3000:]


def test_signals_without_workers(hello: Path, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    with serve(hello, ACCESS_LOG=str(access)) as server:
        server.get("/first-line")
        server.wait_until(lambda: access.exists() and "/first-line" in access.read_text(), 30, "a line")
        access.rename(tmp_path / "access.log.1")
        server.signal(signal.SIGUSR1)
        server.wait_until(lambda: "got SIGUSR1" in server.output(), 30, "the SIGUSR1 line")
        # One process, no workers to tell.
        assert "got SIGUSR1: log files reopened\n" in server.output(), server.output()[-2000:]

        def reopened() -> bool:
            server.get("/second-line")
            return access.exists() and "/second-line" in access.read_text()

        server.wait_until(reopened, 30, "access lines in the new file")
        for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR2", "SIGWINCH"):
            server.signal(getattr(signal, name))
            server.wait_until(lambda name=name: f"got {name}: ignored" in server.output(), 10, name)
        assert server.ok("/pid") and server.proc.poll() is None
        assert server.signal(signal.SIGTERM) is None and server.wait(30) == 0
        output = server.output()
    for name in ("SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR2", "SIGWINCH"):
        assert output.count(f"got {name}") == 1, output[-3000:]


def test_json_logs_in_one_process(hello: Path) -> None:
    with serve(hello, LOG_FORMAT="json") as server:
        assert server.get("/log?single-json")[0] == 200
        assert server.get("/raise?single-json")[0] == 500
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        events = json_lines(server.output())
    assert [e["log.logger"] for e in events if e["message"] == "hello app log line single-json"] == ["hello"]
    raised = [e for e in events if "hello app raised single-json" in json.dumps(e)]
    assert len(raised) == 1 and "Traceback" in raised[0]["error.stack_trace"], raised
    assert any(e["log.logger"] == "uvicorn.error" for e in events)


def test_a_sigterm_dropped_in_a_finalizer_while_booting_still_stops_it(tmp_path: Path) -> None:
    """The app is imported in the launcher's own process here: a SIGTERM that lands while one of
    its finalizers runs is dropped by Python (``Exception ignored``); the server must still stop
    on it once its handlers are in place, instead of serving until killed."""
    apps.install("hello", tmp_path)
    main = tmp_path / "main.py"
    main.write_text(
        "import os as _os, signal as _signal\n"
        "class _Finalized:\n"
        "    def __del__(self):\n"
        "        if _os.getppid() == int(_os.environ['TEST_PID']):  # the launcher, not its app check\n"
        "            _os.kill(_os.getpid(), _signal.SIGTERM)\n"
        "            sum(range(1000))  # the handler runs here, inside the finalizer\n"
        "_Finalized()\n" + main.read_text()
    )
    with start_launcher(env(tmp_path, TEST_PID=str(os.getpid()), GRACEFUL_TIMEOUT="30")) as server:
        status = server.proc.wait(20)
        output = server.output()
    assert "Exception ignored" in output, output[-3000:]
    assert status == 0, output[-3000:]
