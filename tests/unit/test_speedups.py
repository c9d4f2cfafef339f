"""The access log's C accelerator writes, byte for byte, what the Python loop writes."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from launcher import access_log
from launcher.access_log import BATCH, DEFAULT_FORMAT, Entry, Writer, text_formatter

latin1 = st.binary(max_size=12)
text = st.text(max_size=8)  # any code point, lone surrogates included
header_name = st.sampled_from(
    [
        b"referer",
        b"Referer",
        b"USER-AGENT",
        b"user-agent",
        b"x-request-id",
        b"X-Request-Id",
        b"host",
        b"accept",
    ]
)
headers = st.lists(st.tuples(header_name | latin1, latin1), max_size=5)


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": draw(st.sampled_from(["http", "websocket"])), "path": draw(text)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "headers": headers | st.just([[b"referer", b"list pair"]]),
        "raw_path": latin1 | st.none() | text,
        "query_string": latin1 | st.none(),
        "client": st.tuples(text, st.integers(0, 65535) | st.sampled_from(["", "8080", None]))
        | st.none()
        | st.just(["10.0.0.1", 80]),
        "method": st.sampled_from(["GET", "POST", "PROPFIND"]) | text,
        "http_version": st.sampled_from(["1.0", "1.1", "2"]),
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            scope[key] = draw(values)
    return scope


#: Seconds; their milliseconds to three places are written by C's own digits where the nearest
#: thousandth is certain, else as Python formats them: so halves, extremes and non-numbers too.
durations = (
    st.floats(0, 100)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(0, 10**9).map(lambda n: (n + 0.5) / 1e6)
    | st.integers(0, 10**9).map(lambda n: n / 1e6)
    | st.sampled_from([-0.0, 0.0004995, 1e-300, 5e-324, 999_999.9999995, 1e6])
)

entries = st.lists(
    st.tuples(
        scopes(),
        st.floats(0, 10_000, allow_nan=False),
        st.integers(0, 999),
        st.integers(0, 2**40),
        durations,
        st.just(()),
    ),
    min_size=1,
    max_size=8,
)


def c_bytes(batch: list[Entry], offset: float) -> bytes | None:
    """The C formatter's lines (``AccessLayer`` formats each line with it as its request ends)."""
    from launcher._speedups import format_lines

    fmt: Any = text_formatter(DEFAULT_FORMAT)
    data: bytes | None = format_lines(batch, offset, fmt.clock.now, fmt.pid_text)
    return data


def python_bytes(fmt: Any, batch: list[Entry], offset: float) -> bytes:
    return ("\n".join(fmt.batch(batch, offset)) + "\n").encode("utf-8", "replace")


def test_the_accelerator_is_built() -> None:
    """The test install has it (setup.py builds it where a C compiler is found, as here): without
    it every test below would pass while checking nothing, and the benchmarks would measure the
    Python loop."""
    assert access_log._AccessLayer is not None, (
        "launcher._speedups was not built: install a C compiler and Python's headers, then reinstall"
    )


@given(entries, st.floats(1.7e9, 1.8e9))
def test_the_c_lines_are_the_python_lines(batch: list[Entry], offset: float) -> None:
    encoded = c_bytes(batch, offset)
    expected = python_bytes(text_formatter(DEFAULT_FORMAT), batch, offset)
    if encoded is None:  # given up on: only for what the Python loop treats its own way
        return
    assert encoded == expected


@given(entries, st.floats(1.7e9, 1.8e9))
def test_the_c_json_lines_are_the_python_json_lines(batch: list[Entry], offset: float) -> None:
    """``LOG_FORMAT=json``: the C layer's line is json_formatter's, byte for byte, for each
    request it does not give up on; it gives up on every request the Python one fails on."""
    from launcher._speedups import format_lines
    from launcher.access_log import Record, json_formatter

    fmt: Any = json_formatter()
    for entry in batch:
        scope, started, status, size, duration, headers = entry
        encoded = format_lines([entry], offset, fmt.clock.now, fmt.pid_text, True)
        try:
            expected = fmt(Record(scope, started + offset, status, size, duration, headers)) + "\n"
        except Exception:
            assert encoded is None, scope
            continue
        if encoded is not None:
            assert encoded == expected.encode("ascii")


