"""The Granian backend: what it maps, what it refuses, and that it serves the demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import uvloop

from asgi_launcher_granian.app import stop_signals
from launcher.testing.process import free_port, run_launcher
from launcher.testing.process import launcher as serving

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "demo"


def launcher(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_launcher({"APP_DIR": str(DEMO), "SERVER_BACKEND": "granian", **env}, args)


def test_granian_honours_every_variable_of_the_contract() -> None:
    # TIMEOUT, MAX_REQUESTS and MAX_REQUESTS_JITTER come from the shared pipeline and supervision.
    data = json.loads(launcher("config", "--json", TIMEOUT="5", MAX_REQUESTS="100").stdout)
    assert data["backend"] == "granian" and data["worker_class"] == "auto"
    assert data["unsupported"] == []
    assert (data["timeout"], data["max_requests"]) == (5, 100)
    assert "[not used by granian]" not in launcher("config").stdout


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"BIND": "127.0.0.1:8001,127.0.0.1:8002"}, "BIND="),
        ({"WORKER_CLASS": "gevent"}, "WORKER_CLASS='gevent'"),
    ],
)
def test_what_granian_cannot_serve_is_exit_2(env: dict[str, str], fragment: str) -> None:
    result = launcher("run", **env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


def test_serves_the_demo_with_access_log_to_a_file(tmp_path: Path) -> None:
    port = free_port()
    access = tmp_path / "access.log"
    env = {
        **os.environ,
        "SERVER_BACKEND": "granian",
        "APP_DIR": str(DEMO),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "ACCESS_LOG": str(access),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        body = b""
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert json.loads(body) == {"message": "Hello, World!"}
        deadline = time.monotonic() + 5
        while "/json" not in (access.read_text() if access.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "/json" in access.read_text()
    finally:
        os.killpg(proc.pid, 15)
        assert proc.wait(30) == 0


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_a_sigterm_between_two_runs_of_the_worker_loop_still_stops_it(loop_kind: str) -> None:
    # A Granian worker runs its loop for lifespan startup, starts its Rust server, then runs the
    # loop again until stopped. Under uvloop a SIGTERM in between was lost through
    # loop.add_signal_handler: the worker served on until the master killed it.
    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    stopped: list[str] = []
    try:
        stop_signals(loop, lambda: stopped.append("stop"))
        loop.run_until_complete(asyncio.sleep(0))  # the first run (lifespan startup)
        os.kill(os.getpid(), signal.SIGTERM)  # between the runs
        time.sleep(0.05)
        assert not stopped  # not yet: it is the loop's next run that calls stop

        loop.run_until_complete(asyncio.wait_for(serve_until(stopped, 1), 5))
        assert stopped == ["stop"]
        # And while the loop runs, as before.
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        loop.run_until_complete(asyncio.wait_for(serve_until(stopped, 2), 5))
        assert stopped == ["stop", "stop"]
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        loop.close()


async def serve_until(seen: list[str], count: int) -> None:
    """A serving run of the loop, until ``seen`` holds ``count`` entries."""
    while len(seen) < count:
        await asyncio.sleep(0.01)


def test_workers_are_forked_whatever_multiprocessing_defaults_to(tmp_path: Path) -> None:
    """Python 3.14 made forkserver multiprocessing's default start method on Linux, and Granian
    then spawns its workers (an interpreter each, the launcher and the server imported again per
    worker). The plugin forks on every version, as Gunicorn's and Uvicorn's masters do: here the
    launcher's process starts with forkserver as its default, as on 3.14, whatever runs the test."""
    (tmp_path / "sitecustomize.py").write_text(
        "import multiprocessing\nmultiprocessing.set_start_method('forkserver')\n"
    )
    env = {
        "APP_DIR": str(DEMO),
        "SERVER_BACKEND": "granian",
        "WEB_CONCURRENCY": "2",
        "PYTHONPATH": str(tmp_path),
    }
    with serving(env) as server:
        server.wait_until(lambda: len(server.workers()) == 2, 30, "two workers")
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in server.workers()]
        assert all(c.split(b"\0")[1:3] == [b"-m", b"launcher"] for c in commands), commands
        assert server.get("/json")[0] == 200


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_a_signal_landing_inside_the_main_loops_own_wait_is_handled(signum: int) -> None:
    """Granian's handlers set the main loop's event, and a handler runs in the main thread while
    that thread may hold the event's lock (inside its own ``wait()`` or ``clear()``): on
    ``threading.Event``'s plain lock the master then waited for ever (seen once in 1,000 stops
    after a TIMEOUT kill)."""
    handler = {signal.SIGHUP: "signal_handler_reload"}.get(signum, "signal_handler_interrupt")
    code = (
        "import os, signal\n"
        "from granian.constants import Interfaces\n"
        "from asgi_launcher_granian.server import LauncherGranian\n"
        "server = LauncherGranian('main:app', interface=Interfaces.ASGI)\n"
        f"signal.signal({int(signum)}, server.{handler})\n"
        "with server.main_loop_interrupt._cond:  # where the loop's wait() and clear() are\n"
        f"    os.kill(os.getpid(), {int(signum)})\n"
        "    sum(range(1000))  # the handler runs here\n"
        "print(server.main_loop_interrupt.wait(5), server.interrupt_signal or server.reload_signal)\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the handler waited for a lock its own thread held")
    assert done.stdout == "True True\n", done.stderr
