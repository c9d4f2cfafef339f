"""A real OTLP/HTTP receiver for the tests: what a collector gets from the launcher's workers.

``Receiver`` is a small ``http.server`` on 127.0.0.1 (a free port) that takes the exporter's
``POST /v1/traces`` requests, answers them as a collector does, and keeps each body; ``spans()``
decodes them with ``opentelemetry-proto`` (the package the exporter itself encodes with) into
``Span`` records. With ``hang=True`` it accepts export requests and never answers them: an
unreachable collector, as far as the exporter can tell.

The decoding needs ``opentelemetry-proto`` (``asgi-launcher[otel]`` brings it); ``missing()``
says what to install when it, or the SDK the workers need, is not there.
"""

from __future__ import annotations

import gzip
import importlib.util
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INSTALL_HINT = "tracing checks need the otel extra: pip install 'asgi-launcher[otel]'"


def missing() -> str | None:
    """What the tracing checks lack (the install hint), or None."""
    for module in ("opentelemetry.sdk.trace", "opentelemetry.proto.collector.trace.v1"):
        try:
            if importlib.util.find_spec(module) is None:
                return INSTALL_HINT
        except ImportError:
            return INSTALL_HINT
    return None


@dataclass(frozen=True)
class Span:
    """One exported span, ids in lower-case hex (``parent_id`` "" for a root)."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str  # SERVER, INTERNAL, CLIENT, ...
    attributes: dict[str, Any]
    status: str  # UNSET, OK, ERROR
    start_ns: int
    end_ns: int
    resource: dict[str, Any]
    events: tuple[str, ...]  # event names ("exception")


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


class Receiver:
    """An OTLP/HTTP collector on 127.0.0.1 (use it as a context manager)."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.bodies: list[bytes] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests += 1
                if receiver.hang:
                    receiver._release.wait(120)  # never answered while the test runs
                    return
                encoding = (self.headers.get("content-encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path.rstrip("/").endswith("/v1/traces"):
                    with receiver._lock:
                        receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` should say."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[Span]:
        """Every span received so far, decoded."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
        from opentelemetry.proto.trace.v1.trace_pb2 import Status

        with self._lock:
            bodies = list(self.bodies)
        found = []
        for body in bodies:
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            Span(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                kind=ProtoSpan.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                                attributes=_attributes(span.attributes),
                                status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                resource=resource,
                                events=tuple(event.name for event in span.events),
                            )
                        )
        return found

    def wait_for_requests(self, count: int, timeout: float) -> None:
        """Wait until ``count`` export requests have arrived (answered or not)."""
        deadline = time.monotonic() + timeout
        while self.requests < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} export requests: not within {timeout}s ({self.requests})")
            time.sleep(0.05)

    def wait_for(self, predicate: Any, timeout: float, what: str) -> list[Span]:
        """Poll until ``predicate(spans)`` is true; the spans, or fail saying ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s; {len(spans)} spans received")
            time.sleep(0.05)
