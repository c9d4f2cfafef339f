"""The access log: one line per request, written by the launcher's worker pipeline.

Every backend's own access logger is turned off and this layer writes instead, so the line is the
same whichever server runs (only the values differ). The default is the combined log format that
Gunicorn and nginx write, plus the duration, the worker's pid and the ``X-Request-ID``::

    127.0.0.1 - - [01/Dec/2026:20:16:45 +0000] "GET /items?page=2 HTTP/1.1" 200 27 "-" "curl/8.0" 0.512ms pid=1234 rid=-

``ACCESS_LOG_FORMAT`` lays the same fields out with Gunicorn's documented atoms (``%(h)s``,
``%(r)s``, ``%({x-request-id}i)s``, ...); with ``LOG_FORMAT=json`` each line is one JSON object
with Elastic Common Schema / OpenTelemetry names.

Why not ``logging``: a ``logging`` call with a formatter costs several microseconds a request, a
real share of a fast server's budget. Where ``launcher._speedups`` was built, ``layer`` picks
its ``AccessLayer`` over ``AccessLog``: each request's path runs in C, and the default and
JSON lines are formatted in C as the request ends, so nothing of the request is held; a full
batch of ``BATCH`` lines is written from C too. ``ACCESS_LOG_FORMAT`` layouts keep each
request's record and format a batch at a time, with the few fields the layout needs. Lines are
buffered and written in whole lines of at most a pipe's atomic write (4 KiB, so lines of
several workers sharing stdout never interleave): when ``BATCH`` are waiting, after at most
``FLUSH_INTERVAL`` seconds, at lifespan shutdown and at exit (a worker stopped by SIGTERM, or one
whose code raised, loses no line).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from launcher.errors import ConfigError
from launcher.recorder import Recorder

try:  # the C accelerator (setup.py builds it where a compiler is found)
    from launcher._speedups import AccessLayer as _AccessLayer
except ImportError:  # pragma: no cover - installed without a compiler
    _AccessLayer = None

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_clock = time.perf_counter

#: Seconds a buffered line may wait before it is written.
FLUSH_INTERVAL = 0.2
#: Bytes one write(2) may carry and stay atomic on a pipe (PIPE_BUF).
ATOMIC_WRITE = 4096
#: Records formatted and written together (in writes of at most ATOMIC_WRITE): measured pinned,
#: 4 a batch cost 5 % of throughput more than 24, and 96 about 1 % less.
BATCH = 64

#: Gunicorn's atoms: name -> what it is (for the README and the error message).
ATOMS: dict[str, str] = {
    "h": "client address (after FORWARDED_ALLOW_IPS)",
    "l": "'-'",
    "u": "user name ('-')",
    "t": "time, [10/Oct/2000:13:55:36 -0700]",
    "r": 'request line, "GET /path?query HTTP/1.1"',
    "m": "request method",
    "U": "URL path, without query",
    "q": "query string",
    "H": "protocol, HTTP/1.1",
    "s": "status",
    "B": "response body bytes",
    "b": "response body bytes, or '-' for none",
    "f": "referer",
    "a": "user agent",
    "T": "duration, whole seconds",
    "M": "duration, milliseconds",
    "D": "duration, microseconds",
    "L": "duration, decimal seconds",
    "p": "worker pid",
    "{header}i": "a request header",
    "{header}o": "a response header",
    "{variable}e": "an environment variable",
}

_ATOM = re.compile(r"%\((?P<atom>\{[^}]+\}[ioe]|[A-Za-z]+)\)s")

DEFAULT_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms pid=%(p)s rid=%({x-request-id}i)s'
)


def parse_format(raw: str) -> str:
    """``ACCESS_LOG_FORMAT``: every ``%(...)s`` must be one of Gunicorn's atoms."""
    value = raw.strip()
    unknown = [m["atom"] for m in _ATOM.finditer(value) if not _known(m["atom"])]
    if unknown:
        raise ConfigError.bad_value(
            "ACCESS_LOG_FORMAT",
            value,
            f"Gunicorn's access-log atoms ({', '.join('%(' + a + ')s' for a in ATOMS)}); unknown: "
            + ", ".join(f"%({a})s" for a in unknown),
        )
    if not _ATOM.search(value):
        raise ConfigError.bad_value("ACCESS_LOG_FORMAT", value, "a layout with at least one %(atom)s")
    return value


