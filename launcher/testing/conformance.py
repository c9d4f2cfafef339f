"""The backend conformance kit: the launcher's contract, checked against a real server.

A plugin author subclasses ``BackendConformance`` in their own test suite::

    from launcher.testing.conformance import BackendConformance

    class TestConformance(BackendConformance):
        backend = "myserver"          # the entry-point name of the plugin under test

and runs pytest. Every test starts the real launcher as a subprocess with ``SERVER_BACKEND``
set to ``backend``, on 127.0.0.1 with a free port, and sends real HTTP. ``extra_env`` is added
to every launch. A capability the server cannot offer is switched off with a class attribute,
and the README of the plugin should say so.
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
from launcher.testing.process import Server, launcher, request, run_launcher

#: The keys ``asgi-launcher config --json`` promises.
CONFIG_KEYS = {
    "backend", "app", "app_dir", "bind", "workers", "cpus", "worker_class", "log_level", "timeout",
    "graceful_timeout", "keep_alive", "access_log", "error_log", "config_file", "prestart", "sources",
}  # fmt: skip


class BackendConformance:
    backend: ClassVar[str] = ""
    extra_env: ClassVar[dict[str, str]] = {}
    #: Set False only if the server cannot replace a worker killed with SIGKILL.
    supports_worker_replacement: ClassVar[bool] = True

    # -- helpers -------------------------------------------------------------------------

    def env(self, app_dir: Path, **more: str) -> dict[str, str]:
        return {"SERVER_BACKEND": self.backend, "APP_DIR": str(app_dir), **self.extra_env, **more}

    @pytest.fixture
    def hello(self, tmp_path: Path) -> Path:
        apps.write(tmp_path, "main.py", apps.HELLO)
        return tmp_path

    def serve(self, app_dir: Path, **more: str) -> Any:
        return launcher(self.env(app_dir, **more))

    # -- serving ---------------------------------------------------------------------------

    def test_serves_on_bind_and_on_host_port(self, hello: Path) -> None:
        with launcher({**self.env(hello), "BIND": "", "HOST": "127.0.0.1"}, ready=False) as bad:
            assert bad.wait_exit(20) == 2  # an empty BIND is refused, not ignored
        port = _free_port()
        with launcher({**self.env(hello), "BIND": f"127.0.0.1:{port}"}) as server:
            assert json.loads(request(port, "/")[1]) == {"message": "Hello World!"}
        port = _free_port()
        with launcher({**self.env(hello), "HOST": "127.0.0.1", "PORT": str(port)}) as server:
            assert server.port == port and request(port, "/")[0] == 200

    def test_worker_count_follows_web_concurrency(self, hello: Path) -> None:
        with self.serve(hello, WEB_CONCURRENCY="3") as server:
            server.wait_until(lambda: len(server.workers()) == 3, 20, "3 workers")
            time.sleep(0.5)
            assert len(server.workers()) == 3

    def test_access_log_on_by_default_and_off_when_empty(self, hello: Path) -> None:
        with self.serve(hello, WEB_CONCURRENCY="1") as server:
            request(server.port, "/access-log-marker")
            server.wait_until(lambda: "access-log-marker" in server.output(), 5, "an access log line")
        with self.serve(hello, WEB_CONCURRENCY="1", ACCESS_LOG="") as server:
            request(server.port, "/access-log-marker")
            time.sleep(0.5)
            assert "access-log-marker" not in server.output()

    def test_log_level_warning_hides_info(self, hello: Path) -> None:
        with self.serve(hello, WEB_CONCURRENCY="1") as server:
            assert "INFO" in server.output().upper()
        with self.serve(hello, WEB_CONCURRENCY="1", LOG_LEVEL="WARNING", ACCESS_LOG="") as server:
            request(server.port, "/")
            time.sleep(0.3)
            server_lines = [
                line for line in server.output().splitlines() if not line.startswith("asgi-launcher:")
            ]
            assert not [line for line in server_lines if "INFO" in line.upper()], server.output()

    @pytest.mark.parametrize(
        ("layout", "env"),
        [
            ("app/main.py", {}),
            ("main.py", {}),
            ("custom_app/custom_main.py", {"APP_MODULE": "custom_app.custom_main:api"}),
            ("custom_app/custom_main.py", {"MODULE_NAME": "custom_app.custom_main", "VARIABLE_NAME": "api"}),
        ],
    )
    def test_app_module_variants(self, tmp_path: Path, layout: str, env: dict[str, str]) -> None:
        source = apps.HELLO if not env else apps.HELLO.replace("async def app(", "async def api(")
        apps.write(tmp_path, layout, source)
        with self.serve(tmp_path, WEB_CONCURRENCY="1", **env) as server:
            assert request(server.port, "/")[0] == 200

    def test_config_json_names_the_backend(self, hello: Path) -> None:
        result = run_launcher(self.env(hello), ("config", "--json"))
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["backend"] == self.backend
        assert set(data) >= CONFIG_KEYS

    # -- apps that cannot be served --------------------------------------------------------

    @pytest.mark.parametrize(
        ("env", "missing"), [({"APP_MODULE": "nomodule:app"}, "nomodule"), ({"VARIABLE_NAME": "api"}, "api")]
    )
    def test_missing_app_is_exit_2_before_serving(
        self, hello: Path, env: dict[str, str], missing: str
    ) -> None:
        with launcher({**self.env(hello), **env}, ready=False) as server:
            assert server.wait_exit(20) == 2
            lines = server.output().strip().splitlines()
        assert len(lines) == 1 and missing in lines[0], lines

    def test_app_raising_on_import_is_non_zero_with_one_traceback(self, tmp_path: Path) -> None:
        apps.write(tmp_path, "main.py", apps.RAISES_ON_IMPORT)
        with launcher(self.env(tmp_path), ready=False) as server:
            code = server.wait_exit(15)
            output = server.output()
        assert code not in (0, None)
        assert output.count("RuntimeError: the app failed while being imported") == 1

    def test_failed_lifespan_startup_is_non_zero(self, tmp_path: Path) -> None:
        apps.write(tmp_path, "main.py", apps.STARTUP_FAILS)
        with launcher(self.env(tmp_path, WEB_CONCURRENCY="2"), ready=False) as server:
            assert server.wait_exit(15) not in (0, None)

    # -- signals and faults ----------------------------------------------------------------

    def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(self, hello: Path) -> None:
        with self.serve(hello, WEB_CONCURRENCY="1", GRACEFUL_TIMEOUT="10") as server:
            result: dict[str, Any] = {}

            def slow() -> None:
                try:
                    result["response"] = request(server.port, "/slow?seconds=2", timeout=15)
                except OSError as exc:
                    result["response"] = exc

            thread = threading.Thread(target=slow)
            thread.start()
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGTERM)
            assert server.wait_exit(12) == 0
            thread.join(15)
        assert result["response"] == (200, b"slow done")

    def test_a_killed_worker_is_replaced(self, hello: Path) -> None:
        if not self.supports_worker_replacement:
            pytest.skip(f"{self.backend} does not replace killed workers")
        with self.serve(hello, WEB_CONCURRENCY="2") as server:
            server.wait_until(lambda: len(server.workers()) == 2, 20, "2 workers")
            victim = server.workers()[0]
            os.kill(victim, signal.SIGKILL)
            server.wait_until(
                lambda: len(server.workers()) == 2 and victim not in server.workers() and server.ok("/"),
                10,
                "a replacement worker",
            )
            assert server.proc.poll() is None

    def test_port_in_use_is_non_zero_naming_the_address(self, hello: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            started = time.monotonic()
            result = run_launcher(self.env(hello, BIND=f"127.0.0.1:{port}"), ("run",), timeout=15)
        assert result.returncode != 0
        assert time.monotonic() - started < 10
        assert f"127.0.0.1:{port}" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["BackendConformance", "Server"]
