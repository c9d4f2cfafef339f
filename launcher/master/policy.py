"""The rules every backend's master applies to its workers: one home, used by every plugin.

A backend's master (Gunicorn's arbiter, the Hypercorn supervisor, Granian's server) owns its
processes; what it decides about them comes from here, so a user who switches backend sees the
same behaviour and the same log lines:

* **Crash loop.** A worker killed now and then (the OOM killer, an operator's ``kill -9``) is
  simply replaced. Workers that keep dying mean the app is broken; replacing them forever hides
  that behind a service that answers intermittently, so the master gives up with exit 3 and the
  container runtime can report it.
* **Which exits count.** A worker that exits 0 on its own has retired (``MAX_REQUESTS``); one
  the master stopped itself (``TIMEOUT``) is not the app's fault. Neither counts as a crash.
* **TIMEOUT.** Each worker's event loop refreshes a heartbeat file (``launcher.worker.pipeline`` does
  it, in every worker); a worker whose loop has not turned for ``TIMEOUT`` seconds (an async
  handler calling ``time.sleep``) is killed and replaced, with one line naming it.
* **MAX_WORKER_MEMORY.** A worker whose own memory (USS, ``launcher.procfs``) has grown past
  it is retired gracefully by the master's own stop-one-worker function and replaced, with one
  line giving the figure; like a MAX_REQUESTS retirement it is no crash.
* **The OOM killer.** Every worker raises its ``oom_score_adj`` (``worker_started``), so when
  the container reaches its memory limit the kernel kills a worker, which is replaced, and
  never the master.
* **Readiness and SHUTDOWN_DELAY.** Each worker's pipeline marks itself booted in the master's
  state directory once its lifespan startup is done; with ``OPS_PORT`` the master answers
  ``/livez``, ``/readyz`` and ``/metrics`` from that (``launcher.master.ops``). The first SIGTERM makes
  ``/readyz`` 503 at once; with ``SHUTDOWN_DELAY`` the master's own handler only sees it that
  many seconds later, so the endpoints controller stops routing before the server stops
  accepting (``started`` wraps the master's handlers; a second SIGTERM skips the delay).

The plugin surface is ``Supervision`` (one per master) and ``master_log``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launcher.config.resolve import Config

#: The exit status when workers keep dying or cannot boot (Gunicorn's "worker failed to boot").
EXIT_WORKERS_FAILING = 3
#: Seconds between two looks at the workers' memory (MAX_WORKER_MEMORY).
MEMORY_CHECK_EVERY = 1.0
MIB = 1024 * 1024


@dataclass
class CrashLoop:
    """Counts unexpected deaths of workers in a sliding window.

    ``limit`` deaths within ``window`` seconds (default ``max(5, 2 * workers)`` in 30 s) is a
    crash loop: far more than bad luck, far fewer than a broken app produces in that time.
    """

    workers: int
    window: float = 30.0
    limit: int = 0
    _deaths: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.limit <= 0:
            self.limit = max(5, 2 * self.workers)

    def record_death(self, now: float | None = None) -> bool:
        """Note one unexpected worker death; True when that makes a crash loop."""
        now = time.monotonic() if now is None else now
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.window:
            self._deaths.popleft()
        return len(self._deaths) >= self.limit

    def describe(self) -> str:
        return f"{len(self._deaths)} workers died within {self.window:.0f}s"


def heartbeat_interval(timeout: float) -> float:
    """How often a worker's loop refreshes its heartbeat: often enough to be well inside TIMEOUT."""
    return max(0.05, min(1.0, timeout / 4))


