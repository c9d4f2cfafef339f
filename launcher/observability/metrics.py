"""Prometheus metrics that add up across every worker process (``OPS_PORT``'s ``/metrics``).

``prometheus_client`` counts per process; across workers it needs its multiprocess mode: a
directory where every process keeps its values in memory-mapped files, named by the
``PROMETHEUS_MULTIPROC_DIR`` variable *before* ``prometheus_client`` is imported, read back by a
``MultiProcessCollector``; a dead worker's files are folded into one per kind (``mark_dead``).
Projects set this up by hand, one by one; here the master does it (``prepare_directory``,
``mark_dead``), so the app's own ``prometheus_client`` metrics are aggregated too, with no code
from the user.

Two sources:

* **the worker pipeline's layer** (``ServerMetrics``), with the OpenTelemetry HTTP server
  names as Prometheus spells them: ``http_server_request_duration_seconds`` (histogram, by
  ``http_request_method`` and ``http_response_status_code``), ``http_server_active_requests``
  and ``http_server_response_body_size_bytes``. No raw path: labels stay bounded (a method
  outside the standard ones is ``_OTHER``, as OpenTelemetry says);
* **the master** (``MasterCollector``, computed at each scrape from what the master knows):
  ``asgi_launcher_workers`` (wanted), ``asgi_launcher_workers_booted`` and
  ``asgi_launcher_worker_restarts_total`` by reason.

``prometheus_client`` is an optional extra (``asgi-launcher[metrics]``); without it ``/metrics``
says so and the rest of the operations listener works.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import operator
import os
import shutil
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from itertools import groupby
from typing import Any, Protocol

from launcher.observability.access_log import DURATION, KIND, METHOD, SIZE, STATUS, Entry


class MasterView(Protocol):
    """What only the master knows, as ``/metrics`` reads it (``launcher.master.Master``)."""

    workers_wanted: int

    @property
    def restarts(self) -> Mapping[str, int]: ...

    def booted_count(self) -> int: ...


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


def preload() -> None:
    """Import now, in the master before it forks a worker, what a scrape and a fold import.

    They run on the operations listener's threads while the master forks workers: a fork in the
    instant another thread is importing ``prometheus_client`` left it half imported in the child,
    and a worker whose app imports it too waited forever for the lock of a thread that does not
    exist there (seen under Granian, which forks replacements while scrapes come in). Call after
    ``prepare_directory``.
    """
    import prometheus_client.core
    import prometheus_client.mmap_dict
    import prometheus_client.multiprocess  # noqa: F401


#: The name dead workers' values are kept under (``counter_folded.db``, ...), in place of a pid.
FOLDED = "folded"

#: How the values of one kind of file add up across processes, as ``MultiProcessCollector``
#: merges them: by file name prefix (``counter_123.db``, ``gauge_max_123.db``, ...).
_FOLD: dict[str, Callable[[float, float], float]] = {
    "counter": operator.add,
    "histogram": operator.add,
    "summary": operator.add,
    "gauge_sum": operator.add,
    "gauge_max": max,
    "gauge_min": min,
}

#: Dead workers not folded yet (a scrape in progress had the lock); folded at the next chance.
_dead: list[tuple[int, str]] = []
#: Held by a scrape and by a fold: a scrape must see a dead worker's values either in its own
#: files or in the folded ones, never both or neither (a counter going back is a reset).
_folding = threading.Lock()


def mark_dead(pid: int, directory: str) -> None:
    """A reaped worker's values: its counters, histograms and summed, min and max gauges are
    folded into one file per kind (``<kind>_folded.db``) and its own files removed; its live gauges
    and its per-process (``all``) gauges leave with it, as ``mark_process_dead`` and
    ``mostrecent`` would keep only a value nobody can tell apart.

    ``prometheus_client`` keeps a file per process and kind (64 KiB each on ``/dev/shm``, every
    one read at each scrape) until the directory goes: over thousands of worker restarts
    (``MAX_REQUESTS``) the directory and the scrape grew without bound. Never blocks: a scrape
    holding the lock folds what is left before it reads.
    """
    _dead.append((pid, directory))
    if _folding.acquire(blocking=False):
        try:
            _fold_dead()
        finally:
            _folding.release()


def _fold_dead() -> None:
    while _dead:
        pid, directory = _dead.pop(0)
        for path in glob.glob(os.path.join(directory, f"*_{pid}.db")):
            kind = os.path.basename(path)[: -len(f"_{pid}.db")]
            fold = _FOLD.get(kind)
            if fold is not None and _sized(path):
                _fold_file(path, os.path.join(directory, f"{kind}_{FOLDED}.db"), fold)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _fold_file(path: str, into: str, fold: Callable[[float, float], float]) -> None:
    """Add the values of ``path`` to those of ``into`` (created if need be)."""
    from prometheus_client.mmap_dict import MmapedDict

    read: Callable[[str], Iterable[tuple[str, float, float, int]]] = MmapedDict.read_all_values_from_file
    kept = {key: value for key, value, _, _ in read(into)} if _sized(into) else {}
    folded: Any = MmapedDict(into)  # type: ignore[no-untyped-call]
    try:
        for key, value, timestamp, _ in read(path):
            folded.write_value(key, fold(kept[key], value) if key in kept else value, timestamp)
    finally:
        folded.close()


def exposition(master: MasterView, directory: str) -> tuple[bytes, str]:
    """``/metrics``: every worker's values summed, plus the master's own; body and content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerFiles(directory))
    registry.register(MasterCollector(master))
    with _folding:
        _fold_dead()
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
    """What only the master knows, read at each scrape."""

    def __init__(self, master: MasterView) -> None:
        self.master = master

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.master
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
    """Each HTTP request counted in this worker's multiprocess files: a sink of the pipeline's
    ``RequestLog`` (``launcher.observability.access_log``), the same entries the access log writes.

    Why in batches: ``prometheus_client``'s multiprocess values take a lock and write an mmap on
    every ``inc``, six of them for a request's two histograms and gauge: about 25 us, a fifth of a
    fast server's whole request. Here a batch of entries (every 64 requests, or 0.2 s) is folded
    into each (method, status)'s bucket counts and sums, and those written: a few writes a batch.
    A worker killed with SIGKILL loses at most its last batch of counts; a scrape may lag by as
    much. WebSocket sessions and lifespan are not requests here.
    """

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

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
        self.dropped = Counter(
            "asgi_launcher_access_log_dropped_lines",
            "Access log lines dropped: the log's reader did not keep up, or a request's values could "
            "not be formatted.",
            registry=None,
        )
        #: The method of each HTTP request begun since the last batch (``RequestLog`` appends).
        self.begun: list[str] = []
        self._active: dict[str, int] = {}
        self._active_written: dict[str, int] = {}

    def lost(self, count: int) -> None:
        """``count`` access lines dropped (the access log's ``Writer`` says so)."""
        self.dropped.inc(count)

    def counted(self, entries: list[Entry]) -> None:
        """Count a batch of requests done (and those begun since the last): a ``RequestLog`` sink."""
        begun, self.begun[:] = Tally(self.begun), []
        active = self._active
        for method, count in begun.items():
            label = method if method in METHODS else "_OTHER"
            active[label] = active.get(label, 0) + count
        # Entries grouped by (kind, method, status) with C doing the per-entry work: each run of
        # entries alike (a batch is nearly always a few runs) joins its group at once; the
        # durations and sizes are read out by itemgetter.
        groups: dict[tuple[str, int], list[Entry]] = {}
        for (kind, method, status), run in groupby(entries, _GROUP):
            if kind == "http":
                groups.setdefault((method if method in METHODS else "_OTHER", status), []).extend(run)
        for (label, status), done in groups.items():
            active[label] = active.get(label, 0) - len(done)
            code = str(status)
            _observe(self.duration.labels(label, code), DURATION_BUCKETS, list(map(_DURATION, done)))
            _observe(self.size.labels(label, code), SIZE_BUCKETS, list(map(_SIZE, done)))
        for label, count in active.items():
            if self._active_written.get(label) != count:
                self.active.labels(label).set(count)
                self._active_written[label] = count


#: An entry's group, its duration and its size, read in C.
_GROUP = operator.itemgetter(KIND, METHOD, STATUS)
_DURATION = operator.itemgetter(DURATION)
_SIZE = operator.itemgetter(SIZE)


def _observe(histogram: Any, bounds: tuple[float, ...], values: list[float]) -> None:
    """``histogram.observe`` for each of ``values``, as one write a bucket: each value counted in
    the first bucket whose bound it does not exceed (the histogram's child keeps its buckets
    per bound, then +Inf, not cumulated: ``observe`` increments one)."""
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bisect_left(bounds, value)] += 1
    histogram._sum.inc(sum(values))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)


def enabled_in_worker() -> bool:
    """Whether this worker's master set up the multiprocess directory (so the layer is on)."""
    return bool(os.environ.get(MULTIPROC_ENV)) and available()
