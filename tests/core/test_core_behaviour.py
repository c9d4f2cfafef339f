"""What the core does before any backend runs, checked once, under the default backend.

These checks were in the conformance kit, where they ran under every backend (five times). Their
outcome cannot depend on the server: the core resolves ``config --json`` and the address
(``HOST``/``PORT`` become ``BIND``, the only address a backend is given), applies ``LOG_CONFIG``
in advance, imports the app in a throwaway child (missing module or attribute, an app raising on
import) and checks the address can be bound, all before ``Backend.run``; and every backend's
workers import the app through the core's pipeline (``launcher.importer.import_app``), so the
app's location is the core's too. What a backend does with an app it serves stays in
``launcher.testing.conformance.BackendConformance``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import ClassVar

import pytest

from launcher.testing import DEFAULT_BACKEND, apps
from launcher.testing.conformance import CONFIG_KEYS, Launches
from launcher.testing.process import free_port, run_launcher

#: Seconds a launch that must fail at once may take: a deadline for a loaded machine, not a figure.
EXIT_DEADLINE = 60


class TestCoreBehaviour(Launches):
    backend: ClassVar[str] = DEFAULT_BACKEND

    def test_serves_the_app_on_host_and_port(self, hello: Path) -> None:
        port = free_port()
        with self.serve(hello, HOST="127.0.0.1", PORT=str(port)) as server:
            assert server.port == port
            assert server.get("/")[0] == 200

    @pytest.mark.parametrize(
        ("name", "text"),
        [
            ("syntax.json", '{"version": 1,'),
            ("schema.json", '{"version": 1, "handler": {}}'),
            (
                "class.toml",
                'version = 1\n[handlers.h]\nclass = "nowhere.NoHandler"\n[root]\nhandlers = ["h"]\n',
            ),
        ],
        ids=["syntax", "unknown-key", "missing-class"],
    )
    def test_invalid_log_config_is_exit_2_in_one_line_before_serving(
        self, hello: Path, tmp_path: Path, name: str, text: str
    ) -> None:
        bad = tmp_path / name
        bad.write_text(text)
        with self.start(hello, LOG_CONFIG=str(bad)) as server:
            assert server.wait(EXIT_DEADLINE) == 2, server.output()
            lines = server.output().strip().splitlines()
            assert not server.answers(), "something serves"
        assert len(lines) == 1 and str(bad) in lines[0] and "LOG_CONFIG" in lines[0], lines

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
            assert server.wait(EXIT_DEADLINE) == 2
            lines = server.output().strip().splitlines()
        assert len(lines) == 1 and missing in lines[0], lines
        assert "Traceback" not in lines[0]

    def test_app_raising_on_import_is_non_zero_with_one_traceback(self, tmp_path: Path) -> None:
        apps.install("raises_on_import", tmp_path)
        with self.start(tmp_path, WEB_CONCURRENCY="2") as server:
            code = server.wait(EXIT_DEADLINE)
            output = server.output()
        assert code != 0, output
        assert output.count("RuntimeError: the app failed while being imported") == 1, output

    def test_port_in_use_is_non_zero_naming_the_address(self, hello: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            # A launcher that hangs instead of failing fails the deadline (TimeoutExpired).
            result = run_launcher(self.env(hello, BIND=f"127.0.0.1:{port}"), ("run",), timeout=EXIT_DEADLINE)
        assert result.returncode != 0
        assert f"127.0.0.1:{port}" in result.stdout + result.stderr


def test_the_default_backend_is_the_one_these_checks_run_under(tmp_path: Path) -> None:
    apps.install("hello", tmp_path)
    result = run_launcher({"APP_DIR": str(tmp_path)}, ("config", "--json"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == DEFAULT_BACKEND
