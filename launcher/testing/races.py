"""Signal races: a stop signal sent at the worst moments of a launcher's life, under any backend.

A signal that reaches a process in the instant between two of its states (a worker forked but
without its own handlers yet, a master between deciding to spawn and spawning, a launcher
running the prestart script) is where a server hangs or dies the wrong way (or a second stop signal lands while the first
one's handler still runs). Each *moment* here
brings a real launcher to one such instant; a *trial* sends SIGTERM, SIGINT or SIGQUIT at an
offset after it and checks the promise: the launcher exits 0 well within GRACEFUL_TIMEOUT
(nothing is in flight, so nothing needs the graceful timeout's kill), and no process it started
is left.

The reliability tests run a bounded sample of trials (``tests/reliability``); ``bench/races.py``
runs many, with busy CPUs widening the windows, and prints hangs per trial. Both use ``trial``,
so what CI checks is what the figure in the docs counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from launcher.procfs import live_group_members
from launcher.testing import apps
from launcher.testing.process import Launcher, request, start_launcher

#: GRACEFUL_TIMEOUT of every trial: a stop that takes this long needed the graceful timeout's
#: kill, although nothing was in flight: the signal was lost somewhere (a hang).
GRACEFUL = 12
#: The signals whose meaning is "stop" (SIGTERM and SIGINT drain, SIGQUIT stops at once).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

#: The backends' modes a trial can run: the plugin's entry-point name and what sets the mode.
MODES: dict[str, tuple[str, dict[str, str]]] = {
    "gunicorn": ("gunicorn", {"WEB_CONCURRENCY": "2"}),
    "hypercorn": ("hypercorn", {"WEB_CONCURRENCY": "2"}),
    "granian": ("granian", {"WEB_CONCURRENCY": "2"}),
    "uvicorn": ("uvicorn", {"WEB_CONCURRENCY": "2"}),
    # WEB_CONCURRENCY=1 under the uvicorn backend: the launcher's process serves, no master.
    "uvicorn-single": ("uvicorn", {"WEB_CONCURRENCY": "1"}),
}

#: Moments that need workers under a master (single-process mode has none to replace).
NEEDS_WORKERS = frozenset({"respawn", "hup", "max_requests", "memory", "timeout"})

PRESTART = """#!/usr/bin/env bash
touch "$RACE_MARK"
sleep 0.4
"""


@dataclass(frozen=True)
class Outcome:
    """What one trial saw."""

    mode: str
    moment: str
    signum: int
    offset: float  # seconds between the moment and the signal
    status: int | None  # the launcher's exit status (None: still running at the deadline)
    stopped_after: float  # seconds from the signal to the exit (or to the deadline)
    leftovers: tuple[int, ...]  # processes of the launcher's group still running after it exited
    output: str

    @property
    def hung(self) -> bool:
        """The launcher did not exit before GRACEFUL_TIMEOUT, or left a process behind."""
        return self.status is None or self.stopped_after >= GRACEFUL or bool(self.leftovers)

    @property
    def ok(self) -> bool:
        """Not hung, and exit 0: a stop asked for (during prestart, the script's own status)."""
        return not self.hung and (self.status == 0 or self.moment == "prestart")

    def describe(self) -> str:
        name = signal.Signals(self.signum).name
        what = "still running" if self.status is None else f"exit {self.status}"
        left = f", left {list(self.leftovers)}" if self.leftovers else ""
        return (
            f"{self.mode} {self.moment} {name} +{self.offset * 1000:.0f}ms: {what} "
            f"{self.stopped_after:.2f}s after the signal{left}"
        )


def moments(mode: str) -> tuple[str, ...]:
    """The moments ``mode`` has (every one but those that need a master's workers, for
    single-process mode)."""
    single = MODES[mode][1].get("WEB_CONCURRENCY") == "1" and MODES[mode][0] == "uvicorn"
    return tuple(m for m in MOMENTS if not (single and m in NEEDS_WORKERS))


def _lines(server: Launcher, text: str, deadline: float) -> float:
    """Wait until ``text`` is in the launcher's output; the moment it was seen."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if text in server.output():
            return time.monotonic()
        if server.proc.poll() is not None:
            break
        time.sleep(0.005)
    raise AssertionError(f"never saw {text!r}; exit={server.proc.poll()}\n{server.output()[-3000:]}")


def _ready(server: Launcher) -> None:
    server.wait_ready("/", 60)


def _at_boot(server: Launcher, app_dir: Path) -> float:
    # The launcher's start-up line comes just before the backend starts its workers.
    return _lines(server, "asgi-launcher: serving ", 60)


def _at_prestart(server: Launcher, app_dir: Path) -> float:
    mark = app_dir / "prestart.ran"
    end = time.monotonic() + 60
    while not mark.exists():
        if time.monotonic() > end or server.proc.poll() is not None:
            raise AssertionError(f"prestart never ran\n{server.output()[-3000:]}")
        time.sleep(0.005)
    return time.monotonic()


def _at_respawn(server: Launcher, app_dir: Path) -> float:
    _ready(server)
    server.wait_until(lambda: len(server.workers()) >= 2, 30, "two workers")
    with suppress(ProcessLookupError):
        os.kill(server.workers()[0], signal.SIGKILL)
    return time.monotonic()


def _at_hup(server: Launcher, app_dir: Path) -> float:
    _ready(server)
    server.signal(signal.SIGHUP)
    return time.monotonic()


def _at_max_requests(server: Launcher, app_dir: Path) -> float:
    _ready(server)  # one request; MAX_REQUESTS=2 over 2 workers: three more retire one for sure
    for _ in range(3):
        with suppress(OSError):
            request(server.port, "/", timeout=5)
    return time.monotonic()


def _at_memory(server: Launcher, app_dir: Path) -> float:
    _ready(server)
    threading.Thread(target=_quietly, args=(server.port, "/grow?mb=160"), daemon=True).start()
    return _lines(server, "over MAX_WORKER_MEMORY", 30)


def _at_timeout(server: Launcher, app_dir: Path) -> float:
    _ready(server)
    threading.Thread(target=_quietly, args=(server.port, "/block?seconds=10"), daemon=True).start()
    return _lines(server, "timed out", 30)


def _at_reload(server: Launcher, app_dir: Path) -> float:
    _ready(server)
    main = app_dir / "main.py"
    main.write_text(main.read_text() + "\n# edited\n")
    return _lines(server, "changed: restarting the server", 30)


def _at_shutdown_delay(server: Launcher, app_dir: Path) -> float:
    """A first SIGTERM with SHUTDOWN_DELAY set, which the master answers by serving on for the
    delay: the trial's signal is a second stop, which must not wait for it. The moment is the
    first one's line, said once its handler has begun (the handler may still be running: a
    second signal soon after lands in it). Not before: two signals of a kind that reach a
    process before it has handled the first are one signal (POSIX does not queue them)."""
    _ready(server)
    server.signal(signal.SIGTERM)
    return _lines(server, "serving on for SHUTDOWN_DELAY", 30)


def _quietly(port: int, path: str) -> None:
    with suppress(OSError):
        request(port, path, timeout=8)


#: Moment -> (extra environment, how to reach it: returns the moment's monotonic time).
MOMENTS: dict[str, tuple[dict[str, str], Callable[[Launcher, Path], float]]] = {
    "boot": ({}, _at_boot),
    "prestart": ({}, _at_prestart),
    "respawn": ({}, _at_respawn),
    "hup": ({}, _at_hup),
    "max_requests": ({"MAX_REQUESTS": "2"}, _at_max_requests),
    "memory": ({"MAX_WORKER_MEMORY": "120"}, _at_memory),
    "timeout": ({"TIMEOUT": "4"}, _at_timeout),
    "reload": ({"RELOAD": "true"}, _at_reload),
    # Longer than GRACEFUL: a second stop that waited for the delay is a hang.
    "shutdown_delay": ({"SHUTDOWN_DELAY": str(5 * GRACEFUL)}, _at_shutdown_delay),
}


#: Seconds the app takes to import: every worker spends them between its fork and its server's
#: own signal handlers, the window a lost signal needs.
IMPORT_DELAY = 0.3


#: Files that widen a backend's own window between fork and handlers: a user's Gunicorn
#: ``post_fork`` hook runs before Gunicorn's worker installs its handlers.
SLOW_HOOKS = {
    "gunicorn": (
        "gunicorn_conf.py",
        f"import time\n\ndef post_fork(server, worker):\n    time.sleep({IMPORT_DELAY})\n",
    ),
}


def app_dir(root: Path, moment: str, mode: str = "") -> Path:
    """A fresh APP_DIR with the kit's hello app as ``main:app``, slow to import (``IMPORT_DELAY``),
    the backend's slow hooks (``SLOW_HOOKS``), and a prestart script where the moment needs one."""
    target = root / "app"
    target.mkdir(parents=True)
    hello = (Path(apps.__file__).parent / "hello.py").read_text()
    (target / "main.py").write_text(f"import time as _time\n_time.sleep({IMPORT_DELAY})\n{hello}")
    if mode in SLOW_HOOKS:
        name, text = SLOW_HOOKS[mode]
        (target / name).write_text(text)
    if moment == "prestart":
        script = target / "prestart.sh"
        script.write_text(PRESTART)
    return target


