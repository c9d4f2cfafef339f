"""The access line: Gunicorn's atoms, the JSON keys, escaping, and a writer that neither blocks
the event loop nor loses a line at exit. Real ASGI calls on a real event loop, no server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from launcher.config.access_format import parse_format
from launcher.errors import ConfigError
from launcher.observability.access_log import (
    ATOMIC_WRITE,
    BATCH,
    DURATION,
    SIZE,
    STATUS,
    Entry,
    JsonLayout,
    Layout,
    RequestLog,
    TextLayout,
    Writer,
    recorder,
)
from launcher.worker.pipeline import ResponseCheck


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


async def ok(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b"x" * 20, "more_body": True})
    await send({"type": "http.response.body", "body": b"y" * 7})


def entries_of(*scopes: dict[str, Any], layout: Layout | None = None, app: Any = ok) -> list[Entry]:
    """Serve ``scopes`` through a ``RequestLog`` and return the entries it recorded."""
    got: list[Entry] = []
    layout = layout or TextLayout()
    log = ResponseCheck(app, log=RequestLog([got.extend], layout.request_headers, layout.response_headers))

    async def send(message: Any) -> None:
        pass

    async def serve() -> None:
        for s in scopes:
            with contextlib.suppress(RuntimeError):  # an app that raised: still logged
                await log(s, None, send)
        log.log.flush()  # type: ignore[union-attr]

    asyncio.run(serve())
    return got


def lines_of(*scopes: dict[str, Any], layout: Layout | None = None, app: Any = ok) -> list[str]:
    layout = layout or TextLayout()
    lines, failed = layout.lines(entries_of(*scopes, layout=layout, app=app))
    assert failed == 0
    return lines


def test_the_default_line_is_combined_plus_duration_pid_and_request_id() -> None:
    (line,) = lines_of(scope())
    head, _, tail = line.partition(" [")
    assert head == "10.0.0.7 - -"
    status, rest = tail.split("] ", 1)[1].split(' "curl/8" ')
    assert status == '"GET /items?page=2 HTTP/1.1" 200 27 "http://r/"'
    duration, pid, rid = rest.split(" ")
    assert duration.endswith("ms") and float(duration[:-2]) >= 0
    assert (pid, rid) == (f"pid={os.getpid()}", "rid=rid-1")


def test_gunicorn_atoms() -> None:
    layout = TextLayout(
        "%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%({content-type}o)s|%({x-missing}i)s|%(a)s|%(f)s"
    )
    (line,) = lines_of(scope(), layout=layout)
    assert line == "GET|/items|page=2|HTTP/1.1|200|27|27|application/json|-|curl/8|http://r/"
    timing = TextLayout("%(D)s %(T)s %(L)s %(M)s")
    micros, seconds, decimal, millis = lines_of(scope(), layout=timing)[0].split()
    assert int(seconds) == 0 and abs(int(micros) / 1e6 - float(decimal)) < 1e-5 and float(millis) >= 0


def test_an_app_that_raised_is_logged_as_the_500_the_server_answers() -> None:
    layout = TextLayout("%(s)s %(B)s %(U)s")
    assert lines_of(scope(), scope(path="/boom", raw_path=b"/boom"), layout=layout) == [
        "200 27 /items",
        "500 21 /boom",  # the response check's own answer: what the client got
    ]


@pytest.mark.parametrize("layout", ["%(h)s %(zz)s", "%(h)s %(Q)s", "no atoms at all"])
def test_unknown_atoms_are_a_config_error_naming_the_variable(layout: str) -> None:
    with pytest.raises(ConfigError, match="ACCESS_LOG_FORMAT="):
        parse_format(layout)
    assert parse_format(" %(h)s %({x-request-id}i)s ") == "%(h)s %({x-request-id}i)s"


def test_json_lines_use_ecs_names() -> None:
    (line,) = lines_of(scope(), layout=JsonLayout())
    event = json.loads(line)
    assert event["http.request.method"] == "GET" and event["url.path"] == "/items"
    assert event["url.query"] == "page=2" and event["http.response.status_code"] == 200
    assert event["client.address"] == "10.0.0.7" and event["client.port"] == 5555
    assert event["http.response.body.bytes"] == 27 and event["event.duration"] >= 0
    assert event["user_agent.original"] == "curl/8" and event["http.request.id"] == "rid-1"
    assert event["@timestamp"].endswith("Z") and event["process.pid"] == os.getpid()


HOSTILE = [
    # A path whose decoded CR LF would start a forged line, quotes and backslashes that would
    # close a field, and terminal escapes in headers.
    scope(
        path='/x\r\n6.6.6.6 - - [01/Jan/2027] "GET /admin" 200',
        raw_path=b'/x%0d%0a6.6.6.6%20\r\n"GET /admin" 200',
        query_string=b'a="b"&c=\\',
        headers=[
            (b"user-agent", b'evil" "ua\x1b[31m\x07'),
            (b"referer", b"\xff\xfe"),
            (b"x-request-id", b"r\nid"),
        ],
    ),
    scope(client=("1.2.3.4\n5.6.7.8", 1), http_version="1.1\r\nX"),
]


def test_no_field_can_end_a_line_or_a_quoted_field() -> None:
    lines = lines_of(*HOSTILE)
    assert len(lines) == 2 and all("\n" not in line and "\r" not in line for line in lines)
    for line in lines:
        assert all(0x20 <= ord(c) < 0x7F for c in line), line  # printable ASCII only
    first = lines[0]
    # The quoted fields are exactly three, each closed where the layout closes it.
    assert first.count('"') == 6, first
    assert "\\x0D\\x0A" in first and "\\x22GET /admin\\x22" in first and "\\x1B[31m\\x07" in first
    assert '"\\xFF\\xFE"' in first and "rid=r\\x0Aid" in first
    custom = lines_of(*HOSTILE, layout=TextLayout('%(U)s %(q)s "%(a)s" %({x-request-id}i)s %(h)s %(H)s'))
    assert all("\n" not in line and '" "' not in line.split('"', 1)[1][:-40] for line in custom)


#: What a client chose of a request: its path, query, referer, user agent and request id (hostile
#: bytes of every kind, or printable ones with quotes only: the text line's fast path), and its
#: address.
CLIENT_FIELDS = st.lists(
    st.binary(max_size=6).map(lambda b: b.translate(FEW))
    | st.text(alphabet='a-" ', max_size=4).map(str.encode),
    min_size=5,
    max_size=5,
)
CLIENT_ADDRESS = st.text(alphabet='a."\\\n\x1b\u00e9', max_size=5)


@given(fields=CLIENT_FIELDS, client=CLIENT_ADDRESS)
def test_each_default_field_reads_back_exactly_what_the_client_sent(fields: list[bytes], client: str) -> None:
    """Whatever bytes a client sends, the default line splits into its fields where the layout
    puts them, and each field unescapes to what was sent (``-`` for nothing): the fast path that
    formats a clean line unescaped never passes a field that needed escaping. (A space is not
    escaped, as nginx does not: the unquoted fields are the client address and the request id,
    which ends the line.)"""
    path, query, referer, agent, rid = fields
    (line,) = lines_of(
        scope(
            raw_path=b"/" + path,
            query_string=query,
            client=(client, 1),
            headers=[(b"referer", referer), (b"user-agent", agent), (b"x-request-id", rid)],
        )
    )
    match = DEFAULT_LINE.fullmatch(line)
    assert match, line
    target = b"/" + path + (b"?" + query if query else b"")
    assert unescaped(match["client"]) == (client.encode() or b"-")
    assert unescaped(match["target"]) == target
    for name, sent in (("referer", referer), ("agent", agent), ("rid", rid)):
        assert unescaped(match[name]) == (sent or b"-")


@example(batch=[[b"\n", b"", b""]])  # a newline where the batch's own go
@example(batch=[[b"ok", b"", b""], [b'"', b"\\", b""]])
@given(
    batch=st.lists(
        st.lists(
            st.binary(max_size=4).map(lambda b: b.translate(FEW)) | st.sampled_from([b"", b"ok", b'a"b']),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_batch_is_written_as_its_lines_are_formatted_one_by_one(batch: list[list[bytes]]) -> None:
    """The default layout checks a whole batch at once for fields that need escaping: what it
    writes is byte for byte what the lines formatted one at a time say, clean or hostile, and a
    single hostile request escapes its own line only."""
    layout = TextLayout()
    entries = entries_of(
        *(
            scope(raw_path=b"/" + path, headers=[(b"referer", referer), (b"user-agent", agent)])
            for path, referer, agent in batch
        ),
        layout=layout,
    )
    lines, failed = layout.lines(entries)
    data, count, batch_failed = layout.batch(entries)
    assert (count, batch_failed, failed) == (len(batch), 0, 0)
    assert data == ("\n".join(lines) + "\n").encode()
    assert len(data.splitlines()) == len(batch)


def test_header_values_the_last_of_a_repeated_one_and_a_responses_in_any_case() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"Content-Type", b"text/plain"), (b"X-Trace", b"one"), (b"x-trace", b"two")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    layout = TextLayout("%({x-a}i)s %({content-type}o)s %({x-trace}o)s %({x-missing}o)s")
    sent = scope(headers=[(b"x-a", b"first"), (b"x-b", b"other"), (b"x-a", b"last")])
    assert lines_of(sent, layout=layout, app=app) == ["last text/plain two -"]


#: The bytes a hostile field is made of: the ones escaping is about, and two plain ones.
FEW = bytes.maketrans(bytes(range(256)), (b'a" \\\n\x00\x7f\xff\x1b-' * 26)[:256])
DEFAULT_LINE = re.compile(
    r'(?P<client>\S+) - - \[[^]]+\] "GET (?P<target>.*) HTTP/1\.1" 200 27 "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" [0-9.]+ms pid=[0-9]+ rid=(?P<rid>.*)'
)


def unescaped(field: str) -> bytes:
    return re.sub(rb"\\x([0-9A-F]{2})", lambda m: bytes([int(m[1], 16)]), field.encode("ascii"))


def test_json_lines_stay_valid_json_whatever_a_client_sent() -> None:
    lines = lines_of(*HOSTILE, layout=JsonLayout())
    events = [json.loads(line) for line in lines]
    assert all("\n" not in line for line in lines)
    assert events[0]["url.path"].startswith("/x\r\n") and events[1]["client.address"] == "1.2.3.4\n5.6.7.8"


@given(fields=CLIENT_FIELDS, client=CLIENT_ADDRESS)
def test_each_json_field_reads_back_exactly_what_the_client_sent(fields: list[bytes], client: str) -> None:
    """Whatever a client sends, each field of its JSON line parses back to exactly that (bytes as
    Latin-1), and the line stays one line of ASCII."""
    path, query, referer, agent, rid = fields
    (line,) = lines_of(
        scope(
            path="/" + path.decode("latin1"),
            raw_path=b"/" + path,
            query_string=query,
            client=(client, 1),
            headers=[(b"referer", referer), (b"user-agent", agent), (b"x-request-id", rid)],
        ),
        layout=JsonLayout(),
    )
    event = json.loads(line)
    assert line.isascii() and "\n" not in line
    target = (b"/" + path + (b"?" + query if query else b"")).decode("latin1")
    assert event["message"] == f"GET {target} HTTP/1.1 200"
    assert (event["client.address"], event["client.port"], event["url.path"]) == (
        client,
        1,
        "/" + path.decode("latin1"),
    )
    assert event.get("url.query") == (query.decode("latin1") if query else None)
    for name, sent in (
        ("http.request.referrer", referer),
        ("user_agent.original", agent),
        ("http.request.id", rid),
    ):
        assert event[name] == sent.decode("latin1")


def test_a_bad_scope_loses_only_its_own_line() -> None:
    """Middleware that left a str where the spec says bytes: its request's line is lost, with a
    count; the others of the batch are written."""
    layout = TextLayout("%(U)s %(q)s %(s)s")
    entries = entries_of(scope(), scope(query_string="not bytes", raw_path=7), scope(), layout=layout)
    lines, failed = layout.lines(entries)
    assert len(lines) + failed == 3 and lines[0] == lines[-1] == "/items page=2 200"


@pytest.mark.parametrize(
    ("seconds", "millis", "nanos"),
    [(0.0004, "0.400", 400_000), (0.9995, "999.500", 999_500_000), (1.2345678, "1234.568", 1_234_567_800)],
)
def test_durations_under_and_over_a_second(seconds: float, millis: str, nanos: int) -> None:
    """A duration's whole milliseconds are looked up below a second and formatted above it; the
    line reads the same either way, in every layout."""
    (entry,) = entries_of(scope())
    entry = (*entry[:DURATION], seconds, *entry[DURATION + 1 :])
    (default,), _ = TextLayout().lines([entry])
    (atom,), _ = TextLayout("%(M)s").lines([entry])
    (line,), _ = JsonLayout().lines([entry])
    assert f" {millis}ms pid=" in default and atom == millis
    assert abs(json.loads(line)["event.duration"] - nanos) <= 1


def test_a_json_line_is_lost_rather_than_invalid() -> None:
    """A value that a JSON line could only show by breaking the line's JSON (a size that is not a
    number, a status no response has) loses that request's line, with a count, and no more."""
    (entry,) = entries_of(scope())
    bad_size = (*entry[:SIZE], '27,"x":1', *entry[SIZE + 1 :])
    bad_status = (*entry[:STATUS], "200", *entry[STATUS + 1 :])
    lines, failed = JsonLayout().lines([entry, bad_size, bad_status, entry])
    assert failed == 2 and len(lines) == 2 and all(json.loads(line) for line in lines)


