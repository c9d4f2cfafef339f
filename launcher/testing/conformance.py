"""The backend conformance kit: the launcher's contract, checked against a real server.

A plugin author subclasses ``BackendConformance`` in their own test suite::

    from launcher.testing.conformance import BackendConformance

    class TestConformance(BackendConformance):
        backend = "myserver"          # the entry-point name of the plugin under test

and runs pytest. Every test starts the real launcher (``python -m launcher``) as a subprocess
with ``SERVER_BACKEND`` set to ``backend``, on 127.0.0.1 with a free port, and sends real
HTTP; ``extra_env`` is added to every launch. The kit's own apps (``launcher.testing.apps``)
are copied into a temporary ``APP_DIR``, so the plugin's tests need no app of their own.

A capability the server cannot offer is switched off with a class attribute (all default to
on); the plugin's README should then say what its users lose. Helper processes that the
backend starts besides its workers (multiprocessing's resource tracker, say) are declared in
``extra_processes``; any other stray process fails the worker-count test.

The operations listener (``OPS_PORT``: ``/livez``, ``/readyz``, ``/metrics``), ``SHUTDOWN_DELAY``
and ``probe --ready`` are checked under every backend too (the ``test_ops_*`` tests): they come
from ``launcher.master.Master``, so a plugin gets them by calling ``serving()``,
``spawned()`` and ``exited()`` where its master does those things, and by building its workers'
app with ``launcher.worker.build_worker_app`` and the master's ``worker_context()``. They need
no capability switch.

This module imports pytest; the rest of ``launcher`` never imports it. The WebSocket checks
also need the ``websockets`` package (``websockets>=12``), imported only inside them; the
metrics check needs ``prometheus_client`` (``asgi-launcher[metrics]``) and is skipped without it;
the tracing checks (``test_tracing_*``: OpenTelemetry spans from every worker, received by a real
OTLP/HTTP collector, ``launcher.testing.otlp``) need ``asgi-launcher[otel]`` and are skipped
without it, saying so.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import re
import secrets
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from launcher.config.addresses import can_refuse_new_connections
from launcher.errors import EXIT_WORKERS_FAILING
from launcher.master.policy import CrashLoop
from launcher.observability import metrics
from launcher.procfs import listening_sockets
from launcher.testing import apps, otlp
from launcher.testing.process import Launcher, Load, free_port, request, run_launcher, start_launcher

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from launcher.testing.tls import Certificates

#: The keys ``asgi-launcher config --json`` promises.
CONFIG_KEYS = frozenset(
    {
        "backend", "app", "app_dir", "bind", "workers", "cpus", "worker_class", "log_level", "timeout",
        "graceful_timeout", "keep_alive", "access_log", "error_log", "config_file", "prestart", "sources",
        "memory_limit", "worker_memory", "max_worker_memory", "log_format", "log_config",
        "ops_port", "ops_host", "shutdown_delay", "reload", "reload_dirs", "reload_include",
    }
)  # fmt: skip

#: Seconds any wait for the launcher to do something may take. A deadline, not a figure: long
#: enough that a loaded machine never misses it (a wait that is met returns at once). The few
#: checks whose subject is a duration (``KEEP_ALIVE``, ``SHUTDOWN_DELAY``) say their own bounds.
DEADLINE = 30
#: What a stop with an idle TLS client may take: under asyncio's 30 s wait for its close_notify.
TLS_CLOSE_DEADLINE = 20

#: Printed by the kit's hello app when ``/slow`` starts, so tests wait for it rather than sleep.
SLOW_STARTED = "slow request started"
#: Printed by the kit's hello app (with its pid) when ``/block`` is about to block its event loop.
BLOCKING = re.compile(r"blocking in (\d+)")
#: The close code a WebSocket gets when the server goes away (RFC 6455: "service restart").
WS_SERVICE_RESTART = 1012


def server_lines(output: str) -> list[str]:
    """The non-blank lines of ``output`` that are not the launcher's own ``asgi-launcher:`` lines."""
    return [line for line in output.splitlines() if line.strip() and not line.startswith("asgi-launcher:")]


def timed_out_lines(output: str, pid: int, timeout: int) -> list[str]:
    """The lines of ``output`` that report worker ``pid`` killed by the ``TIMEOUT`` watchdog.

    The promised line is ``asgi-launcher: worker {pid} timed out: its event loop did not turn for
    {timeout}s (TIMEOUT={timeout}); killed, starting a replacement``; the pid and the
    ``TIMEOUT={timeout}`` part are what is checked.
    """
    line = re.compile(rf"\bworker {pid} .*(?<![\w]){re.escape(f'TIMEOUT={timeout}')}(?!\d)")
    return [text for text in output.splitlines() if line.search(text)]


#: The keys every JSON line has (LOG_FORMAT=json), whatever wrote it.
JSON_LOG_KEYS = frozenset({"@timestamp", "log.level", "log.logger", "message", "process.pid"})


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every non-blank line of ``output`` as the JSON object it must be (LOG_FORMAT=json); fails
    naming the first line that is not one, or that lacks one of ``JSON_LOG_KEYS``."""
    events = []
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}\n{output[-3000:]}") from None
        assert isinstance(event, dict) and set(event) >= JSON_LOG_KEYS, (number, line)
        events.append(event)
    return events


def websocket_connect() -> Any:
    """``websockets.sync.client.connect``, imported only by the tests that need it."""
    try:
        from websockets.sync.client import connect
    except ImportError:
        pytest.fail("the WebSocket checks need the websockets package: pip install 'websockets>=12'")
    return connect


def close_code(ws: ClientConnection, timeout: float) -> int | None:
    """The close code the server sent on ``ws`` (None: the connection ended without a close frame).

    Fails if the connection is still open after ``timeout`` seconds or a message arrives instead.
    """
    from websockets.exceptions import ConnectionClosed

    try:
        message = ws.recv(timeout=timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    except TimeoutError:
        raise AssertionError(f"the WebSocket is still open {timeout}s later") from None
    raise AssertionError(f"the WebSocket got {message!r} instead of a close frame")


#: One sample line of the Prometheus text format: name, optional {labels}, value.
PROMETHEUS_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
PROMETHEUS_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        match = PROMETHEUS_SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        samples.append((name, dict(PROMETHEUS_LABEL.findall(labels or "")), float(value)))
    return samples


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample named exactly ``name``, whatever its labels (0 if there is none)."""
    return sum(value for sample, _, value in prometheus_samples(text) if sample == name)


def listening_hosts(port: int) -> set[str]:
    """The addresses something listens on at TCP ``port``."""
    return {address for address, _ in listening_sockets(port)}


class Launches:
    """Launching the real launcher under one backend: what the kit's test classes share.

    ``BackendConformance`` is the contract a plugin keeps. The repository's own checks of what the
    core does before any backend runs (``tests/core/test_core_behaviour.py``) use these helpers
    too, under the default backend only, since their outcome cannot depend on the server.
    """

    #: The ``asgi_launcher.backends`` entry-point name of the plugin under test.
    backend: ClassVar[str] = ""
    #: Added to the environment of every launch (after the kit's own variables, so it wins).
    extra_env: ClassVar[dict[str, str]] = {}
    #: Seconds a launch may take to answer its first request.
    ready_timeout: ClassVar[float] = 30.0

    def env(self, app_dir: Path, **more: str) -> dict[str, str]:
        """The environment of a launch: this backend, ``app_dir``, ``extra_env``, then ``more``."""
        return {"SERVER_BACKEND": self.backend, "APP_DIR": str(app_dir), **self.extra_env, **more}

    def start(self, app_dir: Path, **more: str) -> Launcher:
        """Start the launcher on ``app_dir`` without waiting (use it as a context manager)."""
        return start_launcher(self.env(app_dir, **more))

    def serve(self, app_dir: Path, **more: str) -> Launcher:
        """Start the launcher on ``app_dir`` and wait until it answers HTTP."""
        return self.serve_tls(app_dir, None, **more)

    def serve_tls(self, app_dir: Path, tls: ssl.SSLContext | None, **more: str) -> Launcher:
        """``serve``, its requests made with the client context ``tls`` (HTTPS, WSS).

        Where the port is the one ``start_launcher`` chose, it is checked to be the launcher's:
        between choosing a free port and binding it, another process (another test's server)
        may take it, and would answer in its place while the launcher still starts. Then the
        launch is made again on another port."""
        env = self.env(app_dir, **more)
        chosen = "BIND" not in env and "PORT" not in env
        for _ in range(3):
            server = start_launcher(env, tls=tls)
            try:
                server.wait_ready("/", self.ready_timeout)
                if not chosen or server.listener_pids():
                    return server
            except BaseException:
                server.close()
                raise
            server.close()
        raise AssertionError(
            f"another process answered on each port chosen for the launcher:\n{server.output()}"
        )

    def stop(self, server: Launcher) -> int:
        """SIGTERM and wait: after this the whole output is on disk, so absences can be asserted."""
        server.signal(signal.SIGTERM)
        return server.wait(30)

    @pytest.fixture
    def hello(self, tmp_path: Path) -> Path:
        """An APP_DIR holding the kit's hello app as ``main.py``."""
        apps.install("hello", tmp_path)
        return tmp_path


