"""What each request did, kept the same way under every backend: the access log and the metrics.

Every backend's own access logger is turned off; the worker pipeline's response check records
each request and response in a ``RequestLog`` instead, so the line is the same whichever server runs (only the
values differ). The default line is the combined log format that Gunicorn and nginx write, plus
the duration, the worker's pid and the ``X-Request-ID``::

    127.0.0.1 - - [01/Dec/2026:20:16:45 +0000] "GET /items?page=2 HTTP/1.1" 200 27 "-" "curl/8.0" 0.512ms pid=1234 rid=-

``ACCESS_LOG_FORMAT`` lays the same fields out with Gunicorn's atoms; ``LOG_FORMAT=json`` makes
each line one JSON object with Elastic Common Schema / OpenTelemetry names.

Where the cost is, and so the shape of this module: as a request ends, ``record`` copies the few
values a line needs out of the scope into one flat tuple of ``str``, ``bytes`` and numbers (an
``Entry``) and keeps nothing else of the request; tuples of such values are untracked by the
garbage collector, so holding a batch costs it nothing (holding scopes made each collection
walk them, which was most of what the access log cost). Entries are formatted a batch at a time,
every ``BATCH`` requests or ``FLUSH_INTERVAL`` seconds, and handed to the writer thread, so no
write blocks the event loop. The metrics (``launcher.observability.metrics``) count the same
entries: one record a request, for both.

Every field a client sends is escaped in a text line (``"``, ``\\`` and any byte outside printable
ASCII as ``\\xHH``, as nginx does), so a request cannot forge a line or a field, and a JSON line
stays valid JSON.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import select
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from time import perf_counter
from typing import Any, Final

from launcher.config.access_format import ATOM, DEFAULT_FORMAT

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

#: Seconds a request's line may wait before it is written.
FLUSH_INTERVAL = 0.2
#: Requests formatted and written together. Fewer cost more: against 64, batches of 8 cost a
#: hello-world request up to 5 % more under Granian, Gunicorn and Uvicorn, and batches of 16 up to
#: 2 % (``bench/run.py --at-once``, 2026-12-07); more would not write less often to a pipe,
#: whose writes are at most ``ATOMIC_WRITE`` bytes.
BATCH: Final = 64
#: Bytes one write(2) may carry and stay atomic on a pipe (PIPE_BUF): lines of several workers
#: sharing stdout never interleave.
ATOMIC_WRITE: Final = 4096
#: Bytes of lines held for a full pipe to drain before the newest are dropped (and counted).
HELD: Final = 4 * 1024 * 1024

#: An ``Entry``'s fields, by position: what a line or a metric needs of one request. (``Final``:
#: compiled by mypyc, each is a constant, not a lookup of the module's globals.)
START: Final = 0
DURATION: Final = 1
STATUS: Final = 2
SIZE: Final = 3
KIND: Final = 4
METHOD: Final = 5
CLIENT: Final = 6
PORT: Final = 7
PATH: Final = 8
TARGET: Final = 9
QUERY: Final = 10
VERSION: Final = 11
HEADERS: Final = 12
RESPONSE: Final = 13
#: With tracing on and a layout that shows them, two more: the trace and span ids (hex, or "").
TRACE_ID: Final = 14
SPAN_ID: Final = 15
#: (perf_counter at its start, seconds, status, body bytes, scope type, method, client host,
#: client port, path, raw path (bytes, or None), query (bytes), HTTP version, the request header
#: values the layout names, the response header values it names[, trace id, span id]).
Entry = tuple[Any, ...]


class _Session:
    """The ``send`` a WebSocket session's app is given: passes each message on unchanged and
    keeps what it says: ``status`` 101 once accepted, 403 for one closed before it was (what the
    server answers), 0 before either; ``size``, the message bytes sent."""

    __slots__ = ("send", "size", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0
        self.size = 0

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "websocket.send":
            self.size += len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
        elif kind == "websocket.accept":
            self.status = 101
        elif kind == "websocket.close" and not self.status:
            self.status = 403
        return self.send(message)


#: A scope's ``client`` when it has none: no host, no port.
_NO_CLIENT = (None, None)


def _values(headers: Iterable[tuple[bytes, bytes]], index: dict[bytes, int]) -> tuple[bytes | None, ...]:
    """The value of each header ``index`` names (lower-case, at its position), None where absent
    (the last, where one is repeated).

    One pass over the headers, one set lookup each: cheaper than a dict of them all (which
    hashes and stores every pair) for the few names a line shows."""
    values: list[bytes | None] = [None] * len(index)
    for key, value in headers:
        if key in index:
            values[index[key]] = value
    return tuple(values)


class RequestLog:
    """One ``Entry`` a request (and WebSocket session), handed in batches to the access log's
    ``Writer`` and the metrics (``sinks``).

    Not a layer of its own: the pipeline's response check (``launcher.worker.pipeline``), which
    sees every message of an HTTP response anyway, calls ``record`` as the request ends, so
    recording adds no coroutine frame and no ``send`` wrapper to a request's path. WebSocket
    sessions are recorded through ``session``; the lifespan through ``lifespan``, whose
    shutdown flushes what is pending.
    """

    def __init__(
        self,
        sinks: Sequence[Callable[[list[Entry]], None]],
        request_headers: tuple[bytes, ...] = (),
        response_headers: tuple[bytes, ...] = (),
        begun: list[str] | None = None,
        ids: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.sinks = sinks
        self.request_headers = request_headers
        self.response_headers = response_headers
        #: The position in an entry's header values of each name, request's and response's.
        self._request_index = {name: at for at, name in enumerate(request_headers)}
        self._response_index = {name: at for at, name in enumerate(response_headers)}
        #: The current span's (trace id, span id), read as the request ends, inside its span.
        self.ids = ids
        #: The method of each HTTP request begun (the metrics' active-requests gauge), or None.
        self.begun = begun
        self.entries: list[Entry] = []
        self._timer: asyncio.TimerHandle | None = None
        atexit.register(self.flush)
        # multiprocessing's workers leave through os._exit, which skips atexit; its own exit
        # hooks run first. (Registered without an object to watch: compiled by mypyc, a class takes
        # no weak reference, and atexit holds this one for the process's life anyway.)
        from multiprocessing import util

        util.Finalize(None, self.flush, exitpriority=100)

    def begin(self, scope: Scope) -> None:
        """An HTTP request begins (called only with the metrics on, ``begun`` not None)."""
        self.begun.append(scope["method"])  # type: ignore[union-attr]
        if self._timer is None:
            self._arm()  # the active-requests gauge follows a request begun, even if none ends

    def record(
        self, scope: Scope, start: float, status: int, size: int, headers: Iterable[tuple[bytes, bytes]]
    ) -> None:
        """A request or session begun at ``start`` (``perf_counter``) has ended with ``status``,
        ``size`` body bytes and the response ``headers``: its entry, copied out of the scope."""
        duration = perf_counter() - start
        get = scope.get
        client = get("client") or _NO_CLIENT
        entry = (
            start,
            duration,
            status,
            size,
            scope["type"],
            get("method", "GET"),
            client[0],
            client[1],
            scope["path"],
            get("raw_path"),
            get("query_string", b""),
            get("http_version", "1.1"),
            _values(scope["headers"], self._request_index) if self.request_headers else (),
            # (A request's header names are lower-case, as the ASGI spec says and every server
            # keeps them; an app may send a response's in any case.)
            _values([(key.lower(), value) for key, value in headers], self._response_index)
            if self.response_headers
            else (),
        )
        entries = self.entries
        entries.append(entry if self.ids is None else entry + self.ids())
        if len(entries) >= BATCH:
            self.flush()
        elif self._timer is None:
            self._arm()

    async def session(self, app: Any, scope: Scope, receive: Any, send: Any) -> None:
        """Serve a WebSocket session through ``app``, and record it."""
        session = _Session(send)
        start = perf_counter()
        try:
            await app(scope, receive, session)
        except BaseException:
            if not session.status:
                session.status = 500  # what the server answers
            raise
        finally:
            self.record(scope, start, session.status, session.size, ())

    async def lifespan(self, app: Any, scope: Scope, receive: Any, send: Any) -> None:
        """Serve the lifespan through ``app``; its shutdown flushes what is pending."""

        async def flushing_receive() -> Message:
            message: Message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.flush()
            return message

        await app(scope, flushing_receive, send)

    def _arm(self) -> None:
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: the exit hooks flush
                self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.entries and not self.begun:
            return
        entries, self.entries = self.entries, []
        for sink in self.sinks:
            sink(entries)


# -- the lines ------------------------------------------------------------------------------

#: The bytes a text line shows as they are: printable ASCII but ``"`` and ``\\``.
_SAFE = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
_SHOWN = [chr(byte) if chr(byte).encode() in _SAFE else f"\\x{byte:02X}" for byte in range(256)]


#: "000" to "999": the digits after a decimal point, looked up (formatting a float with a format
#: spec cost an eighth of a line; compiled, it is the one generic call left in one).
_MILLIS: Final = [f"{n:03d}" for n in range(1000)]


#: "0" to "999" as text: a status, and a size or whole milliseconds below 1,000, looked up rather
#: than formatted a line (formatting an int is about 1,000 instructions).
_DECIMAL: Final = [str(n) for n in range(1000)]


def _millis(seconds: float) -> str:
    """``seconds`` in milliseconds to the microsecond (what ``f"{seconds * 1000:.3f}"`` shows)."""
    micros = int(seconds * 1_000_000 + 0.5)
    millis = micros // 1000
    return f"{_DECIMAL[millis] if millis < 1000 else millis}.{_MILLIS[micros % 1000]}"


def escape(value: Any) -> str:
    """``value`` for a text line: ``"``, ``\\``, control and non-ASCII bytes as ``\\xHH``, so a
    request can neither end the line nor close a quoted field; ``-`` for nothing."""
    if value is None or value == b"" or value == "":
        return "-"
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
    if raw.translate(None, _SAFE):  # some byte is not safe
        return "".join([_SHOWN[byte] for byte in raw])
    return raw.decode("ascii")


def _target(entry: Entry) -> bytes:
    """The request target as the client sent it (raw path and query)."""
    raw = entry[TARGET]
    path = raw if isinstance(raw, bytes) else str(entry[PATH]).encode("utf-8", "surrogateescape")
    query = entry[QUERY]
    if not query:
        return path
    return (
        path + b"?" + (query if isinstance(query, bytes) else str(query).encode("utf-8", "surrogateescape"))
    )


class _Clock:
    """A time to the second in ``layout``, formatted once a second, not once a line."""

    def __init__(
        self, layout: str = "[%d/%b/%Y:%H:%M:%S %z]", convert: Callable[[float], Any] = time.localtime
    ) -> None:
        self._layout = layout
        self._convert = convert
        #: The second ``text`` shows (a line whose second is this one reads ``text`` directly).
        self.second = -1
        self.text = ""

    def now(self, wall: float) -> str:
        second = int(wall)
        if second != self.second:
            self.second = second
            self.text = time.strftime(self._layout, self._convert(second))
        return self.text


class Layout:
    """How one ``ACCESS_LOG_FORMAT`` (or ``LOG_FORMAT=json``) turns entries into lines: which
    headers an entry must keep, and the line of each entry."""

    #: Request and response header names (lower-case) the lines need.
    request_headers: tuple[bytes, ...] = ()
    response_headers: tuple[bytes, ...] = ()
    #: Whether the lines show the trace and span ids (entries carry them only with tracing on).
    trace_ids = False

    def line(self, entry: Entry, wall: float) -> str:
        raise NotImplementedError

    def formatter(self) -> Callable[[Entry, float], str]:
        """What ``lines`` calls for each entry: ``line``, or a layout's quicker equivalent."""
        return self.line

    def lines(
        self, entries: list[Entry], formatter: Callable[[Entry, float], str] | None = None
    ) -> tuple[list[str], int]:
        """The lines of ``entries`` (each by ``formatter``, ``formatter()`` unless given), and how
        many could not be formatted (a request whose scope held what no line can show loses its
        own line, not its batch's)."""
        # Wall-clock times from the monotonic starts: one time.time() a batch, not a request.
        offset = time.time() - time.perf_counter()
        line = formatter or self.formatter()
        out: list[str] = []
        append = out.append
        failed = 0
        for entry in entries:
            try:
                append(line(entry, entry[START] + offset))
            except Exception:
                failed += 1
        return out, failed

    def batch(self, entries: list[Entry]) -> tuple[bytes, int, int]:
        """What the writer writes of ``entries``: their lines, each ended by a newline, in UTF-8;
        how many lines that is, and how many could not be formatted."""
        lines, failed = self.lines(entries)
        if not lines:
            return b"", 0, failed
        return ("\n".join(lines) + "\n").encode("utf-8", "replace"), len(lines), failed


