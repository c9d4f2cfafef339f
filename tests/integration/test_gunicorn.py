"""The default backend end to end: the reference image's behaviours, really served."""

from __future__ import annotations

import json
import os
from pathlib import Path

from launcher.testing import apps
from launcher.testing.process import launcher, request, run_launcher


def app_dir(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    apps.write(d, "main.py", apps.HELLO)
    return d


def test_a_user_gunicorn_conf_wins_over_the_env(tmp_path: Path) -> None:
    d = app_dir(tmp_path)
    (d / "gunicorn_conf.py").write_text("workers = 3\ntimeout = 33\n")
    env = {"APP_DIR": str(d), "WEB_CONCURRENCY": "2", "TIMEOUT": "10"}
    shown = json.loads(run_launcher(env, ("config", "--json")).stdout)
    conf = str(d / "gunicorn_conf.py")
    assert (shown["workers"], shown["sources"]["workers"]) == (3, f"file:{conf}")
    assert (shown["timeout"], shown["sources"]["timeout"]) == (33, f"file:{conf}")
    assert shown["config_file"] == conf
    with launcher(env) as server:
        server.wait_until(lambda: len(server.workers()) == 3, 20, "3 workers from the conf file")


def test_gunicorn_cmd_args_win_over_the_conf_file(tmp_path: Path) -> None:
    d = app_dir(tmp_path)
    (d / "gunicorn_conf.py").write_text("workers = 3\n")
    env = {"APP_DIR": str(d), "GUNICORN_CMD_ARGS": "--workers 1 --backlog 64"}
    shown = json.loads(run_launcher(env, ("config", "--json")).stdout)
    assert (shown["workers"], shown["sources"]["workers"]) == (1, "cmdline")
    assert shown["server_settings"]["backlog"] == 64
    with launcher(env) as server:
        server.wait_until(lambda: len(server.workers()) == 1, 20, "1 worker from GUNICORN_CMD_ARGS")


def test_conf_file_hooks_run(tmp_path: Path) -> None:
    d = app_dir(tmp_path)
    marker = tmp_path / "hook-ran"
    (d / "gunicorn_conf.py").write_text(
        f"def on_starting(server):\n    open({str(marker)!r}, 'w').write('yes')\n"
    )
    with launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1"}):
        assert marker.read_text() == "yes"


def test_process_tree_is_the_master_plus_workers_with_no_wrapper(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"APP_DIR": str(app_dir(tmp_path)), "WEB_CONCURRENCY": "2", "HOME": str(home)}
    with launcher(env) as server:
        server.wait_until(lambda: len(server.workers()) == 2, 20, "2 workers")
        tree = server.tree()
        assert len(tree) == 3  # workers + 1: the launcher process is the gunicorn master
        # The process we started is the one listening: no wrapper between signals and server.
        assert f"({server.proc.pid})" in server.output().split("Listening at:")[1].splitlines()[0]
        for worker in server.workers():
            fds = [os.readlink(f"/proc/{worker}/fd/{fd}") for fd in os.listdir(f"/proc/{worker}/fd")]
            assert any(target.startswith("/dev/shm/") for target in fds), fds  # heartbeat on tmpfs
        # No control socket: gunicorn 25+ would create $HOME/.gunicorn/gunicorn.ctl.
        assert not (home / ".gunicorn").exists()
        assert not [p for p in home.rglob("*") if p.is_socket()]


def test_a_failing_prestart_never_binds(tmp_path: Path) -> None:
    d = app_dir(tmp_path)
    (d / "prestart.sh").write_text("echo about to fail\nexit 4\n")
    result = run_launcher({"APP_DIR": str(d), "BIND": "127.0.0.1:1"}, ("run",))
    assert result.returncode == 4
    assert "about to fail" in result.stdout
    assert "Listening" not in result.stderr


def test_prestart_exports_reach_the_app(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    d.mkdir()
    (d / "main.py").write_text((Path(__file__).resolve().parents[2] / "demo" / "main.py").read_text())
    (d / "prestart.sh").write_text("export DEMO_GREETING=from-prestart\n")
    with launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1"}) as server:
        status, body = request(server.port, "/info")
        assert status == 200 and json.loads(body)["env"] == {"DEMO_GREETING": "from-prestart"}