def trial(mode: str, moment: str, signum: int, offset: float, root: Path) -> Outcome:
    """Start a launcher in ``mode``, bring it to ``moment``, send ``signum`` ``offset`` seconds
    later, and report how it ended. ``root`` is an empty directory for this trial alone."""
    backend, mode_env = MODES[mode]
    extra, reach = MOMENTS[moment]
    directory = app_dir(root, moment, mode)
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(directory),
        "APP_MODULE": "main:app",
        "GRACEFUL_TIMEOUT": str(GRACEFUL),
        "ACCESS_LOG": "",
        "RACE_MARK": str(directory / "prestart.ran"),
        **mode_env,
        **extra,
    }
    if mode == "uvicorn" and env.get("WEB_CONCURRENCY") == "1":
        env.pop("WEB_CONCURRENCY")
    with start_launcher(env) as server:
        at = reach(server, directory)
        pause = at + offset - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        signalled = time.monotonic()
        with suppress(ProcessLookupError):
            server.signal(signum)
        try:
            status: int | None = server.proc.wait(GRACEFUL + 1)
        except subprocess.TimeoutExpired:
            status = None
        stopped_after = time.monotonic() - signalled
        leftovers: tuple[int, ...] = ()
        if status is not None:
            # Workers get SIGKILL from the kernel when their master dies; give them a moment.
            end = time.monotonic() + 2
            while (left := live_group_members(server.proc.pid)) and time.monotonic() < end:
                time.sleep(0.02)
            leftovers = tuple(left)
        output = server.output()
    return Outcome(mode, moment, signum, offset, status, stopped_after, leftovers, output)


class Hogs:
    """Busy loops on every CPU but none of the trial's: the windows a race needs get wider."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Hogs:
        code = "while True: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.count)]
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)