#: The default line's own quotes, as what is left of a line that needs no escaping once every
#: ``_SAFE`` byte is taken out.
_SIX_QUOTES = b'"' * 6
#: What is left of a batch's bytes that needs no escaping once every ``_SAFE`` byte is taken
#: out: each line's six quotes and the newline that ends it, nothing else.
_CLEAN_LINE = _SIX_QUOTES + b"\n"


class TextLayout(Layout):
    """A layout of Gunicorn's atoms; the default one is formatted without a dict a line."""

    def __init__(self, layout: str = DEFAULT_FORMAT) -> None:
        self.layout = layout
        self.atoms = list(dict.fromkeys(m["atom"] for m in ATOM.finditer(layout)))
        self.request_headers = tuple(
            dict.fromkeys(
                [b"referer"] * ("f" in self.atoms)
                + [b"user-agent"] * ("a" in self.atoms)
                + [a[1:-2].lower().encode("latin1") for a in self.atoms if a[-1] == "i" and a[0] == "{"]
            )
        )
        self.response_headers = tuple(
            dict.fromkeys(
                a[1:-2].lower().encode("latin1") for a in self.atoms if a[-1] == "o" and a[0] == "{"
            )
        )
        self.clock = _Clock()
        self.pid = str(os.getpid())
        self.default = layout == DEFAULT_FORMAT
        self.trace_ids = "trace_id" in self.atoms or "span_id" in self.atoms

    def line(self, entry: Entry, wall: float) -> str:
        if self.default:
            return self._default(entry, wall)
        return self.layout % {atom: self._value(entry, atom, wall) for atom in self.atoms}

    def formatter(self) -> Callable[[Entry, float], str]:
        return self._default if self.default else self.line

    def batch(self, entries: list[Entry]) -> tuple[bytes, int, int]:
        """The default layout's batch: every line formatted from the raw values, then the whole
        batch checked at once. Where it is all printable ASCII with no ``\\`` and only the
        layout's own six ``"`` a line, no field needed escaping (the common case: one
        ``translate`` of the bytes the writer writes anyway, not a check a line); otherwise, or
        where an entry could not be formatted raw, each line is formatted again, escaped where it
        needs."""
        if not self.default:
            return super().batch(entries)
        lines, failed = self.lines(entries, self._raw)
        if not lines:
            return super().batch(entries)
        text = "\n".join(lines) + "\n"
        if not failed and text.isascii():
            data = text.encode("ascii")
            if data.translate(None, _SAFE) == _CLEAN_LINE * len(lines):
                return data, len(lines), failed
        return super().batch(entries)

    def _raw(self, entry: Entry, wall: float) -> str:
        """The default line from the raw values, escaped nowhere.

        The locals are typed, and the f-string has no format spec, for the module compiled by
        mypyc (``docs/benchmarks.md``): each value is then read and turned into text without a
        generic call, and the line built in one allocation. A value of another type (from a
        server outside the ASGI spec) fails there, and ``batch`` formats that entry again, as
        ``_default`` does, with each field escaped."""
        referer: bytes | None
        agent: bytes | None
        request_id: bytes | None
        referer, agent, request_id = entry[HEADERS]
        raw = entry[TARGET]
        target: bytes = raw if type(raw) is bytes and not entry[QUERY] else _target(entry)
        client: str = entry[CLIENT] or "-"
        method: str = entry[METHOD]
        version: str = entry[VERSION]
        status: str = _DECIMAL[entry[STATUS]]
        size: int = entry[SIZE]
        clock = self.clock
        stamp = clock.text if int(wall) == clock.second else clock.now(wall)
        # (A header that is absent, the common case for two of them, costs no decode.)
        shown_target = target.decode("latin1") if target else "-"
        shown_referer = referer.decode("latin1") if referer else "-"
        shown_agent = agent.decode("latin1") if agent else "-"
        shown_id = request_id.decode("latin1") if request_id else "-"
        shown_size = (_DECIMAL[size] if size < 1000 else str(size)) if size else "-"
        return (
            f'{client} - - {stamp} "{method} {shown_target} HTTP/{version}" {status} {shown_size} '
            f'"{shown_referer}" "{shown_agent}" {_millis(entry[DURATION])}ms pid={self.pid} rid={shown_id}'
        )

    def _default(self, entry: Entry, wall: float) -> str:
        """The default line: the raw one where that is all printable ASCII with no ``\\`` and
        only the layout's own six ``"`` (no field needed escaping), else each field escaped."""
        with contextlib.suppress(TypeError):  # (compiled: a value of a type ``_raw`` does not take)
            line = self._raw(entry, wall)
            if line.isascii() and line.encode("ascii").translate(None, _SAFE) == _SIX_QUOTES:
                return line
        referer, agent, request_id = entry[HEADERS]
        return (
            f'{escape(entry[CLIENT])} - - {self.clock.now(wall)} "{escape(entry[METHOD])} '
            f'{escape(_target(entry))} HTTP/{escape(entry[VERSION])}" {entry[STATUS]} {entry[SIZE] or "-"} '
            f'"{escape(referer)}" "{escape(agent)}" {_millis(entry[DURATION])}ms pid={self.pid} '
            f"rid={escape(request_id)}"
        )

    def _value(self, entry: Entry, atom: str, wall: float) -> Any:
        simple = _TEXT_ATOMS.get(atom)
        if simple is not None:
            return simple(entry)
        if atom == "t":
            return self.clock.now(wall)
        if atom == "p":
            return self.pid
        if atom in ("f", "a"):
            return escape(
                entry[HEADERS][self.request_headers.index(b"referer" if atom == "f" else b"user-agent")]
            )
        name, kind = atom[1:-2].lower(), atom[-1]
        if kind == "i":
            return escape(entry[HEADERS][self.request_headers.index(name.encode("latin1"))])
        if kind == "o":
            return escape(entry[RESPONSE][self.response_headers.index(name.encode("latin1"))])
        return escape(os.environ.get(name.upper(), os.environ.get(name)))


