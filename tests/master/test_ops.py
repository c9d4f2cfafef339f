"""The operations points (issue 16): readiness, SHUTDOWN_DELAY, the ops listener, metrics setup.

The conformance kit checks them against every real backend; these pin the core's own rules:
``Master``'s readiness / draining / gave-up logic, the SIGTERM wrapper (in a subprocess,
with real signals, so the pytest process never gets one), ``metrics.prepare_directory``, the
listener on a real socket, and the CLI's checks of ``OPS_PORT``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher import Backend, statedir
from launcher.config.resolve import resolve
from launcher.master import Master, ops
from launcher.observability import metrics
from launcher.testing import apps
from launcher.testing.process import free_port, run_launcher

try:  # imported now, while PROMETHEUS_MULTIPROC_DIR is unset: the tests below set it
    import prometheus_client
except ImportError:  # pragma: no cover - the test extra installs it
    prometheus_client = None  # type: ignore[assignment]


# -- Master: readiness, draining, giving up ---------------------------------------------


@pytest.fixture
def supervision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Master]:
    """A Master with OPS_PORT set (so metrics too), 2 workers.

    PROMETHEUS_MULTIPROC_DIR is restored afterwards: the Master sets it for its workers.
    """
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    (tmp_path / "main.py").write_text("app = None\n")
    env = {"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2", "OPS_PORT": str(free_port())}
    config = resolve({**env, "OPS_HOST": "127.0.0.1"}, Backend)
    master = Master(config)
    yield master
    master.close()


def mark_booted(master: Master) -> None:
    """What a worker's pipeline does once its app has started (for this process's pid)."""
    statedir.write(statedir.booted(master.state.path, os.getpid()))


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_not_ready_until_a_live_spawned_worker_has_booted(supervision: Master) -> None:
    assert supervision.readiness() == {
        "ready": False,
        "workers_booted": 0,
        "workers_wanted": 2,
        "draining": False,
    }
    me = os.getpid()  # a live process, standing in for a worker
    supervision.spawned(me)
    assert supervision.readiness()["workers_booted"] == 0  # spawned, not booted
    mark_booted(supervision)  # what the worker's pipeline does (for its own pid)
    assert Path(statedir.booted(supervision.state.path, me)).exists()
    assert supervision.readiness() == {
        "ready": True,
        "workers_booted": 1,
        "workers_wanted": 2,
        "draining": False,
    }


def test_boot_marks_of_dead_or_unknown_workers_do_not_count(supervision: Master) -> None:
    gone = dead_pid()
    supervision.spawned(gone)
    Path(statedir.booted(supervision.state.path, gone)).touch()  # it booted, then died
    mark_booted(supervision)  # this process booted, but the master never spawned it
    assert supervision.booted_count() == 0
    assert supervision.readiness()["ready"] is False


def test_an_exit_removes_the_boot_mark(supervision: Master) -> None:
    me = os.getpid()
    supervision.spawned(me)
    mark_booted(supervision)
    assert supervision.booted_count() == 1
    supervision.exited(me, 0)
    assert supervision.booted_count() == 0
    assert not Path(statedir.booted(supervision.state.path, me)).exists()


def test_draining_and_giving_up_make_it_not_ready(supervision: Master) -> None:
    supervision.spawned(os.getpid())
    mark_booted(supervision)
    assert supervision.readiness()["ready"] is True
    supervision.draining = True
    assert supervision.readiness() == {
        "ready": False,
        "workers_booted": 1,
        "workers_wanted": 2,
        "draining": True,
    }
    supervision.draining = False
    assert not supervision.gave_up
    supervision.giving_up()
    assert supervision.gave_up
    assert supervision.readiness() == {
        "ready": False,
        "workers_booted": 1,
        "workers_wanted": 2,
        "draining": True,
    }


def test_a_crash_loop_gives_up(supervision: Master) -> None:
    verdicts = [supervision.exited(1_000_000 + n, 1, booted=True).give_up for n in range(5)]
    assert verdicts == [False, False, False, False, True]  # max(5, 2 * 2) deaths
    assert supervision.gave_up
    assert supervision.restarts["crash"] == 5


def test_restarts_are_counted_by_reason(supervision: Master) -> None:
    supervision.stopping(10, "memory")
    supervision.exited(10, 0, booted=True)
    supervision.exited(11, -15, booted=True)  # obeyed a SIGTERM: stopped, not a crash
    supervision.exited(12, -9, booted=True)
    assert dict(supervision.restarts) == {"memory": 1, "stopped": 1, "crash": 1}
    assert not supervision.gave_up


# -- the SIGTERM wrapper and SHUTDOWN_DELAY, with real signals in a child process -------------

#: Builds a Master behind a recording "master handler", sends itself signals as the
#: scenario says, and prints what the master's handler saw and when.
SIGNAL_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, signal, sys, time
    from launcher import Backend
    from launcher.config.resolve import resolve
    from launcher.master import Master

    app_dir, delay, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
    env = {"APP_DIR": app_dir, "WEB_CONCURRENCY": "1", "TIMEOUT": "0", "SHUTDOWN_DELAY": delay}
    seen = []
    start = time.monotonic()
    def master(signum, frame):
        seen.append([signal.Signals(signum).name, round(time.monotonic() - start, 2)])
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, master)
    supervision = Master(resolve(env, Backend))
    supervision.serving()
    report = {}
    first = {"int": signal.SIGINT}.get(scenario, signal.SIGTERM)
    os.kill(os.getpid(), first)
    time.sleep(0.3)
    report["draining"] = supervision.draining
    report["seen_at_0.3"] = list(seen)
    if scenario == "second":
        os.kill(os.getpid(), signal.SIGTERM)
    elif scenario == "quit":
        os.kill(os.getpid(), signal.SIGQUIT)
    # Past the delay, for a timer left running to fire; and for the master's handler to have run,
    # however late a loaded machine runs it (a deadline, not a figure).
    quiet, deadline = start + float(delay) + 0.8, start + float(delay) + 30
    while time.monotonic() < deadline and not (seen and time.monotonic() > quiet):
        time.sleep(0.05)
    report["seen"] = seen
    supervision.close()
    print(json.dumps(report))
    """
)


