"""RELOAD=true under every backend: real launchers, real edits of the app's files, real HTTP.

What would break if the feature broke: an edit not served (including one made before the first
server has booted), a broken edit that is not shown exactly once or that stops the launcher,
prestart run more than once, SIGTERM/SIGINT not ending in exit 0 with every process gone, a
watched extra directory or pattern ignored, and the refusals (exit 2, one line). How long an edit
took to be served is a figure (printed in the "reliability figures" section; the issue promises
2 s), not a test: each wait here has a deadline a loaded machine cannot miss.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from harness import BACKENDS, backend_skip_reason

from launcher.procfs import group_exists
from launcher.testing.process import (
    Launcher,
    base_env,
    descendants,
    free_port,
    live_group_members,
    run_launcher,
    start_launcher,
)

pytestmark = pytest.mark.slow

#: Seconds any wait for the launcher (an edit served, a line shown, every process gone) may take.
DEADLINE = 30.0

APP = """\
import asyncio
import os
import pathlib

VERSION = "{version}"
EXTRA = pathlib.Path(os.environ["EXTRA_FILE"]).read_text().strip() if os.environ.get("EXTRA_FILE") else ""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            else:
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    if scope["path"] == "/slow":  # in flight for SLOW_SECONDS, once SLOW_MARKER says it began
        pathlib.Path(os.environ["SLOW_MARKER"]).touch()
        await asyncio.sleep(float(os.environ["SLOW_SECONDS"]))
    body = f"{{VERSION}} {{os.environ.get('FROM_PRESTART', '-')}} {{EXTRA}}".strip()
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": body.encode()}})
"""

PRESTART = 'echo ran >> "{marker}"\nexport FROM_PRESTART=exported\n'

_usable: dict[str, str | None] = {}


def _skip_unusable(backend: str) -> None:
    if backend not in _usable:
        _usable[backend] = backend_skip_reason(backend)
    if _usable[backend]:
        pytest.skip(str(_usable[backend]))


def write_app(app_dir: Path, version: str) -> None:
    """Rewrite main.py whole, as an editor's save does."""
    (app_dir / "main.py").write_text(APP.format(version=version))


def make_app(tmp_path: Path, version: str = "v1") -> tuple[Path, Path]:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    write_app(app_dir, version)
    marker = tmp_path / "prestart-runs"
    (app_dir / "prestart.sh").write_text(PRESTART.format(marker=marker))
    return app_dir, marker


def body(server: Launcher) -> str | None:
    """What ``/`` answers right now (None: nothing answers)."""
    try:
        status, _, data = server.get("/", timeout=2)
    except (OSError, http.client.HTTPException):
        return None
    return data.decode() if status == 200 else None


class Reloading:
    """A launcher in reload mode, and every process seen below it (its children run in process
    groups of their own, so the kit's teardown of the launcher's group alone would not reach them)."""

    def __init__(self, server: Launcher) -> None:
        self.server = server
        self.seen: set[int] = set()

    def look(self) -> list[int]:
        found = descendants(self.server.proc.pid)
        self.seen.update(found)
        return found

    def groups(self) -> set[int]:
        pgids = set()
        for pid in self.seen:
            with contextlib.suppress(OSError):
                pgids.add(os.getpgid(pid))
        return pgids | self.seen  # a child's pid is its group's id

    def served(self, expected: str, within: float, what: str) -> float:
        """Wait until ``/`` answers ``expected``; how long it took."""

        def check() -> bool:
            self.look()
            return body(self.server) == expected

        return self.server.wait_until(check, within, what)

    def left_alive(self) -> list[int]:
        alive = []
        for pgid in self.groups():
            alive.extend(live_group_members(pgid))
        return alive


