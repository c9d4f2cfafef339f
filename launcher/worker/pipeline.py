"""The worker pipeline: the one ASGI 3 callable every worker of every backend serves.

``build(context, ...)`` imports the user's app and wraps it in the launcher's layers, so that a
setting means the same whichever server runs the worker. The order is written once, here,
outermost first:

0. **boot** (always): once the app's lifespan startup is done (or the app has no lifespan), the
   worker marks itself booted in the master's state directory; a failed startup ends it as a
   failed boot, told the same way under every backend (``bootstrap.cannot_boot``);
1. **watchdog** (``TIMEOUT`` > 0): the worker's event loop refreshes its heartbeat file, so
   the master (``launcher.master.Master.check``) can kill a worker whose loop is stuck;
2. **int ports** and **CONNECT refused**: the ASGI scope's ports as ints where a server gives
   strings; CONNECT answered 400, for servers that would pass it on: an app is not a proxy, and
   a 2xx answer turns the connection into a tunnel (Hypercorn then fails with a traceback);
3. **request checks**, for servers whose parser does not see to them (and for HTTP/2 requests,
   which no server's HTTP/1.1 parser sees): ``LIMIT_REQUEST_LINE``
   (414), ``LIMIT_REQUEST_FIELDS`` and ``LIMIT_REQUEST_FIELD_SIZE`` (431), Content-Length with
   Transfer-Encoding (400), each answered with ``connection: close``; an absolute-form target
   (``GET http://host/path``) reaches the app as its path;
4. **request limit** (``MAX_REQUESTS`` > 0): counts requests and, with the worker's last one,
   asks the server to retire the worker gracefully (that request is still served);
   **shutdown notice** (``SHUTDOWN_DELAY`` > 0): once the master's delay has begun, every
   response carries ``connection: close``, so keep-alive clients leave before the drain;
5. **proxy headers** (``FORWARDED_ALLOW_IPS``), unless the server applies them itself;
   **tracing** (an ``OTEL_*`` variable turns it on: ``launcher.config.tracing``): one OpenTelemetry
   server span a request, current while the layers inside and the app run
   (``launcher.observability.tracing``);
6. **request log** (``ACCESS_LOG`` not empty, or ``OPS_PORT`` with ``prometheus_client``;
   ``launcher.observability.access_log``): one record a request, from which the access log
   writes its line (the same under every backend: each server's own access logger is off) and
   the metrics count its duration, status and size (``launcher.observability.metrics``), after
   the proxy headers set the client address and before the root path changes the path;
7. **root path** (``ROOT_PATH``): the ASGI ``root_path``, included in ``path`` as Uvicorn does;
8. **WebSocket drain**, for servers that leave WebSockets open when they stop: on shutdown each
   open WebSocket is closed with 1012 (service restart) and the app's ``receive`` says so;
9. **ASGI 2 adapter**, for apps in the legacy double-callable form.

A layer whose setting is off is not in the chain at all, so it costs nothing per request; the
layers that are on return the inner app's awaitable rather than adding a coroutine frame, except
the request log (it must see the response end), the root path (it puts the path back) and
WebSocket sessions under the drain.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from launcher import statedir
from launcher.errors import ConfigError
from launcher.worker import bootstrap
from launcher.worker.bootstrap import WorkerContext
from launcher.worker.importer import import_app
from launcher.worker.proxy_headers import ProxyHeadersMiddleware
from launcher.worker.request_head import REASONS, HeadLimits

if TYPE_CHECKING:
    from launcher.config.model import Config

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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
    #: Seconds it takes to stop accepting after ``retire``, for servers that stop asynchronously
    #: (their accept loop in other threads): the retiring request waits that long before it is
    #: served, so its client cannot reconnect to the stopping worker and be dropped unanswered.
    retire_settle: float = 0.0
    #: Seconds a worker keeps serving between its last counted request and its retirement, every
    #: response closing its connection, for servers whose graceful stop closes idle keep-alive
    #: connections under a request already on its way (Granian): its keep-alive clients have
    #: left by then. The worker serves a few more than MAX_REQUESTS.
    retire_delay: float = 0.0
    #: It refuses CONNECT itself (Uvicorn's parsers answer 400).
    refuses_connect: bool = False
    #: It holds HTTP/1.1 request heads to ``LIMIT_REQUEST_*`` itself (414, 431), refuses
    #: Content-Length with Transfer-Encoding (400) and serves an absolute-form target as its path.
    #: HTTP/2 requests (``HTTP2``, ``HTTP2_CLEARTEXT``) are still checked by the pipeline.
    checks_requests: bool = False
    #: Its scope's ``client`` and ``server`` ports are ints, as the ASGI spec says (Granian's
    #: are strings, which reach ``request.client.port`` and Django's ``REMOTE_PORT``).
    int_ports: bool = True
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


class RequestLimit:
    """``MAX_REQUESTS``: the worker's ``limit``-th request starts its retirement.

    ``retire`` is the server's own graceful stop (stop accepting now, finish what is in flight,
    including this request, then exit 0); the master then starts a fresh worker and does not
    count the exit as a crash. Retiring when the last request *starts* rather than when it ends
    means the worker accepts no connection it would then have to drop.
    """

    def __init__(
        self, app: ASGIApp, limit: int, retire: Callable[[], None], settle: float = 0.0, delay: float = 0.0
    ) -> None:
        self.app = app
        self.limit = limit
        self.retire = retire
        self.settle = settle
        self.delay = delay
        self.served = 0

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "lifespan":
            return self.app(scope, receive, send)
        self.served += 1
        if self.served < self.limit:
            return self.app(scope, receive, send)
        if self.served == self.limit:
            if self.delay > 0:
                asyncio.get_running_loop().call_later(self.delay, self.retire)
            else:
                self.retire()
        # From the last request on, every response closes its connection: a keep-alive client
        # moves to another worker between two requests, instead of finding its connection cut
        # under the next one when the server stops.
        return self._closing(scope, receive, send, self.settle if self.served == self.limit else 0.0)

    async def _closing(self, scope: Scope, receive: Receive, send: Send, settle: float) -> None:
        if settle > 0:
            await asyncio.sleep(settle)

        if scope["type"] == "http":
            await self.app(scope, receive, lambda message: _send_closing(send, message))
        else:
            await self.app(scope, receive, send)


async def _send_closing(send: Send, message: Message) -> None:
    """``send``, with ``connection: close`` on a response start."""
    if message["type"] == "http.response.start":
        headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
        message = {**message, "headers": [*headers, (b"connection", b"close")]}
    await send(message)


class ShutdownNotice:
    """``SHUTDOWN_DELAY``: once the master has left its notice, responses close their connection.

    During the delay the server still serves everyone, but a keep-alive client that stays on
    its connection would keep coming back to this replica until the drain closes that
    connection under it. A timer on the worker's loop looks for the notice every
    ``CHECK_EVERY`` seconds; a request costs one attribute test until then.
    """

    CHECK_EVERY = 0.2

    def __init__(self, app: ASGIApp, directory: str) -> None:
        self.app = app
        self.path = os.path.join(directory, statedir.SHUTDOWN_NOTICE)
        self.closing = False
        self.watching = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if not self.watching:
            self.watching = True
            self._look(asyncio.get_running_loop())
        if self.closing and scope["type"] == "http":
            return self.app(scope, receive, lambda message: _send_closing(send, message))
        return self.app(scope, receive, send)

    def _look(self, loop: asyncio.AbstractEventLoop) -> None:
        if os.path.exists(self.path):
            self.closing = True
            return
        loop.call_later(self.CHECK_EVERY, self._look, loop)


class IntPorts:
    """``client`` and ``server`` ports as ints, for servers that give strings."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        for key in ("client", "server"):
            address = scope.get(key)
            if address and isinstance(address[1], str):
                scope[key] = (address[0], int(address[1]) if address[1].isdigit() else None)
        return self.app(scope, receive, send)


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
    drain: WebSocketDrain | None = None

    def shutting_down(self) -> None:
        """Call on the worker's event loop when the server begins to stop."""
        if self.drain is not None:
            self.drain.shutting_down()

    def has_websockets(self) -> bool:
        """Whether any WebSocket session is open (always False without the drain layer)."""
        return bool(self.drain and self.drain.sessions)

    async def drain_websockets(self, timeout: float = 1.0) -> None:
        """``shutting_down``, then wait until the open WebSockets are closed (for servers that
        drop connections without a close frame once they stop)."""
        self.shutting_down()
        if self.drain is not None:
            await self.drain.closed(timeout)


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
    counted = None
    if config.ops_port:
        from launcher.observability import metrics

        if metrics.enabled_in_worker():
            counted = metrics.ServerMetrics()
    if config.access_log is not None or counted is not None:
        from launcher.observability import access_log

        layout = None
        ids = None
        if config.access_log is not None:
            layout = access_log.layout_for(config.log_format, config.access_log_format)
            if config.tracing.enabled and layout.trace_ids:
                from launcher.observability.tracing import current_ids

                ids = current_ids
        # One layer records each request for both: the access log's lines and the metrics.
        app = add(
            "access-log" if layout else "metrics",
            access_log.layer(app, config.access_log, layout, counted, ids),
        )
        if layout and counted is not None:
            layers.append("metrics")
    if config.tracing.enabled:
        from launcher.observability.tracing import ServerSpans

        app = add("tracing", ServerSpans(app, drop_all=config.tracing.sampler == "always_off"))
    if not traits.proxy_headers:
        app = add("proxy-headers", ProxyHeadersMiddleware(app, config.forwarded_allow_ips))
    if config.max_requests > 0:
        limit = config.max_requests + random.randint(0, config.max_requests_jitter)
        app = add(
            "request-limit", RequestLimit(app, limit, retire, traits.retire_settle, traits.retire_delay)
        )
    state_dir = context.state_dir
    if state_dir is not None and config.shutdown_delay > 0:
        app = add("shutdown-notice", ShutdownNotice(app, state_dir))
    if not traits.checks_requests:
        app = add("request-checks", RequestChecks(app, config))
    elif config.http2 or config.http2_cleartext:
        # A server that checks HTTP/1.1 heads in its parser (Hypercorn) does not check HTTP/2's:
        # the limits are the same for both protocols.
        app = add("request-checks", RequestChecks(app, config, only_http2=True))
    if not traits.refuses_connect:
        app = add("refuse-connect", RefuseConnect(app))
    if not traits.int_ports:
        app = add("int-ports", IntPorts(app))
    if state_dir is not None and config.timeout > 0:
        app = add("watchdog", Watchdog(app, state_dir, config.timeout))
    app = add("boot", Boot(app, context))
    return WorkerApp(app, tuple(reversed(layers)), drain)