def _shared_memory_dir() -> str:
    """tmpfs when there is one (no disk writes), else the temporary directory."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


#: Heartbeat directories are named ``asgi-launcher-<master pid>-<random>``.
HEARTBEAT_PREFIX = "asgi-launcher-"


def remove_stale_heartbeats(parent: str) -> int:
    """Remove the heartbeat directories of masters that are gone (a SIGKILL leaves its own behind).

    Only directories of this user whose master pid no longer runs; returns how many.
    """
    removed = 0
    try:
        entries = os.listdir(parent)
    except OSError:
        return 0
    for name in entries:
        pid_text = name[len(HEARTBEAT_PREFIX) :].partition("-")[0]
        if not name.startswith(HEARTBEAT_PREFIX) or not pid_text.isdigit():
            continue
        path = os.path.join(parent, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        except OSError:
            continue  # alive (EPERM: another user's process) or unreadable: not ours to remove
    return removed


class Watchdog:
    """The master's side of TIMEOUT: one heartbeat file per worker pid in a private directory.

    A worker whose file has not been touched for ``timeout`` seconds (counted from its spawn
    until its first beat, as Gunicorn counts boot time) is overdue.
    """

    def __init__(self, timeout: float, directory: str | None = None) -> None:
        self.timeout = timeout
        self.directory = directory or state_directory()
        self._born: dict[int, float] = {}

    def born(self, pid: int, now: float | None = None) -> None:
        self._born[pid] = time.time() if now is None else now

    def forget(self, pid: int) -> None:
        self._born.pop(pid, None)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.directory, str(pid)))

    def last_beat(self, pid: int) -> float:
        try:
            return os.stat(os.path.join(self.directory, str(pid))).st_mtime
        except OSError:
            return self._born.get(pid, time.time())

    def overdue(self, pids: Iterable[int], now: float | None = None) -> list[int]:
        now = time.time() if now is None else now
        return [pid for pid in pids if now - self.last_beat(pid) > self.timeout]

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def state_directory() -> str:
    """A fresh private directory for this master's workers to write to (heartbeats, boot marks,
    metrics): on tmpfs when there is one, named so the next master can remove it if this one
    is killed (``remove_stale_heartbeats``)."""
    parent = _shared_memory_dir()
    remove_stale_heartbeats(parent)
    return tempfile.mkdtemp(prefix=f"{HEARTBEAT_PREFIX}{os.getpid()}-", dir=parent)


#: The master's notice in the state directory that a SHUTDOWN_DELAY has begun.
SHUTDOWN_NOTICE = "shutting-down"

#: A worker's mark in the state directory that it has booted: ``<pid>.booted``.
BOOTED_SUFFIX = ".booted"


def mark_booted(directory: str) -> None:
    """Called in a worker (by the pipeline) once its app has started: it may get traffic."""
    with contextlib.suppress(OSError):
        os.close(
            os.open(os.path.join(directory, f"{os.getpid()}{BOOTED_SUFFIX}"), os.O_WRONLY | os.O_CREAT, 0o600)
        )


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def describe_exit(code: int | None) -> str:
    """``exit status 1`` or ``killed by SIGKILL``, from a ``waitstatus_to_exitcode``-style code."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def exit_code(wait_status: int) -> int:
    """``os.waitpid``'s status as an exit code (negative: killed by that signal)."""
    return os.waitstatus_to_exitcode(wait_status)


