"""The ``Master`` façade (see ``launcher.master``)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from launcher.config.addresses import (
    detach_listeners,
    refuse_new_connections,
    remove_socket_files,
    socket_files,
)
from launcher.config.model import Config
from launcher.errors import EXIT_WORKERS_FAILING
from launcher.master.policy import (
    IGNORED_SIGNALS,
    MEMORY_CHECK_EVERY,
    REASONS,
    CrashLoop,
    Decision,
    FailedBoots,
    describe_exit,
)
from launcher.master.state import StateDirectory
from launcher.procfs import memory_over
from launcher.signals import own_handlers_installed
from launcher.statedir import heartbeat_interval
from launcher.worker.bootstrap import WorkerContext

MIB = 1024 * 1024


class Master:
    """One master's start, stop and worker decisions (see the module docstring).

    ``loggers`` are the server's own loggers, set up by the time the master is made (more can
    follow: ``configure_logging``).
    """

    def __init__(self, config: Config, loggers: Iterable[str] = ()) -> None:
        from launcher.observability.logs import configure, launcher_logger

        self.config = config
        self.log: logging.Logger = launcher_logger(config)
        configure(config, loggers)
        self.state = StateDirectory()
        self.workers_wanted = config.workers
        self.crash_loop = CrashLoop(config.workers)
        self.boots = FailedBoots(config.workers)
        #: Replacements by reason: crash, max_requests, memory, timeout, reload, stopped.
        self.restarts: Counter[str] = Counter()
        #: A stop signal has arrived: ``/readyz`` is 503, exits are no longer replaced.
        self.draining = False
        #: The master has decided to give up: ``/livez`` is 503.
        self.gave_up = False
        #: How often the master's loop must turn for ``check`` (None: it may sleep until
        #: something happens).
        self.check_every: float | None = None
        if config.timeout > 0:
            self.check_every = heartbeat_interval(config.timeout)
        elif config.max_worker_memory:
            self.check_every = MEMORY_CHECK_EVERY
        self.metrics_dir: str | None = None
        if config.ops_port:
            self._prepare_metrics()
        self._alive: dict[int, float] = {}  # pid -> monotonic start
        self._stopped: dict[int, str] = {}  # pid -> why the master itself stopped it
        self._last_timeout_check = 0.0
        self._last_memory_check = 0.0
        self._ops: Any = None
        self._delay: threading.Timer | None = None
        self._delay_begun = False
        self._delay_done = False
        #: The lines signal handlers have had said (``_say``), joined at exit so none is lost.
        self._saying: list[threading.Thread] = []
        self._pid = os.getpid()
        self._last_trace = ""
        self._serves_in_process = False  # single-process mode: this process is its own worker
        #: The unix socket files the server had bound once it served, removed at the master's exit.
        self._socket_files: dict[str, tuple[int, int, int]] = {}

    # -- start and stop ------------------------------------------------------------------------

    def __enter__(self) -> Master:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """At the master's exit: the listener stops, the unix socket files it served on go (the
        same under every backend: a master whose sockets were detached at its stop would not
        know them for its own any more), and so does the state directory (with the metrics
        directory in it; one the user named is left as it is)."""
        if os.getpid() != self._pid:
            return
        if self._delay is not None:
            self._delay.cancel()
        for thread in self._saying:
            thread.join(1.0)
        if self._ops is not None:
            from launcher.master import ops

            ops.stop(self._ops)
            self._ops = None
        remove_socket_files(self._socket_files)
        self.state.remove()

    def configure_logging(self, loggers: Iterable[str] = ()) -> None:
        """Set ``logging`` up again, for a server that has set up its loggers (again)."""
        from launcher.observability.logs import configure

        configure(self.config, loggers)

    def worker_context(self, *, in_master: bool = False) -> WorkerContext:
        """What each worker needs from this master (picklable: spawned workers get a copy).
        ``in_master``: the app is served in this very process (single-process mode)."""
        self._serves_in_process = self._serves_in_process or in_master
        return WorkerContext(
            config=dataclasses.replace(self.config, server_settings={}),
            state_dir=self.state.path,
            master_pid=None if in_master else self._pid,
        )

    def serving(self) -> None:
        """Call once the master has installed its own signal handlers and its server listens, before
        it starts workers.

        Wraps its SIGTERM, SIGINT and SIGQUIT handlers (each makes ``/readyz`` 503 at once; the
        first SIGTERM reaches the master's handler only after ``SHUTDOWN_DELAY``) and starts the
        operations listener (``OPS_PORT``).
        """
        self._socket_files = socket_files(self.config.bind)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            inner = signal.getsignal(signum)
            if callable(inner):
                signal.signal(signum, self._stop_signal(inner))
        if self.config.ops_port and self._ops is None:
            from launcher.master import ops

            self._ops = ops.start(self, self.config.ops_host, self.config.ops_port)
        own_handlers_installed()  # a stop signal dropped before serving (launcher.signals)

    def _prepare_metrics(self) -> None:
        from launcher.observability import metrics

        if not metrics.available():
            self.log.warning(
                "OPS_PORT: /metrics is off: prometheus_client is not installed (%s)", metrics.INSTALL_HINT
            )
            return
        self.metrics_dir, own = metrics.prepare_directory(self.state.path)
        metrics.preload()  # (before any worker is forked: see its docstring)
        if not own:
            self.log.info(
                "metrics: using %s=%s as set (shared, so not wiped at start or exit)",
                metrics.MULTIPROC_ENV,
                self.metrics_dir,
            )

    def _stop_signal(self, inner: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        def handler(signum: int, frame: Any) -> Any:
            self.draining = True
            delay = self.config.shutdown_delay
            if signum == signal.SIGTERM and delay > 0 and not self._delay_done:
                if not self._delay_begun:
                    # Claimed first, by a plain assignment: a second SIGTERM whose handler runs
                    # inside this one (Python runs a handler at the next call or loop of the
                    # code it interrupts, this handler's own included) finds the delay begun and
                    # skips it, rather than beginning it again and being lost.
                    self._delay_begun = True
                    self.say(
                        f"got SIGTERM: not ready (/readyz 503); serving on for SHUTDOWN_DELAY={delay}s, then stopping"
                    )
                    # Every response from now on asks its client to close the connection, so pooled
                    # keep-alive clients move to other replicas during the delay.
                    self.state.notice_shutdown()
                    self._delay = threading.Timer(delay, self._delay_over)
                    self._delay.daemon = True
                    self._delay.start()
                    return None
                self.say("got a second SIGTERM: skipping the rest of SHUTDOWN_DELAY")
            if self._delay_begun and not self._delay_done:
                self._delay_done = True  # (the timer, if this interrupted its start, then does nothing)
                if self._delay is not None:
                    self._delay.cancel()
            # Workers stopping now drain gently after a SHUTDOWN_DELAY (its notice is there: its
            # responses have been closing connections), promptly without one. The master's own
            # copies of the listening sockets go now: once the workers have stopped accepting too,
            # a new connection is refused rather than left waiting for nobody in the queue.
            self.state.notice_stop()
            if os.getpid() == self._pid:
                refuse_new_connections(self.config.bind)  # what is queued is still accepted
                if not self._serves_in_process:  # (its server closes its own, once drained)
                    detach_listeners(self.config.bind)
            return inner(signum, frame)

        return handler

    def say(self, message: str, level: int = logging.INFO, first: Callable[[], object] | None = None) -> None:
        """Log ``message`` (after ``first``, if given) from a thread of its own: what a signal
        handler says goes through here. A handler runs inside whatever it interrupted, logging's
        own write included: a second SIGTERM landing in the first one's line got "reentrant
        call" from stderr's buffer, and the stop it was to make was lost. Joined at exit."""

        def run() -> None:
            if first is not None:
                first()
            self.log.log(level, message)

        thread = threading.Thread(target=run, name="asgi-launcher-say", daemon=True)
        thread.start()
        self._saying.append(thread)

    def _delay_over(self) -> None:
        if not self._delay_done:
            self._delay_done = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)  # handled on the main thread, as any signal

    # -- workers ---------------------------------------------------------------------------

    def spawned(self, pid: int) -> None:
        self._alive[pid] = time.monotonic()
        self.state.born(pid)

    def booted(self, pid: int) -> bool:
        """Whether worker ``pid``'s app has started (its mark in the state directory)."""
        return self.state.booted(pid)

    def stopping(self, pid: int, why: str) -> None:
        """The master is stopping ``pid`` itself (``why``: ``"reload"``, ``"scale-down"``, ...):
        its exit will not count as a crash, whatever its status."""
        self._stopped.setdefault(pid, why)

    def stopped_by_master(self, pid: int) -> bool:
        return pid in self._stopped

    def exited(self, pid: int, code: int | None, *, booted: bool | None = None) -> Decision:
        """Worker ``pid`` is gone and reaped (``code`` as ``os.waitstatus_to_exitcode`` gives it):
        one line, and what to do. ``booted``: whether its app had started (by default, its mark
        in the state directory)."""
        if booted is None:
            booted = self.state.booted(pid)
        cause, trace = ("", "") if booted else self.state.failure(pid)
        if code == 0 and self.state.retiring(pid) == "memory":  # it said so itself, in its line
            self._stopped.setdefault(pid, "memory")
        started = self._alive.pop(pid, None)
        self.state.forget(pid)
        if self.metrics_dir is not None:
            from launcher.observability import metrics

            with contextlib.suppress(OSError):
                metrics.mark_dead(pid, self.metrics_dir)
        why = self._stopped.pop(pid, None)
        if self.draining or self.gave_up:
            return Decision(replace=False)
        if booted:
            self.boots.booted()
        if why is not None:
            self.restarts[REASONS.get(why, "stopped")] += 1
            return Decision(replace=why != "reload")  # a reload's successor already runs
        if not booted and code != 0 and code != -signal.SIGTERM:
            return self._failed_boot(pid, code, cause, trace, started)
        return self._ended(pid, code)

    def _ended(self, pid: int, code: int | None) -> Decision:
        if code == 0:
            self.restarts["max_requests" if self.config.max_requests else "stopped"] += 1
            if self.config.max_requests:
                self.log.info(
                    "worker %d retired after MAX_REQUESTS=%d; starting a new one",
                    pid,
                    self.config.max_requests,
                )
            else:
                self.log.info("worker %d exited (exit status 0); starting a new one", pid)
            return Decision(replace=True)
        if code == -signal.SIGTERM:
            self.restarts["stopped"] += 1
            self.log.info("worker %d stopped (SIGTERM); starting a new one", pid)
            return Decision(replace=True)
        self.restarts["crash"] += 1
        self.log.warning("worker %d died (%s); starting a replacement", pid, describe_exit(code))
        if self.crash_loop.record_death():
            self.log.error(
                "workers keep dying (%s): the app is failing; giving up (exit %d)",
                self.crash_loop.describe(),
                EXIT_WORKERS_FAILING,
            )
            self.giving_up()
            return Decision(replace=False, give_up=True)
        return Decision(replace=True)

    def _failed_boot(
        self, pid: int, code: int | None, cause: str, trace: str, started: float | None
    ) -> Decision:
        last = self.boots.failed()
        self.restarts["crash"] += 1
        if trace and trace != self._last_trace:  # each traceback once, not once a worker
            self._last_trace = trace
            self.log.error("%s", trace)
        took = f" after {time.monotonic() - started:.1f}s" if started is not None else ""
        self.log.error(
            "worker %d failed to boot%s (%s%s); %d of %d failed boots in a row",
            pid,
            f": {cause}" if cause else "",
            describe_exit(code),
            took,
            self.boots.count,
            self.boots.limit,
        )
        if last:
            self.log.error("workers cannot boot: giving up (exit %d)", EXIT_WORKERS_FAILING)
            self.giving_up()
            return Decision(replace=False, give_up=True)
        return Decision(replace=True, after=self.boots.pause())

    def giving_up(self) -> None:
        """The master has decided to stop for good (``/livez`` 503 from now on)."""
        self.gave_up = True

    def check(self, pids: Iterable[int], stop_gracefully: Callable[[int], None]) -> None:
        """TIMEOUT and MAX_WORKER_MEMORY, on every turn of the master's loop (it looks at most
        every ``check_every`` seconds): an overdue worker is killed (SIGKILL), an oversized one
        retired with ``stop_gracefully(pid)``, the master's own graceful stop of one worker.
        Either is then replaced, as after MAX_REQUESTS, and never counts as a crash."""
        pids = list(pids)
        self.stop_overdue(pids)
        self.stop_oversized(pids, stop_gracefully)

    def stop_overdue(self, pids: Iterable[int], kill: Callable[[int, int], None] = os.kill) -> list[int]:
        """Kill every worker whose event loop has not turned for TIMEOUT; return them."""
        timeout = self.config.timeout
        now = time.monotonic()
        if timeout <= 0 or self.check_every is None or now - self._last_timeout_check < self.check_every:
            return []
        self._last_timeout_check = now
        killed = []
        for pid in self.state.overdue([p for p in pids if p not in self._stopped], timeout):
            self.log.error(
                "worker %d timed out: its event loop did not turn for %ss (TIMEOUT=%s); "
                "killed, starting a replacement",
                pid,
                timeout,
                timeout,
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
        """Retire every worker whose own memory exceeds MAX_WORKER_MEMORY; return them. It
        measures at most every ``MEMORY_CHECK_EVERY`` seconds, and a worker's USS only when its
        RSS is over the limit (``launcher.procfs.memory_over``, the default ``measure``). A
        worker's pipeline looks after each of its requests and retires it itself (one line,
        and a mark this reads): this look is for memory that grows between requests."""
        limit_mib = self.config.max_worker_memory
        now = time.monotonic()
        # A little slack: a loop that wakes every MEMORY_CHECK_EVERY (Gunicorn's arbiter sleeps
        # 1 s) must not miss every other look for waking a moment early.
        if not limit_mib or now - self._last_memory_check < MEMORY_CHECK_EVERY * 0.9:
            return []
        self._last_memory_check = now
        over = measure or memory_over
        stopped = []
        for pid in pids:
            if pid in self._stopped or self.state.retiring(pid):  # retired already, or retiring itself
                continue
            used = over(pid, limit_mib * MIB)
            if used is None:
                continue
            if not self.state.claim_retiring(pid):
                continue  # it found itself over after a request, just now, and said so
            size, figure = used
            self.log.warning(
                "worker %d uses %.1f MiB (%s), over MAX_WORKER_MEMORY=%d MiB; retiring it gracefully, "
                "starting a new one",
                pid,
                size / MIB,
                figure,
                limit_mib,
            )
            self._stopped[pid] = "memory"
            with contextlib.suppress(ProcessLookupError):
                stop_gracefully(pid)
            stopped.append(pid)
        return stopped

    # -- what the operations listener and the signal table ask -----------------------------

    def booted_count(self) -> int:
        """Live workers that have booted (safe from the listener's thread: a snapshot of pids)."""
        from launcher.procfs import running

        return sum(self.state.booted(pid) for pid in tuple(self._alive) if running(pid))

    def readiness(self) -> dict[str, Any]:
        """``/readyz``'s answer: ready with one booted worker and no shutdown begun."""
        booted = self.booted_count()
        return {
            "ready": booted > 0 and not self.draining and not self.gave_up,
            "workers_booted": booted,
            "workers_wanted": self.workers_wanted,
            "draining": self.draining or self.gave_up,
        }

    def ignored(self, signum: int) -> None:
        """One line for a signal the table says is ignored."""
        why = IGNORED_SIGNALS.get(signum, "it has no meaning here")
        self.say(f"got {signal.Signals(signum).name}: ignored ({why})")  # (from a signal handler too)

    def reopening_logs(self, workers: bool = True) -> None:
        """SIGUSR1: reopen this process's log files. A master forwards the signal to its workers
        too; a server with none (single-process mode) says ``workers=False``."""
        from launcher.observability.logs import reopen_files

        # (From a signal handler too: reopening a file the interrupted code is writing to is no
        # safer there than logging.)
        self.say(
            f"got SIGUSR1: log files reopened{'; telling the workers' if workers else ''}", first=reopen_files
        )
