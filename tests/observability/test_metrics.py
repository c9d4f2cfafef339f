"""The metrics: what a batch writes equals what ``Histogram.observe`` would have, counted from the
same record of each request as the access log (with it on or off).

Each test runs in a fresh interpreter: ``prometheus_client`` picks its multiprocess value class
from ``PROMETHEUS_MULTIPROC_DIR`` when it is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

SCRIPT = r"""
import asyncio, json, sys
from launcher.observability.metrics import ServerMetrics
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

durations = [0.001, 0.004, 0.03, 0.2, 3.0, 20.0]
sizes = [0, 5, 100, 2_000, 50_000_000]

async def app(scope, receive, send):
    if scope["path"] == "/raise":
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": int(scope["path"][1:]), "headers": []})
    await send({"type": "http.response.body", "body": b"x" * scope["size"], "more_body": True})
    await send({"type": "http.response.body", "body": b""})

async def noop(message): pass
async def receive(): return {"type": "http.request"}

async def main():
    from launcher.observability.access_log import TextLayout, recorder
    from launcher.worker.pipeline import ResponseCheck
    make = lambda app, *args: ResponseCheck(app, log=recorder(*args))
    metrics = ServerMetrics()
    if sys.argv[2] == "access-log":  # one record a request for both
        layer = make(app, sys.argv[1] + "/../access.log", TextLayout("%(s)s"), metrics)
    else:
        layer = make(app, None, None, metrics)
    flush = layer.log.flush
    for size in sizes:
        await layer({"type": "http", "method": "GET", "path": "/200", "size": size}, receive, noop)
    await layer({"type": "http", "method": "BREW", "path": "/418", "size": 1}, receive, noop)
    try:
        await layer({"type": "http", "method": "POST", "path": "/raise", "size": 0}, receive, noop)
    except RuntimeError:
        pass
    before = collect()
    flush()
    return before, collect()

def collect():
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=sys.argv[1])
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_count") or sample.name.endswith("_sum") or sample.name == "http_server_active_requests":
                key = sample.name + json.dumps(sample.labels, sort_keys=True)
                out[key] = sample.value
            if sample.name == "http_server_response_body_size_bytes_bucket":
                out[sample.name + json.dumps(sample.labels, sort_keys=True)] = sample.value
    return out

before, after = asyncio.run(main())
print(json.dumps({"before": before, "after": after}))
"""


@pytest.fixture(params=["alone", "access-log"])
def via(request: pytest.FixtureRequest) -> str:
    """Metrics alone (ACCESS_LOG off), or with the access log on."""
    return str(request.param)


def script(tmp_path: Path, text: str, *args: str) -> str:
    """Run ``text`` in a fresh interpreter with a new multiprocess directory: its stdout."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", text, str(directory), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run(tmp_path: Path, via: str = "alone") -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = json.loads(script(tmp_path, SCRIPT, via))
    return result


def key(name: str, **labels: str) -> str:
    return name + json.dumps(labels, sort_keys=True)


def test_counts_reach_the_files_at_the_flush_and_match_observe(tmp_path: Path, via: str) -> None:
    result = run(tmp_path, via)
    ok = {"http_request_method": "GET", "http_response_status_code": "200"}
    count = key("http_server_request_duration_seconds_count", **ok)
    # Nothing is written per request: that is the point of the batching.
    assert result["before"].get(count, 0) == 0
    after = result["after"]
    assert after[count] == 5
    assert after[key("http_server_response_body_size_bytes_sum", **ok)] == 0 + 5 + 100 + 2_000 + 50_000_000
    # Cumulative buckets as Histogram.observe would have made them (le is inclusive).
    buckets = {"100.0": 3, "1000.0": 3, "10000.0": 4, "1e+07": 4, "+Inf": 5}
    for le, expected in buckets.items():
        assert after[key("http_server_response_body_size_bytes_bucket", le=le, **ok)] == expected, le


def test_unknown_methods_are_other_and_an_exception_is_a_500(tmp_path: Path, via: str) -> None:
    after = run(tmp_path, via)["after"]
    other = {"http_request_method": "_OTHER", "http_response_status_code": "418"}
    assert after[key("http_server_request_duration_seconds_count", **other)] == 1
    assert not any("BREW" in k for k in after)
    raised = {"http_request_method": "POST", "http_response_status_code": "500"}
    assert after[key("http_server_request_duration_seconds_count", **raised)] == 1


