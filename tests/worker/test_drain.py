"""A worker's gentle stop: when it drains, and that the drain waits for its connections."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

from launcher import Backend, statedir
from launcher.config.resolve import resolve
from launcher.worker.bootstrap import WorkerContext
from launcher.worker.pipeline import build


async def app(scope: Any, receive: Any, send: Any) -> None:
    pass


def worker_app(tmp_path: Path, port: int, **env: str) -> Any:
    (tmp_path / "main.py").write_text("app = None\n")
    config = resolve(
        {"APP_DIR": str(tmp_path), "ACCESS_LOG": "", "BIND": f"127.0.0.1:{port}", **env}, Backend
    )
    return build(WorkerContext(config, str(tmp_path), None), retire=lambda: None, app=app)


def test_the_stop_is_gentle_unless_the_master_stops_without_a_delay(tmp_path: Path) -> None:
    built = worker_app(tmp_path, 8000)
    assert built.gentle()  # retiring: SIGHUP, MAX_REQUESTS, MAX_WORKER_MEMORY
    (tmp_path / statedir.STOP_NOTICE).touch()
    assert not built.gentle()  # SIGTERM without SHUTDOWN_DELAY: prompt
    (tmp_path / statedir.SHUTDOWN_NOTICE).touch()
    assert built.gentle()  # after SHUTDOWN_DELAY


def test_the_drain_closes_responses_stops_accepting_and_waits_for_the_connections(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    built = worker_app(tmp_path, port, GRACEFUL_TIMEOUT="30")
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = server.accept()
    stopped: list[bool] = []

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, served.close)  # the connection ends after its next response
        started = time.monotonic()
        await built.drain(stop_accepting=lambda: stopped.append(True))
        return time.monotonic() - started

    with server, client:
        took = asyncio.run(scenario())
    assert stopped == [True] and built.retirement.closing
    assert 0.4 < took < 10, f"the drain returned after {took:.2f}s; the connection closed after 0.5s"