def _known(atom: str) -> bool:
    return atom in ATOMS or (atom.startswith("{") and atom[-1] in "ioe")


class _Clock:
    """A time to the second in ``layout`` (``[01/Dec/2026:20:16:45 +0000]`` by default),
    formatted once a second, not once a request."""

    def __init__(
        self, layout: str = "[%d/%b/%Y:%H:%M:%S %z]", convert: Callable[[float], Any] = time.localtime
    ) -> None:
        self._layout = layout
        self._convert = convert
        self._second = -1
        self._text = ""

    def now(self, wall: float) -> str:
        second = int(wall)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self._layout, self._convert(second))
        return self._text


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin1")
    return "-"


#: What the layer keeps of one request until the flush: scope, ``time.perf_counter()`` at its
#: start, status, response bytes, duration in seconds, response headers. A plain tuple, made
#: once as the request ends; the flush turns each into a ``Record`` for the formatter.
Entry = tuple[Scope, float, int, int, float, Iterable[tuple[bytes, bytes]]]


class Record:
    """What one request did, as the layer saw it: what a formatter reads."""

    __slots__ = ("bytes", "duration", "response_headers", "scope", "status", "wall")

    def __init__(
        self,
        scope: Scope,
        wall: float,
        status: int = 0,
        bytes: int = 0,
        duration: float = 0.0,
        response_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        self.scope = scope
        self.wall = wall
        self.status = status
        self.bytes = bytes
        self.duration = duration
        self.response_headers = response_headers

    def target(self) -> str:
        """The request target as the client sent it (raw path, query)."""
        query: bytes = self.scope.get("query_string", b"")
        raw = self.scope.get("raw_path") or self.scope["path"]
        path = raw if isinstance(raw, str) else raw.decode("latin1")
        return f"{path}?{query.decode('latin1')}" if query else path

    def method(self) -> str:
        return str(self.scope.get("method", "GET"))

    def protocol(self) -> str:
        return f"HTTP/{self.scope.get('http_version', '1.1')}"

    def client(self) -> tuple[str, int | None]:
        client = self.scope.get("client")
        if not client:
            return "-", None
        port = client[1]
        return str(client[0]), int(port) if port not in (None, "") else None


def _atom_value(record: Record, atom: str, clock: _Clock, pid: int) -> Any:
    headers = record.scope.get("headers", ())
    if atom == "h":
        return record.client()[0]
    if atom in ("l", "u"):
        return "-"
    if atom == "t":
        return clock.now(record.wall)
    if atom == "r":
        return f"{record.method()} {record.target()} {record.protocol()}"
    if atom == "m":
        return record.method()
    if atom == "U":
        return record.scope["path"]
    if atom == "q":
        return record.scope.get("query_string", b"").decode("latin1")
    if atom == "H":
        return record.protocol()
    if atom == "s":
        return record.status
    if atom == "B":
        return record.bytes
    if atom == "b":
        return record.bytes or "-"
    if atom == "f":
        return _header(headers, b"referer")
    if atom == "a":
        return _header(headers, b"user-agent")
    if atom == "T":
        return int(record.duration)
    if atom == "M":
        return f"{record.duration * 1000:.3f}"
    if atom == "D":
        return int(record.duration * 1_000_000)
    if atom == "L":
        return f"{record.duration:.6f}"
    if atom == "p":
        return pid
    name, kind = atom[1:-2].lower(), atom[-1]
    if kind == "i":
        return _header(headers, name.encode("latin1"))
    if kind == "o":
        return _header(record.response_headers, name.encode("latin1"))
    return os.environ.get(name.upper(), os.environ.get(name, "-"))


def _request_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, str, str]:
    """Referer, user agent and request id in one pass over the headers ('-' when absent)."""
    referer = agent = request_id = "-"
    for key, value in headers:
        if len(key) in (7, 10, 12):  # cheap filter before the comparisons
            name = key.lower()
            if name == b"referer":
                referer = value.decode("latin1")
            elif name == b"user-agent":
                agent = value.decode("latin1")
            elif name == b"x-request-id":
                request_id = value.decode("latin1")
    return referer, agent, request_id


