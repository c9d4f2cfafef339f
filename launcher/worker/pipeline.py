"""The worker pipeline: the one ASGI 3 callable every worker of every backend serves.

``build(context, ...)`` imports the user's app and wraps it in the launcher's layers, so that a
setting means the same whichever server runs the worker. The order is written once, here,
outermost first:

0. **boot** (always): once the app's lifespan startup is done (or the app has no lifespan), the
   worker marks itself booted in the master's state directory; a failed startup ends it as a
   failed boot, told the same way under every backend (``bootstrap.cannot_boot``);
1. **watchdog** (``TIMEOUT`` > 0): the worker's event loop refreshes its heartbeat file, so
   the master (``launcher.master.Master.check``) can kill a worker whose loop is stuck;
2. **spec scope** and **CONNECT refused**: the ASGI scope's ports as ints and HTTP/1.0 as
   ``"1.0"`` where a server says otherwise; CONNECT answered 400, for servers that would pass it
   on: an app is not a proxy, and a 2xx answer turns the connection into a tunnel (Hypercorn
   then fails with a traceback);
3. **request checks**, for servers whose parser does not see to them (and for HTTP/2 requests,
   which no server's HTTP/1.1 parser sees): ``LIMIT_REQUEST_LINE``
   (414), ``LIMIT_REQUEST_FIELDS`` and ``LIMIT_REQUEST_FIELD_SIZE`` (431), Content-Length with
   Transfer-Encoding (400), each answered with ``connection: close``; an absolute-form target
   (``GET http://host/path``) reaches the app as its path;
4. **retirement** (always): once the worker is on its way out (its ``MAX_REQUESTS``-th
   request, its memory past ``MAX_WORKER_MEMORY`` after a request, the master's
   ``SHUTDOWN_DELAY`` begun, or a drain), every response carries ``connection: close``, so
   keep-alive clients leave between two requests; the first two also ask the server to retire
   the worker gracefully (``Retirement``);
5. **proxy headers** (``FORWARDED_ALLOW_IPS``), unless the server applies them itself;
   **tracing** (an ``OTEL_*`` variable turns it on: ``launcher.config.tracing``): one OpenTelemetry
   server span a request, current while the layers inside and the app run
   (``launcher.observability.tracing``);
6. **response check** (always, for HTTP): what the app sends is checked before the server sees
   it, so every server answers the same: an invalid status or header, or no response at all,
   is answered 500 instead; an exception the app raises once its response is complete is
   logged (once) and goes no further, so the server keeps the connection for its next request
   (``ResponseCheck``); and the **request log** (``ACCESS_LOG`` not empty, or ``OPS_PORT`` with
   ``prometheus_client``; ``launcher.observability.access_log``), made by the same layer, which
   sees the response anyway: one record a request of what the client got, from which the access
   log writes its line (the same under every backend: each server's own access logger is off)
   and the metrics count its duration, status and size (``launcher.observability.metrics``),
   after the proxy headers set the client address and before the root path changes the path;
7. **root path** (``ROOT_PATH``): the ASGI ``root_path``, included in ``path`` as Uvicorn does;
8. **WebSocket drain**, for servers that leave WebSockets open when they stop: on shutdown each
   open WebSocket is closed with 1012 (service restart) and the app's ``receive`` says so;
9. **ASGI 2 adapter**, for apps in the legacy double-callable form.

A layer whose setting is off is not in the chain at all, so it costs nothing per request; the
layers that are on return the inner app's awaitable rather than adding a coroutine frame, except
the response check (it must see the response end), the root path (it puts the path back) and
WebSocket sessions under the drain.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import re
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

from launcher import statedir
from launcher.config.addresses import detach_listeners, ports_and_paths
from launcher.errors import ConfigError
from launcher.procfs import OwnMemory, served_connections
from launcher.worker import bootstrap
from launcher.worker.bootstrap import WorkerContext
from launcher.worker.importer import import_app
from launcher.worker.proxy_headers import ProxyHeadersMiddleware
from launcher.worker.request_head import REASONS, HeadLimits

if TYPE_CHECKING:
    from launcher.config.model import Config
    from launcher.observability.access_log import RequestLog

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
MIB = 1024 * 1024
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Seconds between a draining worker's looks at its open connections.
DRAIN_LOOK_EVERY = 0.1
#: Seconds a worker draining at its master's stop goes on accepting what the socket's queue holds.
ACCEPT_QUEUED = 0.2

#: WebSocket close code for "service restart" (RFC 6455 registry), as Uvicorn sends on shutdown.
SERVICE_RESTART = 1012


@dataclass(frozen=True)
class ServerTraits:
    """What the server already does itself, so the pipeline leaves that layer out."""

    #: It applies FORWARDED_ALLOW_IPS itself, with the launcher's parsed value.
    proxy_headers: bool = False
    #: It closes open WebSockets (with 1012) when it begins to stop.
    closes_websockets: bool = False
    #: Its event loop is asyncio's (the WebSocket drain uses asyncio primitives); False for trio.
    asyncio: bool = True
    #: It refuses CONNECT itself (Uvicorn's parsers answer 400).
    refuses_connect: bool = False
    #: It holds HTTP/1.1 request heads to ``LIMIT_REQUEST_*`` itself (414, 431), refuses
    #: Content-Length with Transfer-Encoding (400) and serves an absolute-form target as its path.
    #: HTTP/2 requests (``HTTP2``, ``HTTP2_CLEARTEXT``) are still checked by the pipeline.
    checks_requests: bool = False
    #: Its scope's ``client`` and ``server`` ports are ints and an HTTP/1.0 request's
    #: ``http_version`` is ``"1.0"``, as the ASGI spec says (Granian's ports are strings, which
    #: reach ``request.client.port`` and Django's ``REMOTE_PORT``, and its HTTP/1.0 is ``"1"``,
    #: which reached the access line as ``HTTP/1``).
    spec_scope: bool = True
    #: The names of its own loggers (not its access logger) as it has set them up in the worker
    #: by the time ``build`` runs: they keep their handlers, stop passing records on to the root
    #: logger, and with ``LOG_FORMAT=json`` write JSON (``launcher.logs.adopt``).
    loggers: tuple[str, ...] = ()


def asgi_version(app: Any) -> int:
    """2 for the legacy double-callable form (``app(scope)`` returns ``instance(receive, send)``).

    A class is ASGI 2 unless it is awaitable, as Uvicorn decides; an ``async def`` callable is
    ASGI 3; otherwise the parameters decide: one positional parameter is ASGI 2. (Uvicorn's
    guess would call any object whose ``__call__`` is not ``async def`` ASGI 2, which is wrong
    for middleware that returns the inner app's awaitable.)
    """
    if inspect.isclass(app):
        return 3 if hasattr(app, "__await__") else 2
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    if inspect.iscoroutinefunction(call):
        return 3
    try:
        parameters = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return 3
    kinds = [p.kind for p in parameters]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return 3
    positional = [
        k for k in kinds if k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return 2 if len(positional) == 1 else 3


class ASGI2:
    """Serve a legacy ASGI 2 app: ``app(scope)`` builds the instance, which gets receive/send."""

    def __init__(self, app: Callable[[Scope], Callable[[Receive, Send], Awaitable[None]]]) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return self.app(scope)(receive, send)


class RootPath:
    """``ROOT_PATH``: the app sees ``root_path`` and a ``path`` that includes it (Uvicorn's rule).

    The scope is changed in place for the app's call and its path put back after, rather than
    copied: the layers outside (the access log) keep the path the client sent, and still see
    what the app's router left in the scope (the route tracing names its span after).
    """

    def __init__(self, app: ASGIApp, root_path: str) -> None:
        self.app = app
        self.root_path = root_path
        self.raw = root_path.encode()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "lifespan":
            return self.app(scope, receive, send)
        return self._rooted(scope, receive, send)

    async def _rooted(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, raw = scope["path"], scope.get("raw_path")
        scope["root_path"], scope["path"] = self.root_path, self.root_path + path
        if raw is not None:
            scope["raw_path"] = self.raw + raw
        try:
            await self.app(scope, receive, send)
        finally:
            scope["path"] = path
            if raw is not None:
                scope["raw_path"] = raw


class Retirement:
    """The worker's way out, the same under every backend: from the moment it is on its way, every
    response closes its connection, so a keep-alive client moves to another worker between two
    requests instead of finding its connection cut under the next one.

    It is on its way when:

    * **MAX_REQUESTS**: its ``limit``-th request starts (``retire``, the server's own graceful
      stop: stop accepting, finish what is in flight, this request included, exit 0; retiring
      as the last request *starts* means it accepts no connection it would have to drop);
    * **MAX_WORKER_MEMORY**: a request has ended with the worker's own memory over the limit
      (``launcher.procfs.OwnMemory``: its RSS read after every request, its USS only past the
      limit), so it passes the limit by at most one request's allocation before it retires; it
      says so in one line and leaves the master a mark (``statedir.retiring``), so the master's
      own once-a-second look neither retires it twice nor takes its exit for anything else;
    * **SHUTDOWN_DELAY**: the master's notice that the delay has begun is there (a timer on the
      worker's loop looks every ``CHECK_EVERY`` seconds);
    * **a drain**: the plugin's server begins a gentle stop (``WorkerApp.drain``).

    A request costs an attribute test or two while none of that is on.
    """

    CHECK_EVERY = 0.2

    def __init__(
        self,
        app: ASGIApp,
        context: WorkerContext,
        retire: Callable[[], None],
        *,
        limit: int = 0,
    ) -> None:
        config = context.config
        self.app = app
        self.context = context
        self.retire = retire
        self.limit = limit
        self.served = 0
        #: Every response closes its connection from now on.
        self.closing = False
        #: Why the worker asked to be retired ("" while it has not).
        self.retiring = ""
        #: WebSocket sessions open.
        self.websockets = 0
        self.memory: OwnMemory | None = None
        if config.max_worker_memory:
            self.memory = OwnMemory(config.max_worker_memory * MIB)
        self.notice = ""  # the master's SHUTDOWN_DELAY notice, looked for once the loop runs
        self.watching = context.state_dir is None or config.shutdown_delay <= 0
        if not self.watching:
            self.notice = os.path.join(str(context.state_dir), statedir.SHUTDOWN_NOTICE)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "lifespan":
            return self.app(scope, receive, send)
        if kind == "websocket":
            return self._websocket(scope, receive, send)
        if not self.watching:
            self.watching = True
            self._look(asyncio.get_running_loop())
        if self.limit:
            self.served += 1
            if self.served == self.limit:
                self.retire_for("max_requests")
        if self.closing:
            return self.app(scope, receive, lambda message: _send_closing(send, message))
        if self.memory is not None:
            return self._measured(scope, receive, send)
        return self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.websockets += 1  # (a drain does not wait for these: the server's stop closes them)
        try:
            await self.app(scope, receive, send)
        finally:
            self.websockets -= 1

    def retire_for(self, reason: str) -> None:
        """Ask the server to retire this worker (once), and close every connection from now on."""
        self.closing = True
        if self.retiring:
            return
        self.retiring = reason
        self.retire()

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if not self.retiring and self.memory is not None:
                used = self.memory.over()
                if used is not None:
                    self._oversized(*used)

    def _oversized(self, size: int, figure: str) -> None:
        config, pid = self.context.config, os.getpid()
        directory = self.context.state_dir
        if directory is not None and not statedir.claim(statedir.retiring(directory, pid), "memory"):
            return  # its master found it first (during this request): it said so, and stops it
        then = (
            "retiring it gracefully, starting a new one"
            if self.context.master_pid is not None
            else "single-process mode: draining, then exiting (status 0) for the orchestrator to start a fresh process"
        )
        _log.warning(
            "worker %d uses %.1f MiB (%s), over MAX_WORKER_MEMORY=%d MiB after a request; %s",
            pid,
            size / MIB,
            figure,
            config.max_worker_memory,
            then,
        )
        self.retire_for("memory")

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        if os.path.exists(self.notice):
            self.closing = True
            return
        loop.call_later(self.CHECK_EVERY, self._look, loop)


async def _send_closing(send: Send, message: Message) -> None:
    """``send``, with ``connection: close`` on a response start."""
    if message["type"] == "http.response.start":
        headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
        message = {**message, "headers": [*headers, (b"connection", b"close")]}
    await send(message)


class SpecScope:
    """``client`` and ``server`` ports as ints, and HTTP/1.0 as ``"1.0"``, for servers that say
    otherwise (Granian: strings, and ``"1"``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        for key in ("client", "server"):
            address = scope.get(key)
            if address and isinstance(address[1], str):
                scope[key] = (address[0], int(address[1]) if address[1].isdigit() else None)
        if scope.get("http_version") == "1":
            scope["http_version"] = "1.0"
        return self.app(scope, receive, send)


#: A header name: RFC 9110's token characters.
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
#: What no header value may hold: it would end the header, or the head.
_BAD_VALUE = re.compile(rb"[\x00\r\n]").search
_INTERNAL_ERROR = b"Internal Server Error"
_log = logging.getLogger("asgi_launcher")


def response_problem(message: Message) -> str | None:
    """Why an ``http.response.start`` message is no valid response (None: it is one). A header
    name or value given as ``str`` (or ``bytearray``) is made ``bytes`` in place where Latin-1
    spells it, so every server gets the same bytes."""
    status = message.get("status")
    if type(status) is not int or not 100 <= status <= 599:
        return f"status {status!r} is not a whole number from 100 to 599"
    try:
        for name, value in message.get("headers") or ():
            if type(name) is not bytes or type(value) is not bytes:
                return _bytes_headers(message)
            if not _NAME(name) or _BAD_VALUE(value):
                return _header_problem(name, value)
    except (TypeError, ValueError) as exc:
        return f"headers are not (name, value) byte pairs ({exc})"
    return None


def _bytes_headers(message: Message) -> str | None:
    """``response_problem`` for headers some of which are not ``bytes``."""
    headers = []
    for name, value in message.get("headers") or ():
        try:
            pair = [
                text.encode("latin-1") if isinstance(text, str) else bytes(text) for text in (name, value)
            ]
        except (TypeError, ValueError, UnicodeEncodeError):
            return f"header {name!r} is not a (name, value) pair of bytes or Latin-1 text: {value!r}"
        if not _NAME(pair[0]) or _BAD_VALUE(pair[1]):
            return _header_problem(pair[0], pair[1])
        headers.append((pair[0], pair[1]))
    message["headers"] = headers
    return None


def _header_problem(name: bytes, value: bytes) -> str:
    if not _NAME(name):
        return f"header name {name!r} is not a token"
    return f"header {name.decode('latin-1')!r} has a value with a NUL, CR or LF: {value!r}"


#: The messages that can end a response, each with the key that says more follows.
_LAST_MESSAGE = {
    "http.response.body": "more_body",
    "http.response.trailers": "more_trailers",
    "http.response.pathsend": "more_body",
    "http.response.zerocopysend": "more_body",
}


async def _nothing() -> None:
    return None


class _Exchange:
    """The ``send`` ``ResponseCheck`` gives the app: each start message checked, and where the
    response stands: 0 not begun, 1 begun, 2 complete, 3 replaced by the check's own 500 (the
    rest of the app's response goes nowhere); and what the client got, for the request log: the
    ``status``, the body's ``size`` and the response ``headers``. Passes the server's awaitable
    on, no frame of its own."""

    __slots__ = ("headers", "send", "size", "state", "status", "trailers")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.state = 0
        self.trailers = False
        self.status = 0
        self.size = 0
        self.headers: Any = ()

    def __call__(self, message: Message) -> Awaitable[None]:
        if self.state == 3:
            return _nothing()
        kind = message["type"]
        if kind == "http.response.body":
            self.size += len(message.get("body") or b"")
            if not message.get("more_body") and not self.trailers:
                self.state = 2
        elif kind == "http.response.start":
            if self.state == 0:
                problem = response_problem(message)
                if problem is not None:
                    _log.error("the app's response is invalid (%s): answered 500 instead", problem)
                    self.state = 3
                    return self.internal_error()
                self.state = 1
                self.status = message["status"]
                self.headers = message.get("headers") or ()
                self.trailers = message.get("trailers", False)
        elif kind in _LAST_MESSAGE and not message.get(_LAST_MESSAGE[kind]):
            self.state = 2
        return self.send(message)

    async def internal_error(self) -> None:
        self.state = max(self.state, 2)
        self.status, self.size = 500, len(_INTERNAL_ERROR)
        self.headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")]
        await self.send({"type": "http.response.start", "status": 500, "headers": self.headers})
        await self.send({"type": "http.response.body", "body": _INTERNAL_ERROR})


class ResponseCheck:
    """What the app sends, checked before the server sees it, the same under every backend; and,
    with the access log or the metrics on, recorded in the ``RequestLog`` (``log``) as what the
    client got.

    Servers differ on a broken response, and none tells the request log: a status of 999 is
    written as it is by one, drops the connection under another, panics Granian's worker (in
    Rust, outside 100-999); a NUL in a header value gets a 500 or nothing; an app that sends
    nothing gets each server's own 500. Here each of those is answered 500 (one line says
    why), so the client gets the same answer and the access line says what it got.

    An exception raised once the response is complete (FastAPI and Starlette re-raise after
    their own 500) is logged once and stops here: Gunicorn's and Uvicorn's workers would close
    the keep-alive connection after a response that did not say so, and a pooled client's next
    request on it would be reset. One raised before the response is answered 500 the same way.
    One raised mid-response goes on to the server, which must cut the connection: the client
    cannot be told otherwise that its response is incomplete.

    Recording here rather than in a layer of its own spares each request a coroutine frame and
    a ``send`` wrapper: most of what the request log cost a request beside its line.
    """

    def __init__(
        self,
        app: ASGIApp,
        on_error: Callable[[Exception], None] | None = None,
        log: RequestLog | None = None,
    ) -> None:
        self.app = app
        #: Told of an exception that stops here (the tracing layer outside records it on the
        #: request's span, which would otherwise see only the 500).
        self.on_error = on_error
        self.log = log
        #: Whether a request's start is told to the log (the metrics' active-requests gauge).
        self.begins = log is not None and log.begun is not None

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "http":
            return self._checked(scope, receive, send)
        if self.log is None:
            return self.app(scope, receive, send)
        if kind == "websocket":
            return self.log.session(self.app, scope, receive, send)
        return self.log.lifespan(self.app, scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange(send)
        log = self.log
        if self.begins:
            log.begin(scope)  # type: ignore[union-attr]
        start = perf_counter() if log is not None else 0.0
        try:
            try:
                await self.app(scope, receive, exchange)
            except Exception as exc:
                if exchange.state == 1:
                    raise  # mid-response: only a cut connection tells the client
                if self.on_error is not None:
                    self.on_error(exc)
                if exchange.state >= 2:
                    _log.exception(
                        "the app raised after its response was complete (the connection stays open)"
                    )
                    return
                _log.exception("the app raised before its response: answered 500")
                await exchange.internal_error()
                return
            if exchange.state == 0:
                _log.error("the app returned without sending a response: answered 500")
                await exchange.internal_error()
        finally:
            if log is not None:
                # No status only where the request was cancelled: the server answers 500.
                log.record(scope, start, exchange.status or 500, exchange.size, exchange.headers)


class RefuseConnect:
    """Answer CONNECT with 400 and close, as Uvicorn does, before the app sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "http" and scope["method"] == "CONNECT":
            return self._refuse(send)
        return self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send: Send) -> None:
        body = b"Invalid HTTP request received."
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RequestChecks:
    """Request heads held to ``LIMIT_REQUEST_*``, for servers whose parser does not do it.

    The request line is measured as ``METHOD target HTTP/x.y`` (the target being ``raw_path``
    and the query string), a field as ``Name: value``. A request that breaks a limit, or has both
    Content-Length and Transfer-Encoding (a request smuggling vector), is answered at once with
    ``connection: close`` and never reaches the app. The server has read the whole head by then:
    bounding that is its own job (``Config.head_budget``). An absolute-form target reaches the app
    as its path, as Uvicorn and Granian give it.
    """

    def __init__(self, app: ASGIApp, config: Config, only_http2: bool = False) -> None:
        self.app = app
        self.limits = HeadLimits.of(config)
        self.only_http2 = only_http2

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if self.only_http2 and scope.get("http_version") != "2":
            return self.app(scope, receive, send)  # the server's HTTP/1.1 parser has checked it
        if kind == "http":
            status = self.refusal(scope)
            if status:
                return self._refuse(send, status)
        if kind != "lifespan" and scope["path"][:1] != "/" and "://" in scope["path"]:
            self._origin_form(scope)
        return self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> int:
        """The status a request's head earns (0: none): ``launcher.worker.request_head``'s rules."""
        query = scope.get("query_string") or b""
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(query) + (query != b"")
        method, version = scope["method"], scope.get("http_version", "1.1")
        return self.limits.refusal(len(method), target, len(version), scope["headers"])

    @staticmethod
    def _origin_form(scope: Scope) -> None:
        rest = scope["path"].partition("://")[2]
        slash = rest.find("/")
        scope["path"] = rest[slash:] if slash >= 0 else "/"
        raw = scope.get("raw_path")
        if raw:
            rest_raw = raw.partition(b"://")[2]
            slash = rest_raw.find(b"/")
            scope["raw_path"] = rest_raw[slash:] if slash >= 0 else b"/"

    @staticmethod
    async def _refuse(send: Send, status: int) -> None:
        body = REASONS[status].encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Watchdog:
    """The worker's side of ``TIMEOUT``: its event loop touches the heartbeat file while it turns.

    Started from the first call the server makes (the lifespan startup, or the first request),
    which runs on the worker's loop; the beat is a timer on that loop, so a handler that blocks
    the loop stops it, and the master notices.
    """

    def __init__(self, app: ASGIApp, directory: str, timeout: float) -> None:
        self.app = app
        self.path = statedir.heartbeat(directory, os.getpid())
        self.interval = statedir.heartbeat_interval(timeout)
        self.started = False
        self._fd = -1

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if not self.started:
            self._start()
        return self.app(scope, receive, send)

    def _start(self) -> None:
        self.started = True
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        self._beat(asyncio.get_running_loop())

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            os.utime(self._fd)
        except OSError:
            return  # the master removed the directory: it is stopping
        loop.call_later(self.interval, self._beat, loop)


class Boot:
    """The worker's boot, told the same way under every backend.

    Booted is when the app sends ``lifespan.startup.complete``, or when its lifespan raises before
    (an app without lifespan support: the servers serve it anyway), or at the first request of a
    server that runs no lifespan: the worker then marks itself booted in the master's state
    directory (``/readyz``, and what tells a failed boot from a death). ``lifespan.startup.failed``
    ends the worker at once through ``bootstrap.cannot_boot``: the app's message (Starlette's and
    FastAPI's is the traceback) once, and exit 3, before the server reports it its own way.
    """

    def __init__(self, app: ASGIApp, context: WorkerContext) -> None:
        self.app = app
        self.context = context
        self.marked = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if self.marked:
            return self.app(scope, receive, send)
        if scope["type"] == "lifespan":
            return self._lifespan(scope, receive, send)
        self._mark()
        return self.app(scope, receive, send)

    def _mark(self) -> None:
        if not self.marked:
            self.marked = True
            if self.context.state_dir is not None:
                statedir.write(statedir.booted(self.context.state_dir, os.getpid()))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"started": False}

        async def marking_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                bootstrap.cannot_boot(self.context, str(message.get("message") or "lifespan.startup.failed"))
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                state["started"] = True
                self._mark()

        try:
            await self.app(scope, receive, marking_send)
        except BaseException:
            if not state["started"]:
                self._mark()  # no lifespan support: the server goes on to serve
            raise


@dataclass(eq=False)
class _Session:
    """One open WebSocket under ``WebSocketDrain``."""

    send: Send
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: bool = False
    closed: bool = False


class WebSocketDrain:
    """Close open WebSockets with 1012 when the server stops, for servers that would wait on them.

    Without it such a server waits for every WebSocket to end by itself, which idle ones never
    do: ``docker stop`` then ends in SIGKILL after the whole graceful timeout. ``shutting_down``
    (called by the plugin on the worker's loop when shutdown begins) sends each open session's
    client a close frame with 1012, and the app's pending ``receive`` returns
    ``websocket.disconnect`` with that code, so the app's handler returns normally.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.sessions: set[_Session] = set()
        self.stopping = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "websocket":
            return self.app(scope, receive, send)
        return self._session(scope, receive, send)

    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = _Session(send)
        if self.stopping:
            session.stop.set()
        self.sessions.add(session)

        async def tracked_send(message: Message) -> None:
            if message["type"] == "websocket.accept":
                session.accepted = True
            elif message["type"] == "websocket.close":
                session.closed = True
            await send(message)

        async def drained_receive() -> Message:
            if not session.stop.is_set():
                incoming = asyncio.ensure_future(receive())
                stopped = asyncio.ensure_future(session.stop.wait())
                done, _ = await asyncio.wait({incoming, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if incoming in done:
                    stopped.cancel()
                    return incoming.result()
                incoming.cancel()
            if session.accepted and not session.closed:
                session.closed = True
                await send({"type": "websocket.close", "code": SERVICE_RESTART, "reason": ""})
            return {"type": "websocket.disconnect", "code": SERVICE_RESTART}

        try:
            await self.app(scope, drained_receive, tracked_send)
        finally:
            self.sessions.discard(session)

    def shutting_down(self) -> None:
        self.stopping = True
        for session in self.sessions:
            session.stop.set()

    async def closed(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until every session has ended."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)


@dataclass
class WorkerApp:
    """What ``build`` returns: the callable to serve and the hooks the plugin calls."""

    app: ASGIApp
    #: The layers in the chain, outermost first (for ``describe`` and tests).
    layers: tuple[str, ...]
    context: WorkerContext
    retirement: Retirement
    websocket_drain: WebSocketDrain | None = None

    def gentle(self) -> bool:
        """Whether the worker's stop now should be a drain (``drain``) rather than prompt: it
        retires (SIGHUP, MAX_REQUESTS, MAX_WORKER_MEMORY), or its master stops after a
        SHUTDOWN_DELAY. Only a master stopping without a delay (SIGTERM, SIGINT) asks for a prompt
        stop: idle connections closed at once, as every server does."""
        return not self._notice(statedir.STOP_NOTICE) or self._notice(statedir.SHUTDOWN_NOTICE)

    def _notice(self, name: str) -> bool:
        directory = self.context.state_dir
        return directory is not None and os.path.exists(os.path.join(directory, name))

    async def drain(
        self,
        stop_accepting: Callable[[], None] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        """A gentle stop's first part, the same under every backend: no client is ever cut
        between sending a request and reading its answer.

        The worker stops accepting (``stop_accepting``, the server's own way; by default its
        listening sockets are swapped for ones nobody connects to:
        ``launcher.config.addresses.detach_listeners``); every
        response from now on closes its connection, so each keep-alive client leaves after its
        next request; a connection that stays idle is closed by the server's own keep-alive
        timer (KEEP_ALIVE), as at any time. This returns once the worker holds no connection but
        its WebSockets (which the server's stop then closes with 1012), or after
        GRACEFUL_TIMEOUT: then the server's own graceful stop finds nothing idle to cut.
        (Servers close every idle connection at once when they stop, one whose next request
        was already on its way included: a few requests failed at each SIGHUP or retirement.)
        """
        retirement, binds = self.retirement, self.context.config.bind
        retirement.closing = True
        if self._notice(statedir.STOP_NOTICE):
            # The master stops: its socket takes no new connection any more (it refuses them,
            # ``refuse_new_connections``), and what its queue holds is accepted before the
            # workers stop accepting, rather than reset when the socket closes.
            await sleep(ACCEPT_QUEUED)
        if stop_accepting is None:
            detach_listeners(binds)
        else:
            stop_accepting()
        ports, paths = ports_and_paths(binds)
        deadline = time.monotonic() + self.context.config.graceful_timeout
        while time.monotonic() < deadline:
            if served_connections(ports, paths) <= retirement.websockets or not self.gentle():
                return  # drained, or the master stops promptly meanwhile (a SIGTERM during a SIGHUP)
            await sleep(DRAIN_LOOK_EVERY)

    def shutting_down(self) -> None:
        """Call on the worker's event loop when the server begins to stop."""
        if self.websocket_drain is not None:
            self.websocket_drain.shutting_down()

    def has_websockets(self) -> bool:
        """Whether any WebSocket session is open (always False without the drain layer)."""
        return bool(self.websocket_drain and self.websocket_drain.sessions)

    async def drain_websockets(self, timeout: float = 1.0) -> None:
        """``shutting_down``, then wait until the open WebSockets are closed (for servers that
        drop connections without a close frame once they stop)."""
        self.shutting_down()
        if self.websocket_drain is not None:
            await self.websocket_drain.closed(timeout)


def build(
    context: WorkerContext,
    *,
    retire: Callable[[], None],
    traits: ServerTraits = ServerTraits(),
    app: Any = None,
) -> WorkerApp:
    """Make this process a worker (``bootstrap.started``), import the app (unless given) and wrap
    it in the layers the configuration turns on.

    Called once in each worker, at its start. ``retire`` stops this worker gracefully (the
    server's own way: finish in-flight requests, exit 0). An app that cannot be imported ends
    the worker as a failed boot (``bootstrap.cannot_boot``).
    """
    config = context.config
    bootstrap.started(context, traits.loggers)
    if app is None:
        try:
            app = import_app(config.app, config.app_dir, source=config.sources.get("app", ""))
        except ConfigError as exc:  # the module or its attribute is not there: one line says so
            bootstrap.cannot_boot(context, str(exc))
        except Exception:
            bootstrap.cannot_boot(context, traceback.format_exc())
    layers: list[str] = []

    def add(name: str, layer: Any) -> Any:
        layers.append(name)
        return layer

    # Innermost first: the reverse of the order in this module's docstring.
    if asgi_version(app) == 2:
        app = add("asgi2", ASGI2(app))
    drain: WebSocketDrain | None = None
    if not traits.closes_websockets and traits.asyncio:
        app = drain = add("websocket-drain", WebSocketDrain(app))
    if config.root_path:
        app = add("root-path", RootPath(app, config.root_path))
    on_error: Callable[[Exception], None] | None = None
    if config.tracing.enabled:
        from launcher.observability import tracing

        on_error = tracing.record_error
    counted = None
    if config.ops_port:
        from launcher.observability import metrics

        if metrics.enabled_in_worker():
            counted = metrics.ServerMetrics()
    log = None
    if config.access_log is not None or counted is not None:
        from launcher.observability import access_log

        layout = None
        ids = None
        if config.access_log is not None:
            layout = access_log.layout_for(config.log_format, config.access_log_format)
            if config.tracing.enabled and layout.trace_ids:
                from launcher.observability.tracing import current_ids

                ids = current_ids
        # One record a request for both, the access log's lines and the metrics, made by the
        # response check, which sees the response anyway (so listed just outside it).
        log = access_log.recorder(config.access_log, layout, counted, ids)
    app = add("response-check", ResponseCheck(app, on_error, log))
    if log is not None:
        layers.extend(["access-log"] * (config.access_log is not None) + ["metrics"] * (counted is not None))
    if config.tracing.enabled:
        from launcher.observability.tracing import ServerSpans

        app = add("tracing", ServerSpans(app, drop_all=config.tracing.sampler == "always_off"))
    if not traits.proxy_headers:
        app = add("proxy-headers", ProxyHeadersMiddleware(app, config.forwarded_allow_ips))
    limit = config.max_requests + random.randint(0, config.max_requests_jitter) if config.max_requests else 0
    app = retirement = add(
        "retirement",
        Retirement(app, context, retire, limit=limit),
    )
    state_dir = context.state_dir
    if not traits.checks_requests:
        app = add("request-checks", RequestChecks(app, config))
    elif config.http2 or config.http2_cleartext:
        # A server that checks HTTP/1.1 heads in its parser (Hypercorn) does not check HTTP/2's:
        # the limits are the same for both protocols.
        app = add("request-checks", RequestChecks(app, config, only_http2=True))
    if not traits.refuses_connect:
        app = add("refuse-connect", RefuseConnect(app))
    if not traits.spec_scope:
        app = add("spec-scope", SpecScope(app))
    if state_dir is not None and config.timeout > 0:
        app = add("watchdog", Watchdog(app, state_dir, config.timeout))
    app = add("boot", Boot(app, context))
    return WorkerApp(app, tuple(reversed(layers)), context, retirement, drain)