@contextlib.contextmanager
def reloading(env: Mapping[str, str], args: tuple[str, ...] = ("run",)) -> Iterator[Reloading]:
    server = start_launcher(env, args)
    watch = Reloading(server)
    try:
        yield watch
    finally:
        watch.look()
        groups = watch.groups()
        server.close()
        for pgid in groups:
            if group_exists(pgid):  # else the id may be someone else's by now
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (from every thread of it), from ``/proc``."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found.extend(map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split()))
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, output: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s\n{output()[-4000:]}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_reload_serves_every_edit(backend: str, tmp_path: Path, figures: list[str]) -> None:
    """Start, an edit before the first server has booted, a good edit, a broken one, the fix,
    SIGTERM: under every backend, with prestart run once and its exports in every server."""
    _skip_unusable(backend)
    app_dir, marker = make_app(tmp_path)
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(app_dir), "RELOAD": "true", "LOG_LEVEL": "info"}
    with reloading(env) as r:
        out = r.server.output
        # Within the first second: the launcher is still starting (prestart, the app check).
        time.sleep(0.3)
        write_app(app_dir, "early")
        edited = time.monotonic()
        r.served("early exported", DEADLINE, "the edit made while starting")  # first boot included
        early_took = time.monotonic() - edited

        write_app(app_dir, "v2")
        took = r.served("v2 exported", DEADLINE, "a good edit")

        # A broken edit: its error shown once, the launcher still running and watching.
        (app_dir / "main.py").write_text("VERSION = (\n")
        wait_for(lambda: "waiting for a change" in out(), DEADLINE, "the broken edit reported", out)
        time.sleep(1.5)  # time for a restart loop, if there were one, to show itself
        shown = out()
        assert shown.count("SyntaxError") == 1, shown[-3000:]
        assert shown.count("waiting for a change") == 1, shown[-3000:]
        assert r.server.proc.poll() is None
        assert body(r.server) is None  # nothing serves the broken code

        write_app(app_dir, "v3")
        fixed = r.served("v3 exported", DEADLINE, "the fix")

        assert marker.read_text().splitlines() == ["ran"], "prestart must run once, not per restart"
        assert out().count("asgi-launcher: serving main:app") == 1
        restarts = out().count("main.py changed: restarting the server")
        assert restarts >= 3, out()[-3000:]

        r.look()
        r.server.signal(signal.SIGTERM)
        assert r.server.wait(30) == 0, out()[-3000:]
        wait_for(lambda: not r.left_alive(), DEADLINE, "every process gone after SIGTERM", out)
    figures.append(
        f"RELOAD under {backend}: an edit 0.3 s after start served after {early_took:.2f} s, "
        f"a good edit after {took:.2f} s, the fix of a broken one after {fixed:.2f} s"
    )


def test_reload_flag_extra_dirs_patterns_and_sigint(tmp_path: Path) -> None:
    """``run --reload`` is RELOAD=true; RELOAD_DIRS and RELOAD_INCLUDE add files that restart it,
    other files do not; WEB_CONCURRENCY is a warning (one worker serves); SIGHUP restarts;
    Ctrl-C is exit 0."""
    _skip_unusable("gunicorn")
    app_dir, _ = make_app(tmp_path)
    extra = tmp_path / "templates"
    extra.mkdir()
    (extra / "page.html").write_text("html1")
    (extra / "notes.txt").write_text("ignored")
    env = {
        "SERVER_BACKEND": "gunicorn",
        "APP_DIR": str(app_dir),
        "RELOAD_DIRS": str(extra),
        "RELOAD_INCLUDE": "*.html",
        "EXTRA_FILE": str(extra / "page.html"),
        "WEB_CONCURRENCY": "3",
    }
    with reloading(env, ("run", "--reload")) as r:
        out = r.server.output
        r.served("v1 exported html1", DEADLINE, "the first server")
        assert "warning: RELOAD serves with one worker, not the 3 that WEB_CONCURRENCY=3 asks for" in out()
        r.look()
        (master,) = children_of(r.server.proc.pid)  # the server the reloader runs
        assert len(descendants(master)) == 1, out()[-2000:]  # its one worker

        (extra / "page.html").write_text("html2")
        r.served("v1 exported html2", DEADLINE, "an edit of an included file in RELOAD_DIRS")
        before = out().count("restarting the server")
        (extra / "notes.txt").write_text("still ignored")
        (app_dir / "data.json").write_text("{}")
        time.sleep(1.0)
        assert out().count("restarting the server") == before, out()[-2000:]

        # SIGHUP restarts the server (a new master), as it restarts workers outside RELOAD.
        r.look()
        (master,) = children_of(r.server.proc.pid)
        r.server.signal(signal.SIGHUP)
        r.server.wait_until(
            lambda: master not in children_of(r.server.proc.pid) and body(r.server) == "v1 exported html2",
            DEADLINE,
            "a new server after SIGHUP",
        )
        assert "got SIGHUP: restarting the server" in out()

        r.look()
        r.server.signal(signal.SIGINT)
        assert r.server.wait(30) == 0, out()[-3000:]
        wait_for(lambda: not r.left_alive(), DEADLINE, "every process gone after SIGINT", out)


def test_a_request_in_flight_finishes_across_a_restart(tmp_path: Path) -> None:
    """A server that has been serving drains on a restart: the request it is answering ends
    with the old code's answer, then the new code serves."""
    _skip_unusable("gunicorn")
    app_dir, _ = make_app(tmp_path)
    began = tmp_path / "slow-began"
    env = {
        "SERVER_BACKEND": "gunicorn",
        "APP_DIR": str(app_dir),
        "RELOAD": "true",
        "SLOW_MARKER": str(began),
        # Ends within the 1 s the drain gives a serving server (launcher.reload.RESTART_GRACE).
        "SLOW_SECONDS": "0.5",
    }
    with reloading(env) as r:
        r.served("v1 exported", DEADLINE, "the first server")
        time.sleep(1.6)  # past the age below which a server is replaced without a drain
        answers: list[tuple[int, bytes]] = []

        def slow() -> None:
            status, _, data = r.server.get("/slow", timeout=DEADLINE)
            answers.append((status, data))

        client = threading.Thread(target=slow)
        client.start()
        r.server.wait_until(began.exists, DEADLINE, "the request in the app's sleep")
        write_app(app_dir, "v2")
        r.served("v2 exported", DEADLINE, "the edit, after the drain")
        client.join(DEADLINE)
        assert answers == [(200, b"v1 exported")], r.server.output()[-3000:]


