"""What is particular to the Uvicorn backend: its WORKER_CLASS values, what it refuses, which
worker count is single-process mode. Real processes on 127.0.0.1; config checks need none."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.conformance import BackendConformance
from launcher.testing.process import run_launcher, start_launcher

pytestmark = pytest.mark.slow


def env(app_dir: Path, **more: str) -> dict[str, str]:
    return {"SERVER_BACKEND": "uvicorn", "APP_DIR": str(app_dir), **more}


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    apps.install("hello", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [("WORKER_CLASS", "sync", "WORKER_CLASS"), ("HTTP2_CLEARTEXT", "true", "HTTP2_CLEARTEXT")],
)
def test_refused_in_one_line(hello: Path, variable: str, value: str, named: str) -> None:
    result = run_launcher(env(hello, **{variable: value}), ("check",), timeout=30)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_config_shows_nothing_unsupported(hello: Path) -> None:
    shown = run_launcher(env(hello), ("config", "--json"), timeout=30)
    data = json.loads(shown.stdout)
    assert (data["backend"], data["worker_class"], data["unsupported"]) == ("uvicorn", "uvloop", [])


def test_asyncio_worker_class_serves_with_the_request_limits(hello: Path) -> None:
    # asyncio + h11: the other protocol subclass of asgi_launcher_uvicorn.limits.
    more = {"WORKER_CLASS": "asyncio", "WEB_CONCURRENCY": "2", "LIMIT_REQUEST_FIELDS": "3"}
    with start_launcher(env(hello, **more)) as server:
        server.wait_ready("/", 30)
        server.wait_until(lambda: len(server.serving()) == 2, 20, "2 workers")
        fields = "".join(f"X-{n}: y\r\n" for n in range(4))
        received, closed = BackendConformance.exchange(
            server.port, f"GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n".encode()
        )
        assert (BackendConformance.statuses(received), closed) == ([431], True), received
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0


def test_a_computed_count_of_one_keeps_the_supervisor(hello: Path) -> None:
    # Only WEB_CONCURRENCY=1 set explicitly is single-process mode; MAX_WORKERS=1 gives one
    # supervised worker, which is replaced when it dies.
    with start_launcher(env(hello, MAX_WORKERS="1")) as server:
        server.wait_ready("/", 30)
        server.wait_until(lambda: len(server.serving()) == 1, 20, "1 worker")
        worker = server.serving()[0]
        assert worker != server.proc.pid
        os.kill(worker, signal.SIGKILL)
        server.wait_until(
            lambda: server.serving() not in ([], [worker]) and server.ok("/"), 30, "a replacement"
        )
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
