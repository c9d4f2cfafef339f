"""LOG_FORMAT=json and LOG_CONFIG as the user meets them on the command line: the launcher's own
lines, its errors, the app import check and prestart's output are JSON; a bad LOG_CONFIG is one
line and exit 2 before anything starts; ``config`` shows the logging settings and their sources."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from launcher.testing import BACKENDS
from launcher.testing.process import base_env, free_port, run_launcher

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    shutil.copytree(DEMO, d, ignore=shutil.ignore_patterns("__pycache__"))
    return d


def objects(text: str) -> list[dict[str, Any]]:
    """Every non-blank line as a JSON object (fails on the first that is not one)."""
    found = []
    for line in text.splitlines():
        if line.strip():
            try:
                found.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not JSON: {line!r}\n{text}") from None
    return found


def test_config_shows_the_logging_settings_and_their_sources(app_dir: Path, tmp_path: Path) -> None:
    log_config = tmp_path / "logging.toml"
    log_config.write_text("version = 1\n")
    env = {"APP_DIR": str(app_dir), "LOG_FORMAT": "json", "LOG_CONFIG": str(log_config)}
    shown = run_launcher(env, ("config", "--json"))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["log_format"], data["log_config"]) == ("json", str(log_config))
    assert (data["sources"]["log_format"], data["sources"]["log_config"]) == (
        "env:LOG_FORMAT",
        "env:LOG_CONFIG",
    )
    text = run_launcher(env, ("config",)).stdout
    assert any(
        line.startswith("log_config") and f"{log_config}  (env:LOG_CONFIG)" in line
        for line in text.splitlines()
    )
    default = json.loads(run_launcher({"APP_DIR": str(app_dir)}, ("config", "--json")).stdout)
    assert (default["log_format"], default["log_config"], default["sources"]["log_config"]) == (
        "text",
        None,
        "default",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bad_value_is_one_json_line_under_log_format_json(app_dir: Path, backend: str) -> None:
    env = {"APP_DIR": str(app_dir), "SERVER_BACKEND": backend, "LOG_FORMAT": "json", "LOG_LEVEL": "verbose"}
    result = run_launcher(env, ("run",))
    assert result.returncode == 2
    [line] = objects(result.stderr)
    assert (line["log.level"], line["log.logger"]) == ("error", "asgi_launcher")
    assert line["message"].startswith("LOG_LEVEL='verbose' is invalid"), line


def test_a_warning_is_one_json_line(app_dir: Path) -> None:
    env = {
        "APP_DIR": str(app_dir),
        "SERVER_BACKEND": "hypercorn",
        "LOG_FORMAT": "json",
        "GUNICORN_CMD_ARGS": "-w 3",
    }
    result = run_launcher(env, ("config",))
    assert result.returncode == 0, result.stderr
    [line] = objects(result.stderr)
    assert line["log.level"] == "warning" and "GUNICORN_CMD_ARGS" in line["message"], line


def test_the_app_raising_on_import_is_one_json_object(app_dir: Path) -> None:
    (app_dir / "main.py").write_text("raise RuntimeError('boom at import')\n")
    env = {"APP_DIR": str(app_dir), "PORT": str(free_port()), "LOG_FORMAT": "json"}
    result = run_launcher(env, ("run",), timeout=20)
    assert result.returncode == 1, result.stderr
    raised = [e for e in objects(result.stderr) if "error.stack_trace" in e]
    assert len(raised) == 1, result.stderr
    assert (raised[0]["error.type"], raised[0]["error.message"]) == ("RuntimeError", "boom at import")
    assert "the app's module 'main' failed to import" in raised[0]["message"]
    assert raised[0]["error.stack_trace"].count("RuntimeError: boom at import") == 1  # the traceback, once


@pytest.mark.parametrize("command", ["config", "check", "run"])
def test_a_log_config_that_is_not_a_dict_config_is_exit_2_in_one_line(
    app_dir: Path, tmp_path: Path, command: str
) -> None:
    bad = tmp_path / "logging.json"
    bad.write_text(
        '{"version": 1, "handlers": {"h": {"class": "logging.FileHandler"}}, "root": {"handlers": ["h"]}}'
    )
    # Well-formed (config reads it, finds nothing wrong): a FileHandler without a filename is
    # what only dictConfig, tried by check and run, refuses.
    port = free_port()
    marker = tmp_path / "prestart-ran"
    (app_dir / "prestart.sh").write_text(f"touch {marker}\n")
    result = run_launcher({"APP_DIR": str(app_dir), "LOG_CONFIG": str(bad), "PORT": str(port)}, (command,))
    if command == "config":
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Unable to configure handler 'h'" in lines[0], lines
    assert not marker.exists(), "prestart ran"


def test_log_config_that_does_not_parse_is_exit_2_for_config_too(app_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "logging.json"
    bad.write_text("{")
    result = run_launcher({"APP_DIR": str(app_dir), "LOG_CONFIG": str(bad)}, ("config",))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(bad) in result.stderr, result.stderr


def test_prestart_output_is_json_lines_streamed_as_they_come(app_dir: Path) -> None:
    (app_dir / "prestart.sh").write_text('echo "first line"\nsleep 1.5\necho "second line" >&2\nexit 4\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher", "run"],
        env={**base_env(), "APP_DIR": str(app_dir), "LOG_FORMAT": "json", "PORT": str(free_port())},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    arrived: dict[str, float] = {}
    lines = []
    for line in proc.stdout:
        lines.append(line)
        data = json.loads(line)
        if data["log.logger"] == "prestart":
            arrived[data["message"]] = time.monotonic()
    assert proc.wait(30) == 4
    assert set(arrived) == {"first line", "second line"}, lines
    assert arrived["second line"] - arrived["first line"] > 1.0, "the first line waited for the script's end"
    assert any("failed with exit status 4" in json.loads(line)["message"] for line in lines), lines
