"""The default backend end to end, beyond the conformance kit: what issue 4 names for Gunicorn.

The reference image's behaviours (a user's ``gunicorn_conf.py`` wins, ``GUNICORN_CMD_ARGS``
wins over it, prestart) and what this launcher adds (no wrapper process, heartbeats on
``/dev/shm``, no control socket), each checked on a really served app.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.process import Launcher, free_port, launcher, run_launcher

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parents[3] / "demo" / "main.py"


def app_dir(tmp_path: Path) -> Path:
    """An APP_DIR with the kit's hello app as ``main.py``."""
    d = tmp_path / "app"
    apps.install("hello", d)
    return d


def demo_dir(tmp_path: Path) -> Path:
    """An APP_DIR with the demo app, whose ``/info`` echoes the ``DEMO_*`` variables it sees."""
    d = tmp_path / "demo"
    d.mkdir()
    shutil.copy(DEMO, d / "main.py")
    return d


def served_env(server: Launcher) -> dict[str, str]:
    status, _, body = server.get("/info")
    assert status == 200, body
    env: dict[str, str] = json.loads(body)["env"]
    return env


def test_a_user_gunicorn_conf_wins_over_the_env(tmp_path: Path) -> None:
    d = app_dir(tmp_path)
    conf = d / "gunicorn_conf.py"
    conf.write_text("workers = 3\ntimeout = 33\n")
    env = {"APP_DIR": str(d), "WEB_CONCURRENCY": "2", "TIMEOUT": "10"}
    result = run_launcher(env, ("config", "--json"))
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["config_file"] == str(conf)
    assert (shown["workers"], shown["sources"]["workers"]) == (3, f"file:{conf}")
    assert (shown["timeout"], shown["sources"]["timeout"]) == (33, f"file:{conf}")
    with launcher(env) as server:
        server.wait_until(lambda: len(server.serving()) == 3, 20, "3 workers from the conf file")
        assert len(server.children()) == 3


def test_gunicorn_cmd_args_win_over_the_conf_file(tmp_path: Path) -> None:
    d = app_dir(tmp_path)
    (d / "gunicorn_conf.py").write_text("workers = 3\nbacklog = 32\n")
    env = {"APP_DIR": str(d), "GUNICORN_CMD_ARGS": "--workers 1 --backlog 64"}
    shown = json.loads(run_launcher(env, ("config", "--json")).stdout)
    assert (shown["workers"], shown["sources"]["workers"]) == (1, "cmdline")
    assert shown["server_settings"]["backlog"] == 64
    with launcher(env) as server:
        server.wait_until(lambda: len(server.serving()) == 1, 20, "1 worker from GUNICORN_CMD_ARGS")
        assert len(server.children()) == 1


def test_gunicorn_reload_in_the_conf_file_is_the_launchers_reload(tmp_path: Path) -> None:
    """``reload = True`` turns on RELOAD (the launcher's reloader, one worker); Gunicorn's own
    reloader stays off, so an edit never restarts the server twice."""
    d = app_dir(tmp_path)
    conf = d / "gunicorn_conf.py"
    conf.write_text("reload = True\n")
    shown = json.loads(run_launcher({"APP_DIR": str(d)}, ("config", "--json")).stdout)
    assert (shown["reload"], shown["sources"]["reload"]) == (True, f"file:{conf}")
    assert "reload" not in shown["server_settings"]
    from asgi_launcher_gunicorn import gunicorn_settings
    from launcher.launch.prepare import prepare

    prepared = prepare({"APP_DIR": str(d), "SERVER_BACKEND": "gunicorn"})
    assert prepared.config.reload and "reload" not in gunicorn_settings(prepared.config)


def test_conf_file_hooks_run(tmp_path: Path) -> None:
    d = app_dir(tmp_path)
    marker = tmp_path / "hook-ran"
    (d / "gunicorn_conf.py").write_text(
        f"def on_starting(server):\n    open({str(marker)!r}, 'w').write('yes')\n"
    )
    with launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1"}):
        assert marker.read_text() == "yes"


def test_the_launcher_is_the_master_of_its_workers_with_no_wrapper(tmp_path: Path) -> None:
    # Gunicorn's control socket would go to $XDG_RUNTIME_DIR, else $HOME/.gunicorn/. Caches
    # (stevedore's entry-point cache) belong in $XDG_CACHE_HOME, which is elsewhere.
    home, runtime, cache = (tmp_path / name for name in ("home", "runtime", "cache"))
    for directory in (home, runtime, cache):
        directory.mkdir()
    env = {
        "APP_DIR": str(app_dir(tmp_path)),
        "WEB_CONCURRENCY": "2",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CACHE_HOME": str(cache),
    }
    with launcher(env) as server:
        server.wait_until(lambda: len(server.serving()) == 2, 20, "2 workers")
        # Process count = workers + 1: the launcher process and its two workers, nothing else.
        assert len(server.tree()) == 3, server.tree()
        # The process we started holds the listening socket and is the one gunicorn names as
        # its master: signals from a container runtime reach the server directly.
        assert server.proc.pid in server.listener_pids()
        assert f"({server.proc.pid})" in server.output().split("Listening at:")[1].splitlines()[0]
        for worker in server.serving():
            assert Path(f"/proc/{worker}/stat").read_text().split()[3] == str(server.proc.pid)  # ppid
            fds = []
            for fd in os.listdir(f"/proc/{worker}/fd"):
                with contextlib.suppress(FileNotFoundError):  # closed since the listing
                    fds.append(os.readlink(f"/proc/{worker}/fd/{fd}"))
            assert any(target.startswith("/dev/shm/") for target in fds), fds  # heartbeat on tmpfs
        # No control socket, nor anything else written to HOME or the runtime directory.
        assert list(home.rglob("*")) == []
        assert list(runtime.rglob("*")) == []


