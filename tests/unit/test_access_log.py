"""The access line: Gunicorn's atoms, the JSON keys, and a writer that loses nothing at exit."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from launcher.errors import ConfigError
from launcher.observability.access_log import (
    ATOMIC_WRITE,
    BATCH,
    DEFAULT_FORMAT,
    AccessLog,
    Entry,
    Record,
    Writer,
    json_formatter,
    parse_format,
    text_formatter,
)


def scope(**more: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/items",
        "raw_path": b"/items",
        "query_string": b"page=2",
        "http_version": "1.1",
        "client": ("10.0.0.7", 5555),
        "headers": [(b"user-agent", b"curl/8"), (b"referer", b"http://r/"), (b"x-request-id", b"rid-1")],
        **more,
    }


def record(**more: Any) -> Record:
    r = Record(scope(**more), 1764620205.25)
    r.status, r.bytes, r.duration = 200, 27, 0.0125
    r.response_headers = [(b"content-type", b"application/json")]
    return r


def test_the_default_lines_loop_writes_what_the_line_formatter_writes() -> None:
    """The Writer formats the default layout a batch at a time in its own loop: the same lines."""
    fmt = text_formatter(DEFAULT_FORMAT)
    started = time.perf_counter()
    entries: list[Entry] = [
        (scope(), started, 200, 27, 0.0125, ()),
        (scope(query_string=b"", client=None, headers=[]), started + 1.5, 404, 0, 0.0001, ()),
        (
            scope(raw_path=None, path="/\u00e9", headers=[(b"User-Agent", b"ua \xe9")]),
            started,
            500,
            3,
            2.0,
            (),
        ),
        (scope(type="websocket", http_version="2"), started, 101, 10, 0.5, ()),
    ]
    offset = time.time() - time.perf_counter()
    batch = getattr(fmt, "batch")(entries, offset)  # noqa: B009 - what Writer.flush looks up
    expected = [fmt(Record(s, t + offset, st, b, d, h)) for s, t, st, b, d, h in entries]
    assert batch == expected and len(set(batch)) == 4


def test_the_default_line_is_combined_plus_duration_pid_and_request_id() -> None:
    line = text_formatter(DEFAULT_FORMAT)(record())
    head, _, tail = line.partition(" [")
    assert head == "10.0.0.7 - -"
    assert tail.split("] ", 1)[1] == (
        f'"GET /items?page=2 HTTP/1.1" 200 27 "http://r/" "curl/8" 12.500ms pid={os.getpid()} rid=rid-1'
    )


def test_gunicorn_atoms() -> None:
    layout = "%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(D)s|%(T)s|%(L)s|%({content-type}o)s|%({x-missing}i)s"
    assert (
        text_formatter(layout)(record())
        == "GET|/items|page=2|HTTP/1.1|200|27|12500|0|0.012500|application/json|-"
    )
    empty = record()
    empty.bytes = 0
    assert text_formatter("%(b)s %(B)s")(empty) == "- 0"


@pytest.mark.parametrize("layout", ["%(h)s %(zz)s", "%(h)s %(Q)s", "no atoms at all"])
def test_unknown_atoms_are_a_config_error_naming_the_variable(layout: str) -> None:
    with pytest.raises(ConfigError, match="ACCESS_LOG_FORMAT="):
        parse_format(layout)
    assert parse_format(" %(h)s %({x-request-id}i)s ") == "%(h)s %({x-request-id}i)s"


def test_json_lines_use_ecs_names() -> None:
    event = json.loads(json_formatter()(record()))
    assert event["http.request.method"] == "GET" and event["url.path"] == "/items"
    assert event["url.query"] == "page=2" and event["http.response.status_code"] == 200
    assert event["client.address"] == "10.0.0.7" and event["client.port"] == 5555
    assert event["event.duration"] == 12_500_000 and event["http.response.body.bytes"] == 27
    assert event["user_agent.original"] == "curl/8" and event["http.request.id"] == "rid-1"
    assert event["@timestamp"].endswith("Z") and event["process.pid"] == os.getpid()


@pytest.mark.parametrize("char", ["x", "\u00e9"])  # one byte, and two: the buffer counts characters
def test_writes_are_whole_lines_of_at_most_a_pipes_atomic_size(tmp_path: Path, char: str) -> None:
    target = tmp_path / "access.log"
    writer = Writer(str(target), text_formatter("%(U)s"))
    writes: list[bytes] = []
    writer._write = writes.append  # type: ignore[method-assign]  # observe the write(2) calls
    for n in range(500):
        writer.add(({"type": "http", "path": f"line {n:04d} " + char * 80}, 0.0, 0, 0, 0.0, ()))
    writer.flush()
    assert all(len(w) <= ATOMIC_WRITE and w.endswith(b"\n") for w in writes)
    assert len(writes) >= 500 * (11 + 80 * len(char.encode())) // ATOMIC_WRITE
    assert b"".join(writes).decode().splitlines() == [f"line {n:04d} " + char * 80 for n in range(500)]


@pytest.mark.parametrize("ending", ["sys.exit(0)", "raise RuntimeError('boom')", "multiprocessing"])
def test_no_line_is_lost_at_exit(tmp_path: Path, ending: str) -> None:
    """Records still waiting to be formatted and written reach the file, however the process ends."""
    target = tmp_path / "access.log"
    body = f"""