def test_reload_logs_like_run_under_log_format_json(tmp_path: Path) -> None:
    """Every line, the reloader's, the server's and a broken edit's traceback, is one JSON object."""
    _skip_unusable("granian")
    app_dir, _ = make_app(tmp_path)
    env = {"SERVER_BACKEND": "granian", "APP_DIR": str(app_dir), "RELOAD": "true", "LOG_FORMAT": "json"}
    with reloading(env) as r:
        out = r.server.output
        r.served("v1 exported", DEADLINE, "the first server")
        (app_dir / "main.py").write_text("VERSION = (\n")
        wait_for(lambda: "waiting for a change" in out(), DEADLINE, "the broken edit reported", out)
        write_app(app_dir, "v2")
        r.served("v2 exported", DEADLINE, "the fix")
        r.server.signal(signal.SIGTERM)
        assert r.server.wait(30) == 0
    records = [json.loads(line) for line in r.server.output().splitlines() if line.strip()]
    messages = [str(record.get("message", "")) for record in records]
    assert any(m.startswith("reload: watching") for m in messages)
    assert sum("SyntaxError" in json.dumps(record) for record in records) == 1


def test_an_app_broken_at_start_is_shown_once_and_waited_for(tmp_path: Path) -> None:
    """Development starts from broken code too: the error once, then the fix is served."""
    _skip_unusable("gunicorn")
    app_dir, marker = make_app(tmp_path)
    (app_dir / "main.py").write_text("import not_a_module_anywhere\n")
    env = {"SERVER_BACKEND": "gunicorn", "APP_DIR": str(app_dir), "RELOAD": "true"}
    with reloading(env) as r:
        out = r.server.output
        wait_for(lambda: "waiting for a change" in out(), DEADLINE, "the broken app reported", out)
        time.sleep(1.0)
        assert out().count("ModuleNotFoundError") == 1, out()[-3000:]
        assert r.server.proc.poll() is None
        write_app(app_dir, "v2")
        r.served("v2 exported", DEADLINE, "the fix")
        assert marker.read_text().splitlines() == ["ran"]
        r.server.signal(signal.SIGTERM)
        assert r.server.wait(30) == 0


def test_the_server_dies_with_the_reloader(tmp_path: Path) -> None:
    """A reloader killed with SIGKILL leaves no server holding the port."""
    _skip_unusable("gunicorn")
    app_dir, _ = make_app(tmp_path)
    env = {"SERVER_BACKEND": "gunicorn", "APP_DIR": str(app_dir), "RELOAD": "true"}
    with reloading(env) as r:
        r.served("v1 exported", DEADLINE, "the first server")
        r.look()
        os.kill(r.server.proc.pid, signal.SIGKILL)
        r.server.wait(DEADLINE)
        wait_for(lambda: not r.left_alive(), DEADLINE, "the server gone with its reloader", r.server.output)
        assert body(r.server) is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"SHUTDOWN_DELAY": "5"},
            "asgi-launcher: error: RELOAD=true cannot be used with SHUTDOWN_DELAY=5: every restart "
            "would wait for it; unset SHUTDOWN_DELAY (or RELOAD)",
        ),
        (
            {"PYTHONPATH": "{blocker}"},
            "asgi-launcher: error: RELOAD=true needs watchfiles, which is not installed: "
            "pip install 'asgi-launcher[reload]'",
        ),
    ],
    ids=["shutdown-delay", "no-watchfiles"],
)
def test_reload_refused_with_one_line(tmp_path: Path, extra: dict[str, str], expected: str) -> None:
    """Exit 2, one line, before prestart and before anything listens."""
    app_dir, marker = make_app(tmp_path)
    blocker = tmp_path / "blocker" / "watchfiles"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named watchfiles')\n")
    port = free_port()
    env = {
        "APP_DIR": str(app_dir),
        "RELOAD": "true",
        "BIND": f"127.0.0.1:{port}",
        **{k: v.format(blocker=blocker.parent) for k, v in extra.items()},
    }
    result = run_launcher(env, ("run",))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [expected]
    assert "Traceback" not in result.stdout + result.stderr
    assert not marker.exists(), "prestart must not run"


def test_config_warns_about_reload_settings_without_reload(tmp_path: Path) -> None:
    app_dir, _ = make_app(tmp_path)
    result = run_launcher({**base_env(), "APP_DIR": str(app_dir), "RELOAD_INCLUDE": "*.html"}, ("config",))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "asgi-launcher: warning: RELOAD_INCLUDE is set but RELOAD is not true: nothing is watched"
    ]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
