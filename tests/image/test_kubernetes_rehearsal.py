"""Kubernetes, rehearsed with real containers: a rolling update that loses no request, and a health
check that follows readiness.

The rolling update plays the endpoints controller and the clients of a Service:

* a controller thread looks at every container's ``/readyz`` (``OPS_PORT``) every ``POLL``
  seconds and keeps a container in the endpoints only while it says 200. What it sees reaches
  the clients ``PROPAGATION`` seconds later, as kube-proxy's rules follow the endpoints with a
  lag: requests routed meanwhile still go to a container that has turned unready, which is
  exactly what ``SHUTDOWN_DELAY`` is for;
* two client threads send a steady stream of requests, round robin over the endpoints of the
  moment, one over keep-alive connections (one per container, dropped when it leaves the
  endpoints), one on a new connection each time;
* container A serves, B starts and becomes ready, then A gets ``docker stop``: no request may
  fail, A must leave the endpoints inside SHUTDOWN_DELAY, keep serving after it turned unready, and
  exit 0; a long request sent to A just before its stop is answered (the drain waits for it).

Then the health check: ``asgi-launcher probe --ready`` (the image's HEALTHCHECK with ``OPS_PORT``)
fails while the app's lifespan startup runs and passes once a worker has booted; and as a non-root
user on a read-only root with an in-memory ``/tmp`` the operations listener still answers and
``/metrics`` counts every request (its multiprocess files on ``/dev/shm``).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from imagekit import TAG, Container, Docker, free_port

from launcher.testing import BACKENDS

pytestmark = pytest.mark.image

OPS = 9000
#: Long enough that A leaves the endpoints well inside it even when `docker stop` itself is slow
#: under load (the CLI's and the engine's latency count: that alone has taken most of a second).
SHUTDOWN_DELAY = 6
#: The controller's look at each /readyz, and the lag before the clients follow what it saw: long
#: enough that both clients, however slow the machine, send A requests after it turned unready.
POLL = 0.15
PROPAGATION = 1.5
#: Pause between two requests of one client thread.
INTERVAL = 0.015
#: Seconds of the long request sent to A just before its stop: more than SHUTDOWN_DELAY.
SLOW = 7.0


@pytest.fixture(scope="module")
def image_backends(docker: Docker) -> set[str]:
    out = docker("run", "--rm", TAG, "asgi-launcher", "backends", "--json").stdout
    return {entry["name"] for entry in json.loads(out)}


@dataclass
class Pod:
    """A container with its app port and its operations port published on 127.0.0.1."""

    container: Container
    ops_port: int
    added: float | None = None  # joined the endpoints (monotonic)
    unready: float | None = None  # the controller first saw /readyz say something else than 200
    removed: float | None = None  # left the endpoints, as the clients see them

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def port(self) -> int:
        return self.container.port

    def readyz(self, timeout: float = 1.0) -> tuple[int | None, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ops_port, timeout=timeout)
        try:
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def ops_get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.ops_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()


def start_pod(docker: Docker, image: str, *args: str, env: dict[str, str], port: int = 80) -> Pod:
    ops_port = free_port()
    container = docker.run(
        image, "-p", f"127.0.0.1:{ops_port}:{OPS}", *args, env={"OPS_PORT": str(OPS), **env}, port=port
    )
    return Pod(container, ops_port)


@dataclass
class Outcome:
    sent: float
    done: float
    pod: str
    fresh: bool
    error: str | None


@dataclass
class Rehearsal:
    """The endpoints controller and the clients, each in its own thread."""

    pods: list[Pod] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    readyz_log: list[tuple[float, str, int | None, str]] = field(default_factory=list)
    _endpoints: list[Pod] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def endpoints(self) -> list[Pod]:
        with self._lock:
            return list(self._endpoints)

    def watch(self, pod: Pod) -> None:
        with self._lock:
            self.pods.append(pod)

    def start(self) -> None:
        for target, args in ((self._controller, ()), (self._client, (False,)), (self._client, (True,))):
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def wait_in_endpoints(self, pod: Pod, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while pod.added is None:
            if time.monotonic() > deadline or pod.container.state()["Status"] == "exited":
                raise AssertionError(f"{pod.name} never became ready\n{pod.container.logs()[-3000:]}")
            time.sleep(0.05)

    def _controller(self) -> None:
        pending: dict[str, float] = {}  # pod -> when the clients see its removal
        while not self._stop.is_set():
            with self._lock:
                pods = list(self.pods)
            for pod in pods:
                status, body = pod.readyz()
                now = time.monotonic()
                self.readyz_log.append((now, pod.name, status, body))
                with self._lock:
                    listed = pod in self._endpoints
                    if status == 200 and not listed:
                        self._endpoints.append(pod)
                        pod.added = now
                    elif status != 200 and listed and pod.name not in pending:
                        pod.unready = pod.unready or now
                        pending[pod.name] = now + PROPAGATION
            now = time.monotonic()
            with self._lock:
                for pod in [p for p in self._endpoints if pending.get(p.name, now + 1) <= now]:
                    del pending[pod.name]
                    self._endpoints.remove(pod)
                    pod.removed = now
            self._stop.wait(POLL)

    def _client(self, fresh: bool) -> None:
        kept: dict[str, http.client.HTTPConnection] = {}
        turn = 0
        while not self._stop.is_set():
            pods = self.endpoints()
            for name in [n for n in kept if n not in {p.name for p in pods}]:
                kept.pop(name).close()  # it left the endpoints: no new request goes there
            if not pods:
                self._stop.wait(INTERVAL)
                continue
            pod = pods[turn % len(pods)]
            turn += 1
            if fresh:
                conn = http.client.HTTPConnection("127.0.0.1", pod.port, timeout=5)
            else:
                conn = kept.setdefault(pod.name, http.client.HTTPConnection("127.0.0.1", pod.port, timeout=5))
            sent = time.monotonic()
            error = None
            try:
                conn.request("GET", "/", headers={"Connection": "close"} if fresh else {})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or b"Hello World" not in body:
                    error = f"HTTP {response.status}: {body[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                conn.close()  # http.client opens a new one for the next request
            if fresh:
                conn.close()
            self.outcomes.append(Outcome(sent, time.monotonic(), pod.name, fresh, error))
            self._stop.wait(INTERVAL)
        for conn in kept.values():
            conn.close()


@pytest.fixture
def rehearsal() -> Iterator[Rehearsal]:
    r = Rehearsal()
    yield r
    r.stop()


def _slow_request(pod: Pod, seconds: float) -> tuple[int, str] | str:
    conn = http.client.HTTPConnection("127.0.0.1", pod.port, timeout=seconds + 10)
    try:
        conn.request("GET", f"/slow?seconds={seconds}")
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def _failures(outcomes: list[Outcome], names: dict[str, str], t0: float) -> str:
    return "\n".join(
        f"  t={o.sent - t0:+.3f}s..{o.done - t0:+.3f}s {names.get(o.pod, o.pod)} "
        f"{'new connection' if o.fresh else 'keep-alive'}: {o.error}"
        for o in outcomes
        if o.error
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_rolling_update_loses_no_request(
    docker: Docker, image_backends: set[str], rehearsal: Rehearsal, backend: str
) -> None:
    if backend not in image_backends:
        pytest.skip(f"SERVER_BACKEND={backend} is not installed in the image ({sorted(image_backends)})")
    env = {"SERVER_BACKEND": backend, "WEB_CONCURRENCY": "2", "SHUTDOWN_DELAY": str(SHUTDOWN_DELAY)}
    a = start_pod(docker, TAG, env=env)
    rehearsal.watch(a)
    rehearsal.start()
    rehearsal.wait_in_endpoints(a)
    time.sleep(1.0)  # A alone serves the stream

    b = start_pod(docker, TAG, env=env)
    rehearsal.watch(b)
    rehearsal.wait_in_endpoints(b)
    time.sleep(1.0)  # both serve

    # A long request routed to A just before its stop outlasts SHUTDOWN_DELAY: the drain waits for it.
    slow: list[object] = []
    slow_thread = threading.Thread(target=lambda: slow.append(_slow_request(a, SLOW)), daemon=True)
    slow_thread.start()
    time.sleep(0.1)
    t_stop = time.monotonic()
    docker("stop", "-t", "30", a.name, timeout=90)  # returns once A has exited
    t_exited = time.monotonic()
    slow_thread.join(30)
    # B alone serves the stream: a few requests, however slow the machine.
    deadline = time.monotonic() + 30
    while sum(o.pod == b.name and o.sent > t_exited for o in list(rehearsal.outcomes)) <= 5:
        assert time.monotonic() < deadline, "B served nothing after A exited"
        time.sleep(0.1)
    rehearsal.stop()

    names = {a.name: "A", b.name: "B"}
    outcomes = list(rehearsal.outcomes)
    timeline = (
        f"{backend}: {len(outcomes)} requests; A unready seen at "
        f"{None if a.unready is None else round(a.unready - t_stop, 3)}s, left the endpoints at "
        f"{None if a.removed is None else round(a.removed - t_stop, 3)}s, exited at {t_exited - t_stop:.3f}s "
        "after docker stop"
    )
    print(timeline)
    failed = [o for o in outcomes if o.error]
    assert not failed, (
        f"{len(failed)} of {len(outcomes)} requests failed ({timeline}):\n"
        f"{_failures(outcomes, names, t_stop)}\n--- A's logs:\n{a.container.logs()[-3000:]}"
    )
    assert a.unready is not None and a.removed is not None, timeline
    again = [
        (round(t - t_stop, 3), s) for t, n, s, _ in rehearsal.readyz_log if n == a.name and t > a.unready
    ]
    assert 200 not in [s for _, s in again], f"A said ready again after SIGTERM: {again}"
    # A left the endpoints inside SHUTDOWN_DELAY, before its drain began (measured from before
    # `docker stop`, so the CLI's and the engine's latency count too).
    assert a.removed - t_stop < SHUTDOWN_DELAY - PROPAGATION, timeline

    # The delay served: requests routed to A after it said 503 were answered, on new connections too.
    after = [o for o in outcomes if o.pod == a.name and o.sent > a.unready]
    assert any(o.fresh for o in after) and any(not o.fresh for o in after), (timeline, after)
    assert t_exited - t_stop >= SHUTDOWN_DELAY - 0.2, timeline  # A held on for SHUTDOWN_DELAY
    assert slow and slow[0] == (200, f"slept {SLOW}"), (slow, timeline)
    assert t_exited - t_stop >= SLOW - 0.2, timeline
    assert a.container.wait_exit(30) == 0, a.container.logs()[-3000:]
    assert "SHUTDOWN_DELAY" in a.container.logs()
    assert sum(o.pod == b.name and o.sent > t_exited for o in outcomes) > 5, timeline
    readyz = [status for _, name, status, _ in rehearsal.readyz_log if name == b.name]
    assert readyz[-1] == 200, rehearsal.readyz_log[-5:]


SLOW_STARTUP_APP = """
import asyncio


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(6)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b'{"message": "Hello World!"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""

