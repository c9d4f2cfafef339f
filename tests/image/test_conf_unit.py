"""The image's default gunicorn_conf.py applies the env contract: with it, nothing changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.launch import discovery
from launcher.launch.prepare import prepare

CONF = Path(__file__).resolve().parents[2] / "conf" / "gunicorn_conf.py"
DEMO = Path(__file__).resolve().parents[2] / "demo"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WEB_CONCURRENCY": "5", "PORT": "8080", "LOG_LEVEL": "WARNING", "ACCESS_LOG": ""},
        {
            "WORKERS_PER_CORE": "3",
            "BIND": "[::]:80,unix:/tmp/x.sock",
            "TIMEOUT": "30",
            "GRACEFUL_TIMEOUT": "7",
        },
        {"FORWARDED_ALLOW_IPS": "*", "MAX_REQUESTS": "100", "MAX_REQUESTS_JITTER": "10", "KEEP_ALIVE": "2"},
    ],
)
def test_default_conf_changes_no_value(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # A Gunicorn config file reads the process environment, as it does in the container.
    for key, value in {"APP_DIR": str(DEMO), **env}.items():
        monkeypatch.setenv(key, value)
    without = prepare(os.environ).config
    monkeypatch.setenv("GUNICORN_CONF", str(CONF))
    with_conf = prepare(os.environ).config
    a, b = without.to_dict(), with_conf.to_dict()
    for key in ("sources", "config_file", "server_settings"):
        a.pop(key)
        b.pop(key)
    assert a == b
    # It was read (it sets the workers), and it changed nothing, so it is the source of nothing.
    _, backend = discovery.select("gunicorn")
    read = backend.load_config_file(with_conf, dict(os.environ))
    assert read["workers"] == (without.workers, f"file:{CONF}")
    assert with_conf.config_file == str(CONF)
    assert with_conf.sources == {**without.sources, "config_file": "env:GUNICORN_CONF"}