class _DefaultFormat:
    """``DEFAULT_FORMAT``, the line nearly every user gets, at the least cost.

    ``batch`` formats the Writer's entries as they are, in one loop with no ``Record``, no call
    a line and ``_request_headers``'s scan inline (measured pinned under load, formatting is
    most of what the access log costs); ``__call__`` formats one ``Record`` through it.
    """

    def __init__(self) -> None:
        self.clock = _Clock()
        self.pid = os.getpid()
        self.pid_text = str(self.pid)

    def __call__(self, record: Record) -> str:
        entry = (
            record.scope,
            record.wall,
            record.status,
            record.bytes,
            record.duration,
            record.response_headers,
        )
        return self.batch((entry,), 0.0)[0]

    def batch(self, entries: Iterable[Entry], offset: float) -> list[str]:
        """The lines of ``entries`` (``offset``: wall-clock time less ``time.perf_counter()``)."""
        now = self.clock.now
        pid = self.pid
        lines: list[str] = []
        append = lines.append
        for scope, started, status, size, duration, _ in entries:
            referer = agent = request_id = "-"
            for key, value in scope.get("headers", ()):
                if len(key) in (7, 10, 12):  # cheap filter before the comparisons
                    name = key.lower()
                    if name == b"referer":
                        referer = value.decode("latin1")
                    elif name == b"user-agent":
                        agent = value.decode("latin1")
                    elif name == b"x-request-id":
                        request_id = value.decode("latin1")
            raw = scope.get("raw_path") or scope["path"]
            path = raw if isinstance(raw, str) else raw.decode("latin1")
            query = scope.get("query_string")
            client = scope.get("client")
            append(
                f'{client[0] if client else "-"} - - {now(started + offset)} "{scope.get("method", "GET")} '
                f"{path}{'?' + query.decode('latin1') if query else ''} "
                f'HTTP/{scope.get("http_version", "1.1")}" {status} {size or "-"} '
                f'"{referer}" "{agent}" {duration * 1000:.3f}ms pid={pid} rid={request_id}'
            )
        return lines


def text_formatter(layout: str) -> Callable[[Record], str]:
    """A function from a record to its line, computing only the atoms ``layout`` names."""
    if layout == DEFAULT_FORMAT:
        return _DefaultFormat()
    atoms = list(dict.fromkeys(m["atom"] for m in _ATOM.finditer(layout)))
    clock = _Clock()
    pid = os.getpid()

    def format_line(record: Record) -> str:
        return layout % {atom: _atom_value(record, atom, clock, pid) for atom in atoms}

    return format_line


def json_formatter() -> Callable[[Record], str]:
    """One JSON object a request, keyed by Elastic Common Schema / OpenTelemetry names.

    Written as one template rather than ``json.dumps`` of a dict: the keys and their order are
    fixed, so only the values need encoding (strings through the json module's C escaper), at
    about a third of the cost. The output is what ``json.dumps(event, separators=(",", ":"))``
    gives, keys with no value left out; a unit test holds the two equal.
    """
    return _JsonFormat()