class Supervision:
    """One master's worker policy: what each exit means, when to give up, who is overdue.

    The master reports what happens (``spawned``, ``exited``) and asks what to do
    (``exited`` returns True when it must give up with ``EXIT_WORKERS_FAILING``;
    ``stop_overdue`` kills the workers TIMEOUT caught). Every line it logs goes to ``log``.
    """

    def __init__(self, config: Config, log: logging.Logger) -> None:
        self.log = log
        self.timeout = config.timeout
        self.max_requests = config.max_requests
        self.crash_loop = CrashLoop(workers=config.workers)
        self.workers_wanted = config.workers
        self.ops_address = (config.ops_host, config.ops_port) if config.ops_port else None
        self.shutdown_delay = config.shutdown_delay
        #: A shutdown has begun (a stop signal arrived): ``/readyz`` says 503 from now on.
        self.draining = False
        #: The master has decided to give up (crash loop, workers that cannot boot): ``/livez`` 503.
        self.gave_up = False
        #: Replacements by reason: crash, max_requests, memory, timeout, reload, stopped.
        self.restarts: Counter[str] = Counter()
        self._alive: set[int] = set()
        # Workers need somewhere to write when TIMEOUT (heartbeats) or OPS_PORT (boot marks,
        # metrics) is on, and to look for the shutdown notice in (SHUTDOWN_DELAY).
        self.state_dir = (
            state_directory() if config.timeout > 0 or config.ops_port or config.shutdown_delay else None
        )
        self.watchdog = Watchdog(config.timeout, self.state_dir) if config.timeout > 0 else None
        self.metrics_dir: str | None = None
        self._own_metrics_dir = False
        if self.ops_address and self.state_dir:
            self._prepare_metrics(self.state_dir)
        self._ops: Any = None
        self._delay: threading.Timer | None = None
        self._delay_done = False
        self.max_worker_memory = config.max_worker_memory  # MiB, None: off
        #: How often the master's loop must turn for ``stop_overdue`` and ``stop_oversized``
        #: (None: neither is on, the loop may sleep until something happens).
        self.check_every: float | None = None
        if config.timeout > 0:
            self.check_every = heartbeat_interval(config.timeout)
        elif self.max_worker_memory:
            self.check_every = MEMORY_CHECK_EVERY
        self._stopped: dict[int, str] = {}  # pid -> why the master itself stopped it
        self._last_check = 0.0
        self._last_memory_check = 0.0
        self._master = os.getpid()  # a forked worker inherits this object: only the master cleans up

    @property
    def heartbeat_dir(self) -> str | None:
        """The master's state directory, which each worker's pipeline writes to (its heartbeat for
        TIMEOUT, its boot mark for ``/readyz``): pass it to ``launcher.pipeline.build``."""
        return self.state_dir

    def _prepare_metrics(self, state_dir: str) -> None:
        from launcher.observability import metrics

        if not metrics.available():
            self.log.warning(
                "OPS_PORT: /metrics is off: prometheus_client is not installed (%s)", metrics.INSTALL_HINT
            )
            return
        self.metrics_dir, self._own_metrics_dir = metrics.prepare_directory(state_dir)
        if not self._own_metrics_dir:
            self.log.info(
                "metrics: using %s=%s as set (shared, so not wiped at start or exit)",
                metrics.MULTIPROC_ENV,
                self.metrics_dir,
            )

    def started(self) -> None:
        """Call once the master has installed its own signal handlers, before it starts workers.

        Starts the operations listener (``OPS_PORT``) and wraps the master's SIGTERM, SIGINT and
        SIGQUIT handlers: each makes ``/readyz`` 503 at once, and the first SIGTERM reaches the
        master's handler only after ``SHUTDOWN_DELAY`` (a second SIGTERM, or SIGQUIT, at once).
        """
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            inner = signal.getsignal(signum)
            if callable(inner):
                signal.signal(signum, self._stop_signal(inner))
        if self.ops_address and self._ops is None:
            from launcher.master import ops

            host, port = self.ops_address
            self._ops = ops.start(self, host, port)

    def _stop_signal(self, inner: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        def handler(signum: int, frame: Any) -> Any:
            self.draining = True
            if signum == signal.SIGTERM and self.shutdown_delay > 0 and not self._delay_done:
                if self._delay is None:
                    self.log.info(
                        "got SIGTERM: not ready (/readyz 503); serving on for SHUTDOWN_DELAY=%ss, then stopping",
                        self.shutdown_delay,
                    )
                    self._notify_workers()
                    self._delay = threading.Timer(self.shutdown_delay, self._delay_over)
                    self._delay.daemon = True
                    self._delay.start()
                    return None
                self.log.info("got a second SIGTERM: skipping the rest of SHUTDOWN_DELAY")
            if self._delay is not None and not self._delay_done:
                self._delay_done = True
                self._delay.cancel()
            return inner(signum, frame)

        return handler

    def _notify_workers(self) -> None:
        """Leave the shutdown notice for the workers' pipelines: from now on each response asks
        its client to close the connection, so pooled keep-alive clients move to other replicas
        during the delay instead of finding their idle connection closed by the drain."""
        if self.state_dir:
            with contextlib.suppress(OSError):
                os.close(
                    os.open(os.path.join(self.state_dir, SHUTDOWN_NOTICE), os.O_WRONLY | os.O_CREAT, 0o600)
                )

    def _delay_over(self) -> None:
        if not self._delay_done:
            self._delay_done = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._master, signal.SIGTERM)  # handled on the main thread, as any signal

    def booted_count(self) -> int:
        """Live workers that have marked themselves booted (safe from the listener's thread:
        it reads a snapshot of the pids)."""
        if self.state_dir is None:
            return 0
        alive = [pid for pid in tuple(self._alive) if _running(pid)]
        return sum(os.path.exists(os.path.join(self.state_dir, f"{pid}{BOOTED_SUFFIX}")) for pid in alive)

    def readiness(self) -> dict[str, Any]:
        """``/readyz``'s answer: ready with one booted worker and no shutdown begun."""
        booted = self.booted_count()
        ready = booted > 0 and not self.draining and not self.gave_up
        return {
            "ready": ready,
            "workers_booted": booted,
            "workers_wanted": self.workers_wanted,
            "draining": self.draining or self.gave_up,
        }

    def giving_up(self) -> None:
        """The master has decided to stop for good (``/livez`` 503 from now on)."""
        self.gave_up = True

    def spawned(self, pid: int) -> None:
        self._alive.add(pid)
        if self.watchdog:
            self.watchdog.born(pid)

    def forget(self, pid: int) -> None:
        """``pid`` is gone and was reaped (call for every worker ``exited`` is not told about,
        such as one that failed to boot): its files leave the state directory."""
        self._alive.discard(pid)
        if self.watchdog:
            self.watchdog.forget(pid)
        if self.state_dir:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.state_dir, f"{pid}{BOOTED_SUFFIX}"))
        if self.metrics_dir:
            from launcher.observability import metrics

            with contextlib.suppress(OSError):
                metrics.mark_dead(pid, self.metrics_dir)

    def stop_overdue(self, pids: Iterable[int], kill: Callable[[int, int], None] = os.kill) -> list[int]:
        """Kill (SIGKILL) every worker whose event loop has not turned for TIMEOUT; return them.

        Cheap to call on every turn of a master's loop: it looks at the files at most once per
        heartbeat interval.
        """
        if self.watchdog is None or self.check_every is None:
            return []
        now = time.monotonic()
        if now - self._last_check < self.check_every:
            return []
        self._last_check = now
        killed = []
        for pid in self.watchdog.overdue(p for p in pids if p not in self._stopped):
            self.log.error(
                "worker %d timed out: its event loop did not turn for %ss (TIMEOUT=%s); "
                "killed, starting a replacement",
                pid,
                self.timeout,
                self.timeout,
            )
            self._stopped[pid] = "timeout"
            with contextlib.suppress(ProcessLookupError):
                kill(pid, signal.SIGKILL)
            killed.append(pid)
        return killed

    def stop_oversized(
        self,
        pids: Iterable[int],
        stop_gracefully: Callable[[int], None],
        measure: Callable[[int, int], tuple[int, str] | None] | None = None,
    ) -> list[int]:
        """Retire every worker whose own memory exceeds MAX_WORKER_MEMORY; return them.

        ``stop_gracefully(pid)`` is the master's own graceful stop of one worker (it finishes
        its in-flight requests and exits); the master replaces it as after MAX_REQUESTS, and its
        exit never counts as a crash. Cheap to call on every turn of the loop: it measures at
        most every ``MEMORY_CHECK_EVERY`` seconds, and reads a worker's USS only when its RSS is
        over the limit (``launcher.memory.memory_over``, the default ``measure``).
        """
        if not self.max_worker_memory:
            return []
        now = time.monotonic()
        # A little slack: a loop that wakes every MEMORY_CHECK_EVERY (Gunicorn's arbiter sleeps
        # 1 s) must not miss every other look for waking a moment early.
        if now - self._last_memory_check < MEMORY_CHECK_EVERY * 0.9:
            return []
        self._last_memory_check = now
        from launcher.procfs import memory_over

        over = measure or memory_over
        limit = self.max_worker_memory * MIB
        stopped = []
        for pid in pids:
            if pid in self._stopped:
                continue
            used = over(pid, limit)
            if used is None:
                continue
            size, figure = used
            self.log.warning(
                "worker %d uses %.1f MiB (%s), over MAX_WORKER_MEMORY=%d MiB; retiring it gracefully, "
                "starting a new one",
                pid,
                size / MIB,
                figure,
                self.max_worker_memory,
            )
            self._stopped[pid] = "memory"
            with contextlib.suppress(ProcessLookupError):
                stop_gracefully(pid)
            stopped.append(pid)
        return stopped

    def stopped_by_master(self, pid: int) -> bool:
        """Whether the master itself stopped ``pid`` (so its death is not the app's fault)."""
        return pid in self._stopped

    def stopping(self, pid: int, why: str) -> None:
        """The master is stopping ``pid`` itself (``why``: ``"reload"``, ``"scale-down"``, ...):
        its exit will not count as a crash, whatever its status."""
        self._stopped.setdefault(pid, why)

    def replaces(self, pid: int) -> bool:
        """Whether a worker that has just ended must be replaced: not one the master stopped
        for a reload (its successor is already running). Ask before ``exited``."""
        return self._stopped.get(pid) != "reload"

    def exited(self, pid: int, code: int | None, *, stopping: bool = False) -> bool:
        """A booted worker is gone (``code`` as ``exit_code`` gives it). True: give up now.

        During the master's own shutdown nothing counts and nothing is logged here. A worker the
        master stopped, one that retired (exit 0) and one that obeyed a SIGTERM (Uvicorn re-raises
        the SIGTERM it was stopped with) are not crashes.
        """
        self.forget(pid)
        why = self._stopped.pop(pid, None)
        if stopping:
            return False
        if why is not None:
            self.restarts[_REASONS.get(why, "stopped")] += 1
            return False
        self.restarts[self._reason(code)] += 1
        if code == 0:
            if self.max_requests:
                self.log.info(
                    "worker %d retired after MAX_REQUESTS=%d; starting a new one", pid, self.max_requests
                )
            else:
                self.log.info("worker %d exited (exit status 0); starting a new one", pid)
            return False
        if code == -signal.SIGTERM:
            self.log.info("worker %d stopped (SIGTERM); starting a new one", pid)
            return False
        self.log.warning("worker %d died (%s); starting a replacement", pid, describe_exit(code))
        if self.crash_loop.record_death():
            self.log.error(
                "workers keep dying (%s): the app is failing; giving up (exit %d)",
                self.crash_loop.describe(),
                EXIT_WORKERS_FAILING,
            )
            self.giving_up()
            return True
        return False

    def _reason(self, code: int | None) -> str:
        if code == 0:
            return "max_requests" if self.max_requests else "stopped"
        return "stopped" if code == -signal.SIGTERM else "crash"

    def ignored(self, signum: int) -> None:
        """One line for a signal the table says is ignored."""
        why = IGNORED_SIGNALS.get(signum, "it has no meaning here")
        self.log.info("got %s: ignored (%s)", signal.Signals(signum).name, why)

    def reopening_logs(self, workers: bool = True) -> None:
        """SIGUSR1: reopen this process's log files. A master forwards the signal to its workers
        too; a server with none (single-process mode) says ``workers=False``, and its line
        does not mention them."""
        from launcher.observability.logs import reopen_files

        reopen_files()
        self.log.info("got SIGUSR1: log files reopened%s", "; telling the workers" if workers else "")

    def close(self) -> None:
        """At the master's exit: its state directory goes (and the metrics directory in it; one
        the user named is left as it is)."""
        if os.getpid() != self._master:
            return
        if self._delay is not None:
            self._delay.cancel()
        if self.state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