def test_active_requests_are_back_to_zero(tmp_path: Path, via: str) -> None:
    after = run(tmp_path, via)["after"]
    active = [v for k, v in after.items() if k.startswith("http_server_active_requests")]
    assert active
    assert all(v == 0 for v in active)


GAUGE_SCRIPT = r"""
import asyncio, json, sys
from launcher.observability.metrics import ServerMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

async def slow(scope, receive, send):
    await asyncio.sleep(0.6)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

async def noop(message): pass
async def receive(): return {"type": "http.request"}

def active():
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=sys.argv[1])
    return sum(s.value for f in registry.collect() for s in f.samples if s.name == "http_server_active_requests")

async def main():
    from launcher.observability.access_log import recorder
    from launcher.worker.pipeline import ResponseCheck
    layer = ResponseCheck(slow, log=recorder(None, None, ServerMetrics()))
    task = asyncio.create_task(layer({"type": "http", "method": "GET", "path": "/"}, receive, noop))
    await asyncio.sleep(0.4)  # one flush has run with the request in flight
    during = active()
    await task
    await asyncio.sleep(0.6)  # no request begins after it: the gauge must still come down
    return during, active()

print(json.dumps(asyncio.run(main())))
"""


def test_the_active_gauge_comes_down_after_the_last_request_without_another(tmp_path: Path) -> None:
    assert json.loads(script(tmp_path, GAUGE_SCRIPT)) == [1, 0]


SCRAPE_SCRIPT = r"""
import os, sys
from launcher.observability.metrics import ServerMetrics, exposition

class Supervision:  # what MasterCollector reads
    workers_wanted, restarts = 1, {}
    def booted_count(self): return 1

metrics = ServerMetrics()
metrics.begun.append("GET")
metrics.counted([(0.0, 0.01, 200, 5, "http", "GET", None, None, "/", None, b"", "1.1", (), ())])
# A replacement worker caught between creating its file and sizing it:
open(os.path.join(sys.argv[1], "histogram_99999.db"), "wb").close()
body, _ = exposition(Supervision(), sys.argv[1])
print(body.decode())
"""


def test_a_scrape_reads_past_a_file_a_worker_is_still_creating(tmp_path: Path) -> None:
    """prometheus_client fails the whole scrape on an empty file (struct.error), which the
    master's /metrics would answer by dropping the connection; seen once in the conformance
    kit right after a replacement worker's first request."""
    out = script(tmp_path, SCRAPE_SCRIPT)
    line = 'http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200"} 1.0'
    assert line in out.splitlines()


DROPPED_SCRIPT = r"""
import asyncio, os, sys
from launcher.observability.access_log import TextLayout, recorder
from launcher.observability.metrics import ServerMetrics, exposition
from launcher.worker.pipeline import ResponseCheck
make = lambda app, *args: ResponseCheck(app, log=recorder(*args))

class Master:  # what MasterCollector reads
    workers_wanted, restarts = 1, {}
    def booted_count(self): return 1

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

async def noop(message): pass

async def main():
    metrics = ServerMetrics()
    read, write = os.pipe()  # a log collector that never reads: the pipe fills at 64 KiB
    os.dup2(write, 1)  # stdout, which the access log writes to
    log = make(app, "-", TextLayout("%(U)s"), metrics)
    writer = log.log.sinks[0]
    scope = {"type": "http", "method": "GET", "path": "/" + "x" * 500, "headers": []}
    while writer.dropped < 1000:
        await log(dict(scope), None, noop)
    log.log.flush()
    return writer.dropped

out = os.dup(1)  # the test reads what this prints
dropped = asyncio.run(main())
body, _ = exposition(Master(), sys.argv[1])
os.write(out, f"{dropped}\n{body.decode()}\n".encode())
os._exit(0)
"""


def test_dropped_access_lines_are_counted_on_metrics(tmp_path: Path) -> None:
    dropped, _, body = script(tmp_path, DROPPED_SCRIPT).partition("\n")
    assert int(dropped) >= 1000
    assert f"asgi_launcher_access_log_dropped_lines_total {float(dropped)}" in body.splitlines(), body


