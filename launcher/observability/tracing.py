"""OpenTelemetry traces from every worker: the tracer provider each sets up after the fork, the
server span of each request, and the ids the logs carry.

Imported only in a worker whose configuration turns tracing on (``Config.tracing``,
``launcher.config.tracing``): with it off nothing of OpenTelemetry is imported and no layer is in
the pipeline.

* ``start`` (from ``launcher.worker.bootstrap.started``, first thing in each worker, before the
  app is imported): a ``TracerProvider`` whose resource names this worker (its own
  ``service.instance.id`` and ``process.pid``, besides ``OTEL_SERVICE_NAME`` and
  ``OTEL_RESOURCE_ATTRIBUTES``), with a batch processor and its export thread started in this
  process, set as the global provider, so the app's own spans and instrumentation (a manual
  span, ``opentelemetry-instrumentation-httpx``) join it. Its spans are flushed when the
  worker stops, whichever way a planned stop ends it: once the app's lifespan has shut down,
  else at exit (``atexit``, and multiprocessing's exit hooks, which run where ``atexit`` does
  not); the worker waits for that at most the exporter's timeout.
* ``ServerSpans``, the pipeline's layer: one ``SERVER`` span a request and a WebSocket session,
  named and described by the HTTP semantic conventions, its parent read from the request's
  headers with the configured propagators (W3C ``traceparent`` by default) and passed on to the
  app the same way, current while the app runs.
* ``current_ids``: the ids the access log's entries and (through a ``logging`` record factory)
  the JSON log lines carry as ``trace_id`` and ``span_id``.

The exporter reads its own variables, as the SDK documents (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``_HEADERS``, ``_TIMEOUT`` and their ``_TRACES_`` forms); the sampler is the one the launcher
resolved, so what ``asgi-launcher config`` shows is what runs.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from launcher.config.tracing import Tracing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

#: The seconds an export may take when no variable says (the SDK's default).
DEFAULT_EXPORT_TIMEOUT = 10.0
#: The request methods the semantic conventions name; any other is ``_OTHER``.
METHODS = frozenset(("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"))


def _random_id(bits: int) -> int:
    """A random trace or span id (never 0), as the SDK's id generator makes them."""
    while True:
        value = random.getrandbits(bits)
        if value:
            return value


def export_timeout() -> float:
    """The exporter's timeout in seconds, read as the SDK reads it."""
    raw = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_EXPORT_TIMEOUT
    except ValueError:
        return DEFAULT_EXPORT_TIMEOUT


def _sampler(tracing: Tracing) -> Any:
    from opentelemetry.sdk.trace import sampling

    base = tracing.sampler.removeprefix("parentbased_")
    root = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
    }.get(base) or sampling.TraceIdRatioBased(tracing.sampler_arg)
    return sampling.ParentBased(root) if tracing.sampler.startswith("parentbased_") else root


def _exporter(name: str, tracing: Tracing) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if tracing.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


class _Flush:
    """Shut the provider down once, whichever exit hook comes first: each batch processor exports
    what it holds. The worker waits for that at most the exporter's timeout (the shut-down runs
    in a thread of its own; an export still hanging then is given up with the process)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.pid = os.getpid()
        self.done = False

    def __call__(self) -> None:
        if self.done or self.pid != os.getpid():
            return
        self.done = True
        flushing = threading.Thread(
            target=self.provider.shutdown, name="asgi-launcher-trace-flush", daemon=True
        )
        flushing.start()
        flushing.join(export_timeout())


#: This worker's flush (``start``), which the layer also runs once the app's lifespan has shut down.
_flush: _Flush | None = None


def start(tracing: Tracing) -> None:
    """Set up this worker's tracer provider (see the module docstring); called once a worker."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.instance.id": str(uuid.uuid4()), "process.pid": os.getpid()})
    provider = TracerProvider(resource=resource, sampler=_sampler(tracing), shutdown_on_exit=False)
    for name in tracing.exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, tracing)))
    trace.set_tracer_provider(provider)
    global _flush
    flush = _flush = _Flush(provider)
    # After the access log's exit hooks (atexit runs the last registered first; multiprocessing's
    # the highest priority first), so its lines are written however long an export takes.
    atexit.register(flush)
    from multiprocessing import util

    util.Finalize(provider, flush, exitpriority=10)
    logging.setLogRecordFactory(_with_ids(logging.getLogRecordFactory()))