#: ``Supervision.stopping``'s reasons as ``asgi_launcher_worker_restarts_total``'s label.
_REASONS = {"timeout": "timeout", "memory": "memory", "reload": "reload"}


#: The signal table's "ignored" rows: signal -> why. (SIGTERM/SIGINT drain, SIGQUIT stops at
#: once, SIGHUP restarts the workers, SIGUSR1 reopens log files.)
IGNORED_SIGNALS: dict[int, str] = {
    signal.SIGTTIN: "the worker count follows the environment: set WEB_CONCURRENCY, or scale replicas",
    signal.SIGTTOU: "the worker count follows the environment: set WEB_CONCURRENCY, or scale replicas",
    signal.SIGUSR2: "no re-exec: send SIGHUP to restart the workers on new code",
    signal.SIGWINCH: "not a daemon",
}

_PR_SET_PDEATHSIG = 1

#: How far above the master's ``oom_score_adj`` a worker puts its own (capped at the kernel's
#: maximum, 1000). The OOM killer picks the process with the highest ``memory + adj / 1000 *
#: the memory it may use``: 1000 more than the master is a whole limit's worth, so a worker is
#: chosen before the master whatever their sizes, and among workers the largest.
WORKER_OOM_SCORE_GAP = 1000
OOM_SCORE_ADJ_MAX = 1000


