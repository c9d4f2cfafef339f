"""HYPERCORN_CONF and the env mapped onto Hypercorn: resolved for real, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypercorn_helpers import DEMO

from asgi_launcher_hypercorn import HypercornBackend, fastest_worker_class
from asgi_launcher_hypercorn.settings import SETTINGS, build
from launcher import Config, ConfigError
from launcher.launch.prepare import prepare


def resolved(tmp_path: Path, conf: str | None = None, name: str = "hypercorn.toml", **env: str) -> Config:
    base = {"SERVER_BACKEND": "hypercorn", "APP_DIR": str(DEMO), "WEB_CONCURRENCY": "2"}
    if conf is not None:
        path = tmp_path / name
        path.write_text(conf)
        base["HYPERCORN_CONF"] = str(path)
    base.update(env)
    return prepare(base).config


def test_env_maps_onto_hypercorn_config(tmp_path: Path) -> None:
    config = resolved(
        tmp_path,
        BIND="127.0.0.1:8001,[::1]:8002,unix:/tmp/x.sock",
        LOG_LEVEL="WARNING",
        KEEP_ALIVE="7",
        GRACEFUL_TIMEOUT="9",
        ACCESS_LOG="",
        ERROR_LOG="-",
        MAX_REQUESTS="100",
        MAX_REQUESTS_JITTER="10",
    )
    hc = build(config)
    assert hc.bind == ["127.0.0.1:8001", "[::1]:8002", "unix:/tmp/x.sock"]
    assert (hc.workers, hc.loglevel, hc.keep_alive_timeout, hc.graceful_timeout) == (2, "WARNING", 7, 9)
    assert (hc.accesslog, hc.errorlog) == (None, "-")
    # The worker pipeline counts requests under every backend; Hypercorn's own count stays off.
    assert (config.max_requests, config.max_requests_jitter) == (100, 10)
    assert (hc.max_requests, hc.max_requests_jitter, hc.root_path) == (None, 0, "")
    assert config.unsupported == ()


def test_file_wins_over_env_and_reports_contract_names(tmp_path: Path) -> None:
    config = resolved(
        tmp_path,
        'workers = 3\nbind = ["127.0.0.1:9001"]\nloglevel = "DEBUG"\nkeep_alive_timeout = 2.5\n'
        "backlog = 2048\nmax_requests = 50\n",
        KEEP_ALIVE="30",
    )
    source = f"file:{tmp_path / 'hypercorn.toml'}"
    assert (config.workers, config.bind, config.log_level, config.keep_alive) == (
        3,
        ("127.0.0.1:9001",),
        "debug",
        2.5,
    )
    assert config.sources["workers"] == config.sources["keep_alive"] == source
    assert config.server_settings == {"backlog": 2048}
    assert build(config).backlog == 2048


def test_default_lookup_in_app_dir(tmp_path: Path) -> None:
    app = tmp_path / "site"
    (app / "app").mkdir(parents=True)
    (app / "app" / "main.py").write_text((DEMO / "main.py").read_text())
    (app / "app" / "hypercorn.toml").write_text("workers = 5\n")
    config = prepare({"SERVER_BACKEND": "hypercorn", "APP_DIR": str(app)}).config
    assert config.workers == 5
    assert config.config_file == str(app / "app" / "hypercorn.toml")


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("keep_alive = 10\n", "unknown Hypercorn setting 'keep_alive'"),
        ("workers = 0\n", "workers=0 is invalid"),
        ('bind = "localhost"\n', "bind='localhost' is invalid"),
        ('loglevel = "verbose"\n', "loglevel='verbose' is invalid"),
        ('backlog = "100"\n', "backlog='100' is invalid: expected a int"),
        ("use_reloader = true\n", "use_reloader is not supported"),
        ('worker_class = "gevent"\n', "worker_class='gevent' is invalid"),
        ("workers = [1\n", "not valid TOML"),
    ],
)
def test_bad_file_is_one_line_naming_key_and_file(tmp_path: Path, conf: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolved(tmp_path, conf)
    text = str(caught.value)
    assert message in text
    assert str(tmp_path / "hypercorn.toml") in text
    assert "\n" not in text


def test_python_file_and_module_forms(tmp_path: Path) -> None:
    (tmp_path / "hc_settings.py").write_text("import os\n_base = 2\nworkers = _base * 2\nbacklog = 64\n")
    config = prepare(
        {
            "SERVER_BACKEND": "hypercorn",
            "APP_DIR": str(DEMO),
            "HYPERCORN_CONF": f"file:{tmp_path / 'hc_settings.py'}",
        }
    ).config
    assert (config.workers, config.server_settings) == (4, {"backlog": 64})
    sys.path.insert(0, str(tmp_path))
    try:
        config = prepare(
            {"SERVER_BACKEND": "hypercorn", "APP_DIR": str(DEMO), "HYPERCORN_CONF": "python:hc_settings"}
        ).config
    finally:
        sys.path.remove(str(tmp_path))
    assert config.workers == 4
    assert config.sources["workers"] == "file:python:hc_settings"


def test_python_file_typo_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown Hypercorn setting 'worker'.*prefix helper names with _"):
        resolved(tmp_path, "worker = 4\n", name="conf.py", HYPERCORN_CONF=f"file:{tmp_path / 'conf.py'}")


def test_worker_class(tmp_path: Path) -> None:
    assert resolved(tmp_path).worker_class == fastest_worker_class() == "uvloop"  # uvloop is installed here
    assert resolved(tmp_path, WORKER_CLASS="asyncio").worker_class == "asyncio"
    with pytest.raises(
        ConfigError, match=r"^WORKER_CLASS='gevent' is invalid: expected a Hypercorn worker class"
    ):
        resolved(tmp_path, WORKER_CLASS="gevent")


def test_uninstalled_worker_class_is_refused(tmp_path: Path) -> None:
    try:
        import trio  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"^WORKER_CLASS='trio' is invalid: .*trio is not installed"):
            resolved(tmp_path, WORKER_CLASS="trio")
    else:  # pragma: no cover - only where trio is installed
        assert resolved(tmp_path, WORKER_CLASS="trio").worker_class == "trio"


def test_known_settings_follow_the_installed_hypercorn() -> None:
    assert {"bind", "workers", "keep_alive_timeout", "max_requests", "logger_class", "root_path"} <= SETTINGS
    assert not {"log", "ssl_enabled", "create_sockets", "from_toml"} & SETTINGS
    assert HypercornBackend.unsupported == frozenset()


def test_cli_config_and_unknown_key(tmp_path: Path) -> None:
    conf = tmp_path / "hypercorn.toml"
    conf.write_text("workers = 3\n")
    env = {
        "SERVER_BACKEND": "hypercorn",
        "APP_DIR": str(DEMO),
        "HYPERCORN_CONF": str(conf),
        "PATH": "/usr/bin:/bin",
    }
    shown = subprocess.run(
        [sys.executable, "-m", "launcher", "config"], env=env, capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0, shown.stderr
    assert f"(file:{conf})" in next(line for line in shown.stdout.splitlines() if line.startswith("workers "))
    assert "[not used by hypercorn]" not in shown.stdout
    conf.write_text("wokers = 3\n")
    bad = subprocess.run(
        [sys.executable, "-m", "launcher", "run"], env=env, capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "'wokers'" in bad.stderr and str(conf) in bad.stderr
    assert bad.stdout == ""
