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
* **the master** (``MasterCollector``, computed at each scrape from its ``Master``):
  ``asgi_launcher_workers`` (wanted), ``asgi_launcher_workers_booted`` and
  ``asgi_launcher_worker_restarts_total`` by reason.

``prometheus_client`` is an optional extra (``asgi-launcher[metrics]``); without it ``/metrics``
says so and the rest of the operations listener works.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from launcher.recorder import Recorder
from launcher.tally import Tally

if TYPE_CHECKING:
    from launcher.master.facade import Master

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


def exposition(supervision: Master, directory: str) -> tuple[bytes, str]:
    """``/metrics``: every worker's values summed, plus the master's own; body and content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerFiles(directory))
    registry.register(MasterCollector(supervision))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class WorkerFiles:
    """Every process's values in ``directory``, merged: ``MultiProcessCollector`` over the files
    a scrape can read.

    A process creating its file (a worker's first request, a replacement worker's too) opens it
    and only then sizes it; ``MultiProcessCollector`` reading it in that instant fails the whole
    scrape (``struct.error`` on an empty file), which ``/metrics`` would answer with a dropped
    connection. An empty file holds no value yet, so it is left out.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [path for path in glob.glob(os.path.join(self.directory, "*.db")) if _sized(path)]
        merged: Iterable[Any] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        yield from merged


def _sized(path: str) -> bool:
    try:
        return os.stat(path).st_size >= 8  # its first 8 bytes say how much of it is used
    except FileNotFoundError:
        return False  # a dead worker's live gauge, just removed


class MasterCollector:
    """What only the master knows, read from its ``Master`` at each scrape."""

    def __init__(self, supervision: Master) -> None:
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


class _Pending:
    """One (method, status)'s observations since the last flush."""

    __slots__ = ("duration_buckets", "duration_sum", "size_buckets", "size_sum")

    def __init__(self) -> None:
        self.duration_buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.size_buckets = [0] * (len(SIZE_BUCKETS) + 1)
        self.size_sum = 0.0

    def add(self, durations: list[int], duration_sum: float, sizes: list[int], size_sum: float) -> None:
        self.duration_buckets = [a + b for a, b in zip(self.duration_buckets, durations, strict=True)]
        self.duration_sum += duration_sum
        self.size_buckets = [a + b for a, b in zip(self.size_buckets, sizes, strict=True)]
        self.size_sum += size_sum