_TEXT_ATOMS: dict[str, Callable[[Entry], Any]] = {
    "h": lambda e: escape(e[CLIENT]),
    "l": lambda e: "-",
    "u": lambda e: "-",
    "r": lambda e: f"{escape(e[METHOD])} {escape(_target(e))} HTTP/{escape(e[VERSION])}",
    "m": lambda e: escape(e[METHOD]),
    "U": lambda e: escape(e[PATH]),
    "q": lambda e: escape(e[QUERY]),
    "H": lambda e: f"HTTP/{escape(e[VERSION])}",
    "s": lambda e: e[STATUS],
    "B": lambda e: e[SIZE],
    "b": lambda e: e[SIZE] or "-",
    "T": lambda e: int(e[DURATION]),
    "M": lambda e: _millis(e[DURATION]),
    "D": lambda e: int(e[DURATION] * 1_000_000),
    "L": lambda e: f"{e[DURATION]:.6f}",
    "trace_id": lambda e: (e[TRACE_ID] if len(e) > TRACE_ID else "") or "-",
    "span_id": lambda e: (e[SPAN_ID] if len(e) > SPAN_ID else "") or "-",
}


def _text(value: Any) -> str:
    """A value as JSON string content sees it: bytes as Latin-1 (each byte one character)."""
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


