"""The listening socket under every backend: nobody else can take a share of it, and a moment
with no worker alive queues connections instead of refusing them."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.process import launcher, request

pytestmark = pytest.mark.slow


def test_another_process_cannot_bind_beside_the_server(backend: str, tmp_path: Path) -> None:
    apps.install("hello", tmp_path)
    with launcher({"SERVER_BACKEND": backend, "APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2"}) as server:
        intruder = socket.socket()
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            try:
                intruder.bind(("127.0.0.1", server.port))
            except OSError:
                return  # refused: the server's socket does not share its port
            intruder.listen()
            raise AssertionError(f"a second process listens on {backend}'s port beside it (SO_REUSEPORT)")
        finally:
            intruder.close()


def test_with_no_worker_alive_connections_wait_for_the_replacement(backend: str, tmp_path: Path) -> None:
    apps.install("hello", tmp_path)
    # One worker below a master (under uvicorn WEB_CONCURRENCY=1 is single-process mode, with no
    # worker to lose; a computed count of 1 keeps the supervisor).
    one = {"MAX_WORKERS": "1"} if backend == "uvicorn" else {"WEB_CONCURRENCY": "1"}
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(tmp_path), **one}
    with launcher(env) as server:
        server.wait_until(lambda: len(server.serving()) == 1, 20, "1 worker")
        (worker,) = server.serving()
        result: dict[str, object] = {}

        def ask() -> None:
            try:
                result["answer"] = request(server.port, "/pid", timeout=20)
            except OSError as exc:
                result["answer"] = exc

        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and worker in server.serving():
            time.sleep(0.005)
        # The only worker is gone and its replacement is still booting: the connection must be
        # queued in the master's socket, not refused.
        thread = threading.Thread(target=ask)
        thread.start()
        thread.join(25)
        answer = result.get("answer")
        assert isinstance(answer, tuple) and answer[0] == 200, answer
        assert int(answer[1]) != worker