def _read_oom_score_adj(pid: int | str) -> int | None:
    try:
        with open(f"/proc/{pid}/oom_score_adj") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def raise_oom_score(master_pid: int) -> int | None:
    """Make this process the OOM killer's choice before the master: its ``oom_score_adj`` goes to
    the master's + ``WORKER_OOM_SCORE_GAP``, at most 1000. Raising it needs no privilege; it is
    never lowered. Returns the value now in force (None where there is no ``/proc``)."""
    master = _read_oom_score_adj(master_pid)
    own = _read_oom_score_adj("self")
    if own is None:
        return None
    wanted = min(OOM_SCORE_ADJ_MAX, (own if master is None else master) + WORKER_OOM_SCORE_GAP)
    if wanted <= own:
        return own
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(wanted))
    except OSError:
        return own
    return wanted


def worker_started(master_pid: int, config: Config | None = None, loggers: Iterable[str] = ()) -> None:
    """What every worker does first, under every backend: die with its master, reopen its log
    files on SIGUSR1, be the OOM killer's first choice, and (given ``config``) set up ``logging``
    as every process of the launcher does (``launcher.logs.configure``: LOG_FORMAT, LOG_LEVEL,
    LOG_CONFIG; ``loggers`` are the server's own).

    The kernel sends the worker SIGKILL when its master dies (``PR_SET_PDEATHSIG``), so a master
    killed with SIGKILL (or by the OOM killer) leaves no worker serving on with nobody to replace
    it and the port held. The worker raises its ``oom_score_adj`` (``raise_oom_score``), so a
    container at its memory limit loses a worker, which the master replaces, not the master; the
    helpers the master starts itself (multiprocessing's resource tracker) keep its score.
    """
    from launcher.observability.logs import configure, reopen_files
    from launcher.signals import worker_signals

    if config is not None:
        configure(config, loggers)
    raise_oom_score(master_pid)
    worker_signals(lambda _signum, _frame: reopen_files())
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master_pid:  # the master died before the line above: nobody to serve for
        os._exit(0)


def master_log(config: Config, name: str = "asgi_launcher") -> logging.Logger:
    """The launcher's own lines in a master: ``asgi-launcher: ...`` (with ``LOG_FORMAT=json``, one
    JSON object each) where ERROR_LOG says, at LOG_LEVEL."""
    from launcher.observability.logs import formatter

    logger = logging.getLogger(name)
    handler: logging.Handler
    if config.error_log is None:
        handler = logging.NullHandler()
    elif config.error_log == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(config.error_log)
    handler.setFormatter(formatter(config, "asgi-launcher: %(message)s", None))
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(config.log_level.upper())
    return logger