def test_the_json_line_is_written_in_c_for_real_scopes() -> None:
    """The JSON line of a server's usual scope is written by the C code (not given up on), with
    escapes, a code point above the BMP and a WebSocket session among them."""
    import json

    from launcher._speedups import format_lines
    from launcher.access_log import Record, json_formatter

    fmt: Any = json_formatter()
    scope = {
        "type": "websocket",
        "method": "GET",
        "path": '/caf\u00e9/"\U0001f600"\n',
        "raw_path": b"/caf\xc3\xa9",
        "query_string": b"q=\x7f\t",
        "http_version": "1.1",
        "client": ("127.0.0.1", 4321),
        "headers": [(b"user-agent", b"curl/8 \xff"), (b"X-Request-Id", b"abc"), (b"referer", b"-")],
    }
    entry = (scope, 12.5, 101, 3, 0.0015, ())
    encoded = format_lines([entry], 1.75e9, fmt.clock.now, fmt.pid_text, True)
    assert encoded is not None
    assert encoded.decode("ascii") == fmt(Record(scope, 12.5 + 1.75e9, 101, 3, 0.0015, ())) + "\n"
    event = json.loads(encoded)
    assert event["url.path"] == scope["path"] and event["client.port"] == 4321
    assert event["network.protocol.name"] == "websocket" and "http.request.referrer" not in event


def test_it_gives_up_only_on_unusual_values() -> None:
    """Real servers' scopes are formatted in C; a list header pair or a lone surrogate is left
    to the Python loop (None), which writes it as it always has."""
    plain = {
        "type": "http",
        "method": "GET",
        "path": "/\u00e9",
        "raw_path": b"/\xc3\xa9",
        "query_string": b"q=1",
        "http_version": "1.1",
        "client": ("127.0.0.1", 4321),
        "headers": [(b"host", b"x"), (b"user-agent", b"curl/8")],
    }
    now = time.perf_counter()
    assert c_bytes([(plain, now, 200, 5, 0.001, ())], 0.0) is not None
    for odd in ({"headers": [[b"user-agent", b"x"]]}, {"method": "G\udcffT"}, {"client": (b"10.0.0.1", 80)}):
        assert c_bytes([({**plain, **odd}, now, 200, 5, 0.001, ())], 0.0) is None, odd


def test_the_writer_writes_the_c_lines(tmp_path: Any) -> None:
    """Through the C layer and the Writer (the path every request takes): a full batch, the
    same bytes the Python layer gives once times and durations are masked."""
    import asyncio
    import re

    from launcher.access_log import AccessLog, layer

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"x" * int(scope["path"][1:])})

    async def noop(message: Any) -> None:
        pass

    def written(make_layer: Any, name: str) -> bytes:
        path = tmp_path / name
        served = make_layer(app, Writer(str(path), text_formatter(DEFAULT_FORMAT)))

        async def main() -> None:
            for i in range(BATCH):  # the last one fills the batch: written at once
                scope = {
                    "type": "http",
                    "method": "GET",
                    "path": f"/{i}",
                    "headers": [(b"user-agent", b"u" * 300)],
                }
                await served(scope, None, noop)

        asyncio.run(main())
        return path.read_bytes()

    data = written(layer, "c.log")
    assert data.count(b"\n") == BATCH

    def masked(lines: bytes) -> list[bytes]:
        return [re.sub(rb"\[[^]]+\]|\d+\.\d+ms", b"T", line) for line in lines.splitlines()]

    assert masked(data) == masked(written(AccessLog, "python.log"))


messages = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("http.response.start"), "status": st.integers(100, 599)},
            optional={"headers": st.lists(st.tuples(latin1, latin1), max_size=2)},
        ),
        st.fixed_dictionaries(
            {"type": st.just("http.response.body")},
            optional={"body": latin1 | st.just(b""), "more_body": st.booleans()},
        ),
        st.fixed_dictionaries({"type": st.sampled_from(["websocket.accept", "websocket.close"])}),
        st.fixed_dictionaries(
            {"type": st.just("websocket.send")},
            optional={"bytes": latin1 | st.none(), "text": text | st.none()},
        ),
        st.fixed_dictionaries({"type": st.sampled_from(["http.response.trailers", "x"])}),
        st.just({}),  # no type: KeyError, from both
        st.just({"type": "http.response.start"}),  # no status: KeyError
    ),
    max_size=6,
)


