"""Prestart through the real launcher, however the script ends and whatever happens meanwhile.

- The environment after prestart is the one before it plus what the script exported, also when
  it calls ``exit 0`` or ``exec``s another program (never "every variable unset").
- A stop signal during prestart goes to the script's process group; the launcher exits with the
  script's status and leaves nothing running.
- ``asgi-launcher probe`` (the health check, which does not get prestart's exports) finds the
  address prestart moved the server to, through the state file ``run`` writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import copy_demo, free_port, request, run_launcher

from launcher.testing.process import Launcher, live_group_members, start_launcher

pytestmark = pytest.mark.slow


def demo(tmp_path: Path, prestart: str) -> Path:
    """The demo app (``/info`` echoes ``DEMO_*``) with ``prestart`` as its prestart.sh."""
    d = copy_demo(tmp_path / "app")
    (d / "prestart.sh").write_text(prestart)
    return d


def served_env(server: Launcher) -> dict[str, str]:
    status, _, body = server.get("/info")
    assert status == 200, body
    env: dict[str, str] = json.loads(body)["env"]
    return env


def wait_for(path: Path, timeout: float = 10) -> str:
    """The content of ``path`` once a line has been written to it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} not written within {timeout}s")


def wait_gone(pgid: int, timeout: float = 5) -> list[int]:
    """Wait until no process of group ``pgid`` runs; return those still running at the deadline."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and live_group_members(pgid):
        time.sleep(0.05)
    return live_group_members(pgid)


# -- exit and exec -----------------------------------------------------------------------------


def test_exit_0_keeps_the_exports_and_the_users_own_variables(tmp_path: Path) -> None:
    d = demo(tmp_path, "export DEMO_FOO=bar\nexit 0\nexport DEMO_NEVER=1\n")
    env = {"APP_DIR": str(d), "WEB_CONCURRENCY": "1", "DEMO_MINE": "mine"}
    with start_launcher(env) as server:  # BIND=127.0.0.1:<free port>: the user's own
        server.wait_ready()
        assert served_env(server) == {"DEMO_FOO": "bar", "DEMO_MINE": "mine"}
        assert len(server.serving()) == 1  # WEB_CONCURRENCY=1 survived too
        status, headers, _ = server.get("/")
        assert status == 200 and headers.get("server") == "uvicorn"  # Gunicorn + Uvicorn workers
        assert "with gunicorn on 127.0.0.1:" in server.output()


def test_exit_0_keeps_the_selected_backend(tmp_path: Path, backend: str) -> None:
    d = demo(tmp_path, "export DEMO_FOO=bar\nexit 0\n")
    env = {"APP_DIR": str(d), "WEB_CONCURRENCY": "1", "SERVER_BACKEND": backend, "DEMO_MINE": "mine"}
    with start_launcher(env) as server:
        server.wait_ready()
        assert served_env(server) == {"DEMO_FOO": "bar", "DEMO_MINE": "mine"}
        assert f"with {backend} on 127.0.0.1:{server.port}" in server.output()


def test_exec_changes_nothing_rather_than_unsetting_everything(tmp_path: Path) -> None:
    d = demo(tmp_path, "export DEMO_LOST=1\nexec true\n")
    with start_launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1", "DEMO_MINE": "mine"}) as server:
        server.wait_ready()
        assert served_env(server) == {"DEMO_MINE": "mine"}
        assert "replaced its shell (exec?)" in server.output()


def test_a_failing_exec_or_exit_still_stops_the_launcher(tmp_path: Path) -> None:
    d = demo(tmp_path, "exec false\n")
    port = free_port()
    assert run_launcher({"APP_DIR": str(d), "BIND": f"127.0.0.1:{port}"}, ("run",)).returncode == 1
    (d / "prestart.sh").write_text("export DEMO_A=1\nexit 7\n")
    result = run_launcher({"APP_DIR": str(d), "BIND": f"127.0.0.1:{port}"}, ("run",))
    assert result.returncode == 7 and "failed with exit status 7" in result.stderr


# -- signals during prestart -------------------------------------------------------------------

SLEEPER = "echo $$ > {pid}\nsleep 30 &\necho $! > {child}\nwait\nexport DEMO_NEVER=1\n"


@pytest.mark.parametrize(
    ("sig", "status"),
    # bash ignores SIGQUIT ("stop at once"): the launcher then kills the group (137).
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGQUIT, 137), (signal.SIGHUP, 129)],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else str(v),
)
def test_a_stop_signal_during_prestart_stops_the_script_and_all_it_started(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    pid_file, child_file = tmp_path / "pid", tmp_path / "child"
    d = demo(tmp_path, SLEEPER.format(pid=pid_file, child=child_file))
    with start_launcher({"APP_DIR": str(d)}) as server:
        pgid, child = int(wait_for(pid_file)), int(wait_for(child_file))
        assert os.getpgid(child) == pgid != os.getpgid(server.proc.pid)  # its own process group
        server.signal(sig)
        assert server.wait(30) == status, server.output()
        assert wait_gone(pgid) == [], f"left running after {sig.name}"
        assert f"{sig.name} during prestart" in server.output()
        assert not server.answers("/")


def test_a_script_that_handles_the_signal_and_exits_0_still_does_not_serve(tmp_path: Path) -> None:
    pid_file, child_file = tmp_path / "pid", tmp_path / "child"
    d = demo(
        tmp_path, "trap 'echo cleaning up; exit 0' TERM\n" + SLEEPER.format(pid=pid_file, child=child_file)
    )
    with start_launcher({"APP_DIR": str(d)}) as server:
        pgid = int(wait_for(pid_file))
        wait_for(child_file)
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()
        assert wait_gone(pgid) == []
        assert "cleaning up" in server.output() and "serving" not in server.output()


def test_after_prestart_the_signals_are_the_servers_again(tmp_path: Path) -> None:
    d = demo(tmp_path, "export DEMO_FOO=bar\n")
    with start_launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1"}) as server:
        server.wait_ready()
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()  # a graceful stop, as docs/signals.md says


# -- the probe finds where prestart moved the server -------------------------------------------


def state_file(tmpdir: Path) -> Path:
    return tmpdir / f"asgi-launcher-{os.getuid()}" / "serving.json"


def probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_launcher(env, ("probe", "--timeout", "2"))


def test_probe_uses_the_port_prestart_exported(tmp_path: Path) -> None:
    port = free_port()
    d = demo(tmp_path, f"export PORT={port}\n")
    tmpdir = tmp_path / "tmp"  # a private TMPDIR: other tests' launchers write their own state
    tmpdir.mkdir()
    # No PORT and no BIND (an empty one is unset): without prestart this would be port 80.
    env = {"APP_DIR": str(d), "HOST": "127.0.0.1", "BIND": "", "WEB_CONCURRENCY": "1", "TMPDIR": str(tmpdir)}
    with start_launcher(env) as server:
        server.wait_until(lambda: _answers(port), 30, f"an HTTP answer on port {port}")
        result = probe(env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"127.0.0.1:{port}: HTTP 200"), result.stdout

        path = state_file(tmpdir)
        state = json.loads(path.read_text())
        assert state["pid"] == server.proc.pid
        assert (state["bind"], state["bind_before_prestart"]) == ([f"127.0.0.1:{port}"], ["127.0.0.1:80"])
        assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)

        # A different environment is not what that launcher was started from: its own bind.
        other = probe({**env, "PORT": "1"})
        assert other.returncode == 1 and "127.0.0.1:1:" in other.stderr, other.stderr

        # A state file whose launcher is gone, or whose pid now is another process, is stale.
        dead = subprocess.Popen(["true"])
        dead.wait()
        for stale in ({**state, "pid": dead.pid}, {**state, "started": "1"}):
            path.write_text(json.dumps(stale))
            result = probe(env)
            assert result.returncode == 1 and "127.0.0.1:80:" in result.stderr, result.stderr
        path.write_text(json.dumps(state))
        assert probe(env).returncode == 0

        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()
    assert not path.exists(), "the launcher left its state file behind"


def test_a_state_file_that_cannot_be_written_is_one_warning(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    state_file(tmpdir).parent.mkdir(mode=0o755)  # not private: refused, for writing and reading
    state_file(tmpdir).write_text("{}")
    d = demo(tmp_path, "export DEMO_FOO=bar\n")
    with start_launcher({"APP_DIR": str(d), "WEB_CONCURRENCY": "1", "TMPDIR": str(tmpdir)}) as server:
        server.wait_ready()
        warnings = [line for line in server.output().splitlines() if "cannot record where" in line]
        assert len(warnings) == 1 and warnings[0].startswith("asgi-launcher: warning: "), warnings
        assert served_env(server) == {"DEMO_FOO": "bar"}
        result = probe({"APP_DIR": str(d), "BIND": f"127.0.0.1:{server.port}", "TMPDIR": str(tmpdir)})
        assert result.returncode == 0, result.stderr


def _answers(port: int) -> bool:
    try:
        request(port, "/", timeout=2)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH], ids=lambda s: s.name)
def test_the_masters_other_signals_during_prestart_change_nothing(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """logrotate's SIGUSR1 (or SIGUSR2) while the script runs: one line, the script finishes, the
    launcher serves (by the default action both used to kill the launcher and leave the script)."""
    pid_file, done = tmp_path / "pid", tmp_path / "done"
    d = demo(tmp_path, f"echo $$ > {pid_file}\nsleep 1\ntouch {done}\nexport DEMO_SEEN=1\n")
    with start_launcher({"APP_DIR": str(d)}) as server:
        wait_for(pid_file)
        server.signal(sig)
        server.wait_ready("/", 60)
        assert done.exists() and server.proc.poll() is None
        assert f"got {sig.name} before serving: nothing to do yet" in server.output()