def test_an_entry_holds_nothing_of_the_request() -> None:
    """Only atoms (str, bytes, numbers, None): the garbage collector stops tracking the tuple, so
    a batch of them costs its collections nothing."""
    (entry,) = entries_of(scope())
    gc.collect()
    gc.collect()  # the inner tuples first, then the entry that holds them
    assert not gc.is_tracked(entry)


@pytest.mark.parametrize("char", ["x", "\u00e9"])  # one byte, and two: the writes count bytes
def test_writes_are_whole_lines_of_at_most_a_pipes_atomic_size(
    tmp_path: Path, char: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "access.log"
    writer = Writer(str(target), TextLayout("%(U)s"))
    writes: list[bytes] = []
    write = os.write

    def observed(fd: int, data: Any) -> int:  # the write(2) calls to the log (os.write: the
        if fd == writer.fd:  # seam the module uses, interpreted or compiled by mypyc)
            writes.append(bytes(data))
        return write(fd, data)

    monkeypatch.setattr(os, "write", observed)
    entries = entries_of(
        *(scope(path=f"line {n:04d} " + char * 80, raw_path=None, query_string=b"") for n in range(500)),
        layout=TextLayout("%(U)s"),
    )
    writer(entries)
    writer.close()
    assert all(len(w) <= ATOMIC_WRITE and w.endswith(b"\n") for w in writes)
    expected = [f"line {n:04d} " + ("x" * 80 if char == "x" else "\\xC3\\xA9" * 80) for n in range(500)]
    assert b"".join(writes).decode().splitlines() == expected == target.read_text().splitlines()


def test_requests_are_formatted_and_written_a_batch_at_a_time() -> None:
    batches: list[int] = []
    log = ResponseCheck(ok, log=RequestLog([lambda es: batches.append(len(es))]))

    async def send(message: Any) -> None:
        pass

    async def serve(count: int) -> None:
        for _ in range(count):
            await log(scope(), None, send)

    asyncio.run(serve(BATCH - 1))
    assert batches == []  # nothing handed over a request at a time
    asyncio.run(serve(1))
    assert batches == [BATCH]


@pytest.mark.parametrize("ending", ["sys.exit(0)", "raise RuntimeError('boom')", "multiprocessing"])
def test_no_line_is_lost_at_exit(tmp_path: Path, ending: str) -> None:
    """Requests whose lines are still waiting reach the file, however the process ends."""
    target = tmp_path / "access.log"
    body = f"""
import asyncio, sys, multiprocessing
from launcher.observability.access_log import TextLayout, recorder
from launcher.worker.pipeline import ResponseCheck
async def app(scope, receive, send):
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b""}})
async def send(message):
    pass
def work():
    log = ResponseCheck(app, log=recorder({str(target)!r}, TextLayout("%(U)s")))
    async def serve():
        for n in range(6):
            await log({{"type": "http", "path": f"/line{{n}}", "headers": []}}, None, send)
    asyncio.run(serve())
    {ending if ending != "multiprocessing" else "pass"}
if {ending == "multiprocessing"!r}:
    p = multiprocessing.get_context("fork").Process(target=work); p.start(); p.join()
else:
    work()
"""
    subprocess.run([sys.executable, "-c", body], capture_output=True, timeout=30)
    assert target.read_text().splitlines() == [f"/line{n}" for n in range(6)]


#: What a test's child runs first where the pipe may not be opened anew through /proc (a
#: process whose user did not create the pipe: ``docker run --user 10001``), so the writer asks
#: for room before each write instead.
REFUSED_REOPEN = """
import os
_open = os.open
def _refused(path, *args, **kwargs):
    if path == "/proc/self/fd/1":
        raise PermissionError(13, "Permission denied", path)
    return _open(path, *args, **kwargs)
os.open = _refused
"""


@pytest.mark.parametrize("reopen", [True, False], ids=["own-description", "reopen-refused"])
def test_a_reader_that_does_not_keep_up_never_stalls_the_event_loop(reopen: bool) -> None:
    """A full pipe (a slow log collector): lines are dropped and counted, with one warning, and
    handing over a batch stays immediate."""
    code = (
        ("" if reopen else REFUSED_REOPEN)
        + """
import os, sys, time
from launcher.observability.access_log import TextLayout, Writer
out = os.dup(1)  # the test reads what this prints
read, write = os.pipe()  # nobody reads: it fills at 64 KiB
os.dup2(write, 1)  # stdout, which the access log writes to
w = Writer("-", TextLayout("%(U)s"))
entry = (0.0, 0.0, 200, 0, "http", "GET", None, None, "/" + "x" * 500, None, b"", "1.1", (), ())
slowest = 0.0
for _ in range(2000):
    start = time.perf_counter()
    w([entry] * 10)
    slowest = max(slowest, time.perf_counter() - start)
os.write(out, f"{w.dropped > 0} {slowest < 0.5} {w.nonblocking}".encode())
os._exit(0)
"""
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True", str(reopen)], done.stderr
    assert done.stderr.count("dropped") == 1, done.stderr


@pytest.mark.parametrize("reopen", [True, False], ids=["own-description", "reopen-refused"])
def test_lines_a_full_pipe_refused_are_written_in_order_once_it_drains(reopen: bool) -> None:
    """A log collector that pauses: what the full pipe refuses waits and is written, in order and
    whole, as soon as the collector reads again; nothing is lost."""
    code = (
        ("" if reopen else REFUSED_REOPEN)
        + """
import asyncio, os
from launcher.observability.access_log import TextLayout, Writer
out = os.dup(1)  # the test reads what this prints
read, write = os.pipe()
os.dup2(write, 1)  # stdout, which the access log writes to
os.close(write)
w = Writer("-", TextLayout("%(U)s"))
entries = [(0.0, 0.0, 200, 0, "http", "GET", None, None, f"/{n:06d}" + "x" * 100, None, b"", "1.1", (), ())
           for n in range(3000)]
async def main():
    for at in range(0, 3000, 100):
        w(entries[at:at + 100])
    held = len(w._held)  # 64 KiB fit; the rest waits
    got = bytearray()
    with open(read, "rb", buffering=0) as pipe:
        while got.count(b"\\n") < 3000:
            chunk = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, pipe.read, 65536), 30)
            got += chunk
    lines = got.decode().splitlines()
    ok = lines == [f"/{n:06d}" + "x" * 100 for n in range(3000)]
    os.write(out, f"{held > 0} {ok} {w.dropped} {len(w._held)} {w.nonblocking}".encode())
asyncio.run(main())
os._exit(0)
"""
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True", "0", "0", str(reopen)], done.stderr


def test_a_lines_time_is_when_its_request_started() -> None:
    layout = TextLayout("%(t)s")
    entry = (
        time.perf_counter() - 3600,
        0.0,
        200,
        0,
        "http",
        "GET",
        None,
        None,
        "/",
        None,
        b"",
        "1.1",
        (),
        (),
    )
    (line,), _ = layout.lines([entry])
    shown = time.mktime(time.strptime(line, "[%d/%b/%Y:%H:%M:%S %z]"))
    assert abs(shown - (time.time() - 3600)) < 2


def test_layer_sinks_both_the_log_and_the_metrics_from_one_record(tmp_path: Path) -> None:
    seen: list[int] = []

    class Metrics:
        begun: list[str] = []

        def counted(self, entries: list[Entry]) -> None:
            seen.append(len(entries))

        def lost(self, count: int) -> None:
            raise AssertionError("no line is lost here")

    log = recorder(str(tmp_path / "a.log"), TextLayout("%(U)s"), Metrics())

    async def send(message: Any) -> None:
        pass

    async def serve() -> None:
        await ResponseCheck(ok, log=log)(scope(), None, send)
        log.flush()

    asyncio.run(serve())
    assert seen == [1]
    assert isinstance(log.sinks[0], Writer)
    log.sinks[0].close()  # type: ignore[attr-defined]
    assert (tmp_path / "a.log").read_text() == "/items\n"