def replay(recorder_type: type[Any], sequence: list[dict[str, Any]]) -> tuple[Any, ...]:
    sent: list[Any] = []

    def send(message: Any) -> Any:
        sent.append(message)
        return ("awaitable", len(sent))

    recorder = recorder_type(send)
    outcomes: list[Any] = []
    for message in sequence:
        try:
            outcomes.append(recorder(dict(message)))  # a copy, in case the type's key is interned
        except Exception as exc:
            outcomes.append(type(exc))
    return recorder.status, recorder.size, recorder.headers, outcomes, len(sent)


@given(messages)
def test_the_c_recorder_records_what_the_python_one_does(sequence: list[dict[str, Any]]) -> None:
    from launcher.recorder import PyRecorder, Recorder

    assert Recorder is not PyRecorder, "launcher._speedups was not built"
    assert replay(Recorder, sequence) == replay(PyRecorder, sequence)


def scenario_app() -> Any:
    """One app, many endings: chosen by the path."""
    import asyncio

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "websocket":
            if path == "/refused":
                await send({"type": "websocket.close"})
                return
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "h\u00e9"})
            await send({"type": "websocket.send", "bytes": b"xyz"})
            await send({"type": "websocket.close"})
            return
        if path == "/raise-early":
            raise RuntimeError("before the response")
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x", b"y")]})
        if path == "/raise-late":
            raise RuntimeError("after the start")
        if path == "/slow":
            await asyncio.sleep(10)
        if path == "/catch":
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await send({"type": "http.response.body", "body": b"caught"})
                return
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    return app