class JsonLayout(Layout):
    """One JSON object a request, keyed by Elastic Common Schema / OpenTelemetry names; strings go
    through the json module's C escaper, so the line is valid JSON whatever a client sent."""

    request_headers: tuple[bytes, ...] = (b"referer", b"user-agent", b"x-request-id")
    trace_ids = True

    def __init__(self) -> None:
        self.clock = _Clock("%Y-%m-%dT%H:%M:%S", time.gmtime)  # ISO 8601 in UTC, milliseconds added
        self.pid = str(os.getpid())

    def line(self, entry: Entry, wall: float) -> str:
        # One string built at the end (no ``+=`` copying the line a field at a time), and the
        # common case of each value found without a call (a bytes target, an int port, a status
        # looked up). A value of a type the line cannot show raises, and the line is lost.
        quote = encode_basestring_ascii
        method, version, status = entry[METHOD], entry[VERSION], _DECIMAL[entry[STATUS]]
        client, port, query, size = entry[CLIENT], entry[PORT], entry[QUERY], entry[SIZE]
        if type(size) is not int:
            raise TypeError(f"body bytes: {size!r}")
        referer, agent, request_id = entry[HEADERS]
        raw = entry[TARGET]
        target = (raw if type(raw) is bytes and not query else _target(entry)).decode("latin1")
        clock = self.clock
        stamp = clock.text if int(wall) == clock.second else clock.now(wall)
        address = quote(client) if client is not None else '"-"'
        client_port = (
            f',"client.port":{port}'
            if type(port) is int
            else f',"client.port":{int(port)}'
            if _is_port(port)
            else ""
        )
        url_query = f',"url.query":{quote(_text(query))}' if query else ""
        shown_referer = (
            "" if referer is None else f',"http.request.referrer":{quote(referer.decode("latin1"))}'
        )
        shown_agent = "" if agent is None else f',"user_agent.original":{quote(agent.decode("latin1"))}'
        shown_id = "" if request_id is None else f',"http.request.id":{quote(request_id.decode("latin1"))}'
        trace = (
            f',"trace_id":"{entry[TRACE_ID]}","span_id":"{entry[SPAN_ID]}"'
            if len(entry) > TRACE_ID and entry[TRACE_ID]
            else ""
        )
        protocol = ',"network.protocol.name":"websocket"' if entry[KIND] == "websocket" else ""
        return (
            f'{{"@timestamp":"{stamp}.{_MILLIS[int(wall % 1 * 1000)]}Z","log.level":"info",'
            f'"log.logger":"asgi_launcher.access","event.dataset":"asgi.access",'
            f'"message":{quote(f"{method} {target} HTTP/{version} {status}")}'
            f',"client.address":{address}{client_port},"http.request.method":{quote(method)}'
            f',"url.path":{quote(entry[PATH])}{url_query},"network.protocol.version":{quote(version)}'
            f',"http.response.status_code":{status},"http.response.body.bytes":{_DECIMAL[size] if size < 1000 else size}'
            f',"event.duration":{int(entry[DURATION] * 1_000_000_000)}'
            f'{shown_referer}{shown_agent}{shown_id},"process.pid":{self.pid}{trace}{protocol}}}'
        )


