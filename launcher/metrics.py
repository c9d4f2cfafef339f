"""Prometheus metrics that add up across every worker process (``OPS_PORT``'s ``/metrics``).

``prometheus_client`` counts per process; across workers it needs its multiprocess mode: a
directory where every process keeps its values in memory-mapped files, named by the
``PROMETHEUS_MULTIPROC_DIR`` variable *before* ``prometheus_client`` is imported, read back by a
``MultiProcessCollector``, and cleaned of a dead worker's live gauges (``mark_process_dead``).
Projects set this up by hand, one by one; here the master does it (``prepare_directory``,
``mark_dead``), so the app's own ``prometheus_client`` metrics are aggregated too, with no code
from the user.

Two sources:

* **the worker pipeline's layer** (``ServerMetrics``), with the OpenTelemetry HTTP server
  names as Prometheus spells them: ``http_server_request_duration_seconds`` (histogram, by
  ``http_request_method`` and ``http_response_status_code``), ``http_server_active_requests``
  and ``http_server_response_body_size_bytes``. No raw path: labels stay bounded (a method
  outside the standard ones is ``_OTHER``, as OpenTelemetry says);
* **the master** (``MasterCollector``, computed at each scrape from its ``Supervision``):
  ``asgi_launcher_workers`` (wanted), ``asgi_launcher_workers_booted`` and
  ``asgi_launcher_worker_restarts_total`` by reason.

``prometheus_client`` is an optional extra (``asgi-launcher[metrics]``); without it ``/metrics``
says so and the rest of the operations listener works.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.supervision import Supervision

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

#: The variable prometheus_client's multiprocess mode reads.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Request duration buckets: OpenTelemetry's advice for ``http.server.request.duration``.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Response body size buckets, in bytes: 100 B to 10 MB by decades and halves.
SIZE_BUCKETS = (100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
#: Methods kept as they are; any other is ``_OTHER`` (a client could otherwise mint labels).
METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})

INSTALL_HINT = "pip install 'asgi-launcher[metrics]'"


def available() -> bool:
    """Whether ``prometheus_client`` is installed (without importing it)."""
    return importlib.util.find_spec("prometheus_client") is not None


def prepare_directory(state_dir: str, environ: MutableMapping[str, str] = os.environ) -> tuple[str, bool]:
    """The multiprocess directory, set in ``environ`` for the workers; ``(path, ours)``.

    A directory the user named is used as it is (created if missing, never wiped): it may be
    shared on purpose. Otherwise a fresh one inside the master's private state directory on
    tmpfs, removed with it at exit. Call before any worker starts and before this process
    imports ``prometheus_client``: it picks its value class from the variable at import.
    """
    given = environ.get(MULTIPROC_ENV, "").strip()
    if given:
        os.makedirs(given, exist_ok=True)
        return given, False
    path = os.path.join(state_dir, "metrics")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700)
    environ[MULTIPROC_ENV] = path
    return path, True


def mark_dead(pid: int, directory: str) -> None:
    """A reaped worker's live gauges leave the sums; its counters and histograms stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def exposition(supervision: Supervision, directory: str) -> tuple[bytes, str]:
    """``/metrics``: every worker's values summed, plus the master's own; body and content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    registry.register(MasterCollector(supervision))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class MasterCollector:
    """What only the master knows, read from its ``Supervision`` at each scrape."""

    def __init__(self, supervision: Supervision) -> None:
        self.supervision = supervision

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.supervision
        yield GaugeMetricFamily("asgi_launcher_workers", "Worker processes wanted.", value=s.workers_wanted)
        yield GaugeMetricFamily(
            "asgi_launcher_workers_booted",
            "Worker processes that have booted (app imported, lifespan startup done).",
            value=s.booted_count(),
        )
        restarts = CounterMetricFamily(
            "asgi_launcher_worker_restarts",
            "Workers replaced, by reason: crash, max_requests, memory, timeout, reload, stopped.",
            labels=["reason"],
        )
        for reason in ("crash", "max_requests", "memory", "timeout", "reload", "stopped"):
            restarts.add_metric([reason], s.restarts.get(reason, 0))
        yield restarts


class ServerMetrics:
    """The pipeline layer: each HTTP request observed once, in this worker's multiprocess files.

    The labelled children are cached per (method, status), so a request costs a dict lookup and
    the value writes, not ``labels()``'s validation. WebSocket sessions and lifespan are not
    requests here.
    """

    def __init__(self, app: Any) -> None:
        from prometheus_client import Gauge, Histogram

        self.app = app
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            ["http_request_method", "http_response_status_code"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.size = Histogram(
            "http_server_response_body_size_bytes",
            "Size of HTTP server response bodies.",
            ["http_request_method", "http_response_status_code"],
            buckets=SIZE_BUCKETS,
            registry=None,
        )
        self.active = Gauge(
            "http_server_active_requests",
            "Number of active HTTP server requests.",
            ["http_request_method"],
            multiprocess_mode="livesum",
            registry=None,
        )
        self._observers: dict[tuple[str, int], tuple[Callable[[float], None], Callable[[float], None]]] = {}
        self._active: dict[str, Any] = {}

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "http":
            inner: Awaitable[None] = self.app(scope, receive, send)
            return inner
        return self._observed(scope, receive, send)

    async def _observed(self, scope: Scope, receive: Any, send: Any) -> None:
        method = scope["method"] if scope["method"] in METHODS else "_OTHER"
        active = self._active.get(method)
        if active is None:
            active = self._active[method] = self.active.labels(method)
        status = 0
        size = 0

        async def observing_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        active.inc()
        started = time.perf_counter()
        try:
            await self.app(scope, receive, observing_send)
        except BaseException:
            status = status or 500  # what the server answers for an app that raised
            raise
        finally:
            elapsed = time.perf_counter() - started
            active.dec()
            key = (method, status)
            observers = self._observers.get(key)
            if observers is None:
                code = str(status)
                observers = self._observers[key] = (
                    self.duration.labels(method, code).observe,
                    self.size.labels(method, code).observe,
                )
            observers[0](elapsed)
            observers[1](size)


def enabled_in_worker() -> bool:
    """Whether this worker's master set up the multiprocess directory (so the layer is on)."""
    return bool(os.environ.get(MULTIPROC_ENV)) and available()