class ServerMetrics:
    """The pipeline layer: each HTTP request counted in this worker, written to its multiprocess
    files at most ``FLUSH_INTERVAL`` seconds later. With the access log on, the access log's
    layer counts instead (``app`` None), one wrapper of ``send`` a request, not two: the C
    layer appends to ``started`` and counts into ``tally`` itself; the Python one calls
    ``begin`` and its writer ``counted``.

    Why batched: ``prometheus_client``'s multiprocess values take a lock and write an mmap on
    every ``inc``, six of them for a request's two histograms and gauge: about 25 us, a fifth of
    a fast server's whole request. Here a request is counted into a ``launcher.tally.Tally``
    (its buckets and sums); the flush (a timer on the worker's loop, lifespan shutdown and
    interpreter exit) writes them. A worker killed with SIGKILL loses at most its last
    ``FLUSH_INTERVAL`` of counts; a scrape may lag by as much. WebSocket sessions and lifespan are not requests here.
    """

    FLUSH_INTERVAL = 0.25

    def __init__(self, app: Any = None) -> None:
        import atexit

        from prometheus_client import Gauge, Histogram

        self.app = app
        labels = ["http_request_method", "http_response_status_code"]
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.size = Histogram(
            "http_server_response_body_size_bytes",
            "Size of HTTP server response bodies.",
            labels,
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
        #: The methods of the requests begun since the last count (``begin`` appends; the C
        #: access layer appends itself, calling ``arm`` for the first).
        self.started: list[str] = []
        #: Requests done, not yet written (``end`` adds; the C access layer adds itself).
        self.tally = Tally(DURATION_BUCKETS, SIZE_BUCKETS, METHODS, "_OTHER")
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._active: dict[str, int] = {}
        self._active_written: dict[str, int] = {}
        self._scheduled = False
        atexit.register(self.flush)

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "http":
            return self._observed(scope, receive, send)
        if kind == "lifespan":
            return self._lifespan(scope, receive, send)
        inner: Awaitable[None] = self.app(scope, receive, send)
        return inner

    async def _lifespan(self, scope: Scope, receive: Any, send: Any) -> None:
        async def flushing_receive() -> Message:
            message: Message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.flush()
            return message

        await self.app(scope, flushing_receive, send)

    def begin(self, method: str) -> None:
        """A request with ``method`` starts (one more active).

        ``begin`` and ``end`` only append: the labels, buckets and sums are worked out at the
        flush, over the batch. Under load that costs a fraction of doing it per request, the
        same code run once per request between the server's and the app's (measured pinned:
        see ``bench/run.py --metrics``).
        """
        self.started.append(method)
        self.arm()

    def arm(self) -> None:
        """Make sure the flush timer runs (on the running loop): the active-requests gauge
        must follow a request begun even if none ends."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_INTERVAL, self._timer)

    def end(self, method: str, status: int, size: int, elapsed: float) -> None:
        """A request ``begin`` started is done (the same ``method``): count it, written at the
        next flush."""
        self.tally.add(method, status, size, elapsed)

    def counted(self, entries: list[Any]) -> None:
        """The Python access layer's ``Writer`` hands over each batch of its entries (``Entry``:
        scope, start, status, size, duration, headers) as it flushes: with the access log on,
        these are the requests ``begin`` started, done, and ``end`` is not called."""
        add = self.tally.add
        for scope, _, status, size, duration, _ in entries:
            if scope["type"] == "http":
                add(scope["method"], status, size, duration)

    def _count(self) -> None:
        """Add the requests begun and done since the last count to the pending sums."""
        begun = self.started.copy()  # the list itself stays: the C access layer appends to it
        self.started.clear()
        active = self._active
        for method, count in Counter(begun).items():
            label = method if method in METHODS else "_OTHER"
            active[label] = active.get(label, 0) + count
        for label, status, count, durations, duration_sum, sizes, size_sum in self.tally.take():
            active[label] = active.get(label, 0) - count
            pending = self._pending.get((label, status))
            if pending is None:
                pending = self._pending[(label, status)] = _Pending()
            pending.add(durations, duration_sum, sizes, size_sum)

    async def _observed(self, scope: Scope, receive: Any, send: Any) -> None:
        recorder = Recorder(send)  # status and size, with no Python frame a message
        method = scope["method"]
        self.begin(method)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, recorder)
        except BaseException:
            status = recorder.status or 500  # what the server answers for an app that raised
            raise
        else:
            status = recorder.status
        finally:
            self.end(method, status, recorder.size, time.perf_counter() - started)

    def _timer(self) -> None:
        self._scheduled = False
        self.flush()
        if any(self._active_written.values()):
            # Requests still in flight: look again, so the gauge follows them down.
            self._scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_INTERVAL, self._timer)

    def flush(self) -> None:
        """Write what was counted since the last flush into this worker's multiprocess files."""
        self._count()
        pending, self._pending = self._pending, {}
        for (method, status), p in pending.items():
            code = str(status)
            # The children's own values: ``observe`` would write once per request.
            _add(self.duration.labels(method, code), p.duration_buckets, p.duration_sum)
            _add(self.size.labels(method, code), p.size_buckets, p.size_sum)
        for method, count in list(self._active.items()):
            if self._active_written.get(method) != count:
                self.active.labels(method).set(count)
                self._active_written[method] = count


def _add(histogram: Any, buckets: list[int], total: float) -> None:
    """Add counted observations to a histogram child (its ``_buckets`` and ``_sum`` values, which
    ``Histogram.observe`` itself increments; the bucket list ends with +Inf as ours does)."""
    histogram._sum.inc(total)
    for value, count in zip(histogram._buckets, buckets, strict=True):
        if count:
            value.inc(count)


def enabled_in_worker() -> bool:
    """Whether this worker's master set up the multiprocess directory (so the layer is on)."""
    return bool(os.environ.get(MULTIPROC_ENV)) and available()