def _is_port(port: Any) -> bool:
    return isinstance(port, int) or (isinstance(port, str) and port.isdigit())


def layout_for(log_format: str, access_log_format: str | None) -> Layout:
    """The layout ``LOG_FORMAT`` and ``ACCESS_LOG_FORMAT`` ask for."""
    if log_format == "json":
        return JsonLayout()
    return TextLayout(access_log_format or DEFAULT_FORMAT)


# -- the writes -----------------------------------------------------------------------------


class Writer:
    """Lines to ``-`` (stdout) or a file opened for append, written on the event loop, which a
    slow reader never stalls.

    ``__call__`` (a ``RequestLog`` sink) formats a batch and writes it at once, in whole lines of
    at most ``ATOMIC_WRITE`` bytes. Stdout that is a pipe (as under Docker or a process manager)
    is written through a file description of the writer's own, opened anew through
    ``/proc/self/fd/1`` and non-blocking: the flag touches no other writer of the pipe, and a
    write of at most ``PIPE_BUF`` bytes is all or nothing. Where that open is refused (a process
    whose user did not create the pipe: ``--user 10001``), each write first asks the kernel
    whether the pipe has room (a free page, enough for one atomic write). When the pipe is full,
    the rest waits (at most ``HELD`` bytes) and is written as the pipe drains (the loop watches
    it); past that, new lines are dropped and counted (``dropped``, and ``on_lost``: the
    metrics' counter), with one warning line on stderr the first time. Reopened on SIGUSR1 like
    every log file (``launcher.observability.logs``); what waits is written at exit.

    No thread: handing each batch to one cost the event loop's thread a GIL hand-off a batch,
    measured at 1 to 7 % of a hello-world request (``docs/benchmarks.md``).
    """

    def __init__(self, target: str, layout: Layout, on_lost: Callable[[int], None] | None = None) -> None:
        self.target = target
        self.layout = layout
        self.fd = self._open()
        #: Lines that could not be written: dropped when too much waited, or unformattable.
        self.dropped = 0
        self.on_lost = on_lost
        #: Whole lines waiting for a full pipe to drain, and the loop watching it meanwhile.
        self._held = bytearray()
        self._watcher: asyncio.AbstractEventLoop | None = None
        self._warned = False
        from launcher.observability.logs import on_reopen

        on_reopen(self.reopen)
        atexit.register(self.close)
        from multiprocessing import util

        util.Finalize(None, self.close, exitpriority=50)  # after RequestLog's flush (100)

    def _open(self) -> int:
        #: Whether a write never waits (a non-blocking pipe), or must first ask for room.
        self.nonblocking = False
        if self.target != "-":
            return os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(os.fstat(1).st_mode):
                fd = os.open("/proc/self/fd/1", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                self.nonblocking = True
                return fd
        return 1

    def reopen(self) -> None:
        if self.target != "-":
            old, self.fd = self.fd, self._open()
            os.close(old)

    def __call__(self, entries: list[Entry]) -> None:
        data, count, failed = self.layout.batch(entries)
        if failed:
            self._lost(failed, "a request's values could not be formatted")
        if count:
            self.put(data)

    def put(self, data: bytes) -> None:
        """Write ``data`` (whole lines) now, or after what waits; hold what a full pipe refuses."""
        written = 0 if self._held else self._write_lines(data)  # after what waits, in order
        if written == len(data):
            return
        rest = memoryview(data)[written:]
        if len(self._held) + len(rest) > HELD:
            self._lost(data.count(b"\n", written), "the log's reader is not keeping up")
            return
        self._held += rest
        if self._watcher is None:
            with contextlib.suppress(RuntimeError):  # no running loop: ``close`` writes it
                self._watcher = asyncio.get_running_loop()
                self._watcher.add_writer(self.fd, self._drain)

    def _drain(self) -> None:
        """The full pipe has room again: write what waits."""
        del self._held[: self._write_lines(self._held)]
        if not self._held and self._watcher is not None:
            self._watcher.remove_writer(self.fd)
            self._watcher = None

    def _lost(self, count: int, why: str) -> None:
        self.dropped += count
        if self.on_lost is not None:
            self.on_lost(count)
        if not self._warned:
            self._warned = True
            from launcher.observability.logs import launcher_line

            message = f"access log: {count} line(s) dropped: {why} (counted; this is said once)"
            with contextlib.suppress(OSError):
                os.write(2, (launcher_line(message, "warning") + "\n").encode())

    def close(self) -> None:
        """Write what waits for a full pipe, waiting at most a few seconds for it to drain."""
        if self._watcher is not None:
            with contextlib.suppress(Exception):  # the loop may be closed by now
                self._watcher.remove_writer(self.fd)
            self._watcher = None
        deadline = time.monotonic() + 5
        while self._held and time.monotonic() < deadline:
            self._room(max(0.0, deadline - time.monotonic()))
            del self._held[: self._write_lines(self._held)]

    def _room(self, wait: float = 0.0) -> bool:
        """Whether the output can take a write now (waiting at most ``wait`` seconds for it)."""
        poll = select.poll()
        poll.register(self.fd, select.POLLOUT)
        try:
            return bool(poll.poll(wait * 1000))
        except OSError:
            return True  # (interrupted: the write says the rest)

    def _write_lines(self, data: bytes | bytearray) -> int:
        """Write ``data`` in whole lines of at most ``ATOMIC_WRITE`` bytes: how many bytes were
        written, fewer than all where a full pipe refused the rest (all, if the reader is gone)."""
        start, end = 0, len(data)
        while start < end:
            cut = end
            if end - start > ATOMIC_WRITE:
                cut = data.rfind(b"\n", start, start + ATOMIC_WRITE) + 1
                if cut <= start:  # one line longer than an atomic write: it goes alone
                    cut = data.index(b"\n", start) + 1
            written = self._write(data[start:cut] if start or cut < end else data)
            if written < cut - start:
                return start + written
            start = cut
        return end

    def _write(self, data: bytes | bytearray) -> int:
        """Write ``data`` (one write(2) where it fits a pipe's atomic size): the bytes written,
        fewer where a full pipe refused the rest (all of it, for an atomic write)."""
        if not self.nonblocking and not self._room():
            return 0
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                return len(data) - len(view)
            except InterruptedError:
                continue
            except OSError:
                return len(data)  # the reader is gone (a closed pipe): nothing to log to
            view = view[written:]
        return len(data)


def recorder(
    access_log: str | None,
    layout: Layout | None,
    metrics: Any = None,
    ids: Callable[[], tuple[str, str]] | None = None,
) -> RequestLog:
    """The ``RequestLog`` for the access log (``access_log`` not None) and the metrics
    (``metrics``: a ``ServerMetrics``), whichever are on; ``ids``, with tracing on, gives each
    entry the request's trace and span ids."""
    sinks: list[Callable[[list[Entry]], None]] = []
    request_headers: tuple[bytes, ...] = ()
    response_headers: tuple[bytes, ...] = ()
    if access_log is not None and layout is not None:
        sinks.append(Writer(access_log, layout, metrics.lost if metrics is not None else None))
        request_headers, response_headers = layout.request_headers, layout.response_headers
    begun = None
    if metrics is not None:
        sinks.append(metrics.counted)
        begun = metrics.begun
    return RequestLog(sinks, request_headers, response_headers, begun, ids)
