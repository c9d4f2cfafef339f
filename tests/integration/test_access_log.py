"""One access line under every backend, written by the launcher's pipeline: the same text once
time, pid, port and duration are masked; Gunicorn's atoms; JSON; nothing lost at SIGTERM."""

from __future__ import annotations

import http.client
import json
import re
import signal
from pathlib import Path

import pytest

from launcher.testing import BACKENDS, apps
from launcher.testing.process import Load, launcher

pytestmark = pytest.mark.slow

_reference: dict[str, str] = {}


def serve_one(backend: str, tmp_path: Path, **env: str) -> str:
    apps.install("hello", tmp_path)
    full = {"SERVER_BACKEND": backend, "APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "1", **env}
    with launcher(full) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        headers = {"User-Agent": "probe/1.0", "Referer": "http://example.test/", "X-Request-ID": "req-42"}
        conn.request("GET", "/headers?x=1&y=two", headers=headers)
        conn.getresponse().read()
        conn.close()
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        return server.output()


def access_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "req-42" in line]


def masked(line: str) -> str:
    line = re.sub(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]", "[TIME]", line)
    line = re.sub(r" \d+\.\d{3}ms ", " Dms ", line)
    return re.sub(r"pid=\d+", "pid=PID", line)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_text_line_is_the_same_under_every_backend(backend: str, tmp_path: Path) -> None:
    lines = access_lines(serve_one(backend, tmp_path))
    assert len(lines) == 1, lines
    line = masked(lines[0])
    assert line == (
        '127.0.0.1 - - [TIME] "GET /headers?x=1&y=two HTTP/1.1" 200 64 "http://example.test/" '
        '"probe/1.0" Dms pid=PID rid=req-42'
    ), lines[0]
    _reference.setdefault("line", line)
    assert line == _reference["line"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_access_log_format_with_several_atoms(backend: str, tmp_path: Path) -> None:
    layout = "%(m)s %(U)s q=%(q)s %(s)s %(B)sB %({x-request-id}i)s %({content-type}o)s %(H)s"
    lines = access_lines(serve_one(backend, tmp_path, ACCESS_LOG_FORMAT=layout))
    assert lines == ["GET /headers q=x=1&y=two 200 64B req-42 application/json HTTP/1.1"], lines


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_access_lines(backend: str, tmp_path: Path) -> None:
    lines = access_lines(serve_one(backend, tmp_path, LOG_FORMAT="json"))
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert (event["http.request.method"], event["url.path"], event["url.query"]) == (
        "GET",
        "/headers",
        "x=1&y=two",
    )
    assert event["http.response.status_code"] == 200 and event["http.request.id"] == "req-42"
    assert isinstance(event["client.port"], int) and event["event.duration"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_access_line_is_lost_at_sigterm_under_load(backend: str, tmp_path: Path) -> None:
    apps.install("hello", tmp_path)
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(tmp_path),
        "WEB_CONCURRENCY": "2",
        "GRACEFUL_TIMEOUT": "20",
    }
    with launcher(env) as server:
        load = Load(server.port, "/pid", clients=8, limit=60).start()
        # Under load, however slow the machine: more than 100 answered before the signal.
        server.wait_until(lambda: len(load.outcomes) > 100, 30, "100 requests answered")
        server.signal(signal.SIGTERM)
        code = server.wait(30)
        load.stop()
        answered = sum(1 for o in load.outcomes if o.status == 200)
        logged = sum(1 for line in server.output().splitlines() if '"GET /pid HTTP/1.1" 200' in line)
    assert code == 0
    assert answered > 100 and logged == answered, (answered, logged)
