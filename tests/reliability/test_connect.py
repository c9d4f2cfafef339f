"""CONNECT never reaches the app and never costs a traceback, under every backend."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.process import launcher

pytestmark = pytest.mark.slow


def test_connect_is_answered_400_without_a_traceback(backend: str, tmp_path: Path) -> None:
    apps.install("hello", tmp_path)
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "1"}
    with launcher(env) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 400"), head
        assert server.ok("/pid")  # the worker serves on
        server.signal(15)
        assert server.wait(30) == 0
        assert "Traceback" not in server.output(), server.output()[-3000:]