def test_prestart_exports_reach_the_app(tmp_path: Path) -> None:
    d = demo_dir(tmp_path)
    (d / "prestart.sh").write_text("echo prestart says hello\nexport DEMO_GREETING=from-prestart\n")
    with launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1"}) as server:
        assert served_env(server) == {"DEMO_GREETING": "from-prestart"}
        assert "prestart says hello" in server.output()


def test_prestart_with_crlf_line_endings_works(tmp_path: Path) -> None:
    d = demo_dir(tmp_path)
    (d / "prestart.sh").write_bytes(b"#!/bin/bash\r\nexport DEMO_CRLF=yes\r\nexport DEMO_TWO=2\r\n")
    with launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1"}) as server:
        assert served_env(server) == {"DEMO_CRLF": "yes", "DEMO_TWO": "2"}  # no stray "\r"


def test_a_failing_prestart_exits_with_its_status_and_never_serves(tmp_path: Path) -> None:
    d = tmp_path / "app"
    imported = tmp_path / "app-was-imported"
    apps.write(d, "main.py", f"open({str(imported)!r}, 'w').close()\n" + apps.source("hello"))
    (d / "prestart.sh").write_text("echo about to fail\nfalse\necho never printed\n")
    port = free_port()
    result = run_launcher({"APP_DIR": str(d), "BIND": f"127.0.0.1:{port}"}, ("run",))
    assert result.returncode == 1, result.stderr  # `false` under set -e
    assert "about to fail" in result.stdout and "never printed" not in result.stdout
    assert "Listening" not in result.stderr
    assert not imported.exists(), "the app was imported although prestart failed"
    (d / "prestart.sh").write_text("exit 4\n")
    assert run_launcher({"APP_DIR": str(d), "BIND": f"127.0.0.1:{port}"}, ("run",)).returncode == 4
    assert not imported.exists()


@pytest.mark.parametrize(
    ("worker_class", "fragment"),
    [
        ("uvicorn_worker.UvicornWorkr", "has no attribute 'UvicornWorkr'"),
        ("no_such_module.Worker", "No module named 'no_such_module'"),
        ("sync", "ASGI worker class"),
        ("gunicorn.workers.gthread.ThreadWorker", "ASGI worker class"),
    ],
)
def test_a_worker_class_that_cannot_serve_asgi_is_exit_2_before_binding(
    tmp_path: Path, worker_class: str, fragment: str
) -> None:
    port = free_port()
    result = run_launcher(
        {"APP_DIR": str(app_dir(tmp_path)), "BIND": f"127.0.0.1:{port}", "WORKER_CLASS": worker_class},
        ("run",),
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("asgi-launcher: error: WORKER_CLASS="), lines
    assert fragment in lines[0] and "Traceback" not in result.stderr
    with socket.socket() as probe:  # nothing was bound
        probe.bind(("127.0.0.1", port))


def test_a_worker_class_in_app_dir_is_found_and_serves(tmp_path: Path) -> None:
    directory = app_dir(tmp_path)
    (directory / "myworkers.py").write_text(
        "from uvicorn_worker import UvicornWorker\n\n"
        "class Custom(UvicornWorker):\n"
        "    CONFIG_KWARGS = {'loop': 'asyncio', 'http': 'h11'}\n"
    )
    env = {"APP_DIR": str(directory), "WORKER_CLASS": "myworkers.Custom", "WEB_CONCURRENCY": "1"}
    shown = run_launcher(env, ("config", "--json"))
    assert shown.returncode == 0, shown.stderr
    with launcher(env) as server:
        assert server.get("/")[0] == 200
        # The launcher's layers wrap the user's class (it is Uvicorn's, so it serves ASGI).
        assert server.get("/headers")[0] == 200


@pytest.mark.parametrize("conf", ["", "workers = 1\n"], ids=["no conf file", "a conf file"])
def test_forwarded_allow_ips_that_gunicorn_would_refuse(tmp_path: Path, conf: str) -> None:
    """Gunicorn also reads FORWARDED_ALLOW_IPS itself, by stricter rules (commas only, no host
    bits): a value the launcher takes must not stop Gunicorn, with or without a config file (the
    image always has one, /gunicorn_conf.py)."""
    d = app_dir(tmp_path)
    if conf:
        (d / "gunicorn_conf.py").write_text(conf)
    env = {"APP_DIR": str(d), "FORWARDED_ALLOW_IPS": "10.0.0.1/8 ::1"}
    result = run_launcher(env, ("config", "--json"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["forwarded_allow_ips"] == "10.0.0.0/8,::1"
    with launcher(env) as server:
        assert server.get("/")[0] == 200