HARDENED = ("--user", "10001", "--read-only", "--tmpfs", "/tmp")


def test_the_health_check_follows_readiness(docker: Docker, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {TAG}\nCOPY main.py /app/main.py\n")
    (tmp_path / "main.py").write_text(SLOW_STARTUP_APP)
    docker.build(tmp_path, "user/slow-startup")
    pod = start_pod(
        docker,
        "user/slow-startup",
        *HARDENED,
        "--health-interval",
        "1s",
        "--health-timeout",
        "30s",
        env={"PORT": "8080", "WEB_CONCURRENCY": "1"},
        port=8080,
    )
    started = time.monotonic()

    def probe() -> int:
        return docker("exec", pod.name, "asgi-launcher", "probe", "--ready", check=False).returncode

    codes: list[tuple[float, int]] = []
    deadline = started + 60
    while time.monotonic() < deadline:
        codes.append((round(time.monotonic() - started, 2), probe()))
        if codes[-1][1] == 0:
            break
        time.sleep(0.2)
    shown = f"probe --ready exit codes by second after docker run: {codes}\n{pod.container.logs()[-3000:]}"
    assert codes[0][1] == 1 and codes[-1][1] == 0, shown
    assert {code for _, code in codes[:-1]} == {1}, shown
    assert codes[-1][0] >= 5.0, shown  # not before the 6 s lifespan startup is over
    assert pod.container.get("/")[0] == 200
    status, body = pod.readyz()
    assert status == 200 and json.loads(body)["workers_booted"] == 1, body

    # Docker's own HEALTHCHECK (the image's command, every second here) says healthy now.
    deadline = time.monotonic() + 30
    while (health := pod.container.state()["Health"])["Status"] != "healthy":  # type: ignore[index]
        assert time.monotonic() < deadline, health
        time.sleep(0.2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_listener_non_root_read_only(docker: Docker, image_backends: set[str], backend: str) -> None:
    if backend not in image_backends:
        pytest.skip(f"SERVER_BACKEND={backend} is not installed in the image ({sorted(image_backends)})")
    env = {"SERVER_BACKEND": backend, "PORT": "8080", "WEB_CONCURRENCY": "2"}
    pod = start_pod(docker, TAG, *HARDENED, env=env, port=8080)
    deadline = time.monotonic() + 30
    while (readyz := pod.readyz())[0] != 200:
        assert time.monotonic() < deadline, (readyz, pod.container.logs()[-3000:])
        time.sleep(0.1)
    assert json.loads(readyz[1])["ready"] is True
    assert pod.ops_get("/livez")[0] == 200
    requests = 7
    for _ in range(requests):
        assert pod.container.get("/")[0] == 200
    # Workers write their counts at most ServerMetrics.FLUSH_INTERVAL (0.25 s) after a request.
    deadline = time.monotonic() + 30
    while True:
        status, text = pod.ops_get("/metrics")
        assert status == 200, f"/metrics: HTTP {status}: {text}"
        counts = re.findall(r"^http_server_request_duration_seconds_count\{[^}]*\} (\S+)$", text, re.M)
        if sum(float(c) for c in counts) == requests or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sum(float(c) for c in counts) == requests, text
    # The multiprocess files live on /dev/shm (tmpfs), not on the read-only root or /tmp.
    files = docker("exec", pod.name, "sh", "-c", "ls /dev/shm/asgi-launcher-*/metrics/").stdout.split()
    assert any(f.endswith(".db") for f in files), files