def current_ids() -> tuple[str, str]:
    """The current span's trace and span ids in hex, ``("", "")`` outside any span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _with_ids(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """``factory``'s records, each with ``trace_id`` and ``span_id`` when made inside a span
    (the JSON lines show a record's extra attributes as keys)."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        trace_id, span_id = current_ids()
        if trace_id:
            record.trace_id = trace_id
            record.span_id = span_id
        return record

    return make


# -- the server span ------------------------------------------------------------------------


class _HeaderGetter(Getter[Any]):
    """Read a propagator's headers from the ASGI scope's list of (name, value) byte pairs."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        name = key.encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


HEADERS = _HeaderGetter()


def route(scope: Scope) -> str | None:
    """The route template the app's router left in the scope: Starlette's and FastAPI's
    ``scope["route"]`` (its ``path_format`` or ``path``), Litestar's ``path_template``."""
    found = scope.get("route")
    if found is not None:
        template = getattr(found, "path_format", None) or getattr(found, "path", None)
        if isinstance(template, str) and template:
            return template
    template = scope.get("path_template")
    return template if isinstance(template, str) and template else None


def _host(scope: Scope) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port``: the Host header the client sent, else the
    address the server listens on."""
    for name, value in scope.get("headers") or ():
        if name == b"host":
            try:
                parts = urlsplit("//" + value.decode("latin-1"))
                return parts.hostname, parts.port
            except ValueError:
                return None, None
    server = scope.get("server") or (None, None)
    port = str(server[1])
    return server[0], int(port) if port.isdigit() else None


def _attributes(scope: Scope, method: str) -> dict[str, Any]:
    """The HTTP semantic conventions' attributes known when the request starts."""
    websocket = scope["type"] == "websocket"
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": scope.get("path", ""),
        "url.scheme": scope.get("scheme") or ("ws" if websocket else "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if method == "_OTHER":
        attributes["http.request.method_original"] = scope.get("method", "")
    if websocket:
        attributes["network.protocol.name"] = "websocket"
    address, port = _host(scope)
    if address:
        attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
    client = scope.get("client")
    if client and client[0]:
        attributes["client.address"] = client[0]
        if str(client[1]).isdigit():
            attributes["client.port"] = int(client[1])
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
            break
    return attributes


class _Status:
    """The ``send`` the app is given: passes each message on and keeps the status (101 once a
    WebSocket is accepted, 403 for one closed before, as the server answers)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
        elif kind == "websocket.accept":
            self.status = 101
        elif kind == "websocket.close" and not self.status:
            self.status = 403
        return self.send(message)


def record_error(exc: Exception, span: Any = None) -> None:
    """``exc`` recorded on ``span`` (by default the current one, the request's while its app
    runs): the exception event, ``error.type`` and the error status. The pipeline's response
    check calls it for an exception it answers with a 500 itself, which the span never sees."""
    span = span if span is not None else trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}")


class ServerSpans:
    """The pipeline's tracing layer: a ``SERVER`` span a request (see the module docstring).

    The span's parent is read from the request's headers alone (never from whatever context
    the server ran the app in), and the app gets the request's headers with a recorded span's
    context in place of the caller's, so a framework that starts spans of its own from the
    headers (as FastAPI does once a tracer provider is set) starts them under this one. The span
    is current while the app runs; an exception is recorded on it, and the span stays current
    for the rest of the request's task, so the server's own error line about it carries its ids.

    What a request the sampler drops costs is kept to the least (``bench/run.py --tracing``): no
    attribute is computed, nothing is passed on in the headers, the response is not watched, and
    with ``always_off`` the SDK's tracer is not even asked.
    """

    def __init__(self, app: Any, tracer: trace.Tracer | None = None, drop_all: bool = False) -> None:
        self.app = app
        #: The global provider's (``start``), unless given (tests, the bench).
        self.tracer = tracer or trace.get_tracer("asgi_launcher")
        #: The sampler drops every span (``always_off``): the SDK's tracer is not asked.
        self.drop_all = drop_all
        #: The header names the propagators read, as the scope spells them.
        self.fields = frozenset(name.encode("latin-1") for name in propagate.get_global_textmap().fields)

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] == "lifespan":
            return self._lifespan(scope, receive, send)
        return self._traced(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Any, send: Send) -> None:
        """The lifespan, flushing the spans once the app has shut down: the server has finished
        every request by then, and a server may end the worker without its exit hooks (Uvicorn
        re-raises the SIGTERM it was stopped with, under Gunicorn)."""

        async def flushing_send(message: Message) -> None:
            await send(message)
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and _flush:
                _flush()

        await self.app(scope, receive, flushing_send)

    async def _traced(self, scope: Scope, receive: Any, send: Any) -> None:
        headers = scope.get("headers") or []
        parent = self._parent(headers)
        method = "GET" if scope["type"] == "websocket" else scope.get("method", "GET")
        method = method if method in METHODS else "_OTHER"
        if self.drop_all:
            span: Any = self._unrecorded(parent)
        else:
            span = self.tracer.start_span("HTTP" if method == "_OTHER" else method, parent, SpanKind.SERVER)
        context = trace.set_span_in_context(span, parent)
        token = otel_context.attach(context)
        if not span.is_recording():
            # Nothing to record: the context is current for the app (its logs' ids, what its
            # instrumentation passes on); an exception leaves it current, as below.
            await self.app(scope, receive, send)
            otel_context.detach(token)
            return
        span.set_attributes(_attributes(scope, method))
        self._pass_on(scope, headers, context)
        response = _Status(send)
        try:
            await self.app(scope, receive, response)
        except Exception as exc:
            self._ended(span, scope, method, response.status or 500)
            record_error(exc, span)
            span.end()
            raise  # the span stays current: the server's error line carries its ids
        except BaseException:
            span.end()
            otel_context.detach(token)
            raise
        self._ended(span, scope, method, response.status)
        if response.status >= 500 and "error.type" not in (getattr(span, "attributes", None) or {}):
            span.set_attribute("error.type", str(response.status))
            span.set_status(StatusCode.ERROR)
        span.end()
        otel_context.detach(token)

    def _parent(self, headers: Any) -> otel_context.Context:
        """The caller's context from the request's headers alone (empty when it sent none of the
        propagators' headers, which is most requests: they are not asked then)."""
        for name, _ in headers:
            if name in self.fields:
                return propagate.extract(headers, otel_context.Context(), getter=HEADERS)
        return otel_context.Context()

    @staticmethod
    def _unrecorded(parent: otel_context.Context) -> Any:
        """The span ``always_off`` gives every request, without the SDK's tracer: what its
        sampler would decide (drop), the caller's trace continued or a new one, fresh ids."""
        caller = trace.get_current_span(parent).get_span_context()
        if caller.is_valid:
            trace_id, flags, state = (
                caller.trace_id,
                caller.trace_flags & TraceFlags.RANDOM_TRACE_ID,
                caller.trace_state,
            )
        else:
            trace_id, flags, state = _random_id(128), TraceFlags.RANDOM_TRACE_ID, None
        ids = SpanContext(trace_id, _random_id(64), False, TraceFlags(flags), state)
        return NonRecordingSpan(ids)

    @staticmethod
    def _pass_on(scope: Scope, headers: Any, context: otel_context.Context) -> None:
        """The app gets the request's headers with this span's context in the caller's place."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context)
        if carrier:
            names = {name.encode("latin-1") for name in carrier}
            scope["headers"] = [h for h in headers if h[0] not in names] + [
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in carrier.items()
            ]

    @staticmethod
    def _ended(span: Any, scope: Scope, method: str, status: int) -> None:
        if status:
            span.set_attribute("http.response.status_code", status)
        template = route(scope)
        if template:
            span.set_attribute("http.route", template)
            span.update_name(f"{'HTTP' if method == '_OTHER' else method} {template}")