WORKER_SCRIPT = r"""
import os, sys
from launcher.observability.metrics import ServerMetrics
from prometheus_client import Counter, Gauge, Histogram, Summary
metrics = ServerMetrics()
entry = (0.0, 0.01, 200, 5, "http", "GET", None, None, "/", None, b"", "1.1", (), ())
metrics.begun.extend(["GET"] * 3)
metrics.counted([entry] * 3)
Counter("kit_hits", "hits", ["path"]).labels("/x").inc(2)
Summary("kit_seconds", "seconds").observe(0.5)
Histogram("kit_sizes", "sizes", buckets=(1, 10)).observe(5)
Gauge("kit_peak", "peak", multiprocess_mode="max").set(int(sys.argv[1]))
Gauge("kit_total", "total", multiprocess_mode="sum").set(1)
Gauge("kit_live", "live", multiprocess_mode="livesum").set(1)
Gauge("kit_each", "each").set(1)  # mode "all": one series a process
"""

FOLD_SCRIPT = r"""
import glob, os, subprocess, sys
from launcher.observability import metrics

class Master:
    workers_wanted, restarts = 1, {}
    def booted_count(self): return 1

directory, workers = sys.argv[1], int(sys.argv[2])
most_files = 0
for n in range(workers):
    child = subprocess.run([sys.executable, "-c", sys.argv[3], str(n)], env=os.environ)
    assert child.returncode == 0
    # (the child's pid is gone with it: find its files by the pid in their names)
    pids = {os.path.basename(f).rpartition("_")[2][:-3] for f in glob.glob(os.path.join(directory, "*.db"))}
    for pid in pids - {metrics.FOLDED}:
        metrics.mark_dead(int(pid), directory)
    most_files = max(most_files, len(glob.glob(os.path.join(directory, "*.db"))))
body, _ = metrics.exposition(Master(), directory)
print(most_files)
print(sorted(os.path.basename(f) for f in glob.glob(os.path.join(directory, "*.db"))))
print(body.decode())
"""


def test_dead_workers_files_are_folded_and_no_count_is_lost(tmp_path: Path) -> None:
    """Each dead worker leaves its counters in files of its own (64 KiB each on /dev/shm, read at
    every scrape): folded into one file per kind, the directory stays the same size whatever the
    number of restarts, and every count is still there."""
    workers = 12
    out = script(tmp_path, FOLD_SCRIPT, str(workers), WORKER_SCRIPT)
    most, files, body = out.split("\n", 2)
    assert int(most) <= 7, files  # one folded file per kind of value, nothing a worker
    assert all("_folded.db" in name for name in eval(files)), files
    samples = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in body.splitlines()
        if line and line[0] != "#"
    }
    ok = 'http_request_method="GET",http_response_status_code="200"'
    assert samples[f"http_server_request_duration_seconds_count{{{ok}}}"] == 3 * workers
    assert samples['kit_hits_total{path="/x"}'] == 2 * workers
    assert samples["kit_seconds_count"] == workers and samples["kit_seconds_sum"] == 0.5 * workers
    assert samples['kit_sizes_bucket{le="10.0"}'] == workers
    assert samples["kit_peak"] == workers - 1
    assert samples["kit_total"] == workers
    assert samples.get('http_server_active_requests{http_request_method="GET"}', 0) == 0
    assert "kit_live" not in samples and not any(key.startswith("kit_each") for key in samples), samples


NO_IMPORT_SCRIPT = r"""
import json, os, sys
from launcher.observability import metrics

metrics.preload()
before = set(sys.modules)
# A dead worker's counter, to fold, then a scrape: what the operations listener's threads run
# while the master forks workers.
pid = os.fork()
if pid == 0:  # a worker that counted 3 and died
    from prometheus_client import Counter
    Counter("kit_hits", "Hits.").inc(3)
    os._exit(0)
os.waitpid(pid, 0)

class Master:  # what MasterCollector reads
    workers_wanted, restarts = 1, {}
    def booted_count(self): return 1

metrics.mark_dead(pid, sys.argv[1])
body, _ = metrics.exposition(Master(), sys.argv[1])
print(json.dumps({"new": sorted(set(sys.modules) - before), "folded": "kit_hits_total 3.0" in body.decode()}))
"""


def test_a_scrape_and_a_fold_import_nothing_once_the_master_preloaded(tmp_path: Path) -> None:
    """They run on the operations listener's threads while the master forks workers: a fork in
    the instant one of them imported prometheus_client left it half imported in the worker, whose
    app then hung on its own import of it (a Granian replacement worker never started)."""
    result = json.loads(script(tmp_path, NO_IMPORT_SCRIPT))
    assert result == {"new": [], "folded": True}, result