def run_signals(tmp_path: Path, delay: int, scenario: str) -> dict[str, Any]:
    (tmp_path / "main.py").write_text("app = None\n")
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_SCRIPT, str(tmp_path), str(delay), scenario],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


#: SHUTDOWN_DELAY in the signal scripts: the checks tell "before it ended" from "after", with the
#: room a loaded machine needs on either side (the second signal is sent 0.3 s in).
DELAY = 3


def test_first_sigterm_reaches_the_master_after_shutdown_delay_and_only_once(tmp_path: Path) -> None:
    report = run_signals(tmp_path, DELAY, "first")
    assert report["draining"] is True  # /readyz 503 at once
    assert report["seen_at_0.3"] == []  # the master's own handler has not run yet
    seen = report["seen"]
    assert [name for name, _ in seen] == ["SIGTERM"], seen
    assert seen[0][1] >= DELAY - 0.1, seen  # after SHUTDOWN_DELAY


def test_a_second_sigterm_skips_the_rest_of_the_delay(tmp_path: Path) -> None:
    report = run_signals(tmp_path, DELAY, "second")
    assert report["seen_at_0.3"] == []
    seen = report["seen"]
    # Once, at the second SIGTERM (~0.3 s); the cancelled timer sends nothing at DELAY.
    assert [name for name, _ in seen] == ["SIGTERM"], seen
    assert seen[0][1] < DELAY - 0.5, seen


def test_sigquit_during_the_delay_is_at_once_and_cancels_it(tmp_path: Path) -> None:
    report = run_signals(tmp_path, DELAY, "quit")
    seen = report["seen"]
    assert [name for name, _ in seen] == ["SIGQUIT"], seen
    assert seen[0][1] < DELAY - 0.5, seen


def test_without_shutdown_delay_sigterm_is_at_once_and_sigint_is_never_delayed(tmp_path: Path) -> None:
    report = run_signals(tmp_path, 0, "first")
    assert report["draining"] is True
    assert [name for name, _ in report["seen_at_0.3"]] == ["SIGTERM"]
    report = run_signals(tmp_path, 1, "int")
    assert report["draining"] is True
    assert [name for name, _ in report["seen_at_0.3"]] == ["SIGINT"]


# -- metrics.prepare_directory ---------------------------------------------------------------


def test_a_fresh_metrics_directory_inside_the_state_directory(tmp_path: Path) -> None:
    stale = tmp_path / "metrics"
    stale.mkdir()
    (stale / "counter_123.db").write_bytes(b"old")  # left by an earlier master with this dir
    environ: dict[str, str] = {}
    path, ours = metrics.prepare_directory(str(tmp_path), environ)
    assert (path, ours) == (str(stale), True)
    assert environ == {metrics.MULTIPROC_ENV: path}  # for the workers
    assert os.listdir(path) == []
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_the_users_metrics_directory_is_used_as_it_is(tmp_path: Path) -> None:
    own = tmp_path / "shared"
    own.mkdir()
    (own / "counter_123.db").write_bytes(b"kept")
    environ = {metrics.MULTIPROC_ENV: str(own)}
    path, ours = metrics.prepare_directory(str(tmp_path / "state"), environ)
    assert (path, ours) == (str(own), False)
    assert (own / "counter_123.db").read_bytes() == b"kept"
    assert environ == {metrics.MULTIPROC_ENV: str(own)}
    assert not (tmp_path / "state").exists()
    missing = tmp_path / "not-yet"
    assert metrics.prepare_directory(str(tmp_path), {metrics.MULTIPROC_ENV: str(missing)}) == (
        str(missing),
        False,
    )
    assert missing.is_dir()