class NotACoroutine:
    """An app whose call returns an awaitable that is not a coroutine (a Future's kind)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        return self.Awaitable(self.inner(scope, receive, send))

    class Awaitable:
        def __init__(self, coroutine: Any) -> None:
            self.coroutine = coroutine

        def __await__(self) -> Any:
            return self.coroutine.__await__()


def run_scenarios(
    make_layer: Any, app: Any, layout: str = "%(s)s"
) -> tuple[list[tuple[Any, ...]], list[str], list[str]]:
    """Every ending, through the layer ``make_layer`` builds: the entries (less times), the
    methods ``begin`` saw, and what the caller saw of each request."""
    import asyncio

    from launcher.metrics import DURATION_BUCKETS, METHODS, SIZE_BUCKETS
    from launcher.tally import Tally

    begun: list[str] = []
    tally = Tally(DURATION_BUCKETS, SIZE_BUCKETS, METHODS, "_OTHER")

    class Metrics:
        started = begun  # the C layer appends here, and calls arm for the first

        def __init__(self) -> None:
            self.tally = tally  # and counts here what ended

        def begin(self, method: str) -> None:
            begun.append(method)

        def arm(self) -> None:
            pass

        def counted(self, entries: Any) -> None:  # the Python layer's writer hands over
            for scope, _, status, size, duration, _ in entries:
                if scope["type"] == "http":
                    tally.add(scope["method"], status, size, duration)

        def flush(self) -> None:
            pass

    writer = Writer("/dev/null", text_formatter(layout))  # not the default: entries kept
    writer.flush = lambda: None  # type: ignore[method-assign]  # kept to be compared
    layer = make_layer(app, writer, Metrics())
    outcomes: list[str] = []

    async def noop(message: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.request"}

    async def call(scope: dict[str, Any], cancel_after: float | None = None) -> None:
        task = asyncio.ensure_future(layer(scope, receive, noop))
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            task.cancel()
        try:
            await task
            outcomes.append("ok")
        except BaseException as exc:
            outcomes.append(type(exc).__name__)

    async def main() -> None:
        http = {"type": "http", "method": "GET", "headers": []}
        for path in ("/", "/raise-early", "/raise-late"):
            await call({**http, "path": path})
        await call({**http, "method": "POST", "path": "/slow"}, cancel_after=0.01)
        await call({**http, "path": "/catch"}, cancel_after=0.01)
        await call({"type": "websocket", "path": "/ws", "headers": []})
        await call({"type": "websocket", "path": "/refused", "headers": []})

    asyncio.run(main())
    entries = [(e[0]["path"], e[2], e[3], list(e[5])) for e in writer.entries]
    assert all(isinstance(e[1], float) and isinstance(e[4], float) and e[4] >= 0 for e in writer.entries)
    if writer.also is not None:  # the Python layer: its writer hands its entries over at the flush
        writer.also(writer.entries)
    counted = sorted(
        (label, status, count, sizes, size_sum)
        for label, status, count, _, _, sizes, size_sum in tally.take()
    )
    return entries, begun, outcomes, counted


def test_the_c_layer_logs_every_ending_as_the_python_layer_does() -> None:
    """A response, an app raising before and after its start, a cancelled request, one that
    catches its cancellation and answers, WebSocket sessions: the C layer (what the pipeline
    serves) records what AccessLog records, and its caller sees the same outcome."""
    from launcher.access_log import AccessLog, layer

    python = run_scenarios(AccessLog, scenario_app())
    c = run_scenarios(layer, scenario_app())
    assert (
        type(layer(scenario_app(), Writer("/dev/null", text_formatter(DEFAULT_FORMAT)))).__name__
        == "AccessLayer"
    )
    assert c == python
    entries, begun, outcomes, counted = c
    assert [status for _, status, _, _ in entries] == [201, 500, 201, 201, 201, 101, 403]
    assert outcomes == ["ok", "RuntimeError", "RuntimeError", "CancelledError", "ok", "ok", "ok"]
    assert begun == ["GET", "GET", "GET", "POST", "GET"]  # HTTP requests only
    # Counted for the metrics as they ended: HTTP only, the app that raised first a 500.
    assert [(label, status, count) for label, status, count, _, _ in counted] == [
        ("GET", 201, 3),
        ("GET", 500, 1),
        ("POST", 201, 1),
    ]
    assert c == run_scenarios(layer, NotACoroutine(scenario_app()))  # any awaitable


def scenario_lines(make_layer: Any, formatter: Any) -> list[str]:
    """The lines ``make_layer`` writes with ``formatter`` for a response, an app raising after
    its start, a caught cancellation and a WebSocket session (fewer than a batch: the flush
    writes them)."""
    import asyncio

    written: list[bytes] = []
    writer = Writer("/dev/null", formatter)
    writer._write = written.append  # type: ignore[method-assign]
    served = make_layer(scenario_app(), writer)

    async def noop(message: Any) -> None:
        pass

    async def main() -> None:
        for path in ("/", "/raise-late", "/catch"):
            scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"user-agent", b"t")]}
            with contextlib.suppress(RuntimeError, TimeoutError):
                await asyncio.wait_for(served(scope, None, noop), 0.05)
        await served({"type": "websocket", "path": "/ws", "headers": []}, None, noop)

    asyncio.run(main())
    writer.flush()
    return b"".join(written).decode().splitlines()


def test_the_c_layer_writes_the_default_lines_as_requests_end() -> None:
    """With the default layout the C layer formats each line as its request ends (holding
    nothing of the request): the same lines the Python layer writes at its flush, once the
    times, which differ run to run, are masked."""
    import re

    from launcher.access_log import AccessLog, layer

    def lines(make_layer: Any) -> list[str]:
        written = scenario_lines(make_layer, text_formatter(DEFAULT_FORMAT))
        return [re.sub(r"\[[^]]+\]|\d+\.\d+ms", "T", line) for line in written]

    c = lines(layer)
    assert c == lines(AccessLog) and len(c) == 4
    assert c[0] == f'- - - T "GET / HTTP/1.1" 201 6 "-" "t" T pid={os.getpid()} rid=-'


def test_the_c_layer_writes_the_json_lines_as_requests_end() -> None:
    """LOG_FORMAT=json through the C layer (what the pipeline serves): the lines AccessLog
    writes, once the times are masked, each one JSON object."""
    import json
    import re

    from launcher.access_log import AccessLog, json_formatter, layer

    assert type(layer(scenario_app(), Writer("/dev/null", json_formatter()))).__name__ == "AccessLayer"

    def lines(make_layer: Any) -> list[str]:
        written = scenario_lines(make_layer, json_formatter())
        assert all(json.loads(line) for line in written)
        return [re.sub(r'"@timestamp":"[^"]+"|"event.duration":\d+', "T", line) for line in written]

    c = lines(layer)
    assert c == lines(AccessLog) and len(c) == 4
    assert '"network.protocol.name":"websocket"' in c[3]


rows = st.lists(
    st.tuples(
        st.sampled_from(["GET", "POST", "BREW", "PROPFIND", "get"]),
        st.sampled_from([200, 201, 404, 500, 101]),
        st.integers(0, 10**8) | st.sampled_from([100, 1_000, 10_000_000]),
        st.floats(0, 20) | st.sampled_from([0.005, 0.01, 0.25, 10.0]),
    ),
    max_size=300,
)


def grouped(tally: Any) -> dict[tuple[str, Any], tuple[Any, ...]]:
    return {(g[0], g[1]): g[2:] for g in tally.take()}


@given(rows, st.integers(0, 300))
def test_the_c_tally_counts_what_the_python_one_does(requests: list[Any], cut: int) -> None:
    """The C Tally (what the C access layer counts into) and PyTally give the same groups,
    counts, buckets and sums, with a take() anywhere in between."""
    import math

    from launcher.metrics import DURATION_BUCKETS, METHODS, SIZE_BUCKETS
    from launcher.tally import PyTally, Tally

    assert Tally is not PyTally, "launcher._speedups was not built"
    made = [t(DURATION_BUCKETS, SIZE_BUCKETS, METHODS, "_OTHER") for t in (Tally, PyTally)]
    results: list[list[dict[tuple[str, Any], tuple[Any, ...]]]] = []
    for tally in made:
        for row in requests[:cut]:
            tally.add(*row)
        first = grouped(tally)
        for row in requests[cut:]:
            tally.add(*row)
        results.append([first, grouped(tally), grouped(tally)])
    for c, python in zip(*results, strict=True):
        assert c.keys() == python.keys()
        for key, (count, durations, duration_sum, sizes, size_sum) in c.items():
            assert (count, durations, sizes, size_sum) == (python[key][0], python[key][1], *python[key][3:])
            assert math.isclose(duration_sum, python[key][2], rel_tol=1e-9, abs_tol=1e-12)
            assert count == sum(durations) == sum(sizes)
            assert key[0] in METHODS | {"_OTHER"}
    assert results[0][2] == {}  # take() forgets


def test_a_full_batch_is_written_from_c_in_whole_lines_of_at_most_an_atomic_write() -> None:
    """The C layer writes a full batch itself, to the Writer's fd: in writes of whole lines,
    none over ATOMIC_WRITE but a line longer than that alone, so workers sharing a pipe never
    interleave. A SOCK_SEQPACKET socket keeps each write(2) one record, to be seen apart."""
    import asyncio
    import socket

    from launcher import _speedups
    from launcher.access_log import ATOMIC_WRITE, layer

    assert _speedups.ATOMIC_WRITE == ATOMIC_WRITE

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    async def noop(message: Any) -> None:
        pass

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    writer = Writer("/dev/null", text_formatter(DEFAULT_FORMAT))
    os.close(writer.fd)
    writer.fd = ours.fileno()
    served = layer(app, writer)

    async def main() -> None:
        for i in range(BATCH):
            agent = b"a" * (5000 if i == 7 else 150 + i)  # one line longer than an atomic write
            await served(
                {"type": "http", "method": "GET", "path": f"/{i}", "headers": [(b"user-agent", agent)]},
                None,
                noop,
            )

    try:
        asyncio.run(main())  # no flush: the 64th request's end wrote the batch
        theirs.setblocking(False)
        records = []
        with contextlib.suppress(BlockingIOError):
            while True:
                records.append(theirs.recv(1 << 16))
    finally:
        writer.fd = os.open(os.devnull, os.O_WRONLY)  # what the exit hooks will flush to
        ours.close()
        theirs.close()
    lines = b"".join(records).splitlines()
    assert [line.split(b'"')[1] for line in lines] == [f"GET /{i} HTTP/1.1".encode() for i in range(BATCH)]
    assert len(records) > 3 and all(r.endswith(b"\n") for r in records)
    assert [r for r in records if len(r) > ATOMIC_WRITE] == [lines[7] + b"\n"]
    # Each write as full as whole lines allow: with the next line it would not fit.
    assert all(len(r) + len(n.split(b"\n")[0]) + 1 > ATOMIC_WRITE for r, n in itertools.pairwise(records))