import sys, multiprocessing
from launcher.observability.access_log import Record, Writer, text_formatter
def work():
    w = Writer({str(target)!r}, text_formatter("%(U)s"))
    for n in range(3):
        w.add(({{"type": "http", "path": f"line {{n}}"}}, 0.0, 0, 0, 0.0, ()))
    for n in range(3):
        w.add(({{"type": "http", "path": f"/record{{n}}"}}, 0.0, 0, 0, 0.0, ()))
    {ending if ending != "multiprocessing" else "pass"}
if {ending == "multiprocessing"!r}:
    p = multiprocessing.get_context("fork").Process(target=work); p.start(); p.join()
else:
    work()
"""
    subprocess.run([sys.executable, "-c", body], capture_output=True, timeout=30)
    expected = ["line 0", "line 1", "line 2", "/record0", "/record1", "/record2"]
    assert target.read_text().splitlines() == expected


def test_records_are_formatted_and_written_a_batch_at_a_time(tmp_path: Path) -> None:
    formatted: list[str] = []

    def format_line(r: Record) -> str:
        formatted.append(r.scope["path"])
        return r.scope["path"]

    writer = Writer(str(tmp_path / "access.log"), format_line)
    writes: list[bytes] = []
    writer._write = writes.append  # type: ignore[method-assign]
    for n in range(BATCH - 1):
        writer.add(({"type": "http", "path": f"/{n}"}, 0.0, 0, 0, 0.0, ()))
    assert formatted == [] and writes == []  # nothing formatted per request
    writer.add(({"type": "http", "path": "/last"}, 0.0, 0, 0, 0.0, ()))
    assert len(formatted) == BATCH and len(writes) == 1
    assert writes[0].decode().splitlines() == [*(f"/{n}" for n in range(BATCH - 1)), "/last"]


def test_the_layer_records_status_bytes_and_an_app_that_raised(tmp_path: Path) -> None:
    lines: list[str] = []

    class Collect(Writer):
        def __init__(self) -> None:
            self.format_line = text_formatter("%(s)s %(B)s %(U)s")

        def add(self, entry: Entry) -> None:
            scope, _, status, size, duration, headers = entry
            lines.append(self.format_line(Record(scope, 0.0, status, size, duration, headers)))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"de"})

    layer = AccessLog(app, Collect())

    async def sink(message: Any) -> None:
        pass

    asyncio.run(layer(scope(), None, sink))
    with pytest.raises(RuntimeError):
        asyncio.run(layer(scope(path="/boom", raw_path=b"/boom"), None, sink))
    assert lines == ["201 5 /items", "500 0 /boom"]


def _reference_event(r: Record) -> str:
    """What the JSON line must be: ``json.dumps`` of the documented keys, the empty ones left out."""
    headers = dict((k.decode(), v.decode("latin1")) for k, v in r.scope.get("headers", ()))
    address, port = r.client()
    query = r.scope.get("query_string", b"").decode("latin1")
    wall = r.wall
    event: dict[str, Any] = {
        "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z",
        "log.level": "info",
        "log.logger": "asgi_launcher.access",
        "event.dataset": "asgi.access",
        "message": f"{r.method()} {r.target()} {r.protocol()} {r.status}",
        "client.address": address,
        "client.port": port,
        "http.request.method": r.method(),
        "url.path": r.scope["path"],
        "url.query": query or None,
        "network.protocol.version": str(r.scope.get("http_version", "1.1")),
        "http.response.status_code": r.status,
        "http.response.body.bytes": r.bytes,
        "event.duration": int(r.duration * 1_000_000_000),
        "http.request.referrer": headers.get("referer"),
        "user_agent.original": headers.get("user-agent"),
        "http.request.id": headers.get("x-request-id"),
        "process.pid": os.getpid(),
    }
    if r.scope["type"] == "websocket":
        event["network.protocol.name"] = "websocket"
    return json.dumps({k: v for k, v in event.items() if v is not None}, separators=(",", ":"))


@pytest.mark.parametrize(
    "more",
    [
        {},
        {"query_string": b"", "client": None, "headers": []},
        {"client": ("unix", None), "http_version": "2"},
        {"path": '/caf\u00e9 "quoted" \\ \n', "raw_path": None, "headers": [(b"user-agent", b'a"b\\c\x01')]},
        {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "query_string": b""},
    ],
)
def test_the_json_template_writes_exactly_what_json_dumps_would(more: dict[str, Any]) -> None:
    r = record(**more)
    for wall in (1764620205.25, 1764620205.999, 1764620206.0):
        r.wall = wall
        line = json_formatter()(r)
        assert line == _reference_event(r)
        json.loads(line)


def test_a_lines_time_is_when_its_request_started(tmp_path: Path) -> None:
    """The layer keeps the monotonic clock's start; the flush turns it into wall-clock time."""
    target = tmp_path / "access.log"
    writer = Writer(str(target), text_formatter("%(t)s"))
    writer.add(({"type": "http", "path": "/"}, time.perf_counter() - 3600, 200, 0, 0.0, ()))
    writer.flush()
    shown = time.mktime(time.strptime(target.read_text().strip(), "[%d/%b/%Y:%H:%M:%S %z]"))
    assert abs(shown - (time.time() - 3600)) < 2
