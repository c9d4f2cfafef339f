"""The tracing layer's server span, on a real event loop with the real SDK (spans kept in memory),
and the ids the access log and the JSON log lines carry."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="pip install 'asgi-launcher[otel]'")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from launcher.observability import access_log
from launcher.observability.tracing import ServerSpans, _with_ids, current_ids
from launcher.worker.pipeline import ResponseCheck

TRACE_ID, PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01".encode()


def tracer(sampler: Any = sampling.ALWAYS_ON) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def scope(**more: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "http_version": "1.1",
        "path": "/items/7",
        "query_string": b"token=secret",
        "headers": [(b"host", b"shop.test:8080"), (b"user-agent", b"kit/1")],
        "client": ("10.0.0.9", 40000),
        "server": ("127.0.0.1", 8000),
        **more,
    }


def call(
    app: Any, request: dict[str, Any], messages: tuple[dict[str, Any], ...] = ()
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = list(messages) or [{"type": "http.request", "body": b""}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(request, receive, send))
    return sent


class Route:
    path = "/items/{item_id:int}"
    path_format = "/items/{item_id}"


def test_a_server_span_after_the_http_conventions_with_the_callers_parent() -> None:
    seen: dict[str, Any] = {}

    async def app(s: dict[str, Any], receive: Any, send: Any) -> None:
        seen["current"] = trace.get_current_span().get_span_context()
        seen["traceparent"] = dict(s["headers"])[b"traceparent"].decode()
        s["route"] = Route()  # what Starlette's and FastAPI's routers leave in the scope
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    traced, exporter = tracer()
    call(ServerSpans(app, traced), scope(headers=[*scope()["headers"], (b"traceparent", TRACEPARENT)]))
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.SERVER and span.name == "GET /items/{item_id}"
    assert format(span.context.trace_id, "032x") == TRACE_ID and format(span.parent.span_id, "016x") == PARENT
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "url.path": "/items/7",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.address": "shop.test",
        "server.port": 8080,
        "client.address": "10.0.0.9",
        "client.port": 40000,
        "user_agent.original": "kit/1",
        "http.response.status_code": 201,
        "http.route": "/items/{item_id}",
    }
    # Current while the app runs, and what the app's headers now say.
    assert seen["current"].span_id == span.context.span_id
    assert seen["traceparent"] == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"


def test_the_parent_comes_from_the_headers_alone() -> None:
    traced, exporter = tracer()
    outer = traced.start_span("whatever the server left current")
    with trace.use_span(outer):
        call(ServerSpans(_ok, traced), scope())
    server = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(server) == 1 and server[0].parent is None
    assert server[0].context.trace_id != outer.get_span_context().trace_id


def test_an_exception_is_recorded_and_the_span_stays_current_for_the_servers_error_line() -> None:
    async def app(s: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    traced, exporter = tracer()
    layer = ServerSpans(app, traced)
    ids: list[tuple[str, str]] = []

    async def server() -> None:
        with pytest.raises(RuntimeError):
            await layer(scope(), _receive, _send)
        ids.append(current_ids())  # where a server logs "Exception in ASGI application"

    asyncio.run(server())
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    assert [event.name for event in span.events] == ["exception"]
    assert ids == [(format(span.context.trace_id, "032x"), format(span.context.span_id, "016x"))]


def test_a_5xx_answer_is_an_error_a_4xx_is_not() -> None:
    traced, exporter = tracer()
    call(ServerSpans(_status(503), traced), scope())
    call(ServerSpans(_status(404), traced), scope())
    failed, missing = exporter.get_finished_spans()
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes["error.type"] == "503"
    assert missing.status.status_code == StatusCode.UNSET and "error.type" not in missing.attributes


def test_a_non_standard_method_and_a_websocket_session() -> None:
    traced, exporter = tracer()
    call(ServerSpans(_ok, traced), scope(method="PURGE"))

    async def ws(s: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    call(ServerSpans(ws, traced), scope(type="websocket", scheme="ws"), ({"type": "websocket.connect"},))
    other, session = exporter.get_finished_spans()
    assert other.name == "HTTP" and other.attributes["http.request.method"] == "_OTHER"
    assert other.attributes["http.request.method_original"] == "PURGE"
    assert session.name == "GET" and session.attributes["network.protocol.name"] == "websocket"
    assert session.attributes["http.response.status_code"] == 101 and session.attributes["url.scheme"] == "ws"


def test_an_unsampled_request_records_nothing_but_keeps_its_ids() -> None:
    seen: list[tuple[str, str]] = []

    async def app(s: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(current_ids())
        await _ok(s, receive, send)

    traced, exporter = tracer(sampling.ALWAYS_OFF)
    call(ServerSpans(app, traced), scope(headers=[(b"traceparent", TRACEPARENT)]))
    # always_off without asking the SDK: the same decision, the caller's trace, a span id of its own.
    call(ServerSpans(app, traced, drop_all=True), scope(headers=[(b"traceparent", TRACEPARENT)]))
    call(ServerSpans(app, traced, drop_all=True), scope())
    assert exporter.get_finished_spans() == ()
    assert seen[0][0] == seen[1][0] == TRACE_ID and seen[2][0] not in ("", TRACE_ID)
    assert len({ids[1] for ids in seen}) == 3 and all(len(ids[1]) == 16 for ids in seen)


def test_the_access_log_and_the_log_records_carry_the_ids() -> None:
    traced, _ = tracer()
    lines: list[str] = []
    layout = access_log.JsonLayout()
    text = access_log.TextLayout("%(s)s trace_id=%(trace_id)s span_id=%(span_id)s")
    assert layout.trace_ids and text.trace_ids and not access_log.TextLayout().trace_ids
    entries: list[Any] = []
    log = access_log.RequestLog([entries.extend], layout.request_headers, (), None, current_ids)
    call(ServerSpans(ResponseCheck(_ok, log=log), traced), scope(headers=[(b"traceparent", TRACEPARENT)]))
    log.flush()
    lines = layout.lines(entries)[0] + text.lines(entries)[0]
    event = json.loads(lines[0])
    assert event["trace_id"] == TRACE_ID and len(event["span_id"]) == 16
    assert lines[1] == f"200 trace_id={TRACE_ID} span_id={event['span_id']}"
    entries.clear()
    untraced = access_log.RequestLog([entries.extend], layout.request_headers)
    call(ResponseCheck(_ok, log=untraced), scope())
    untraced.flush()
    assert "trace_id" not in json.loads(layout.lines(entries)[0][0])
    assert text.lines(entries)[0] == ["200 trace_id=- span_id=-"]

    make = _with_ids(logging.LogRecord)
    with trace.use_span(traced.start_span("x")) as span:
        inside = make("app", logging.ERROR, __file__, 1, "in a span", (), None)
    outside = make("app", logging.ERROR, __file__, 1, "outside", (), None)
    assert inside.trace_id == format(span.get_span_context().trace_id, "032x")  # type: ignore[attr-defined]
    assert not hasattr(outside, "trace_id")


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _send(message: Any) -> None:
    pass


async def _ok(s: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _status(status: int) -> Any:
    async def app(s: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def test_the_route_is_named_under_root_path_too() -> None:
    """ROOT_PATH's layer (inside the tracing one) gives the app the path with the root path,
    and the span still gets the route the app's router left in the scope."""
    from launcher.worker.pipeline import RootPath

    seen: dict[str, Any] = {}

    async def app(s: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(root_path=s["root_path"], path=s["path"])
        s["route"] = Route()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    traced, exporter = tracer()
    request = scope()
    call(ServerSpans(RootPath(app, "/api"), traced), request)
    (span,) = exporter.get_finished_spans()
    assert seen == {"root_path": "/api", "path": "/api/items/7"}
    assert span.attributes["http.route"] == "/items/{item_id}" and span.name == "GET /items/{item_id}"
    assert span.attributes["url.path"] == "/items/7" and request["path"] == "/items/7"  # as sent
