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

This module imports pytest; the rest of ``launcher`` never imports it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from launcher.testing import apps
from launcher.testing.process import Launcher, free_port, run_launcher, start_launcher

#: The keys ``asgi-launcher config --json`` promises.
CONFIG_KEYS = frozenset(
    {
        "backend", "app", "app_dir", "bind", "workers", "cpus", "worker_class", "log_level", "timeout",
        "graceful_timeout", "keep_alive", "access_log", "error_log", "config_file", "prestart", "sources",
    }
)  # fmt: skip

#: Printed by the kit's hello app when ``/slow`` starts, so tests wait for it rather than sleep.
SLOW_STARTED = "slow request started"


class BackendConformance:
    """The contract every backend plugin keeps; subclass it with ``backend = "<entry-point name>"``."""

    #: The ``asgi_launcher.backends`` entry-point name of the plugin under test.
    backend: ClassVar[str] = ""
    #: Added to the environment of every launch (after the kit's own variables, so it wins).
    extra_env: ClassVar[dict[str, str]] = {}
    #: Processes the backend starts below the launcher that are not workers (they do not hold
    #: the listening socket), e.g. 1 for multiprocessing's resource tracker.
    extra_processes: ClassVar[int] = 0
    #: Seconds a launch may take to answer its first request.
    ready_timeout: ClassVar[float] = 30.0

    # Capabilities: set one to False only if the server really cannot do it.
    #: WEB_CONCURRENCY=N gives N worker processes.
    supports_multiple_workers: ClassVar[bool] = True
    #: A worker killed with SIGKILL is replaced and the service keeps answering.
    supports_worker_replacement: ClassVar[bool] = True
    #: Access lines are logged by default and ACCESS_LOG="" turns them off.
    supports_access_log: ClassVar[bool] = True
    #: LOG_LEVEL=warning hides the server's info lines.
    supports_log_level: ClassVar[bool] = True
    #: SIGTERM lets a request in flight finish, then the launcher exits 0.
    supports_graceful_shutdown: ClassVar[bool] = True

    # -- helpers -------------------------------------------------------------------------

    def env(self, app_dir: Path, **more: str) -> dict[str, str]:
        """The environment of a launch: this backend, ``app_dir``, ``extra_env``, then ``more``."""
        return {"SERVER_BACKEND": self.backend, "APP_DIR": str(app_dir), **self.extra_env, **more}

    def start(self, app_dir: Path, **more: str) -> Launcher:
        """Start the launcher on ``app_dir`` without waiting (use it as a context manager)."""
        return start_launcher(self.env(app_dir, **more))

    def serve(self, app_dir: Path, **more: str) -> Launcher:
        """Start the launcher on ``app_dir`` and wait until it answers HTTP."""
        server = self.start(app_dir, **more)
        try:
            server.wait_ready("/", self.ready_timeout)
        except BaseException:
            server.close()
            raise
        return server

    def stop(self, server: Launcher) -> int:
        """SIGTERM and wait: after this the whole output is on disk, so absences can be asserted."""
        server.signal(signal.SIGTERM)
        return server.wait(30)

    def require(self, capability: str) -> None:
        if not getattr(self, capability):
            pytest.skip(f"the {self.backend} backend declares {capability} = False")

    @pytest.fixture
    def hello(self, tmp_path: Path) -> Path:
        """An APP_DIR holding the kit's hello app as ``main.py``."""
        apps.install("hello", tmp_path)
        return tmp_path

    # -- serving ---------------------------------------------------------------------------

    def test_serves_the_app_on_bind(self, hello: Path) -> None:
        port = free_port()
        with self.serve(hello, BIND=f"127.0.0.1:{port}") as server:
            status, headers, body = server.get("/")
            assert (status, json.loads(body)) == (200, {"message": "Hello World!"})
            assert headers["content-type"] == "application/json"
            assert server.listener_pids(), f"nothing of the launcher's listens on {port}"

    def test_serves_the_app_on_host_and_port(self, hello: Path) -> None:
        port = free_port()
        with self.serve(hello, HOST="127.0.0.1", PORT=str(port)) as server:
            assert server.port == port
            assert server.get("/")[0] == 200

    def test_worker_count_follows_web_concurrency(self, hello: Path) -> None:
        self.require("supports_multiple_workers")
        # 3: not what the worker formula gives by default on a small machine (2).
        with self.serve(hello, WEB_CONCURRENCY="3") as server:
            server.wait_until(lambda: len(server.serving()) == 3, 20, "3 processes serving")
            # The count holds (no late extra worker) and nothing else runs below the launcher.
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                serving, children = server.serving(), server.children()
                assert len(serving) == 3, (serving, server.output()[-2000:])
                assert len(children) == 3 + self.extra_processes, (children, serving)
                time.sleep(0.1)

    def test_access_log_on_by_default(self, hello: Path) -> None:
        self.require("supports_access_log")
        with self.serve(hello, WEB_CONCURRENCY="1") as server:
            server.get("/access-log-marker")
            server.wait_until(lambda: "access-log-marker" in server.output(), 10, "an access log line")

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
        server_lines = [line for line in output.splitlines() if not line.startswith("asgi-launcher:")]
        assert not [line for line in server_lines if "INFO" in line.upper()], output

    @pytest.mark.parametrize(
        ("name", "layout", "env"),
        [
            ("hello", "main.py", {}),
            ("hello", "app/main.py", {}),
            ("api", "custom_app/custom_main.py", {"APP_MODULE": "custom_app.custom_main:api"}),
            (
                "api",
                "custom_app/custom_main.py",
                {"MODULE_NAME": "custom_app.custom_main", "VARIABLE_NAME": "api"},
            ),
        ],
        ids=["main.py", "app/main.py", "APP_MODULE", "MODULE_NAME+VARIABLE_NAME"],
    )
    def test_app_module_variants(self, tmp_path: Path, name: str, layout: str, env: dict[str, str]) -> None:
        apps.install(name, tmp_path, layout)
        with self.serve(tmp_path, WEB_CONCURRENCY="1", **env) as server:
            status, _, body = server.get("/")
        expected = "Hello from api" if name == "api" else "Hello World!"
        assert (status, json.loads(body)["message"]) == (200, expected)

    def test_config_json_names_the_backend(self, hello: Path) -> None:
        result = run_launcher(self.env(hello), ("config", "--json"))
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["backend"] == self.backend
        assert set(data) >= CONFIG_KEYS, CONFIG_KEYS - set(data)
        assert set(data["sources"]) >= CONFIG_KEYS - {"sources"}, data["sources"]

    # -- apps that cannot be served --------------------------------------------------------

    @pytest.mark.parametrize(
        ("env", "missing"),
        [({"APP_MODULE": "nomodule:app"}, "nomodule"), ({"VARIABLE_NAME": "api"}, "api")],
        ids=["module", "attribute"],
    )
    def test_missing_app_is_exit_2_in_one_line_before_serving(
        self, hello: Path, env: dict[str, str], missing: str
    ) -> None:
        with self.start(hello, **env) as server:
            assert server.wait(20) == 2
            lines = server.output().strip().splitlines()
        assert len(lines) == 1 and missing in lines[0], lines
        assert "Traceback" not in lines[0]

    def test_app_raising_on_import_is_non_zero_with_one_traceback(self, tmp_path: Path) -> None:
        apps.install("raises_on_import", tmp_path)
        with self.start(tmp_path, WEB_CONCURRENCY="2") as server:
            code = server.wait(15)
            output = server.output()
        assert code != 0, output
        assert output.count("RuntimeError: the app failed while being imported") == 1, output

    def test_failed_lifespan_startup_is_non_zero(self, tmp_path: Path) -> None:
        apps.install("startup_raises", tmp_path)
        with self.start(tmp_path, WEB_CONCURRENCY="2") as server:
            code = server.wait(15)
            assert code != 0, server.output()

    # -- signals and faults ----------------------------------------------------------------

    def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(self, hello: Path) -> None:
        self.require("supports_graceful_shutdown")
        graceful = 10
        with self.serve(hello, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT=str(graceful)) as server:
            result: dict[str, Any] = {}

            def slow() -> None:
                try:
                    status, _, body = server.get("/slow?seconds=2", timeout=graceful + 5)
                    result["response"] = (status, body)
                except OSError as exc:
                    result["response"] = exc
                result["at"] = time.monotonic()

            thread = threading.Thread(target=slow, daemon=True)
            thread.start()
            server.wait_until(lambda: SLOW_STARTED in server.output(), 10, "the slow request in flight")
            sigterm = time.monotonic()
            server.signal(signal.SIGTERM)
            code = server.wait(graceful + 5)
            exited = time.monotonic() - sigterm
            thread.join(graceful + 5)
            assert result.get("response") == (200, b"slow done"), server.output()
            assert result["at"] > sigterm, "the request finished before SIGTERM: it proves nothing"
            assert code == 0, server.output()
            assert exited <= graceful, f"exited {exited:.1f}s after SIGTERM; GRACEFUL_TIMEOUT={graceful}"

    def test_a_killed_worker_is_replaced(self, hello: Path) -> None:
        self.require("supports_worker_replacement")
        with self.serve(hello, WEB_CONCURRENCY="2") as server:
            server.wait_until(lambda: len(server.serving()) == 2, 20, "2 workers")
            victim = server.serving()[0]
            os.kill(victim, signal.SIGKILL)

            def replaced() -> bool:
                serving = server.serving()
                return len(serving) == 2 and victim not in serving and server.ok("/")

            server.wait_until(replaced, 10, "a replacement worker, answering")
            assert server.proc.poll() is None

    def test_port_in_use_is_non_zero_naming_the_address(self, hello: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            started = time.monotonic()
            result = run_launcher(self.env(hello, BIND=f"127.0.0.1:{port}"), ("run",), timeout=15)
            took = time.monotonic() - started
        assert result.returncode != 0
        assert took < 10, f"took {took:.1f}s"
        assert f"127.0.0.1:{port}" in result.stdout + result.stderr


__all__ = ["CONFIG_KEYS", "BackendConformance"]
