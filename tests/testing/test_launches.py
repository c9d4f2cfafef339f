"""The kit's launch helper (``launcher.testing.conformance.Launches``) serves the launcher it
started, not whatever answers on the port chosen for it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.testing import DEFAULT_BACKEND, apps, process
from launcher.testing.conformance import Launches

pytestmark = pytest.mark.slow


class Kit(Launches):
    backend = DEFAULT_BACKEND


class NotTheLauncher(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not the launcher")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[int]:
    """Another process's server (a thread here) on a port: what took the port chosen for a launch."""
    server = http.server.HTTPServer(("127.0.0.1", 0), NotTheLauncher)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_taken_between_choosing_and_binding_it_is_not_served_as_the_launchers(
    other_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = iter([other_server])
    free_port = process.free_port
    monkeypatch.setattr(process, "free_port", lambda: next(chosen, None) or free_port())
    apps.install("hello", tmp_path)
    with Kit().serve(tmp_path, WEB_CONCURRENCY="1") as server:
        assert server.port != other_server
        assert server.listener_pids(), "the launcher holds no listening socket on its port"
        assert server.get("/")[2] != b"not the launcher"