@pytest.mark.skipif(prometheus_client is None, reason="needs prometheus_client")
def test_the_master_keeps_the_users_directory_at_exit_and_removes_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "main.py").write_text("app = None\n")
    env = {"APP_DIR": str(tmp_path), "OPS_PORT": str(free_port())}
    own = tmp_path / "shared"
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(own))
    users = Master(resolve(env, Backend))
    assert users.metrics_dir == str(own)
    (own / "counter_1.db").write_bytes(b"kept")
    users.close()
    assert (own / "counter_1.db").exists()
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    fresh = Master(resolve(env, Backend))
    assert fresh.metrics_dir == os.path.join(fresh.state.path, "metrics")
    assert os.environ[metrics.MULTIPROC_ENV] == fresh.metrics_dir
    fresh.close()
    assert not os.path.exists(fresh.metrics_dir)


# -- the listener on a real socket -----------------------------------------------------------


@pytest.fixture
def listener(supervision: Master) -> Iterator[tuple[Master, int]]:
    port = free_port()
    server = ops.start(supervision, "127.0.0.1", port)
    yield supervision, port
    ops.stop(server)


def ask(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


def test_livez_and_readyz_answer_from_supervision(listener: tuple[Master, int]) -> None:
    supervision, port = listener
    assert ask(port, "/livez")[::2] == (200, b'{"alive": true}')
    status, headers, body = ask(port, "/readyz")
    assert (status, headers["content-type"], headers["cache-control"]) == (
        503,
        "application/json",
        "no-store",
    )
    assert json.loads(body) == {"ready": False, "workers_booted": 0, "workers_wanted": 2, "draining": False}
    supervision.spawned(os.getpid())
    mark_booted(supervision)
    status, _, body = ask(port, "/readyz?verbose=1")  # the query is ignored
    assert (status, json.loads(body)["ready"]) == (200, True)
    supervision.draining = True
    assert ask(port, "/readyz")[0] == 503
    assert ask(port, "/livez")[0] == 200  # draining is not dead
    supervision.giving_up()
    assert ask(port, "/livez")[::2] == (503, b'{"alive": false}')


def test_unknown_paths_are_404(listener: tuple[Master, int]) -> None:
    _, port = listener
    for path in ("/", "/ready", "/livez/extra", "/metricsx"):
        status, headers, body = ask(port, path)
        assert (status, headers["content-type"]) == (404, "application/json"), path
        assert "/readyz" in json.loads(body)["error"]


def test_head_has_the_headers_and_no_body(listener: tuple[Master, int]) -> None:
    _, port = listener
    get_status, get_headers, get_body = ask(port, "/readyz")
    status, headers, body = ask(port, "/readyz", "HEAD")
    assert (status, body) == (get_status, b"")
    assert headers["content-length"] == get_headers["content-length"] == str(len(get_body))
    # The connection is still usable after a HEAD (no body bytes were left on it).
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("HEAD", "/livez")
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, b"")
        conn.request("GET", "/livez")
        assert conn.getresponse().read() == b'{"alive": true}'
    finally:
        conn.close()