class _JsonFormat:
    """``json_formatter``'s line: a class so that ``layer`` can tell it, and have the C layer
    write the same line as each request ends (a unit test holds the two equal)."""

    def __init__(self) -> None:
        self.clock = _Clock("%Y-%m-%dT%H:%M:%S", time.gmtime)  # ISO 8601 in UTC, milliseconds added
        self.pid = os.getpid()
        self.pid_text = str(self.pid)

    def __call__(self, record: Record) -> str:
        clock, pid, quote = self.clock, self.pid, encode_basestring_ascii
        scope = record.scope
        client = scope.get("client")
        referer, agent, request_id = _request_headers(scope.get("headers", ()))
        method = str(scope.get("method", "GET"))
        target = record.target()
        version = str(scope.get("http_version", "1.1"))
        query = scope.get("query_string", b"")
        status = record.status
        parts = [
            '{"@timestamp":"',
            clock.now(record.wall),
            f".{int(record.wall % 1 * 1000):03d}Z",
            '","log.level":"info","log.logger":"asgi_launcher.access","event.dataset":"asgi.access"'
            ',"message":',
            quote(f"{method} {target} HTTP/{version} {status}"),
            ',"client.address":',
            quote(str(client[0])) if client else '"-"',
        ]
        if client and client[1] not in (None, ""):
            parts += (',"client.port":', str(int(client[1])))
        parts += (',"http.request.method":', quote(method), ',"url.path":', quote(scope["path"]))
        if query:
            parts += (',"url.query":', quote(query.decode("latin1")))
        parts += (
            ',"network.protocol.version":',
            quote(version),
            f',"http.response.status_code":{status},"http.response.body.bytes":{record.bytes}'
            f',"event.duration":{int(record.duration * 1_000_000_000)}',
        )
        if referer != "-":
            parts += (',"http.request.referrer":', quote(referer))
        if agent != "-":
            parts += (',"user_agent.original":', quote(agent))
        if request_id != "-":
            parts += (',"http.request.id":', quote(request_id))
        parts.append(f',"process.pid":{pid}')
        if scope["type"] == "websocket":
            parts.append(',"network.protocol.name":"websocket"')
        parts.append("}")
        return "".join(parts)


class Writer:
    """Buffered, line-atomic writes to ``-`` (stdout) or a file opened for append.

    Records given to ``add`` are formatted with ``format_line`` when they are written, a batch
    at a time, not one by one as requests end: measured under load (one pinned worker, wrk),
    the formatter run once per request cost several times its in-process figure, its code and
    data cold again each time between the server's and the app's, and run over a batch it
    costs about what it costs in a loop. Reopened on SIGUSR1 like every log file
    (``launcher.observability.logs``).
    """

    def __init__(self, target: str, format_line: Callable[[Record], str]) -> None:
        self.target = target
        self.fd = self._open()
        self.format_line = format_line
        self.entries: list[Entry] = []
        #: Given each batch as it is flushed, before it is formatted: ``ServerMetrics.counted``
        #: when metrics are on too, which counts the requests from the same entries.
        self.also: Callable[[list[Entry]], None] | None = None
        #: The C layer's lines formatted as their requests ended (``AccessLayer.take``), written
        #: at each flush before the entries.
        self.take: Callable[[], bytes] | None = None
        self._timer: asyncio.TimerHandle | None = None
        from launcher.observability.logs import on_reopen

        on_reopen(self.reopen)
        atexit.register(self.flush)
        # multiprocessing's workers leave through os._exit, which skips atexit; its own exit
        # hook runs first.
        from multiprocessing import util

        util.Finalize(self, Writer.flush, args=(self,), exitpriority=100)

    def _open(self) -> int:
        if self.target == "-":
            return 1
        return os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def reopen(self) -> None:
        self.flush()
        if self.fd != 1:
            old, self.fd = self.fd, self._open()
            os.close(old)

    def add(self, entry: Entry) -> None:
        """Buffer ``entry``'s line (formatted at the next flush; see the class docstring):
        written once ``BATCH`` are waiting, else by a timer on the running loop (or at exit,
        called outside one)."""
        self.entries.append(entry)
        self.added()

    def arm(self) -> None:
        """A batch has begun: make sure the timer will write it."""
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no loop: the exit hooks flush
                self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def added(self) -> None:
        """After an entry joined ``entries``: flush a full batch, else make sure the timer will.
        (The C layer appends to the list itself and calls this for a batch's first entry and
        a full one.)"""
        if len(self.entries) >= BATCH:
            self.flush()
        else:
            self.arm()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.take is not None:
            taken = self.take()
            if taken:
                self._write_lines(taken)
        if not self.entries:
            return
        entries = self.entries.copy()  # the list itself stays: the C layer appends to it
        self.entries.clear()
        if self.also is not None:
            self.also(entries)
        # Wall-clock times from the monotonic starts: one time.time() a batch, not a request.
        offset = time.time() - time.perf_counter()
        batch = getattr(self.format_line, "batch", None)  # a formatter's own loop (_DefaultFormat)
        if batch is not None:
            lines: list[str] = batch(entries, offset)
        else:
            format_line = self.format_line
            lines = [
                format_line(Record(scope, started + offset, status, size, duration, headers))
                for scope, started, status, size, duration, headers in entries
            ]
        self._write_lines(("\n".join(lines) + "\n").encode("utf-8", "replace"))

    def _write_lines(self, data: bytes) -> None:
        """``data``'s lines in writes of whole lines, each at most ``ATOMIC_WRITE`` bytes (a
        longer line alone), so lines of workers sharing a pipe never interleave."""
        start, end = 0, len(data)
        while end - start > ATOMIC_WRITE:
            cut = data.rfind(b"\n", start, start + ATOMIC_WRITE) + 1
            if cut <= start:  # one line longer than an atomic write: it goes alone
                cut = data.index(b"\n", start) + 1
            self._write(data[start:cut])
            start = cut
        if start < end:
            self._write(data[start:] if start else data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:
                return  # the reader is gone (a closed pipe): nothing to log to
            view = view[written:]


class AccessLog:
    """The pipeline layer: times each request and writes its line when the response is done."""

    def __init__(self, app: Any, writer: Writer, metrics: Any = None) -> None:
        self.app = app
        #: Formats and writes the records (``Writer.add``), a batch at a time.
        self.writer = writer
        #: ``launcher.metrics.ServerMetrics`` when metrics are on too: it counts each HTTP
        #: request from what this layer sees, rather than wrapping ``send`` a second time: a
        #: request's start here (``begin``, for the active-requests gauge), its end from the
        #: Writer's batches (``counted``), so no second call or tuple a request.
        self.metrics = metrics
        if metrics is not None:
            writer.also = metrics.counted

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] == "lifespan":
            return self._lifespan(scope, receive, send)
        return self._logged(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Any, send: Any) -> None:
        async def flushing_receive() -> Message:
            message: Message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.writer.flush()
                if self.metrics is not None:
                    self.metrics.flush()
            return message

        await self.app(scope, flushing_receive, send)

    async def _logged(self, scope: Scope, receive: Any, send: Any) -> None:
        metrics = self.metrics
        if metrics is not None and scope["type"] == "http":
            metrics.begin(scope["method"])
        recorder = Recorder(send)  # status, size and headers, with no Python frame a message
        started = _clock()
        try:
            await self.app(scope, receive, recorder)
        except BaseException:
            status = recorder.status or 500  # what the server answers for an app that raised
            raise
        else:
            status = recorder.status
        finally:
            self.writer.add((scope, started, status, recorder.size, _clock() - started, recorder.headers))