class BackendConformance(Launches):
    """The contract every backend plugin keeps; subclass it with ``backend = "<entry-point name>"``."""

    #: Processes the backend starts below the launcher that are not workers (they do not hold
    #: the listening socket), e.g. 1 for multiprocessing's resource tracker.
    extra_processes: ClassVar[int] = 0

    # Capabilities: set one to False only if the server really cannot do it.
    #: WEB_CONCURRENCY=N gives N worker processes.
    supports_multiple_workers: ClassVar[bool] = True
    #: A worker killed with SIGKILL is replaced and the service keeps answering.
    supports_worker_replacement: ClassVar[bool] = True
    #: Access lines are logged by default and ACCESS_LOG="" turns them off.
    supports_access_log: ClassVar[bool] = True
    #: The server accepts connections in threads of its own, so a worker whose event loop is
    #: blocked still takes some, possibly all; those are lost when TIMEOUT kills it (Granian).
    #: The TIMEOUT test then allows failed connections, and asks the other workers to answer
    #: once the blocked one is killed.
    blocked_worker_still_accepts: ClassVar[bool] = False
    #: LOG_LEVEL=warning hides the server's info lines.
    supports_log_level: ClassVar[bool] = True
    #: SIGTERM lets a request in flight finish, then the launcher exits 0.
    supports_graceful_shutdown: ClassVar[bool] = True
    #: SIGHUP restarts the workers without failing a request, SIGUSR1 reopens log files, and
    #: SIGTTIN, SIGTTOU, SIGUSR2 and SIGWINCH are ignored with one line each.
    supports_signal_table: ClassVar[bool] = True
    #: A worker the server stops gracefully closes connections it accepted a moment before
    #: without answering them (Granian: its Rust accept loop stops after the Python side asks).
    #: The SIGHUP test then allows a few failed connections (at most 5 %), never an error status.
    restart_drops_fresh_connections: ClassVar[bool] = False
    #: The master killed with SIGKILL: every worker exits by itself (at once: within a second on
    #: an idle machine; the test's deadline is longer).
    supports_orphan_exit: ClassVar[bool] = True
    #: An ASGI 2 ("double callable") app is served, lifespan included.
    supports_asgi2: ClassVar[bool] = True
    #: SIGTERM closes open WebSockets with 1012 and idle keep-alive connections, and does not
    #: wait on either; requests in flight still get up to GRACEFUL_TIMEOUT.
    supports_websocket_shutdown: ClassVar[bool] = True
    #: TIMEOUT=N kills and replaces a worker whose event loop has not turned for N seconds.
    supports_timeout: ClassVar[bool] = True
    #: MAX_REQUESTS=N retires a worker after N requests and replaces it, failing no request.
    supports_max_requests: ClassVar[bool] = True
    #: MAX_WORKER_MEMORY=N retires a worker whose own memory grew past N MiB and replaces it,
    #: failing no request, with one line naming the worker and its figure.
    supports_max_worker_memory: ClassVar[bool] = True
    #: Workers raise their oom_score_adj above the master's (``launcher.worker.bootstrap.started``),
    #: so the kernel's OOM killer picks a worker; helper processes keep the master's.
    supports_worker_oom_score: ClassVar[bool] = True
    #: ROOT_PATH sets the scope's root_path, and the path the app sees starts with it.
    supports_root_path: ClassVar[bool] = True
    #: ERROR_LOG="" turns the server's error log off.
    supports_error_log_off: ClassVar[bool] = True
    #: LOG_FORMAT=json makes every line one JSON object (the server's lines in the master and
    #: the workers, the app's logging records, tracebacks as one object each), and LOG_CONFIG is
    #: applied in the master and in every worker.
    supports_json_logs: ClassVar[bool] = True

    # -- helpers -------------------------------------------------------------------------

    def require(self, capability: str) -> None:
        if not getattr(self, capability):
            pytest.skip(f"the {self.backend} backend declares {capability} = False")

    def in_flight(
        self, server: Launcher, path: str, timeout: float
    ) -> tuple[threading.Thread, dict[str, Any]]:
        """GET ``path`` in a thread; its ``result`` gets ``response`` ((status, body) or the
        ``OSError``) and ``at`` (when it ended, monotonic)."""
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                status, _, body = server.get(path, timeout=timeout)
                result["response"] = (status, body)
            except (OSError, http.client.HTTPException) as exc:
                result["response"] = exc
            result["at"] = time.monotonic()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, result

    @contextmanager
    def websocket(self, server: Launcher) -> Iterator[ClientConnection]:
        """A WebSocket to the hello app's ``/ws``, proven open by one echoed message."""
        connect = websocket_connect()
        ws: ClientConnection
        tls = {"ssl": server.tls} if server.tls else {}
        try:
            opened = connect(server.ws_url("/ws"), open_timeout=10, close_timeout=2, **tls)
        except Exception as exc:  # the handshake failed: what the launcher said explains why
            raise AssertionError(f"the WebSocket did not open ({exc!r}):\n{server.output()[-3000:]}") from exc
        with opened as ws:
            ws.send("echo me")
            assert ws.recv(timeout=10) == "echo me", "the WebSocket does not echo"
            yield ws

    @pytest.fixture(scope="class")
    @classmethod
    def shared(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
        """One hello server (``WEB_CONCURRENCY=1``, on ``BIND``) for the class's read-only checks:
        each asks it something and changes nothing, so one launch serves them all."""
        app_dir = tmp_path_factory.mktemp("shared-hello")
        apps.install("hello", app_dir)
        with cls().serve(app_dir, WEB_CONCURRENCY="1", BIND=f"127.0.0.1:{free_port()}") as server:
            yield server

    @pytest.fixture
    def ops_app(self, tmp_path: Path) -> Path:
        """An APP_DIR holding the kit's ops app as ``main.py`` (lifespan controlled by env)."""
        app_dir = tmp_path / "app"
        apps.install("ops", app_dir)
        return app_dir

    # -- the operations listener (OPS_PORT) -------------------------------------------------

    @staticmethod
    def ops_env(ops_port: int, **more: str) -> dict[str, str]:
        """OPS_PORT on 127.0.0.1 (not OPS_HOST's default, every address), without access lines."""
        return {"OPS_PORT": str(ops_port), "OPS_HOST": "127.0.0.1", "ACCESS_LOG": "", **more}

    @staticmethod
    def ops_get(ops_port: int, path: str) -> tuple[int, bytes] | None:
        """GET ``path`` on the operations listener: (status, body), None if nothing answers."""
        try:
            return request(ops_port, path, timeout=5)
        except (OSError, http.client.HTTPException):
            return None

    def ops_status(self, ops_port: int, path: str) -> int | None:
        answer = self.ops_get(ops_port, path)
        return None if answer is None else answer[0]

    def readiness(self, ops_port: int) -> tuple[int, dict[str, Any]] | None:
        """``/readyz``: its status and JSON body, None if nothing answers."""
        answer = self.ops_get(ops_port, "/readyz")
        return None if answer is None else (answer[0], json.loads(answer[1]))

    def booted(self, ops_port: int) -> int:
        """``workers_booted`` as ``/readyz`` says (-1 if nothing answers)."""
        state = self.readiness(ops_port)
        return -1 if state is None else int(state[1]["workers_booted"])

    def scrape(self, ops_port: int) -> str:
        answer = self.ops_get(ops_port, "/metrics")
        assert answer is not None and answer[0] == 200, answer
        return answer[1].decode()

    def probe_ready(self, app_dir: Path, ops_port: int) -> tuple[int, str]:
        """``asgi-launcher probe --ready`` run from the launch's environment: exit status, output
        (``127.0.0.1:PORT: HTTP 503 Service Unavailable``: what it was answered)."""
        env = self.env(app_dir, **self.ops_env(ops_port))
        result = run_launcher(env, ("probe", "--ready", "--timeout", "5"), timeout=20)
        return result.returncode, result.stdout + result.stderr

    def test_ops_readyz_follows_boot_and_shutdown_delay_keeps_serving(
        self, ops_app: Path, tmp_path: Path
    ) -> None:
        # /readyz 503 while the workers wait in lifespan startup, 200 once both have booted;
        # SIGTERM: /readyz 503 at once while new connections are still served for SHUTDOWN_DELAY,
        # then exit 0; probe --ready follows /readyz. What is checked during the delay must happen
        # within it: 6 s, several times what that takes on a loaded machine.
        gate, delay, ops_port = tmp_path / "boot-gate", 6, free_port()
        env = self.ops_env(ops_port, WEB_CONCURRENCY="2", SHUTDOWN_DELAY=str(delay), KIT_BOOT_GATE=str(gate))
        with self.start(ops_app, **env) as server:
            # Each worker writes boot-gate.<pid>.waiting once it waits in lifespan startup.
            waiting = lambda: len(list(tmp_path.glob("boot-gate.*.waiting"))) == 2  # noqa: E731
            server.wait_until(waiting, self.ready_timeout, "2 workers waiting in lifespan startup")
            assert self.ops_get(ops_port, "/livez") == (200, b'{"alive": true}'), server.output()[-3000:]
            unbooted = {"ready": False, "workers_booted": 0, "workers_wanted": 2, "draining": False}
            assert self.readiness(ops_port) == (503, unbooted), server.output()[-3000:]
            code, said = self.probe_ready(ops_app, ops_port)
            assert code == 1 and "HTTP 503" in said, said
            gate.touch()
            server.wait_until(lambda: self.booted(ops_port) == 2, DEADLINE, "/readyz: 2 workers booted")
            booted = {"ready": True, "workers_booted": 2, "workers_wanted": 2, "draining": False}
            assert self.readiness(ops_port) == (200, booted)
            code, said = self.probe_ready(ops_app, ops_port)
            assert code == 0 and "HTTP 200" in said, said
            assert server.get("/")[0] == 200
            # A pooled keep-alive client, as in front of any replica.
            pooled = http.client.HTTPConnection(server.host, server.port, timeout=10)
            pooled.request("GET", "/")
            before = pooled.getresponse()
            before.read()
            assert before.status == 200 and (before.getheader("connection") or "").lower() != "close"

            sigterm = time.monotonic()
            server.signal(signal.SIGTERM)
            server.wait_until(lambda: self.ops_status(ops_port, "/readyz") == 503, delay / 2, "/readyz 503")
            probed: list[tuple[int, str]] = []  # in a thread: a slow probe must not eat the delay
            probe = threading.Thread(target=lambda: probed.append(self.probe_ready(ops_app, ops_port)))
            probe.start()
            # During the delay, responses ask keep-alive clients to leave (the workers look for the
            # master's notice every 0.2 s), so none finds its idle connection closed by the drain.
            told: list[tuple[int, str]] = []

            def told_to_leave() -> bool:
                pooled.request("GET", "/")
                during = pooled.getresponse()
                during.read()
                told.append((during.status, (during.getheader("connection") or "").lower()))
                return told[-1] == (200, "close") or told[-1][0] != 200

            end = sigterm + delay - 1.5
            server.wait_until(told_to_leave, end - time.monotonic(), "connection: close on keep-alive")
            pooled.close()
            assert told[-1] == (200, "close"), (
                f"a keep-alive response during SHUTDOWN_DELAY did not carry connection: close: {told}"
            )
            state = self.readiness(ops_port)
            assert state is not None and state[1]["draining"] is True and not state[1]["ready"], state
            assert self.ops_status(ops_port, "/livez") == 200, "still supervising during SHUTDOWN_DELAY"
            # Server.get opens a new connection each time: the listener still accepts.
            assert server.get("/")[0] == 200, server.output()[-3000:]
            assert time.monotonic() < end, "the checks above took up SHUTDOWN_DELAY: none was late in it"
            time.sleep(max(0.0, sigterm + delay - 0.8 - time.monotonic()))  # late in the delay
            assert server.get("/")[0] == 200, "a new connection late in SHUTDOWN_DELAY was not served"
            probe.join(DEADLINE)
            code = server.wait(delay + DEADLINE)
            took = time.monotonic() - sigterm
        assert code == 0, server.output()[-3000:]
        assert len(probed) == 1 and probed[0][0] == 1 and "HTTP 503" in probed[0][1], probed
        assert took >= delay, f"stopped {took:.1f}s after SIGTERM; SHUTDOWN_DELAY={delay}"
        # probe --ready reads the status only and closes: that is no traceback in the master's log.
        assert "Traceback" not in server.output(), server.output()[-3000:]

    @pytest.mark.parametrize("bind", ["127.0.0.1:{port}", "unix:{sock}"], ids=["loopback", "unix"])
    def test_ops_listener_is_no_more_public_than_the_app(self, ops_app: Path, bind: str) -> None:
        # OPS_HOST unset: /metrics and the probes listen where the app does (0.0.0.0 before).
        ops_port = free_port()
        with tempfile.TemporaryDirectory(prefix="kit-", dir="/tmp") as sock_dir:
            address = bind.format(port=free_port(), sock=f"{sock_dir}/app.sock")
            env = {"BIND": address, "OPS_PORT": str(ops_port), "ACCESS_LOG": "", "WEB_CONCURRENCY": "1"}
            with self.start(ops_app, **env) as server:
                server.wait_until(lambda: self.ops_status(ops_port, "/livez") == 200, 30, "/livez")
                assert listening_hosts(ops_port) == {"127.0.0.1"}, listening_hosts(ops_port)
                assert self.stop(server) == 0, server.output()[-3000:]

    def test_ops_a_second_sigterm_skips_shutdown_delay(self, ops_app: Path) -> None:
        delay, ops_port = 4 * DEADLINE, free_port()  # what a second SIGTERM must not wait for
        with self.serve(
            ops_app, **self.ops_env(ops_port, WEB_CONCURRENCY="1", SHUTDOWN_DELAY=str(delay))
        ) as server:
            server.wait_until(lambda: self.booted(ops_port) == 1, DEADLINE, "/readyz: 1 worker booted")
            booted = {"ready": True, "workers_booted": 1, "workers_wanted": 1, "draining": False}
            assert self.readiness(ops_port) == (200, booted)
            server.signal(signal.SIGTERM)
            server.wait_until(lambda: self.ops_status(ops_port, "/readyz") == 503, DEADLINE, "/readyz 503")
            assert self.readiness(ops_port) == (503, {**booted, "ready": False, "draining": True})
            assert self.ops_status(ops_port, "/livez") == 200
            assert server.get("/")[0] == 200 and server.proc.poll() is None, "the first SIGTERM stopped it"
            second = time.monotonic()
            server.signal(signal.SIGTERM)
            code = server.wait(2 * DEADLINE)
            took = time.monotonic() - second
        assert code == 0, server.output()[-3000:]
        assert took < 2 * DEADLINE, (
            f"exited {took:.1f}s after a second SIGTERM: SHUTDOWN_DELAY={delay} was not skipped"
        )

    def test_ops_livez_is_503_once_workers_keep_dying_then_exit_3(self, ops_app: Path) -> None:
        # Each /exit kills the worker that takes it (os._exit(1), a crash); once the crash-loop
        # rule gives up, the surviving worker's lifespan shutdown takes 5 s: /livez must say 503
        # while the master is still there, and the exit status is 3.
        self.require("supports_worker_replacement")
        ops_port, workers = free_port(), 2
        env = self.ops_env(ops_port, WEB_CONCURRENCY=str(workers), KIT_SHUTDOWN_SECONDS="5")
        limit = CrashLoop(workers=workers).limit
        with self.start(ops_app, **env) as server:
            for killed in range(limit):
                # Both booted before each kill, so the master counts a death of a booted worker,
                # and at the last one a survivor is there to stop slowly. The previous death is
                # waited for first: until the master has reaped it, /readyz may still count the
                # dead worker, and the next /exit would take the only live one.
                def noticed(deaths: int = killed) -> bool:
                    return server.output().count(" died (") >= deaths

                server.wait_until(noticed, DEADLINE, f"{killed} deaths noticed")
                server.wait_until(
                    lambda: self.booted(ops_port) == workers, DEADLINE, f"{workers} workers booted"
                )
                assert self.ops_status(ops_port, "/livez") == 200, server.output()[-3000:]
                with suppress(OSError, http.client.HTTPException):
                    server.get("/exit", timeout=10)
            server.wait_until(lambda: self.ops_status(ops_port, "/livez") == 503, DEADLINE, "/livez 503")
            state = self.readiness(ops_port)  # (the survivor's 5 s shutdown keeps the master there)
            assert state is not None and state[0] == 503 and state[1]["draining"] is True, state
            code = server.wait(DEADLINE)
        assert code == EXIT_WORKERS_FAILING, server.output()[-3000:]

    def test_ops_metrics_add_up_across_workers_and_survive_a_killed_worker(self, ops_app: Path) -> None:
        if not metrics.available():
            pytest.skip(f"the metrics check needs prometheus_client: {metrics.INSTALL_HINT}")
        ops_port, duration = free_port(), "http_server_request_duration_seconds_count"
        with self.start(ops_app, **self.ops_env(ops_port, WEB_CONCURRENCY="2")) as server:
            # /readyz, not a request to the app: every request the app gets is counted below.
            server.wait_until(lambda: self.booted(ops_port) == 2, self.ready_timeout, "2 workers booted")
            pids: Counter[int] = Counter()
            # The kernel (or a server's accept threads) picks the worker: one can take a long run
            # of new connections on a busy machine, so the bound is a deadline, not a count.
            deadline = time.monotonic() + DEADLINE
            while len(pids) < 2 or sum(pids.values()) < 10:
                assert time.monotonic() < deadline, f"requests for {DEADLINE}s all went to {pids}"
                status, _, body = server.get("/count")
                assert status == 200, body
                pids[int(body)] += 1
            hits = sum(pids.values())
            assert server.get("/some/unique/path")[0] == 200
            sent = hits + 1
            server.wait_until(
                lambda: metric_sum(self.scrape(ops_port), duration) >= sent, DEADLINE, f"{sent} counted"
            )
            text = self.scrape(ops_port)
            assert metric_sum(text, duration) == sent, text
            assert metric_sum(text, "kit_app_hits_total") == hits, text
            assert metric_sum(text, "asgi_launcher_workers_booted") == 2, text
            assert metric_sum(text, "asgi_launcher_workers") == 2, text
            samples = prometheus_samples(text)
            labels = {tuple(sorted(labels)) for name, labels, _ in samples if name == duration}
            assert labels == {("http_request_method", "http_response_status_code")}, labels
            assert "/some/unique/path" not in text and "unique" not in text, "a raw path in a label"

            victim = pids.most_common(1)[0][0]
            os.kill(victim, signal.SIGKILL)
            server.wait_until(
                lambda: victim not in server.children() and self.booted(ops_port) == 2,
                DEADLINE,
                "a replacement",
            )
            assert server.get("/pid")[0] == 200
            server.wait_until(
                lambda: metric_sum(self.scrape(ops_port), duration) >= sent + 1, DEADLINE, "counted"
            )
            text = self.scrape(ops_port)
            # The killed worker's counts stay in the sums; the replacement's add to them.
            assert metric_sum(text, duration) == sent + 1, text
            assert metric_sum(text, "kit_app_hits_total") == hits, text
            assert metric_sum(text, "http_server_active_requests") == 0, text
            assert metric_sum(text, "asgi_launcher_workers_booted") == 2, text
            restarts = {
                labels["reason"]: value
                for name, labels, value in prometheus_samples(text)
                if name == "asgi_launcher_worker_restarts_total"
            }
            assert restarts.get("crash") == 1, restarts
            assert self.stop(server) == 0, server.output()[-3000:]

    def test_ops_metrics_stay_bounded_through_worker_restarts(self, ops_app: Path) -> None:
        # prometheus_client keeps a file per process and kind: a dead worker's stayed on /dev/shm
        # (64 KiB each), every one read at each scrape, until the launcher exited. Folded into
        # one file per kind, the directory stays the same size and no count is lost.
        self.require("supports_max_requests")
        if not metrics.available():
            pytest.skip(f"the metrics check needs prometheus_client: {metrics.INSTALL_HINT}")
        ops_port, restarts = free_port(), 12
        env = self.ops_env(ops_port, WEB_CONCURRENCY="2", MAX_REQUESTS="1", MAX_REQUESTS_JITTER="0")
        duration = "http_server_request_duration_seconds_count"
        with self.start(ops_app, **env) as server:
            server.wait_until(lambda: self.booted(ops_port) == 2, self.ready_timeout, "2 workers booted")
            answered, most, retired = 0, 0, 0.0
            deadline = time.monotonic() + 120
            while retired < restarts:
                assert time.monotonic() < deadline, (answered, retired, server.output()[-3000:])
                with suppress(OSError, http.client.HTTPException):
                    answered += server.get("/count", timeout=10)[0] == 200
                most = max(most, len(self.metrics_files(server)))
                retired = metric_sum(self.scrape(ops_port), "asgi_launcher_worker_restarts_total")

            def counted() -> bool:
                return metric_sum(self.scrape(ops_port), duration) >= answered

            server.wait_until(counted, 20, f"{answered} requests counted")
            text = self.scrape(ops_port)
            assert metric_sum(text, duration) == answered, text
            assert metric_sum(text, "kit_app_hits_total") == answered, text
            assert metric_sum(text, "http_server_active_requests") == 0, text
            assert self.stop(server) == 0, server.output()[-3000:]
        # Each of at most 3 workers at a time (two, and one retiring) has a file per kind it
        # writes (histograms, the live gauge, counters), plus one folded file per kind.
        assert most <= 3 * 3 + 3, f"{most} files in the metrics directory after {retired:g} restarts"

    @staticmethod
    def metrics_files(server: Launcher) -> list[str]:
        """The multiprocess files in the metrics directory of ``server``'s master."""
        found: list[str] = []
        for parent in ("/dev/shm", tempfile.gettempdir()):
            found += glob.glob(os.path.join(parent, f"asgi-launcher-{server.proc.pid}-*", "metrics", "*.db"))
        return found

    # -- serving ---------------------------------------------------------------------------

    def test_serves_the_app_on_bind(self, shared: Launcher) -> None:
        status, headers, body = shared.get("/")  # (the shared server was given BIND)
        assert (status, json.loads(body)) == (200, {"message": "Hello World!"})
        assert headers["content-type"] == "application/json"
        assert shared.listener_pids(), f"nothing of the launcher's listens on {shared.port}"

    def test_worker_count_follows_web_concurrency(self, hello: Path) -> None:
        self.require("supports_multiple_workers")
        # 3: not what the worker formula gives by default on a small machine (2).
        with self.serve(hello, WEB_CONCURRENCY="3") as server:
            server.wait_until(lambda: len(server.serving()) == 3, DEADLINE, "3 processes serving")
            # The count holds (no late extra worker) and nothing else runs below the launcher.
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                serving, children = server.serving(), server.children()
                assert len(serving) == 3, (serving, server.output()[-2000:])
                assert len(children) == 3 + self.extra_processes, (children, serving)
                time.sleep(0.1)

    def test_access_log_on_by_default(self, shared: Launcher) -> None:
        self.require("supports_access_log")
        shared.get("/access-log-marker")
        shared.wait_until(lambda: "access-log-marker" in shared.output(), DEADLINE, "an access log line")

    def test_access_line_is_the_launchers_under_every_backend(self, hello: Path) -> None:
        # The pipeline writes it (the server's own access logger is off): the same text whatever
        # the server, apart from the time, pid, client port and duration.
        self.require("supports_access_log")
        with self.serve(hello, WEB_CONCURRENCY="1") as server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            headers = {"User-Agent": "kit/1", "Referer": "http://kit.test/", "X-Request-ID": "kit-7"}
            conn.request("GET", "/pid?a=1&b=2", headers=headers)
            pid = conn.getresponse().read().decode()
            conn.close()
            assert self.stop(server) == 0
            lines = [line for line in server.output().splitlines() if "kit-7" in line]
        assert len(lines) == 1, server.output()[-3000:]
        pattern = (
            r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
            rf'"GET /pid\?a=1&b=2 HTTP/1\.1" 200 {len(pid)} "http://kit\.test/" "kit/1" '
            rf"\d+\.\d{{3}}ms pid={pid} rid=kit-7"
        )
        assert re.fullmatch(pattern, lines[0]), lines[0]

    def test_json_access_line(self, hello: Path) -> None:
        self.require("supports_access_log")
        with self.serve(hello, WEB_CONCURRENCY="1", LOG_FORMAT="json") as server:
            server.get("/pid?json=1")
            assert self.stop(server) == 0
            lines = [line for line in server.output().splitlines() if "json=1" in line]
        assert len(lines) == 1, server.output()[-3000:]
        event = json.loads(lines[0])
        assert (event["http.request.method"], event["url.path"], event["url.query"]) == (
            "GET",
            "/pid",
            "json=1",
        )
        assert event["http.response.status_code"] == 200 and isinstance(event["client.port"], int)

    def test_empty_access_log_turns_it_off(self, hello: Path) -> None:
        self.require("supports_access_log")
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG="") as server:
            assert server.get("/access-log-marker")[0] == 200
            self.stop(server)
            assert "access-log-marker" not in server.output()

    def test_log_level_warning_hides_info_lines(self, hello: Path) -> None:
        self.require("supports_log_level")
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG="") as server:
            self.stop(server)
            assert "INFO" in server.output().upper(), "the default level logs no info line to hide"
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG="", LOG_LEVEL="warning") as server:
            assert server.get("/")[0] == 200
            self.stop(server)
            output = server.output()
        # The launcher's own one-line announcements are not the server's log.
        assert not [line for line in server_lines(output) if "INFO" in line.upper()], output

    def test_empty_error_log_turns_it_off(self, hello: Path) -> None:
        self.require("supports_error_log_off")
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG="") as server:
            assert server.get("/")[0] == 200
            assert self.stop(server) == 0
            assert server_lines(server.output()), "the default error log writes nothing to turn off"
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG="", ERROR_LOG="") as server:
            status = server.get("/")[0]
            code = self.stop(server)
            output = server.output()
        assert (status, code) == (200, 0), output
        # Neither log is on and the hello app prints nothing for "/": only the launcher's own
        # lines may remain.
        assert not server_lines(output), output

    # -- what goes out: access lines nobody can forge, the response the client got --------------

    #: Every atom of ACCESS_LOG_FORMAT, the client's fields quoted: a line has exactly
    #: ``KIT_QUOTED`` quoted fields and no other ``"``, whatever a request held.
    KIT_FORMAT = (
        'KIT %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" "%(m)s" "%(U)s" "%(q)s" '
        '%(H)s %(T)s %(M)s %(D)s %(L)s %(p)s "%({x-kit}i)s" "%({content-type}o)s"'
    )
    KIT_QUOTED = 8

    #: Requests a client may send to forge a line or a field: (marker, raw request). A server's
    #: parser may refuse some (then the app sees nothing); what reaches the app must be escaped.
    HOSTILE_REQUESTS: ClassVar[tuple[tuple[str, bytes], ...]] = (
        # A decoded CR LF in the path (%(U)s) would end the line and start a forged one.
        (
            "crlf",
            b"GET /x%0d%0a6.6.6.6%20-%20-%20[01/Jan/2027:00:00:00%20+0000]%20%22GET%20/admin%22%20200 HTTP/1.1",
        ),
        ("quotes", b'GET /a"b\\c?q="x\\y HTTP/1.1'),
        ("agent", b'GET /agent HTTP/1.1\r\nUser-Agent: x" 200 "forged\r\nReferer: \\"ref'),
        (
            "control",
            b"GET /control HTTP/1.1\r\nUser-Agent: a\x1b[31mred\x07bell\x7f\r\nReferer: \x1b]0;title\x07",
        ),
        ("latin1", b"GET /caf%C3%A9?q=%FF HTTP/1.1\r\nUser-Agent: caf\xe9 \xff"),
    )

    @staticmethod
    def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
        """Read up to ``count`` HTTP/1.x responses from ``sock`` in order (fewer if it closes):
        (status, headers with lower-case names, body)."""
        reader = sock.makefile("rb")

        class Unclosed:  # each response closes its file once read: this one reads on
            def __getattr__(self, name: str) -> Any:
                return getattr(reader, name)

            def close(self) -> None:
                pass

        class Source:
            def makefile(self, *args: Any, **kwargs: Any) -> Any:
                return Unclosed()

        found = []
        try:
            for _ in range(count):
                response = http.client.HTTPResponse(Source(), method="GET")  # type: ignore[arg-type]
                try:
                    response.begin()
                    body = response.read()
                except (OSError, http.client.HTTPException):
                    break
                found.append((response.status, {k.lower(): v for k, v in response.getheaders()}, body))
        finally:
            reader.close()
        return found

    def access_lines(self, output: str, marker: str = "KIT ") -> list[str]:
        return [line for line in output.splitlines() if line.startswith(marker)]

    def send_hostile(self, server: Launcher, header: str) -> dict[str, int | None]:
        """Each of ``HOSTILE_REQUESTS`` on a connection of its own, with ``header`` (its ``{}``
        the request's marker) added; the status each got (None: no answer)."""
        answered: dict[str, int | None] = {}
        for marker, head in self.HOSTILE_REQUESTS:
            data = head + f"\r\nHost: x\r\n{header.format(marker)}\r\nConnection: close\r\n\r\n".encode()
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(data)
                got = self.read_responses(sock, 1)
            answered[marker] = got[0][0] if got else None
        return answered

    def test_hostile_requests_cannot_forge_or_break_an_access_line(self, hello: Path) -> None:
        self.require("supports_access_log")
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG_FORMAT=self.KIT_FORMAT) as server:
            answered = self.send_hostile(server, "X-Kit: {}")
            assert self.stop(server) == 0
            output = server.output()
        lines = self.access_lines(output)
        reached = [m for m, status in answered.items() if status == 200]
        assert reached, (answered, output[-3000:])  # some hostile requests reach every app
        for line in lines:
            assert all(" " <= c <= "~" for c in line), f"a raw control or non-ASCII byte: {line!r}"
            quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
            rest = re.sub(r'"((?:[^"\\]|\\.)*)"', "", line)
            assert len(quoted) == self.KIT_QUOTED and '"' not in rest, f"a field was forged: {line!r}"
        assert not [line for line in output.splitlines() if line.startswith("6.6.6.6")], output[-3000:]
        for marker in reached:
            mine = [line for line in lines if f'"{marker}"' in line]
            assert len(mine) == 1, (marker, lines)
        crlf = next((line for line in lines if '"crlf"' in line), None)
        if crlf is not None:
            assert "/x\\x0D\\x0A6.6.6.6" in crlf, crlf
        control = next((line for line in lines if '"control"' in line), None)
        if control is not None:
            assert "a\\x1B[31mred\\x07bell\\x7F" in control, control

    def test_hostile_requests_keep_json_access_lines_valid(self, hello: Path) -> None:
        self.require("supports_access_log")
        with self.serve(hello, WEB_CONCURRENCY="1", LOG_FORMAT="json") as server:
            answered = self.send_hostile(server, "X-Request-ID: kit-{}")
            assert self.stop(server) == 0
            output = server.output()
        events = {e.get("http.request.id"): e for e in json_lines(output) if e.get("http.request.id")}
        for marker, status in answered.items():
            if status == 200:
                assert f"kit-{marker}" in events, (marker, output[-3000:])
        control = events.get("kit-control")
        if control is not None:
            assert control["user_agent.original"] == "a\x1b[31mred\x07bell\x7f", control

    #: Responses no server may pass on as they are, and what each did before the check.
    INVALID_RESPONSES = (
        "/status?999",  # Gunicorn and Uvicorn dropped the connection; the line said 999
        "/status?1000",  # panicked Granian's worker (Rust, SIGABRT)
        "/status?99",
        "/status?x",  # not an int
        "/bad-header?nul",  # the client got nothing or a 500; the line said 200
        "/bad-header?crlf",
        "/bad-header?name",
        "/bad-header?unicode",
        "/silent",  # each server's own 500; the line said 0
    )

    def test_an_invalid_response_is_answered_500_and_the_line_says_so(self, hello: Path) -> None:
        # One worker serves them all, one connection each: a response that killed the worker or
        # its connection shows as the /pid behind it failing or coming from another worker.
        with self.serve(hello, WEB_CONCURRENCY="1") as server:
            worker = server.get("/pid")[2]
            for at, path in enumerate(self.INVALID_RESPONSES):
                data = (
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: kit-bad-{at}\r\n\r\n"
                    "GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                ).encode()
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    sock.sendall(data)
                    got = self.read_responses(sock, 2)
                assert [status for status, _, _ in got] == [500, 200], (path, got, server.output()[-3000:])
                assert "x-injected" not in got[0][1], (path, got)
                assert got[1][2] == worker, f"the worker was replaced: it died on {path}"
            assert self.stop(server) == 0
            output = server.output()
        if self.supports_access_log:
            for at, path in enumerate(self.INVALID_RESPONSES):
                line = [text for text in output.splitlines() if text.endswith(f"rid=kit-bad-{at}")]
                assert len(line) == 1 and '" 500 21 "' in line[0], (path, line, output[-3000:])
        assert output.count("answered 500") == len(self.INVALID_RESPONSES), output[-3000:]

    def test_the_connection_stays_usable_after_the_app_raised_after_its_response(self, hello: Path) -> None:
        # FastAPI and Starlette answer an unhandled exception with their own 500 and then re-raise
        # it: a pooled client's next request on that keep-alive connection must be served.
        with self.serve(hello, WEB_CONCURRENCY="1") as server:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /raise-after?kit-after HTTP/1.1\r\nHost: x\r\n\r\n")
                first = self.read_responses(sock, 1)
                assert first and first[0][0] == 200 and first[0][2] == b"done", first
                assert first[0][1].get("connection", "").lower() != "close", first
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                second = self.read_responses(sock, 1)
            assert second and second[0][0] == 200, ("the keep-alive connection was closed", second)
            assert self.stop(server) == 0
            output = server.output()
        assert output.count("hello app raised after its response kit-after") == 1, output[-3000:]

    def test_an_exception_mid_response_cuts_the_connection_and_holds_up_no_stop(self, hello: Path) -> None:
        # Only a cut connection tells the client its response is incomplete; a request pipelined
        # behind it must not keep the worker (Hypercorn waited out GRACEFUL_TIMEOUT for it).
        graceful = 2 * DEADLINE  # what the launcher must not wait out: nothing is in flight
        with self.serve(hello, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT=str(graceful)) as server:
            pipelined = b"GET /raise-midway?kit-midway HTTP/1.1\r\nHost: x\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
            received, closed = self.exchange(server.port, pipelined)
            assert closed, f"the connection is still open after {received!r}"
            assert self.statuses(received) == [200] and received.endswith(b"half"), received
            sigterm = time.monotonic()
            server.signal(signal.SIGTERM)
            code = server.wait(graceful + DEADLINE)
            took = time.monotonic() - sigterm
        assert code == 0, server.output()[-3000:]
        assert took < DEADLINE, (
            f"exited {took:.1f}s after SIGTERM with nothing in flight; GRACEFUL_TIMEOUT={graceful}"
        )
        assert server.output().count("hello app raised midway kit-midway") == 1, server.output()[-3000:]

    def test_http_1_0_is_written_the_same_under_every_backend(self, hello: Path) -> None:
        with self.serve(hello, WEB_CONCURRENCY="1") as server:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /headers HTTP/1.0\r\nX-Request-ID: kit-10\r\n\r\n")
                got = self.read_responses(sock, 1)
            assert got and json.loads(got[0][2])["http_version"] == "1.0", got
            assert self.stop(server) == 0
            output = server.output()
        if self.supports_access_log:
            line = [text for text in output.splitlines() if "rid=kit-10" in text]
            assert len(line) == 1 and '"GET /headers HTTP/1.0" 200 ' in line[0], line

    # -- LOG_FORMAT=json and LOG_CONFIG ----------------------------------------------------

    def test_json_logs_every_line_is_one_json_object(self, hello: Path) -> None:
        # Start-up, a request, the app's own logging record (with an extra field), an app
        # exception (its traceback one object), a worker killed and replaced, SIGTERM.
        self.require("supports_json_logs")
        with self.serve(hello, WEB_CONCURRENCY="2", LOG_FORMAT="json") as server:
            assert server.get("/log?kit-json")[0] == 200
            assert server.get("/raise?kit-json")[0] == 500
            if self.supports_worker_replacement:
                victim = int(server.get("/pid")[2])
                os.kill(victim, signal.SIGKILL)
                server.wait_until(
                    lambda: (
                        victim not in server.serving() and len(server.serving()) == 2 and server.answers()
                    ),
                    DEADLINE,
                    "a replacement worker",
                )
            assert self.stop(server) == 0, server.output()[-3000:]
            output = server.output()
        events = json_lines(output)
        assert any(e["log.logger"] == "asgi_launcher" and "serving" in e["message"] for e in events), output
        logged = [e for e in events if e["message"] == "hello app log line kit-json"]
        assert len(logged) == 1, output[-3000:]
        assert (logged[0]["log.logger"], logged[0]["log.level"], logged[0].get("kit_extra")) == (
            "hello",
            "info",
            "kit-7",
        ), logged
        raised = [e for e in events if "hello app raised kit-json" in json.dumps(e)]
        assert len(raised) == 1, output[-3000:]  # the traceback is in one object, once
        error = raised[0]
        assert error["log.level"] in ("error", "critical") and error["error.type"].endswith("RuntimeError"), (
            error
        )
        assert "hello app raised kit-json" in error["error.message"], error
        assert "Traceback (most recent call last)" in error["error.stack_trace"], error
        assert isinstance(error["process.pid"], int)
        if self.supports_worker_replacement:
            assert any(f"worker {victim} died" in e["message"] for e in events), output[-3000:]

    def test_log_level_filters_the_apps_logging_records_too(self, hello: Path) -> None:
        # The root logger's level in each worker: the app's INFO record shows by default, not
        # with LOG_LEVEL=warning (text format here; the JSON test above covers json).
        self.require("supports_log_level")
        self.require("supports_json_logs")
        for level, shown in (("info", True), ("warning", False)):
            with self.serve(hello, WEB_CONCURRENCY="1", LOG_LEVEL=level) as server:
                assert server.get("/log?kit-level")[0] == 200
                assert self.stop(server) == 0
                output = server.output()
            lines = [line for line in output.splitlines() if "hello app log line kit-level" in line]
            assert len(lines) == (1 if shown else 0), (level, output[-3000:])
            if shown:
                assert "INFO" in lines[0] and "hello" in lines[0], lines

    def test_log_config_is_applied_in_the_master_and_the_workers(self, hello: Path, tmp_path: Path) -> None:
        # A formatter's marker on the app's record (a worker) and on the launcher's line about
        # a killed worker (the master); LOG_CONFIG wins over LOG_FORMAT=json for what it names.
        self.require("supports_json_logs")
        log_config = tmp_path / "logging.json"
        handler = {"class": "logging.StreamHandler", "formatter": "mark", "stream": "ext://sys.stderr"}
        log_config.write_text(
            json.dumps(
                {
                    "version": 1,
                    "formatters": {"mark": {"format": "MARK %(name)s %(message)s"}},
                    "handlers": {"mark": handler},
                    "root": {"level": "INFO", "handlers": ["mark"]},
                    "loggers": {"asgi_launcher": {"level": "INFO", "handlers": ["mark"], "propagate": False}},
                }
            )
        )
        env = {"WEB_CONCURRENCY": "2", "LOG_CONFIG": str(log_config), "LOG_FORMAT": "json"}
        with self.serve(hello, **env) as server:
            assert server.get("/log?kit-config")[0] == 200
            server.wait_until(
                lambda: "MARK hello hello app log line kit-config" in server.output(), 10, "the app's line"
            )
            if self.supports_worker_replacement:
                victim = int(server.get("/pid")[2])
                os.kill(victim, signal.SIGKILL)
                marked = f"MARK asgi_launcher worker {victim} died"
                server.wait_until(lambda: marked in server.output(), DEADLINE, "the master's line")
            assert self.stop(server) == 0, server.output()[-3000:]

    def test_serves_an_asgi2_app_with_lifespan(self, tmp_path: Path) -> None:
        self.require("supports_asgi2")
        apps.install("asgi2", tmp_path)
        with self.serve(tmp_path, WEB_CONCURRENCY="1") as server:
            status, _, body = server.get("/")
            assert status == 200, (status, body, server.output()[-2000:])
            assert json.loads(body) == {"message": "Hello from asgi2", "lifespan_startup": True}

    @pytest.mark.parametrize(
        ("env", "expected"),
        [({"ROOT_PATH": "/api"}, ("/api", "/api/scope")), ({}, ("", "/scope"))],
        ids=["ROOT_PATH=/api", "unset"],
    )
    def test_root_path_is_in_the_scope(
        self, request: pytest.FixtureRequest, hello: Path, env: dict[str, str], expected: tuple[str, str]
    ) -> None:
        # Uvicorn's semantics, under every backend: the ASGI path includes root_path.
        self.require("supports_root_path")
        # Unset: what the shared server (WEB_CONCURRENCY=1, nothing else set) answers.
        own = self.serve(hello, WEB_CONCURRENCY="1", **env) if env else None
        with own or nullcontext(request.getfixturevalue("shared")) as server:
            status, _, body = server.get("/scope")
        assert status == 200, body
        scope = json.loads(body)
        assert (scope["root_path"], scope["path"]) == expected

    def test_empty_variables_mean_their_defaults(self, hello: Path) -> None:
        # Compose files and manifests pass empty values (WEB_CONCURRENCY: ${X}); the reference
        # image's gunicorn_conf.py read them with os.getenv and treated "" as unset.
        empty = {
            name: ""
            for name in (
                "WEB_CONCURRENCY", "MAX_WORKERS", "WORKERS_PER_CORE", "HOST", "PORT", "LOG_LEVEL",
                "MODULE_NAME", "VARIABLE_NAME", "APP_MODULE", "TIMEOUT", "GRACEFUL_TIMEOUT",
                "KEEP_ALIVE", "MAX_REQUESTS", "ROOT_PATH", "FORWARDED_ALLOW_IPS",
            )
        }  # fmt: skip
        port = free_port()
        env = {**empty, "BIND": f"127.0.0.1:{port}"}
        shown = run_launcher(self.env(hello, **env), ("config", "--json"))
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        assert data["sources"]["workers"] == "default (empty env:WEB_CONCURRENCY)", data["sources"]
        assert (data["app"], data["log_level"], data["timeout"]) == ("main:app", "info", 120)
        with self.serve(hello, **env) as server:
            status, _, body = server.get("/")
            assert (status, json.loads(body)) == (200, {"message": "Hello World!"})

    # -- apps that cannot be served --------------------------------------------------------

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("WEB_CONCURRENCY", "99999999999999999999"),  # no machine holds it: nothing may fork
            ("WEB_CONCURRENCY", "2_0"),  # Python's int() reads 20
            ("PORT", "\uff18\uff10\uff10\uff10"),  # fullwidth 8000: int() reads 8000
            ("BIND", "127.0.0.1:{port},127.0.0.1:{port}"),  # the second bind would fail after retries
            ("ACCESS_LOG", "/proc/x.log"),  # a directory that exists, where no file can be created
            ("ERROR_LOG", "/proc/x.log"),
        ],
        ids=["workers-huge", "underscore", "fullwidth", "bind-repeated", "access-log", "error-log"],
    )
    def test_bad_values_are_exit_2_in_one_line_before_anything_starts(
        self, hello: Path, variable: str, value: str
    ) -> None:
        value = value.format(port=free_port())
        with self.start(hello, **{variable: value}) as server:
            code = server.wait(DEADLINE)
            children = server.children()
            output = server.output()
        assert code == 2, output[-3000:]
        lines = output.strip().splitlines()
        assert len(lines) == 1 and f"{variable}={value!r}" in lines[0], lines
        assert "Traceback" not in output and not children, (output, children)

    def test_failed_lifespan_startup_is_exit_3_with_the_traceback_once(self, tmp_path: Path) -> None:
        """Workers whose lifespan startup fails are failed boots, told the same way under every
        backend: the app's traceback once, a line a failed boot naming the error, and after
        ``max(3, workers)`` of them in a row the master gives up with exit 3."""
        apps.install("startup_raises", tmp_path)
        with self.start(tmp_path, WEB_CONCURRENCY="2") as server:
            code = server.wait(DEADLINE)
            out = server.output()
            assert code == 3, out
            assert out.count("Traceback (most recent call last)") == 1, out
            assert out.count('raise ConnectionError("cannot reach the database")') == 1, out
            assert "failed to boot: ConnectionError: cannot reach the database" in out, out
            assert "3 of 3 failed boots in a row" in out, out
            assert "workers cannot boot: giving up (exit 3)" in out, out

    # -- signals and faults ----------------------------------------------------------------

    def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(self, hello: Path) -> None:
        self.require("supports_graceful_shutdown")
        graceful = 2 * DEADLINE  # what the launcher must not wait out once the request is done
        with self.serve(hello, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT=str(graceful)) as server:
            thread, result = self.in_flight(server, "/slow?seconds=2", DEADLINE)
            server.wait_until(lambda: SLOW_STARTED in server.output(), DEADLINE, "the slow request in flight")
            sigterm = time.monotonic()
            server.signal(signal.SIGTERM)
            code = server.wait(DEADLINE)
            exited = time.monotonic() - sigterm
            thread.join(DEADLINE)
            assert result.get("response") == (200, b"slow done"), server.output()
            assert result["at"] > sigterm, "the request finished before SIGTERM: it proves nothing"
            assert code == 0, server.output()
            assert exited < DEADLINE, f"exited {exited:.1f}s after SIGTERM; GRACEFUL_TIMEOUT={graceful}"

    def test_a_clients_websocket_close_code_reaches_the_app(self, hello: Path) -> None:
        connect = websocket_connect()
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG="") as server:
            for code in (1000, 4001):
                with connect(server.ws_url("/ws-close"), open_timeout=10, close_timeout=5) as ws:
                    ws.close(code=code, reason="kit")
                said = f"client closed with {code}"

                def told(said: str = said) -> bool:
                    return said in server.output()

                server.wait_until(told, 10, f"the app got {code}")
            assert "client closed with 1006" not in server.output(), server.output()[-3000:]

    def test_sigterm_closes_websocket_and_idle_connection_and_exits_0_at_once(self, hello: Path) -> None:
        self.require("supports_websocket_shutdown")
        # GRACEFUL_TIMEOUT is long, so a server that waits it out (or waits for the WebSocket or
        # the idle connection to end) misses the deadline, far shorter.
        with self.serve(hello, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT=str(4 * DEADLINE)) as server:
            idle = http.client.HTTPConnection(server.host, server.port, timeout=10)
            with self.websocket(server) as ws, closing(idle):
                idle.request("GET", "/")  # no Connection: close: the connection stays open, idle
                response = idle.getresponse()
                response.read()
                assert response.status == 200 and not response.will_close, response.getheaders()
                sigterm = time.monotonic()
                server.signal(signal.SIGTERM)
                code = server.wait(DEADLINE)
                exited = time.monotonic() - sigterm
                # The client reads frames in the background: a close sent before exit is waiting.
                closed_with = close_code(ws, DEADLINE)
            output = server.output()[-3000:]
            assert closed_with == WS_SERVICE_RESTART, (closed_with, output)
            assert code == 0, output
            assert exited < DEADLINE, f"exited {exited:.1f}s after SIGTERM\n{output}"
            assert "Traceback" not in server.output(), output  # Hypercorn logged a CancelledError

    def test_sigterm_with_a_websocket_open_lets_the_request_in_flight_finish(self, hello: Path) -> None:
        self.require("supports_websocket_shutdown")
        graceful = 4 * DEADLINE  # what the WebSocket must not make the launcher wait out
        with self.serve(hello, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT=str(graceful)) as server:
            with self.websocket(server) as ws:
                thread, result = self.in_flight(server, "/slow?seconds=2", DEADLINE)
                server.wait_until(
                    lambda: SLOW_STARTED in server.output(), DEADLINE, "the slow request in flight"
                )
                sigterm = time.monotonic()
                server.signal(signal.SIGTERM)
                code = server.wait(DEADLINE)
                exited = time.monotonic()
                thread.join(DEADLINE)
                closed_with = close_code(ws, DEADLINE)
            output = server.output()[-3000:]
            assert result.get("response") == (200, b"slow done"), (result, output)
            assert result["at"] > sigterm, "the request finished before SIGTERM: it proves nothing"
            assert closed_with == WS_SERVICE_RESTART, (closed_with, output)
            assert code == 0, output
            # Once the request is done nothing holds the launcher (not the WebSocket either).
            late = exited - result["at"]
            assert late < DEADLINE, f"exited {late:.1f}s after the last request ended\n{output}"

    def test_a_killed_worker_is_replaced(self, hello: Path) -> None:
        self.require("supports_worker_replacement")
        with self.serve(hello, WEB_CONCURRENCY="2") as server:
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers")
            victim = server.serving()[0]
            os.kill(victim, signal.SIGKILL)

            def replaced() -> bool:
                serving = server.serving()
                return len(serving) == 2 and victim not in serving and server.ok("/")

            server.wait_until(replaced, DEADLINE, "a replacement worker, answering")
            assert server.proc.poll() is None

    def test_timeout_replaces_a_worker_whose_event_loop_is_blocked(self, hello: Path) -> None:
        self.require("supports_timeout")
        timeout = 2
        # No access log: the polling below would bury the lines that matter.
        with self.serve(hello, WEB_CONCURRENCY="2", TIMEOUT=str(timeout), ACCESS_LOG="") as server:
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers")

            def block() -> None:
                # Cut off when the worker is killed; nothing to check about it.
                with suppress(OSError, http.client.HTTPException):
                    server.get("/block?seconds=300", timeout=60)

            threading.Thread(target=block, daemon=True).start()
            server.wait_until(
                lambda: BLOCKING.search(server.output()), DEADLINE, "the /block request in flight"
            )
            match = BLOCKING.search(server.output())
            assert match is not None
            blocked = int(match.group(1))

            # Until the watchdog fires, the other worker keeps answering.
            answers: list[object] = []

            # A poll the blocked worker took would hang until it is killed: where that can
            # happen, polls give up quickly so that the next one can reach the other worker.
            poll_timeout = 0.25 if self.blocked_worker_still_accepts else 5

            def answered_until_timed_out() -> bool:
                try:
                    status, _, body = server.get("/pid", timeout=poll_timeout)
                    answers.append((status, body.decode(errors="replace")))
                except (OSError, http.client.HTTPException) as exc:
                    answers.append(exc)
                return bool(timed_out_lines(server.output(), blocked, timeout))

            server.wait_until(answered_until_timed_out, timeout + DEADLINE, f"worker {blocked} timed out")
            failed = [a for a in answers if not (isinstance(a, tuple) and a[0] == 200)]
            if self.blocked_worker_still_accepts:
                # Connections the blocked worker took are lost with it; nothing else may fail.
                assert all(isinstance(a, OSError | http.client.HTTPException) for a in failed), failed
                # Which worker accepts a connection is the kernel's choice, and a blocked worker
                # whose accept loop runs apart from its event loop (Granian's) can win every one
                # of the polls above. Once it is killed, the others must answer at once.
                server.wait_until(
                    lambda: answered_until_timed_out() and isinstance(answers[-1], tuple),
                    DEADLINE,
                    "an answer from the other workers after the blocked one was killed",
                )
            else:
                assert not failed, (failed, server.output()[-3000:])
            assert str(blocked) not in {a[1] for a in answers if isinstance(a, tuple)}, answers

            server.wait_until(lambda: blocked not in server.serving(), DEADLINE, f"worker {blocked} gone")

            def replaced() -> bool:
                serving = server.serving()
                return len(serving) == 2 and blocked not in serving and server.ok("/pid")

            server.wait_until(replaced, DEADLINE, "2 workers serving again")
            assert server.proc.poll() is None, server.output()[-3000:]
            lines = timed_out_lines(server.output(), blocked, timeout)
            assert len(lines) == 1, lines

    def test_max_requests_recycles_workers_without_failing_a_request(self, hello: Path) -> None:
        self.require("supports_max_requests")
        limit = 5
        env = {
            "WEB_CONCURRENCY": "2",
            "MAX_REQUESTS": str(limit),
            "MAX_REQUESTS_JITTER": "0",
            "ACCESS_LOG": "",
        }
        with self.serve(hello, **env) as server:
            pids: Counter[str] = Counter()
            failed: list[object] = []
            deadline = time.monotonic() + 3 * DEADLINE
            for _ in range(60):
                assert time.monotonic() < deadline, (pids, failed, server.output()[-3000:])
                try:
                    # Connection: close: recycling under keep-alive is not what this checks.
                    status, _, body = server.get("/pid", timeout=DEADLINE)
                except (OSError, http.client.HTTPException) as exc:
                    failed.append(exc)
                    continue
                if status == 200:
                    pids[body.decode(errors="replace")] += 1
                else:
                    failed.append((status, body))
            output = server.output()[-3000:]
            assert not failed, (failed, output)
            assert len(pids) > 2, f"no worker was recycled: {pids}\n{output}"
            # A retiring worker stops accepting at once, but a request or two the kernel had
            # already handed it are in flight and finish; a worker that never retires serves
            # about half of all 60.
            most = limit + 2
            assert max(pids.values()) <= most, f"a worker served more than {most}: {pids}"
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers serving")
            assert server.proc.poll() is None, output

    def test_max_worker_memory_retires_a_growing_worker_without_failing_a_request(self, hello: Path) -> None:
        self.require("supports_max_worker_memory")
        limit = 100  # MiB: well above a kit worker's own memory (6 to 20 MiB), well below 100 + 40
        env = {"WEB_CONCURRENCY": "2", "MAX_WORKER_MEMORY": str(limit), "ACCESS_LOG": ""}
        with self.serve(hello, **env) as server:
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers")
            status, _, body = server.get(f"/grow?mb={limit + 40}", timeout=DEADLINE)
            assert status == 200, body
            grown = int(json.loads(body)["pid"])
            failed: list[object] = []
            answers: Counter[str] = Counter()

            def replaced() -> bool:
                # Requests keep being answered while the master retires the worker and starts
                # another (it looks about once a second).
                try:
                    status, _, body = server.get("/pid", timeout=DEADLINE)
                    answers[body.decode(errors="replace")] += 1
                    if status != 200:
                        failed.append((status, body))
                except (OSError, http.client.HTTPException) as exc:
                    failed.append(exc)
                serving = server.serving()
                return grown not in serving and len(serving) == 2

            server.wait_until(replaced, 2 * DEADLINE, f"worker {grown} retired and replaced")
            output = server.output()
            if self.restart_drops_fresh_connections:
                # At most the one connection the stopping worker had just accepted; no error status.
                assert len(failed) <= 1, (failed, output[-3000:])
                assert all(isinstance(f, OSError | http.client.HTTPException) for f in failed), failed
            else:
                assert not failed, (failed, output[-3000:])
            assert server.proc.poll() is None, output[-3000:]
            line = re.compile(
                rf"\bworker {grown} uses ([\d.]+) MiB \((USS|RSS)\), over MAX_WORKER_MEMORY={limit}\b"
            )
            lines = [text for text in output.splitlines() if line.search(text)]
            assert len(lines) == 1, (lines, output[-3000:])
            match = line.search(lines[0])
            assert match is not None and float(match.group(1)) > limit, lines
            assert f"worker {grown} died" not in output, output[-3000:]  # not a crash
            assert server.ok("/pid")

    def test_max_worker_memory_is_looked_at_after_every_request(self, hello: Path) -> None:
        # A worker over the limit at the end of a request is retired then, not at the master's
        # next look (about once a second: workers grew hundreds of MiB past the limit in
        # between). Here it is over only between two requests on one keep-alive connection, a
        # few milliseconds: only a look after the request sees it.
        self.require("supports_max_worker_memory")
        limit, grow = 100, 140
        env = {"WEB_CONCURRENCY": "2", "MAX_WORKER_MEMORY": str(limit), "ACCESS_LOG": ""}
        line = re.compile(
            rf"\bworker (\d+) uses ([\d.]+) MiB \((?:USS|RSS)\), over MAX_WORKER_MEMORY={limit}\b"
        )
        with self.serve(hello, **env) as server:
            server.wait_until(lambda: len(server.serving()) == 2, 20, "2 workers")
            conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
            try:
                conn.request("GET", f"/grow?mb={grow}")
                response = conn.getresponse()
                grown = int(json.loads(response.read())["pid"])
                with suppress(OSError, http.client.HTTPException):  # (it may be closing by then)
                    conn.request("GET", "/shrink")
                    conn.getresponse().read()
            finally:
                conn.close()
            server.wait_until(lambda: line.search(server.output()), 10, f"worker {grown} retired")
            server.wait_until(
                lambda: len(server.serving()) == 2 and grown not in server.serving(), 20, "replaced"
            )
            output = server.output()
        found = line.findall(output)
        assert [pid for pid, _ in found] == [str(grown)], (found, output[-3000:])
        assert limit < float(found[0][1]) <= limit + grow, found
        assert f"worker {grown} died" not in output, output[-3000:]

    def test_workers_are_the_oom_killers_choice_not_the_master(self, hello: Path) -> None:
        self.require("supports_worker_oom_score")

        def adj(pid: int) -> int:
            return int(Path(f"/proc/{pid}/oom_score_adj").read_text())

        with self.serve(hello, WEB_CONCURRENCY="2") as server:
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers")
            master = adj(server.proc.pid)
            wanted = min(1000, master + 1000)
            workers = server.serving()
            server.wait_until(lambda: all(adj(pid) == wanted for pid in workers), DEADLINE, "workers' scores")
            for pid in set(server.children()) - set(workers):  # helpers: the resource tracker
                assert adj(pid) == master, (pid, adj(pid), master)
            if wanted > master:
                for pid in workers:
                    score = int(Path(f"/proc/{pid}/oom_score").read_text())
                    assert score > int(Path(f"/proc/{server.proc.pid}/oom_score").read_text())

    # -- the rest of the signal table ------------------------------------------------------

    @pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "new-connections"])
    def test_sighup_restarts_the_workers_without_failing_a_request(
        self, hello: Path, keep_alive: bool
    ) -> None:
        # Keep-alive clients, as pooled HTTP clients: a retiring worker answers each connection's
        # next request with connection: close, and closes a connection only once it has been idle
        # for KEEP_ALIVE (servers closed idle ones at once, under a request on its way).
        self.require("supports_signal_table")
        with self.serve(hello, WEB_CONCURRENCY="2", ACCESS_LOG="") as server:
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers")
            load = Load(server.port, "/pid", clients=4, limit=60, keep_alive=keep_alive).start()
            try:
                # Three restarts within 30 s: never a crash loop (workers the master stops are
                # not crashes, however they end).
                for _ in range(3):
                    before = set(server.serving())
                    server.signal(signal.SIGHUP)

                    def renewed(before: set[int] = before) -> bool:
                        serving = set(server.serving())
                        return len(serving) == 2 and not serving & before and server.ok("/pid")

                    server.wait_until(renewed, DEADLINE, "2 new workers after SIGHUP")
            finally:
                load.stop()
            failed = [o for o in load.outcomes if o.status != 200]
            assert load.outcomes and not load.refused, (len(load.outcomes), load.refused)
            if self.restart_drops_fresh_connections:
                # Only connections the stopping workers had just accepted, never an error status.
                assert all(o.status is None for o in failed), failed[:5]
                assert len(failed) <= len(load.outcomes) // 20, (len(failed), len(load.outcomes))
            else:
                assert not failed, failed[:5]
            assert server.proc.poll() is None, server.output()[-3000:]
            assert self.stop(server) == 0

    def test_the_drain_after_shutdown_delay_fails_no_request(self, hello: Path) -> None:
        # Keep-alive clients until the launcher has exited: what they sent before it stopped
        # accepting is answered (the master's socket refuses new connections, and the workers
        # accept what its queue holds before they stop: closing it reset those); later they are
        # refused, which is no failed request.
        self.require("supports_graceful_shutdown")
        if not can_refuse_new_connections():
            pytest.skip(
                "this process may not attach a socket filter (CAP_NET_ADMIN on this kernel): what the "
                "socket's queue holds when it closes is reset, as under the servers alone"
            )
        with self.serve(hello, WEB_CONCURRENCY="2", ACCESS_LOG="", SHUTDOWN_DELAY="2") as server:
            server.wait_until(lambda: len(server.serving()) == 2, 20, "2 workers")
            load = Load(server.port, "/pid", clients=4, limit=60, keep_alive=True).start()
            try:
                time.sleep(1)
                server.signal(signal.SIGTERM)
                code = server.wait(40)
            finally:
                load.stop()
        failed = [o for o in load.outcomes if o.status != 200]
        assert code == 0, server.output()[-3000:]
        assert len(load.outcomes) > 20 and not failed, (len(load.outcomes), failed[:5])

    def test_sigusr1_reopens_log_files(self, hello: Path, tmp_path: Path) -> None:
        self.require("supports_signal_table")
        access = tmp_path / "access.log"
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG=str(access)) as server:
            server.wait_until(lambda: len(server.serving()) == 1, DEADLINE, "1 worker")
            worker = server.serving()[0]
            server.get("/first-line")
            server.wait_until(
                lambda: access.exists() and "/first-line" in access.read_text(), DEADLINE, "a line"
            )
            access.rename(tmp_path / "access.log.1")  # what logrotate does before its postrotate
            server.signal(signal.SIGUSR1)
            server.wait_until(lambda: "got SIGUSR1" in server.output(), DEADLINE, "the SIGUSR1 line")

            def reopened() -> bool:
                server.get("/second-line")
                return access.exists() and "/second-line" in access.read_text()

            server.wait_until(reopened, DEADLINE, "access lines in the new file")
            assert "/second-line" not in (tmp_path / "access.log.1").read_text()
            assert server.serving() == [worker], "SIGUSR1 restarted the worker"
            assert self.stop(server) == 0

    def test_ignored_signals_change_nothing(self, hello: Path) -> None:
        self.require("supports_signal_table")
        ignored = ("SIGTTIN", "SIGTTOU", "SIGUSR2", "SIGWINCH")
        with self.serve(hello, WEB_CONCURRENCY="2") as server:
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers")
            before = sorted(server.serving())
            sent: list[str] = []
            for signum in ignored:
                server.signal(getattr(signal, signum))
                sent.append(f"got {signum}: ignored")
                server.wait_until(lambda: all(s in server.output() for s in sent), DEADLINE, sent[-1])
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                assert sorted(server.serving()) == before, server.output()[-3000:]
                time.sleep(0.1)
            assert server.ok("/pid") and server.proc.poll() is None
            for signum in ignored:
                assert server.output().count(f"got {signum}") == 1, signum
            assert self.stop(server) == 0

    def test_a_killed_master_leaves_no_worker_behind(self, hello: Path) -> None:
        self.require("supports_orphan_exit")
        with self.serve(hello, WEB_CONCURRENCY="2") as server:
            server.wait_until(lambda: len(server.serving()) == 2, DEADLINE, "2 workers")
            workers = server.serving()
            os.kill(server.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            server.proc.wait(DEADLINE)

            def alive(pid: int) -> bool:
                try:
                    state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
                except OSError:
                    return False
                return state not in ("Z", "X")

            # By themselves (promptly: the time it takes is bench's to measure, not a test's).
            while time.monotonic() - killed < DEADLINE and any(alive(pid) for pid in workers):
                time.sleep(0.02)
            took = time.monotonic() - killed
            assert not any(alive(pid) for pid in workers), f"workers {workers} still run {took:.1f}s on"

    # -- request limits and smuggling defences ---------------------------------------------
    # (LIMIT_REQUEST_LINE, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_FIELD_SIZE, KEEP_ALIVE as the time a
    # request head may take, HTTP2_CLEARTEXT; raw sockets, since an HTTP client would not send these.)

    #: A request line longer than LIMIT_REQUEST_LINE is answered 414, more header fields than
    #: LIMIT_REQUEST_FIELDS or one longer than LIMIT_REQUEST_FIELD_SIZE 431, and the connection
    #: is closed; a request at the limits is served.
    supports_request_limits: ClassVar[bool] = True
    #: A request line longer than the most a head within the limits can take
    #: (``Config.head_budget``) is still answered 414. False: 431, the server's buffer for the
    #: head being full before the line ends (Granian; lines up to 72 KiB are still 414).
    long_request_lines_are_414: ClassVar[bool] = True
    #: A request with both Content-Length and Transfer-Encoding is answered 400 and the connection
    #: closed. False: it is served once, as chunked, and the connection is then closed (what
    #: follows the chunked body is never served as a second request: no smuggling either way).
    rejects_content_length_with_transfer_encoding: ClassVar[bool] = True
    #: An absolute-form target (``GET http://host/path``) reaches the app as its path.
    supports_absolute_form_targets: ClassVar[bool] = True
    #: A connection that has not sent a complete request head KEEP_ALIVE seconds after it opened
    #: (or after its previous response) is closed, whether it sent nothing or dribbles a head.
    closes_slow_request_heads: ClassVar[bool] = True
    #: With HTTP2_CLEARTEXT unset, ``Upgrade: h2c`` is served as HTTP/1.1 and the HTTP/2 preface
    #: gets no HTTP/2 answer.
    refuses_cleartext_http2: ClassVar[bool] = True

    @staticmethod
    def exchange(
        port: int, data: bytes, timeout: float = 30.0, until: Callable[[bytes], bool] | None = None
    ) -> tuple[bytes, bool]:
        """Send ``data`` on a new connection to 127.0.0.1:``port`` and read until the server
        closes it, ``until`` says what was read is enough, or ``timeout`` passes: (what was read,
        whether the server closed it).

        The bytes are sent from a thread, so a server that answers before reading them all (and
        then resets the connection) is still heard."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

        def push() -> None:
            with suppress(OSError):
                sock.sendall(data)

        sender = threading.Thread(target=push, daemon=True)
        sender.start()
        received, closed = b"", False
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    break
                except OSError:  # reset: closed, after what it sent was read
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                received += chunk
                if until is not None and until(received):
                    break
        finally:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the sender if it is blocked
            sock.close()
            sender.join(5)
        return received, closed

    @staticmethod
    def statuses(received: bytes) -> list[int]:
        """The status codes of the HTTP/1.1 responses in ``received``, in order."""
        return [int(code) for code in re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3})", received)]

    def test_request_limits_are_414_and_431_and_close(self, hello: Path) -> None:
        self.require("supports_request_limits")
        line, fields, size = 100, 10, 60
        env = {"LIMIT_REQUEST_LINE": str(line), "LIMIT_REQUEST_FIELDS": str(fields)}
        with self.serve(hello, WEB_CONCURRENCY="1", LIMIT_REQUEST_FIELD_SIZE=str(size), **env) as server:

            def head(target_length: int = 1, count: int = fields, field: int = 10) -> bytes:
                request_line = b"GET /" + b"a" * (target_length - 1) + b" HTTP/1.1\r\n"
                lines = [b"Host: x", b"Connection: close", b"X-Field: " + b"f" * (field - 9)]
                lines += [b"X-%d: v" % i for i in range(count - len(lines))]
                return request_line + b"".join(item + b"\r\n" for item in lines) + b"\r\n"

            target = line - len(b"GET  HTTP/1.1")
            cases = [
                ("request line at the limit", head(target_length=target), 200),
                ("request line one byte over", head(target_length=target + 1), 414),
                ("request line of 64 KiB", head(target_length=65536), 414),
                (
                    "request line of 1 MiB",
                    head(target_length=1 << 20),
                    414 if self.long_request_lines_are_414 else 431,
                ),
                (f"{fields} fields", head(count=fields), 200),
                (f"{fields + 1} fields", head(count=fields + 1), 431),
                ("a field at the limit", head(field=size), 200),
                ("a field one byte over", head(field=size + 1), 431),
                ("a field of 1 MiB", head(field=1 << 20), 431),
            ]
            for what, data, expected in cases:
                received, closed = self.exchange(server.port, data)
                assert self.statuses(received)[:1] == [expected], (what, received[:300])
                assert closed, f"{what}: the connection is still open"
            assert server.ok("/"), server.output()[-3000:]

    def test_content_length_with_transfer_encoding_is_refused(self, shared: Launcher) -> None:
        # A front proxy that frames by Content-Length sees one request here; a server that
        # frames by the chunked encoding would see a second one (GET /pid): request smuggling.
        smuggled = (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        received, closed = self.exchange(shared.port, smuggled)
        answered = self.statuses(received)
        assert closed, f"the connection is still open after {received[:300]!r}"
        if self.rejects_content_length_with_transfer_encoding:
            assert answered == [400], received[:600]
        else:
            assert len(answered) == 1, received[:600]
        assert shared.ok("/"), shared.output()[-3000:]

    def test_absolute_form_target_reaches_the_app_as_its_path(self, shared: Launcher) -> None:
        self.require("supports_absolute_form_targets")
        request = b"GET http://evil.example/x/scope?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        received, _ = self.exchange(shared.port, request)
        assert self.statuses(received)[:1] == [200], received[:600]
        assert b'"path": "/x/scope"' in received, received[:600]

    def test_a_request_head_not_sent_within_keep_alive_is_closed(self, hello: Path) -> None:
        self.require("closes_slow_request_heads")
        keep_alive = 2
        with self.serve(hello, WEB_CONCURRENCY="1", KEEP_ALIVE=str(keep_alive), ACCESS_LOG="") as server:
            address = ("127.0.0.1", server.port)
            after_response = socket.create_connection(address, timeout=10)
            after_response.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"Hello World!" not in answer:
                chunk = after_response.recv(4096)
                assert chunk, f"no answer on a keep-alive connection: {answer!r}"
                answer += chunk
            clients = {"after a response": (after_response, time.monotonic())}
            for what, first in [("nothing sent", b""), ("half a head", b"GET / HTTP/1.1\r\nHost: x\r\n")]:
                sock = socket.create_connection(address, timeout=10)
                sock.sendall(first)
                clients[what] = (sock, time.monotonic())
            after_response.sendall(b"GET / HTTP/1.1\r\n")
            dribbled = socket.create_connection(address, timeout=10)
            dribbled.sendall(b"GET / HTTP/1.1\r\n")
            clients["dribbled"] = (dribbled, time.monotonic())
            closed_after: dict[str, float] = {}
            deadline = time.monotonic() + keep_alive + DEADLINE
            try:
                while len(closed_after) < len(clients) and time.monotonic() < deadline:
                    with suppress(OSError):
                        dribbled.sendall(b"X-Drip: 1\r\n")  # one field at a time, never the end
                    for what, (sock, opened) in clients.items():
                        if what in closed_after:
                            continue
                        sock.settimeout(0.05)
                        try:
                            if sock.recv(65536) == b"":  # (what else arrives, say a 408, is fine)
                                closed_after[what] = time.monotonic() - opened
                        except TimeoutError:
                            pass
                        except OSError:
                            closed_after[what] = time.monotonic() - opened
                    time.sleep(0.2)
            finally:
                for sock, _ in clients.values():
                    sock.close()
        # Closed by KEEP_ALIVE, not by a timeout of the server's own: the bounds leave a loaded
        # machine all the room there is below KEEP_ALIVE's default (5 s), which they must tell apart.
        late = {what: took for what, took in closed_after.items() if not took <= keep_alive + 2.5}
        assert set(closed_after) == set(clients), f"still open {keep_alive + DEADLINE}s on: {closed_after}"
        assert not late, f"closed later than KEEP_ALIVE={keep_alive} allows: {closed_after}"
        early = {what: took for what, took in closed_after.items() if took < keep_alive - 0.5}
        assert not early, f"closed before KEEP_ALIVE={keep_alive}: {closed_after}"

    def test_cleartext_http2_is_off_by_default(self, shared: Launcher) -> None:
        self.require("refuses_cleartext_http2")
        upgrade = (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + SETTINGS
        received, _ = self.exchange(shared.port, upgrade)
        assert self.statuses(received)[:1] == [200], received[:300]
        received, closed = self.exchange(shared.port, preface)
        # No HTTP/2 frames: nothing at all, or an HTTP/1.1 refusal; and the connection closed.
        assert received == b"" or self.statuses(received)[:1] == [400], received[:300]
        assert closed, f"the connection is still open after {received[:300]!r}"

    # -- tracing (OTEL_*): each worker's spans, as a collector receives them -------------------

    @pytest.fixture
    def traced(self, tmp_path: Path) -> Path:
        """An APP_DIR holding the kit's traced app; the tracing checks are skipped, saying what to
        install, without the otel extra."""
        hint = otlp.missing()
        if hint is not None:
            pytest.skip(hint)
        apps.install("traced", tmp_path)
        return tmp_path

    @staticmethod
    def otel_env(receiver: otlp.Receiver, **more: str) -> dict[str, str]:
        """Tracing on, to ``receiver``. A batch is exported when a minute has passed or 20,000 spans
        are waiting (not the default 512: a loaded machine can send a check's worker that many
        while it waits for the other to be reached): what the checks find before that came from a
        worker's flush as it stopped."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "kit",
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
            "OTEL_BSP_MAX_QUEUE_SIZE": "20000",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20000",
            **more,
        }

    @staticmethod
    def traceparent() -> tuple[str, str, str]:
        """A caller's new trace: (trace id, its span id, the W3C ``traceparent`` header)."""
        trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
        return trace_id, parent, f"00-{trace_id}-{parent}-01"

    @staticmethod
    def traced_get(server: Launcher, path: str, traceparent: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=DEADLINE)
        try:
            conn.request("GET", path, headers={"traceparent": traceparent, "Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def test_tracing_a_server_span_per_request_from_every_worker_flushed_at_sigterm(
        self, traced: Path
    ) -> None:
        workers = 2 if self.supports_multiple_workers else 1
        with (
            otlp.Receiver() as receiver,
            self.serve(
                traced, WEB_CONCURRENCY=str(workers), LOG_FORMAT="json", **self.otel_env(receiver)
            ) as server,
        ):
            sent: dict[str, tuple[str, int]] = {}  # trace id -> (the caller's span id, the worker's pid)
            deadline = time.monotonic() + 30
            while len(sent) < 12 or len({pid for _, pid in sent.values()}) < workers:
                assert time.monotonic() < deadline, f"requests reached fewer than {workers} workers: {sent}"
                trace_id, parent, header = self.traceparent()
                status, body = self.traced_get(server, f"/items/{len(sent)}?token=secret", header)
                assert status == 200, body
                sent[trace_id] = (parent, int(body))
            raised, _, header = self.traceparent()
            assert self.traced_get(server, "/raise", header)[0] == 500
            assert not receiver.spans(), "spans were exported before the stop: the check proves nothing"
            assert self.stop(server) == 0, server.output()[-3000:]
            output = server.output()
        ours = {*sent, raised}  # besides the readiness check's request
        spans = [s for s in receiver.spans() if s.trace_id in ours]
        served = {s.trace_id: s for s in spans if s.kind == "SERVER"}
        assert len([s for s in spans if s.kind == "SERVER"]) == len(ours) == len(served), len(spans)
        children = {s.parent_id: s for s in spans if s.name == "kit child"}
        for trace_id, (parent, pid) in sent.items():
            span = served[trace_id]
            assert span.parent_id == parent, "the caller's traceparent is not the span's parent"
            assert span.name == "GET /items/{item_id}" and span.status == "UNSET", span
            attributes = span.attributes
            assert attributes["http.request.method"] == "GET" and attributes["url.scheme"] == "http"
            assert attributes["url.path"].startswith("/items/") and "url.query" not in attributes, attributes
            assert (
                attributes["http.response.status_code"] == 200
                and attributes["http.route"] == "/items/{item_id}"
            )
            assert attributes["network.protocol.version"] == "1.1", attributes
            assert attributes["client.address"] == "127.0.0.1" and attributes["server.port"] == server.port
            assert span.resource["process.pid"] == pid and span.resource["service.name"] == "kit", (
                span.resource
            )
            child = children[span.span_id]  # the app's own span, under the request's
            assert (
                child.trace_id == trace_id and span.start_ns <= child.start_ns <= child.end_ns <= span.end_ns
            )
        instances: dict[int, set[str]] = {}
        for span in spans:
            instances.setdefault(span.resource["process.pid"], set()).add(
                span.resource["service.instance.id"]
            )
        assert len(instances) == workers and all(len(ids) == 1 for ids in instances.values()), instances
        assert len(set().union(*instances.values())) == workers, f"workers share an instance id: {instances}"
        failed = served[raised]
        assert failed.status == "ERROR" and "exception" in failed.events, failed
        assert failed.attributes["error.type"] == "RuntimeError", failed.attributes
        assert failed.attributes["http.response.status_code"] == 500, failed.attributes
        events = []
        for line in output.splitlines():
            with suppress(ValueError):
                events.append(json.loads(line))
        access = {
            e["trace_id"]: e
            for e in events
            if e.get("log.logger") == "asgi_launcher.access" and "trace_id" in e
        }
        for trace_id in [*sent, raised]:
            assert access[trace_id]["span_id"] == served[trace_id].span_id, access.get(trace_id)
        errors = [e for e in events if str(e.get("error.message", "")).endswith("traced app raised")]
        assert errors and all(e.get("trace_id") == raised for e in errors), (errors, output[-3000:])

    def test_tracing_spans_in_flight_at_sigterm_are_flushed_after_the_drain(self, traced: Path) -> None:
        self.require("supports_graceful_shutdown")
        self.require("supports_websocket_shutdown")
        with (
            otlp.Receiver() as receiver,
            self.serve(
                traced, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT="20", **self.otel_env(receiver)
            ) as server,
        ):
            trace_id, parent, header = self.traceparent()
            answered: list[tuple[int, bytes]] = []
            slow = threading.Thread(
                target=lambda: answered.append(self.traced_get(server, "/slow?seconds=2", header)),
                daemon=True,
            )
            slow.start()
            with self.websocket(server) as ws:
                server.wait_until(
                    lambda: SLOW_STARTED in server.output(), DEADLINE, "the slow request in flight"
                )
                server.signal(signal.SIGTERM)
                code = server.wait(DEADLINE)
                closed_with = close_code(ws, 5)
            slow.join(10)
        assert code == 0 and answered and answered[0][0] == 200, (answered, server.output()[-3000:])
        assert closed_with == WS_SERVICE_RESTART
        spans = receiver.spans()
        request = [s for s in spans if s.kind == "SERVER" and s.trace_id == trace_id]
        assert len(request) == 1 and request[0].parent_id == parent, spans
        assert any(s.name == "kit child" and s.parent_id == request[0].span_id for s in spans), spans
        sessions = [
            s
            for s in spans
            if s.kind == "SERVER" and s.attributes.get("network.protocol.name") == "websocket"
        ]
        assert len(sessions) == 1 and sessions[0].attributes["http.response.status_code"] == 101, sessions

    def flushed_before_the_worker_exits(
        self, traced: Path, requests: int, stop: Callable[[Launcher, int], None], **env: str
    ) -> None:
        """``requests`` requests to one worker, then ``stop`` makes the master replace it: the
        collector has their spans while the launcher still serves, from that worker's exit.

        What the first worker served is what is checked: under MAX_REQUESTS it may retire before
        the last of them (the readiness check's poll is counted too, and a slow machine can make
        it ask more than once), and the rest then reach its replacement."""
        with (
            otlp.Receiver() as receiver,
            self.serve(traced, WEB_CONCURRENCY="1", **self.otel_env(receiver), **env) as server,
        ):
            served: list[tuple[str, int]] = []  # (trace id, the worker's pid), in order
            for _ in range(requests):
                trace_id, _, header = self.traceparent()
                status, body = self.traced_get(server, "/pid", header)
                assert status == 200, body
                served.append((trace_id, int(body)))
            pid = served[0][1]
            sent = {trace_id for trace_id, by in served if by == pid}
            if all(by == pid for _, by in served):
                stop(server, pid)
            else:  # it retired by itself (MAX_REQUESTS) before our last request
                assert "MAX_REQUESTS" in env, served
            receiver.wait_for(
                lambda spans: sent <= {s.trace_id for s in spans if s.kind == "SERVER"},
                30,
                "the stopped worker's spans",
            )
            server.wait_until(
                lambda: pid not in server.serving() and server.ok("/pid"), 30, "a replacement worker"
            )
            assert server.proc.poll() is None, server.output()[-3000:]

    def test_tracing_max_requests_flushes_the_retiring_workers_spans(self, traced: Path) -> None:
        self.require("supports_max_requests")
        # The 4th request retires the worker: the readiness check's and these 3.
        self.flushed_before_the_worker_exits(
            traced, 3, lambda server, pid: None, MAX_REQUESTS="4", MAX_REQUESTS_JITTER="0"
        )

    def test_tracing_sighup_flushes_the_old_workers_spans(self, traced: Path) -> None:
        self.require("supports_signal_table")
        self.flushed_before_the_worker_exits(traced, 2, lambda server, pid: server.signal(signal.SIGHUP))

    def test_tracing_max_worker_memory_flushes_the_retired_workers_spans(self, traced: Path) -> None:
        self.require("supports_max_worker_memory")
        limit = 100  # MiB, as in the memory check above

        def grow(server: Launcher, pid: int) -> None:
            assert server.get(f"/grow?mb={limit + 40}", timeout=DEADLINE)[0] == 200

        self.flushed_before_the_worker_exits(traced, 2, grow, MAX_WORKER_MEMORY=str(limit))

    def test_tracing_an_unreachable_collector_blocks_no_request_and_delays_the_stop_by_its_timeout_at_most(
        self, traced: Path
    ) -> None:
        """A collector that takes every export and never answers: requests are answered as ever,
        and SIGTERM ends the launcher within the exporter's timeout (2 s here), not the SDK's
        retries."""
        self.require("supports_graceful_shutdown")
        with (
            otlp.Receiver(hang=True) as receiver,
            self.serve(
                traced,
                WEB_CONCURRENCY="1",
                **self.otel_env(receiver, OTEL_EXPORTER_OTLP_TIMEOUT="2", OTEL_BSP_SCHEDULE_DELAY="100"),
            ) as server,
        ):
            for _ in range(20):
                status, body = self.traced_get(server, "/pid", self.traceparent()[2])
                assert status == 200, body
            receiver.wait_for_requests(1, 30)  # an export is hanging meanwhile
            for _ in range(5):
                assert self.traced_get(server, "/pid", self.traceparent()[2])[0] == 200
            stopped = time.monotonic()
            server.signal(signal.SIGTERM)
            code = server.wait(DEADLINE)
            took = time.monotonic() - stopped
        assert code == 0, server.output()[-3000:]
        # The SDK's default is 10 s a try, retried with backoff: far more than this bound.
        assert took < 20, (took, server.output()[-3000:])

    # -- TLS, mutual TLS and HTTP/2 (SSL_*, HTTP2) ------------------------------------------
    # Certificates are made for each test with trustme (launcher.testing.tls); the clients are
    # the ssl module's, http.client's, websockets' and httpx's (HTTP/2).

    #: ``SSL_KEYFILE_PASSWORD`` decrypts an encrypted private key. False: the backend refuses the
    #: variable with exit 2 in one line (Granian 2 cannot read encrypted keys).
    reads_encrypted_keys: ClassVar[bool] = True
    #: ``SSL_CERT_REQS=optional`` asks for a client certificate without requiring one. False: the
    #: backend refuses it with exit 2 in one line (Granian only verifies the ones it requires).
    verifies_optional_client_certificates: ClassVar[bool] = True
    #: ``HTTP2=true`` offers HTTP/2 over TLS through ALPN (HTTP/1.1 kept for clients that do not
    #: offer h2). False: ``HTTP2=true`` is exit 2 in one line naming HTTP2 (Uvicorn speaks HTTP/1.1).
    serves_http2: ClassVar[bool] = True
    #: At SIGTERM an HTTP/2 stream in flight finishes before the connection goes (GOAWAY).
    #: False: an HTTP/2 client (httpx, on python-h2) loses it (Granian: its GOAWAY is followed by
    #: a PING, which python-h2 refuses on a connection it has closed after the GOAWAY).
    drains_http2_at_sigterm: ClassVar[bool] = True
    #: Certificate files replaced in place are served after a SIGHUP, failing no request (the
    #: rolling restart; a process serving alone reloads its certificate in place).
    reloads_certificate_on_sighup: ClassVar[bool] = True

    @pytest.fixture
    def certificates(self, tmp_path: Path) -> Certificates:
        """A server certificate for 127.0.0.1 and client certificates, made now (trustme)."""
        try:
            from launcher.testing.tls import Certificates
        except ImportError:
            pytest.fail("the TLS checks need trustme: pip install trustme")
        return Certificates.make(tmp_path / "tls")

    def test_tls_serves_https_and_wss_with_the_scheme_in_the_scope(
        self, hello: Path, certificates: Certificates
    ) -> None:
        with self.serve_tls(hello, certificates.client(), **certificates.env(ACCESS_LOG="-")) as server:
            status, _, body = server.get("/headers")
            assert status == 200 and json.loads(body)["scheme"] == "https", body
            with self.websocket(server) as ws:
                ws.send("scheme?")
                assert ws.recv(timeout=DEADLINE) == "wss"
            # Plain HTTP on the TLS port gets no HTTP answer from the app.
            with pytest.raises((OSError, http.client.HTTPException)):
                request(server.port, "/headers", timeout=5)
            server.wait_until(lambda: "GET /headers" in server.output(), DEADLINE, "the access line")
            assert self.stop(server) == 0

    def test_sigterm_does_not_wait_on_an_idle_tls_client(
        self, hello: Path, certificates: Certificates
    ) -> None:
        """An idle keep-alive TLS client that does not read (so never answers the server's
        close_notify) does not hold the stop: asyncio would wait 30 s for its answer."""
        self.require("supports_graceful_shutdown")
        with self.serve_tls(hello, certificates.client(), **certificates.env(WEB_CONCURRENCY="1")) as server:
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
            with certificates.client().wrap_socket(raw, server_hostname="127.0.0.1") as idle:
                idle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert idle.recv(65536).startswith(b"HTTP/1.1 200"), "no answer on the TLS connection"
                sigterm = time.monotonic()
                server.signal(signal.SIGTERM)
                code = server.wait(DEADLINE)
                took = time.monotonic() - sigterm
            assert code == 0, server.output()
            # Far below asyncio's 30 s wait for close_notify; a stop without it takes a second or two.
            assert took < TLS_CLOSE_DEADLINE, f"the launcher took {took:.1f}s to stop"

    def test_tls_encrypted_key_with_its_password(self, hello: Path, certificates: Certificates) -> None:
        from launcher.testing.tls import KEY_PASSWORD

        env = certificates.env(SSL_KEYFILE=str(certificates.encrypted_key), SSL_KEYFILE_PASSWORD=KEY_PASSWORD)
        if not self.reads_encrypted_keys:
            result = run_launcher(self.env(hello, **env), ("run",))
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and "SSL_KEYFILE_PASSWORD" in lines[0], result
            assert KEY_PASSWORD not in result.stdout + result.stderr
            return
        with self.serve_tls(hello, certificates.client(), **env) as server:
            assert server.get("/")[0] == 200
            assert KEY_PASSWORD not in server.output()

    def test_tls_minimum_version(self, hello: Path, certificates: Certificates) -> None:
        tls12 = certificates.client(maximum=ssl.TLSVersion.TLSv1_2)
        with self.serve_tls(hello, tls12, **certificates.env()) as server:  # the default: TLSv1.2
            assert server.get("/")[0] == 200
            self.stop(server)
        with self.serve_tls(
            hello, certificates.client(), **certificates.env(SSL_MIN_VERSION="TLSv1.3")
        ) as server:
            assert server.get("/")[0] == 200
            server.tls = tls12
            with pytest.raises(ssl.SSLError):
                server.get("/")

    def test_mutual_tls_required_accepts_a_trusted_client_certificate_and_refuses_the_rest(
        self, hello: Path, certificates: Certificates
    ) -> None:
        env = certificates.env(SSL_CA_CERTS=str(certificates.client_ca), SSL_CERT_REQS="required")
        trusted = certificates.client(certificates.client_cert)
        with self.serve_tls(hello, trusted, **env) as server:
            assert server.get("/headers")[0] == 200
            for refused in (certificates.client(), certificates.client(certificates.stranger_cert)):
                server.tls = refused
                # Refused in the handshake (TLS 1.2), or by an alert read with the answer (TLS 1.3).
                with pytest.raises((OSError, http.client.HTTPException)):
                    server.get("/headers")
            server.tls = trusted
            assert server.get("/headers")[0] == 200

    def test_mutual_tls_optional_verifies_a_client_certificate_when_one_is_sent(
        self, hello: Path, certificates: Certificates
    ) -> None:
        env = certificates.env(SSL_CA_CERTS=str(certificates.client_ca), SSL_CERT_REQS="optional")
        if not self.verifies_optional_client_certificates:
            result = run_launcher(self.env(hello, **env), ("run",))
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and "SSL_CERT_REQS" in lines[0], result
            return
        with self.serve_tls(hello, certificates.client(), **env) as server:
            assert server.get("/")[0] == 200  # no certificate: served
            server.tls = certificates.client(certificates.client_cert)
            assert server.get("/")[0] == 200
            server.tls = certificates.client(certificates.stranger_cert)
            with pytest.raises((OSError, http.client.HTTPException)):
                server.get("/")

    def test_http2_over_tls_through_alpn_keeps_http1_for_other_clients(
        self, hello: Path, certificates: Certificates
    ) -> None:
        env = certificates.env(HTTP2="true", ACCESS_LOG="-")
        if not self.serves_http2:
            result = run_launcher(self.env(hello, **env), ("run",))
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and "HTTP2=" in lines[0], result
            return
        httpx = pytest.importorskip("httpx")
        pytest.importorskip("h2")
        with self.serve_tls(hello, certificates.client(), **env) as server:
            with httpx.Client(http2=True, verify=certificates.client(), timeout=DEADLINE) as client:
                response = client.get(server.url("/headers?h2"))
            assert response.http_version == "HTTP/2", response.http_version
            assert response.json()["scheme"] == "https" and response.json()["http_version"] == "2"
            with httpx.Client(http2=False, verify=certificates.client(), timeout=DEADLINE) as client:
                response = client.get(server.url("/headers?h1"))
            assert response.http_version == "HTTP/1.1"
            # The access lines name the protocol (each worker writes its own, when it gets to it).
            wanted = ("GET /headers?h1 HTTP/1.1", "GET /headers?h2 HTTP/2")
            server.wait_until(
                lambda: all(line in server.output() for line in wanted), 10, "both access lines"
            )
            assert self.stop(server) == 0
        with (
            self.serve_tls(hello, certificates.client(), **certificates.env()) as server,
            httpx.Client(http2=True, verify=certificates.client(), timeout=DEADLINE) as client,
        ):
            assert client.get(server.url("/")).http_version == "HTTP/1.1"  # HTTP2 off: not offered

    def test_http2_requests_go_through_the_same_pipeline_and_drain_at_sigterm(
        self, hello: Path, certificates: Certificates
    ) -> None:
        if not self.serves_http2:
            pytest.skip(f"the {self.backend} backend declares serves_http2 = False")
        httpx = pytest.importorskip("httpx")
        pytest.importorskip("h2")
        env = certificates.env(HTTP2="true", LIMIT_REQUEST_FIELDS="12", FORWARDED_ALLOW_IPS="127.0.0.1")
        with (
            self.serve_tls(hello, certificates.client(), **env, ACCESS_LOG="-") as server,
            httpx.Client(http2=True, verify=certificates.client(), timeout=DEADLINE) as client,
        ):
            # The proxy headers of a trusted peer, as over HTTP/1.1.
            response = client.get(server.url("/headers"), headers={"X-Forwarded-Proto": "http"})
            assert response.http_version == "HTTP/2" and response.json()["scheme"] == "http"
            # LIMIT_REQUEST_FIELDS holds for HTTP/2 requests too.
            many = {f"x-field-{n}": "v" for n in range(14)}
            response = client.get(server.url("/headers"), headers=many)
            assert response.status_code == 431, (response.status_code, response.text)
            if not self.drains_http2_at_sigterm:
                return
            # SIGTERM: the stream in flight finishes, then the launcher exits 0.
            result: dict[str, Any] = {}

            def slow() -> None:
                try:
                    answer = client.get(server.url("/slow?seconds=2"))
                    result["response"] = (answer.status_code, answer.http_version)
                except httpx.HTTPError as exc:
                    result["response"] = exc

            thread = threading.Thread(target=slow, daemon=True)
            thread.start()
            server.wait_until(lambda: SLOW_STARTED in server.output(), DEADLINE, "the slow request")
            server.signal(signal.SIGTERM)
            thread.join(30)
            assert result.get("response") == (200, "HTTP/2"), result
            # The client leaves (an idle TLS connection whose client does not answer the server's
            # close_notify holds Hypercorn's and Uvicorn's stop for 30 s: see docs/tls.md).
            client.close()
            assert server.wait(DEADLINE) == 0
            assert "GET /headers HTTP/2" in server.output()

    def test_tls_certificate_replaced_in_place_is_served_after_sighup_without_failing_a_request(
        self, hello: Path, tmp_path: Path
    ) -> None:
        self.require("reloads_certificate_on_sighup")
        from launcher.testing.tls import Certificates, peer_certificate

        old = Certificates.make(tmp_path / "old", "old")
        new = Certificates.make(tmp_path / "new", "new")
        client = old.client()
        client.load_verify_locations(cafile=str(new.ca))  # the clients trust both issuers
        new_der = ssl.PEM_cert_to_DER_cert(
            new.cert.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        )
        workers = 2 if self.supports_multiple_workers else 1  # 1: a process serving alone
        ops_port = free_port()
        env = old.env(**self.ops_env(ops_port, WEB_CONCURRENCY=str(workers)))
        with self.serve_tls(hello, client, **env) as server:
            # Every worker has answered over TLS, so has read the files: one still starting would
            # read the new ones without a SIGHUP (the server answers as soon as its first worker
            # can, and a booted worker may make its TLS context later: Hypercorn's, after the
            # lifespan startup that marks the boot).
            server.wait_until(lambda: self.booted(ops_port) == workers, DEADLINE, "every worker booted")
            answered: set[bytes] = set()

            def every_worker_answered() -> bool:
                answered.add(server.get("/pid")[2])
                return len(answered) == workers

            server.wait_until(every_worker_answered, DEADLINE, "every worker answered over TLS")
            assert peer_certificate(server.host, server.port, client) != new_der
            load = Load(server.port, "/pid", clients=4, limit=60, tls=client).start()
            try:
                old.replace_with(new)  # as cert-manager does; nothing is served from it yet
                time.sleep(0.5)
                assert peer_certificate(server.host, server.port, client) != new_der
                server.signal(signal.SIGHUP)

                def renewed() -> bool:
                    return all(
                        peer_certificate(server.host, server.port, client) == new_der for _ in range(5)
                    )

                server.wait_until(renewed, 30, "the new certificate on every new connection")
                time.sleep(0.5)
            finally:
                load.stop()
            failed = [o for o in load.outcomes if o.status != 200]
            assert load.outcomes, load.refused
            if self.restart_drops_fresh_connections:
                # Over TLS a connection the stopping worker drops can also fail while the request
                # is sent, after the handshake: counted with the rest, never an error status.
                assert all(o.status is None for o in failed), failed[:5]
                dropped = len(failed) + load.refused
                assert dropped <= len(load.outcomes) // 20, (dropped, len(load.outcomes))
            else:
                assert not failed and not load.refused, (failed[:5], load.refused)
            assert self.stop(server) == 0

    def test_probe_speaks_tls_and_probe_ready_keeps_the_operations_listener(
        self, hello: Path, certificates: Certificates
    ) -> None:
        ops_port = free_port()
        env = certificates.env(**self.ops_env(ops_port))
        with self.serve_tls(hello, certificates.client(), **env) as server:
            server.wait_until(lambda: self.booted(ops_port) >= 1, DEADLINE, "a booted worker")
            result = run_launcher(self.env(hello, BIND=f"127.0.0.1:{server.port}", **env), ("probe",))
            assert result.returncode == 0 and " over TLSv1." in result.stdout, result
            assert self.probe_ready(hello, ops_port)[0] == 0  # plain HTTP, /readyz
            mutual = {**env, "SSL_CA_CERTS": str(certificates.ca), "SSL_CERT_REQS": "required"}
            self.stop(server)
        # Mutual TLS: the probe shows the server's own certificate, issued by a CA the server trusts.
        with self.serve_tls(
            hello, certificates.client(certificates.cert, certificates.key), **mutual
        ) as server:
            result = run_launcher(self.env(hello, BIND=f"127.0.0.1:{server.port}", **mutual), ("probe",))
            assert result.returncode == 0, result
        # Nothing listening: the probe fails, naming the address.
        port = free_port()
        result = run_launcher(self.env(hello, BIND=f"127.0.0.1:{port}", **certificates.env()), ("probe",))
        assert result.returncode == 1 and f"127.0.0.1:{port}" in result.stderr, result


__all__ = ["CONFIG_KEYS", "BackendConformance", "Launches", "close_code"]