def test_a_client_that_goes_away_is_no_traceback(
    supervision: Master, capsys: pytest.CaptureFixture[str]
) -> None:
    # probe --ready reads the status line only: its close resets the connection.
    server = ops.start(supervision, "127.0.0.1", free_port())
    client = socket.socket()
    try:
        for gone in (ConnectionResetError(104, "reset"), BrokenPipeError(32, "pipe")):
            try:
                raise gone
            except OSError:
                server.handle_error(client, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("a real bug")
        except ValueError:
            server.handle_error(client, ("127.0.0.1", 1))
        assert "ValueError: a real bug" in capsys.readouterr().err  # still shown
    finally:
        client.close()
        ops.stop(server)


def test_metrics_without_prometheus_client_is_501_text(listener: tuple[Master, int]) -> None:
    supervision, port = listener
    supervision.metrics_dir = None  # what the Master leaves when prometheus_client is missing
    status, headers, body = ask(port, "/metrics")
    assert (status, headers["content-type"]) == (501, "text/plain; charset=utf-8")
    assert "prometheus_client is not installed" in body.decode() and metrics.INSTALL_HINT in body.decode()


@pytest.mark.skipif(prometheus_client is None, reason="needs prometheus_client")
def test_metrics_has_the_masters_own(listener: tuple[Master, int]) -> None:
    supervision, port = listener
    assert supervision.metrics_dir is not None
    supervision.exited(1_000_001, -9, booted=True)
    status, headers, body = ask(port, "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain"), text
    assert "asgi_launcher_workers 2.0" in text.splitlines(), text
    assert "asgi_launcher_workers_booted 0.0" in text.splitlines(), text
    assert 'asgi_launcher_worker_restarts_total{reason="crash"} 1.0' in text.splitlines(), text
    assert 'asgi_launcher_worker_restarts_total{reason="timeout"} 0.0' in text.splitlines(), text


def test_a_forked_child_does_not_keep_the_listening_socket(supervision: Master) -> None:
    server = ops.start(supervision, "127.0.0.1", free_port())
    try:
        listening = os.readlink(f"/proc/self/fd/{server.socket.fileno()}")  # socket:[inode]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: report, then leave at once
            held = False
            for fd in os.listdir("/proc/self/fd"):
                with contextlib.suppress(OSError):
                    held = held or os.readlink(f"/proc/self/fd/{fd}") == listening
            os.write(write, b"held" if held else b"none")
            os._exit(0)
        os.close(write)
        answer = os.read(read, 16)
        os.close(read)
        os.waitpid(pid, 0)
    finally:
        ops.stop(server)
    assert answer == b"none", "a forked worker inherited the operations listener's socket"


# -- configuration and the CLI ---------------------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    apps.install("hello", tmp_path)
    return tmp_path


def test_ops_port_equal_to_the_app_port_is_exit_2(app_dir: Path) -> None:
    result = run_launcher({"APP_DIR": str(app_dir), "OPS_PORT": "80"}, ("config",))  # PORT defaults to 80
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "OPS_PORT" in lines[0] and "80" in lines[0], lines
    result = run_launcher({"APP_DIR": str(app_dir), "PORT": "8080", "OPS_PORT": "8080"}, ("config",))
    assert result.returncode == 2 and "OPS_PORT" in result.stderr, result.stderr
    result = run_launcher({"APP_DIR": str(app_dir), "OPS_PORT": "9090"}, ("config", "--json"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["ops_port"], data["ops_host"], data["sources"]["ops_port"]) == (
        9090,
        "0.0.0.0",
        "env:OPS_PORT",
    )


def test_ops_port_in_use_is_exit_2_in_one_line_at_run(app_dir: Path) -> None:
    app_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ops_port = taken.getsockname()[1]
        env = {
            "APP_DIR": str(app_dir),
            "BIND": f"127.0.0.1:{app_port}",
            "OPS_PORT": str(ops_port),
            "OPS_HOST": "127.0.0.1",
        }
        result = run_launcher(env, ("run",), timeout=30)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2, lines
    assert len(lines) == 1 and "OPS_PORT" in lines[0] and f"127.0.0.1:{ops_port}" in lines[0], lines
    assert "Traceback" not in lines[0]
    # What to change is OPS_PORT, not the app's PORT or BIND.
    assert "set OPS_PORT to a free port" in lines[0] and "set PORT" not in lines[0], lines


def test_probe_ready_without_ops_port_is_exit_2(app_dir: Path) -> None:
    result = run_launcher({"APP_DIR": str(app_dir)}, ("probe", "--ready"))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "OPS_PORT" in lines[0], lines


def test_probe_ready_with_nothing_listening_is_exit_1(app_dir: Path) -> None:
    env = {"APP_DIR": str(app_dir), "OPS_PORT": str(free_port()), "OPS_HOST": "127.0.0.1"}
    result = run_launcher(env, ("probe", "--ready", "--timeout", "2"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no HTTP answer" in result.stderr


def test_probe_ready_follows_readyz(app_dir: Path, listener: tuple[Master, int]) -> None:
    supervision, port = listener
    env = {"APP_DIR": str(app_dir), "OPS_PORT": str(port), "OPS_HOST": "127.0.0.1"}
    result = run_launcher(env, ("probe", "--ready", "--timeout", "2"))
    assert result.returncode == 1 and "HTTP 503" in result.stderr, result.stdout + result.stderr
    supervision.spawned(os.getpid())
    mark_booted(supervision)
    result = run_launcher(env, ("probe", "--ready", "--timeout", "2"))
    assert result.returncode == 0 and "HTTP 200" in result.stdout, result.stdout + result.stderr
