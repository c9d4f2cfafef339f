"""Development reload (``RELOAD=true``, ``asgi-launcher run --reload``): one launcher feature,
the same under every backend.

``serve`` resolves, runs prestart once and checks the address exactly as for ``run``; then,
instead of becoming the server, the launcher process becomes a reloader. It watches
``$APP_DIR`` and ``RELOAD_DIRS`` with watchfiles and runs the selected backend, unchanged, with
one worker in a child process (``python -m launcher.launch.reload``: a fresh interpreter with the
post-prestart environment, which runs no prestart). On a change it starts the next child, stops
the current one (SIGTERM, ``RESTART_GRACE`` to drain, then SIGKILL for its whole process group;
SIGKILL at once for one still booting: ``YOUNG``),
and lets the next one bind once the current one is gone.

Why a fresh interpreter and not a fork: the reloader runs watchfiles' thread, and forking a
process with threads can copy a lock another thread holds. ``subprocess`` execs at once (no
Python code runs between fork and exec), and the child forks its own import check and workers
from a process with no such thread.

Why each child checks the app before serving (and the reloader does not): a broken edit, or an
app broken at start, then shows its one traceback (or one line) and the child exits, instead of
a backend restarting a worker that cannot boot over and over; the reloader says so once and
waits for the next change. The first server also starts sooner.

The child runs in its own process group, so stopping it reaches what it started (workers, the
import check) and Ctrl-C in a terminal reaches only the reloader, which stops the child once.
The child dies with the reloader (``PR_SET_PDEATHSIG``), so a reloader killed with SIGKILL
leaves nothing serving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from types import FrameType
from typing import Any

from launcher.backend import Backend
from launcher.config.model import Config
from launcher.errors import ConfigError
from launcher.procfs import exited, live_group_members, processes
from launcher.signals import own_handlers_installed

#: Files whose changes restart the server when ``RELOAD_INCLUDE`` adds none.
PATTERNS = ("*.py",)

#: What to install when watchfiles is missing (the ``reload`` extra).
INSTALL_HINT = "pip install 'asgi-launcher[reload]'"

#: Seconds a child being replaced gets to finish what it serves before it is killed: an edit is
#: to be served within 2 s, and a development server rarely has a long request in flight.
RESTART_GRACE = 1.0

#: A server released less than this many seconds ago is replaced without a drain: it is still
#: booting (or has just booted), so there is nothing worth waiting for, and a stop in the middle
#: of a boot can take the whole grace (an edit made while the first server starts, say).
YOUNG = 1.5

#: On SIGTERM, the child gets GRACEFUL_TIMEOUT (its backend enforces it) plus this margin.
STOP_MARGIN = 5.0

#: Seconds the processes of a stopped child get to be gone (their listening sockets closed).
GONE_DEADLINE = 5.0

#: Seconds the watcher gets to start watching (it walks every directory first) before the
#: reloader gives up.
WATCH_START_DEADLINE = 30.0

#: watchfiles: at most this long (ms) to gather a burst of changes (an editor's save, a
#: ``git checkout``), and this long (ms) of quiet ends a burst.
DEBOUNCE_MS = 400
STEP_MS = 50
#: How often (ms) the watcher returns without a change: its first return says it is watching.
RUST_TIMEOUT_MS = 50


# -- what the configuration allows -----------------------------------------------------------


def check_settings(config: Config, backend: Backend | None = None) -> None:
    """Refuse, with one line naming the variables, what ``RELOAD`` cannot honour.

    ``SHUTDOWN_DELAY``: every restart stops the server with SIGTERM, so each edit would wait
    it out before being served (and nothing probes readiness in development). And whatever
    ``backend`` refuses with the one worker reload serves with (``served``): a backend may
    serve one worker differently (in one process), so it is asked now, before prestart.
    """
    if not config.reload:
        return
    if config.shutdown_delay:
        raise ConfigError(
            f"RELOAD=true cannot be used with SHUTDOWN_DELAY={config.shutdown_delay!r}: "
            "every restart would wait for it; unset SHUTDOWN_DELAY (or RELOAD)"
        )
    if backend is not None and config.workers != 1:
        backend.validate(served(config))


def served(config: Config) -> Config:
    """The configuration each server of the reload mode gets: one worker."""
    return dataclasses.replace(config, workers=1)


def warnings(config: Config) -> list[str]:
    """One line each for settings ``RELOAD`` overrides or that mean nothing without it."""
    found: list[str] = []
    source = config.sources.get("workers", "")
    if config.reload and config.workers > 1 and not source.startswith(("computed", "default")):
        asker = f"{source.removeprefix('env:')}={config.workers}" if source.startswith("env:") else source
        found.append(f"RELOAD serves with one worker, not the {config.workers} that {asker} asks for")
    if not config.reload:
        unused = [
            name
            for name, value in (
                ("RELOAD_DIRS", config.reload_dirs),
                ("RELOAD_INCLUDE", config.reload_include),
            )
            if value
        ]
        if unused:
            found.append(
                f"{' and '.join(unused)} {'is' if len(unused) == 1 else 'are'} set but RELOAD is not true: nothing is watched"
            )
    return found


def require_watchfiles() -> None:
    """Exit 2 with the install line, before prestart, if the watcher is missing."""
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigError(f"RELOAD=true needs watchfiles, which is not installed: {INSTALL_HINT}") from None


def watched_dirs(config: Config) -> tuple[str, ...]:
    """``$APP_DIR`` and ``RELOAD_DIRS``, once each, in that order."""
    return tuple(dict.fromkeys((config.app_dir, *config.reload_dirs)))


def patterns(config: Config) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*PATTERNS, *config.reload_include)))


def workers_line(config: Config) -> str:
    """The worker count in the ``serving ...`` line."""
    return f"1 worker, restarted on a change to {', '.join(patterns(config))} (RELOAD)"


def matches(path: str, globs: Iterable[str]) -> bool:
    """Whether ``path`` is a file ``RELOAD`` acts on: a glob matches its name, or its last
    components (``templates/*.html``), as ``pathlib.PurePath.match`` does."""
    pure = PurePath(path)
    return any(pure.match(glob) for glob in globs)


def _describe(paths: Sequence[str], dirs: Sequence[str]) -> str:
    def short(path: str) -> str:
        for d in dirs:
            with contextlib.suppress(ValueError):
                return str(Path(path).relative_to(d))
        return path

    names = sorted(short(p) for p in paths)
    if not names:
        return "a file"
    return names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"


# -- the reloader (the launcher's own process) ------------------------------------------------


def forget_bytecode(paths: Iterable[str]) -> None:
    """Remove the cached bytecode of the changed ``.py`` files among ``paths``.

    A ``.pyc`` is checked against its source's mtime in whole seconds and its size, so an edit
    made within the same second as the one before, keeping the size, would be served from the
    stale file. (The reloader imports no app code, so it writes none.)
    """
    for path in paths:
        if not path.endswith(".py"):
            continue
        for optimization in ("", "1", "2"):
            with contextlib.suppress(OSError, ValueError, NotImplementedError):
                os.unlink(importlib.util.cache_from_source(path, optimization=optimization))


@dataclasses.dataclass
class _Child:
    """One server the reloader started: its process, and the pipe that tells it to serve."""

    proc: subprocess.Popen[bytes]
    go: int | None  # write end; None once the child was told (or never will be)
    released: float | None = None  # time.monotonic() of the go

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        """Let the child bind and serve (it has loaded everything and checked the app)."""
        if self.go is not None:
            with contextlib.suppress(OSError):  # it may have exited already: it said why
                os.write(self.go, b"g")
            self.close()

    def close(self) -> None:
        """End of file without a go: a child still waiting exits at once, serving nothing."""
        if self.go is not None:
            os.close(self.go)
            self.go = None


def _reap_orphans(keep: Iterable[int]) -> None:
    """Reap the zombies this process inherited (all but ``keep``, its own children).

    Run as PID 1 (``docker run --entrypoint /start-reload.sh``, no init) or as a subreaper, the
    reloader inherits what a killed server leaves, its workers and its import check; nobody
    else would reap them."""
    own = os.getpid()
    kept = set(keep)
    for pid, fields in processes():
        if pid not in kept and fields[0] == "Z" and int(fields[1]) == own:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


class Reloader:
    """Watches the files, runs one child server at a time, and stops everything on a signal.

    On a change the next child is started at once and loads the backend and checks the app
    while the current one drains; it binds only when the current one is gone (``_Child.go``),
    so a restart costs the longer of the two rather than their sum.
    """

    def __init__(self, config: Config, environ: Mapping[str, str], say: Callable[[str], None]) -> None:
        self.config = config
        self.environ = dict(environ)
        self.say = say
        self.dirs = watched_dirs(config)
        self.globs = patterns(config)
        self.changes: queue.Queue[list[str] | BaseException] = queue.Queue()
        self.watching = threading.Event()
        self.stop_watching = threading.Event()
        self.stop_signal: int | None = None
        self.kill_now = False
        self.restart_asked = False
        self.serving: _Child | None = None  # the child told to serve, until it is gone
        self.live: list[_Child] = []  # every child not yet reaped

    # -- signals -------------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is not None:
            self.kill_now = True  # a second stop signal: do not wait for the drain
        self.stop_signal = signum

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.restart_asked = True

    def _on_forward(self, signum: int, frame: FrameType | None) -> None:
        child = self.serving
        if child is not None and not exited(child.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def _install(self) -> dict[int, Any]:
        handlers: dict[int, Callable[[int, FrameType | None], None]] = {
            signal.SIGTERM: self._on_stop,
            signal.SIGINT: self._on_stop,
            signal.SIGQUIT: self._on_stop,
            signal.SIGHUP: self._on_hup,
            signal.SIGUSR1: self._on_forward,  # reopen log files: the child's backend does it
        }
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        own_handlers_installed()  # a stop signal dropped before now (launcher.signals)
        return previous

    # -- the watcher thread --------------------------------------------------------------

    def _watch(self) -> None:
        """Put every burst of matching changes on the queue (an exception if watching fails)."""
        try:
            import watchfiles

            globs = self.globs

            class Filter(watchfiles.DefaultFilter):
                def __call__(self, change: watchfiles.Change, path: str) -> bool:
                    return super().__call__(change, path) and matches(path, globs)

            for batch in watchfiles.watch(
                *self.dirs,
                watch_filter=Filter(),
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                rust_timeout=RUST_TIMEOUT_MS,
                yield_on_timeout=True,
                stop_event=self.stop_watching,
                raise_interrupt=False,
            ):
                self.watching.set()
                if batch:
                    self.changes.put(sorted({path for _, path in batch}))
        except BaseException as exc:  # reported by the main thread, which stops
            self.changes.put(exc)
        finally:
            self.watching.set()

    # -- children ------------------------------------------------------------------------

    def _start(self) -> _Child:
        """A new child: it loads and checks everything, then waits to be released."""
        sys.stdout.flush()
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "launcher.launch.reload_child", str(os.getpid()), str(read_fd)],
                env=self.environ,
                process_group=0,
                pass_fds=(read_fd,),
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        child = _Child(proc, write_fd)
        self.live.append(child)
        return child

    def _serve(self, child: _Child) -> None:
        child.release()
        child.released = time.monotonic()
        self.serving = child

    def _restart_grace(self, child: _Child) -> float:
        """``RESTART_GRACE`` for a server that has been serving, none for one still booting."""
        young = child.released is None or time.monotonic() - child.released < YOUNG
        return 0.0 if young else RESTART_GRACE

    def _wait_gone(self, child: _Child, grace: float) -> None:
        """Wait up to ``grace`` s for ``child`` to exit, then kill what is left of its group and
        wait for it to be gone, so the next child can bind the same address."""
        child.close()
        deadline = time.monotonic() + grace
        while not exited(child.pid) and time.monotonic() < deadline and not self.kill_now:
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)  # leftovers (workers, its import check), or it
        child.proc.wait()
        deadline = time.monotonic() + GONE_DEADLINE
        while live_group_members(child.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.live.remove(child)
        _reap_orphans(c.pid for c in self.live)
        if self.serving is child:
            self.serving = None

    def _stop(self, child: _Child, grace: float) -> None:
        if grace and not exited(child.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)  # the child's backend drains its worker
        self._wait_gone(child, grace)

    def _report_exit(self, child: _Child) -> None:
        self._wait_gone(child, 0)
        status = child.proc.returncode
        if status < 0:
            how = f"was killed by {signal.Signals(-status).name}"
        else:
            how = f"exited with status {status}"
        self.say(f"the server {how}; waiting for a change to restart it")

    def _next_changes(self, timeout: float) -> list[str] | None:
        """The changed paths of every burst queued within ``timeout`` (None: none)."""
        try:
            item = self.changes.get(timeout=timeout)
        except queue.Empty:
            return None
        paths: set[str] = set()
        while True:
            if isinstance(item, BaseException):
                raise item
            paths.update(item)
            try:
                item = self.changes.get_nowait()
            except queue.Empty:
                return sorted(paths)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM, SIGINT or SIGQUIT (exit 0), restarting the server on changes."""
        previous = self._install()
        watcher = threading.Thread(target=self._watch, name="asgi-launcher-reload", daemon=True)
        try:
            watcher.start()
            # The first child starts only once the watcher watches: an edit made at any moment
            # after that is seen, and one made before is what the first child imports.
            deadline = time.monotonic() + WATCH_START_DEADLINE
            while not self.watching.wait(0.05):
                if self.stop_signal is not None:
                    return 0
                if time.monotonic() > deadline:
                    self.say(f"error: the watcher did not start within {WATCH_START_DEADLINE:g}s")
                    return 1
            if not watcher.is_alive() and not self.changes.empty():
                self.say(f"error: cannot watch {', '.join(self.dirs)}: {self.changes.get_nowait()}")
                return 1
            self.say(f"reload: watching {', '.join(self.dirs)} for changes to {', '.join(self.globs)}")
            self._serve(self._start())
            while self.stop_signal is None:
                try:
                    changed = self._next_changes(0.05)
                except BaseException as exc:
                    self.say(f"error: watching {', '.join(self.dirs)} failed: {exc}")
                    return 1
                if changed is not None or self.restart_asked:
                    if changed is not None:
                        self.say(f"{_describe(changed, self.dirs)} changed: restarting the server")
                        forget_bytecode(changed)
                    else:
                        self.say("got SIGHUP: restarting the server")
                    self.restart_asked = False
                    successor = self._start()  # loads while the current one drains
                    if self.serving is not None:
                        self._stop(self.serving, self._restart_grace(self.serving))
                    if self.stop_signal is not None:
                        break
                    self._serve(successor)
                elif self.serving is not None and exited(self.serving.pid):
                    self._report_exit(self.serving)
            name = signal.Signals(self.stop_signal).name
            if self.serving is not None:
                self.say(f"got {name}: stopping the server")
                self._stop(self.serving, self.config.graceful_timeout + STOP_MARGIN)
            return 0
        finally:
            self.stop_watching.set()
            for child in list(self.live):  # a successor never released, or after an error
                self._wait_gone(child, 0)
            watcher.join(2)
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve_reloading(config: Config, environ: Mapping[str, str], say: Callable[[str], None]) -> int:
    """``serve``'s last step under ``RELOAD``: the app checked, the address free, prestart done."""
    return Reloader(config, environ, say).run()