def layer(app: Any, writer: Writer, metrics: Any = None) -> Any:
    """The access log's layer around ``app``: ``launcher._speedups.AccessLayer`` where the
    extension was built (each request's path in C: no Python frame, no Python code a request
    but the app's), else ``AccessLog``. Both record the same entries (a unit test holds them
    equal); lifespan is ``AccessLog``'s in both."""
    python = AccessLog(app, writer, metrics)
    if _AccessLayer is None:
        return python
    more: dict[str, Any] = {}
    if metrics is not None:
        # Counted into the metrics' Tally by the C layer as each request ends, not from the
        # Writer's entries (no scope held).
        writer.also = None
        more.update(tally=metrics.tally)
    fmt = writer.format_line
    if isinstance(fmt, (_DefaultFormat, _JsonFormat)):  # each line formatted as its request ends, in C
        # A full batch is written from C, to ``writer.fd``; the timer and the exit hooks
        # write the rest through ``writer.flush`` (which takes the lines from the layer).
        more.update(now=fmt.clock.now, pid=fmt.pid_text, arm=writer.arm, flush=writer.flush, writer=writer)
        more.update(json=isinstance(fmt, _JsonFormat))
    started, arm = (metrics.started, metrics.arm) if metrics is not None else (None, None)
    c = _AccessLayer(app, writer.entries, writer.added, started, arm, python._lifespan, BATCH, **more)
    if "now" in more:
        writer.take = c.take
    return c


def formatter(log_format: str, layout: str | None) -> Callable[[Record], str]:
    """The line formatter for ``LOG_FORMAT`` and ``ACCESS_LOG_FORMAT``."""
    if log_format == "json":
        return json_formatter()
    return text_formatter(layout or DEFAULT_FORMAT)
