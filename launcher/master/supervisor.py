"""The master loop for a server that has no master of its own: one home for the worker policy.

Two built-in backends (Hypercorn, Uvicorn) run their workers under the launcher's own
supervisor, because their servers' multi-worker modes do not keep the launcher's rules. The
rules are the same under both, so the loop that keeps them lives here once (as Gunicorn's
arbiter is the one place that owns its worker policy), and a plugin supplies only what is its
server's: how to start one worker process and how to begin its graceful stop
(``WorkerSupervisor.spawn_process``, returning a ``WorkerProcess``).

What the loop holds, the same under every backend that uses it:

* **The signal table.** SIGTERM / SIGINT: stop gracefully, kill whatever is left after
  GRACEFUL_TIMEOUT (+ ``kill_margin`` for the lifespan shutdown), exit 0. A second one, or
  SIGQUIT: kill the workers now (still exit 0: the stop was asked for). SIGHUP: a rolling
  restart, every worker gets a successor at once and each old one stops gracefully as a
  successor reports booted. SIGUSR1: reopen the log files, and forward it to the workers. The
  others: ignored, with a line (``Supervision.ignored``). Handlers only note the signal and
  wake the loop through a self-pipe; the loop acts on it.
* **Deaths.** A worker that dies after it booted is reported to ``Supervision.exited`` (one
  line; the crash-loop rule) and replaced unless ``Supervision.replaces`` says a successor
  already runs. Workers that die before booting, ``boot_limit`` times in a row, stop the
  launcher with ``EXIT_WORKERS_FAILING`` (3) within seconds, with a short growing pause between
  attempts so a failing dependency is not hammered: never a loop, never exit 0.
* **TIMEOUT, MAX_WORKER_MEMORY.** ``Supervision.stop_overdue`` / ``stop_oversized`` on every
  turn, and the loop wakes at least every ``Supervision.check_every`` seconds.

A worker tells the master it has booted by sending ``booted_message`` on its boot pipe once
its server (lifespan startup included) is ready; the pipe's EOF with no message is a failed
boot. The master closes its own copy of the write end once the worker has started, so the
worker's death is EOF on the read end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar

from launcher.master.policy import EXIT_WORKERS_FAILING, Supervision, describe_exit
from launcher.signals import forking

#: What a plugin passes to its workers to listen on (Hypercorn's ``Sockets``, a list of sockets).
Listeners = TypeVar("Listeners")

_GRACEFUL = (signal.SIGTERM, signal.SIGINT)
_IMMEDIATE = (signal.SIGQUIT,)
#: The rest of the launcher's signal table: SIGHUP restarts the workers, SIGUSR1 reopens log
#: files, the others are ignored with a line (``Supervision.ignored``).
_OTHERS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


@dataclass(frozen=True, eq=False)
class WorkerProcess:
    """One worker process a plugin has just started, as ``WorkerSupervisor.spawn_process``
    returns it: all the loop needs to watch it, hear that it booted, and stop it."""

    #: Started already: the loop uses ``.pid``, ``.sentinel``, ``.join()``, ``.kill()``, ``.exitcode``.
    process: BaseProcess
    #: The read end of its boot pipe (the master closed its copy of the write end).
    ready: Connection
    #: Begin its graceful stop: finish what is in flight (up to GRACEFUL_TIMEOUT), exit 0.
    #: Called at most once per worker.
    stop: Callable[[], None]


@dataclass(eq=False)
class _Worker:
    """The loop's record of one worker (compared by identity: ``_outgoing`` holds the same ones)."""

    handle: WorkerProcess
    started: float
    booted: bool = False
    stopped: bool = False  # the master has begun its graceful stop

    @property
    def process(self) -> BaseProcess:
        return self.handle.process

    @property
    def ready(self) -> Connection:
        return self.handle.ready

    @property
    def pid(self) -> int:
        return self.handle.process.pid or 0


@dataclass(eq=False)
class WorkerSupervisor(Generic[Listeners]):
    """Start ``workers`` processes on shared listeners and keep that many running until told to stop.

    Subclass it (a dataclass; add what your workers need as keyword-only fields) and implement
    ``spawn_process``; call ``run(listeners)`` in the launcher's own process, which returns the
    exit status. Set the class attributes where your server differs.
    """

    #: The one message a worker sends on its boot pipe once it serves.
    booted_message: ClassVar[bytes] = b"booted"
    #: How long after GRACEFUL_TIMEOUT a worker may take for its lifespan shutdown before SIGKILL.
    kill_margin: ClassVar[float] = 1.0
    #: True when a worker the master stops before it has booted exits without booting (Uvicorn's
    #: worker leaves at once on a SIGTERM while it imports the app): that exit is then not a failed
    #: boot, and the worker is replaced at once. False when a stopped worker finishes booting
    #: first (Hypercorn's watches its stop pipe only once it serves), so a boot that still ends
    #: without the message failed like any other.
    stop_cuts_boot_short: ClassVar[bool] = False

    workers: int
    graceful_timeout: float
    log: logging.Logger
    supervision: Supervision
    boot_limit: int = 0  # consecutive failed boots before giving up; 0 = max(3, workers)
    _running: dict[int, _Worker] = field(init=False, default_factory=dict)  # sentinel -> worker
    _signals: list[int] = field(init=False, default_factory=list)
    #: Workers a SIGHUP replaces, stopped one by one as their successors report booted.
    _outgoing: list[_Worker] = field(init=False, default_factory=list)

    def spawn_process(self, listeners: Listeners) -> WorkerProcess:
        """Start one worker process serving on ``listeners`` and return it (the server's part).

        Give the worker the write end of a one-way pipe (``multiprocessing.Pipe(duplex=False)``)
        to send ``booted_message`` on, close the master's copy after the start, and return the
        read end as ``WorkerProcess.ready``.
        """
        raise NotImplementedError

    def run(self, listeners: Listeners) -> int:
        """Supervise until stopped; the exit status (0, or ``EXIT_WORKERS_FAILING``)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = self._install_signals(wake_w)
        self.supervision.started()  # the operations listener (OPS_PORT), SHUTDOWN_DELAY
        try:
            return self._supervise(listeners, wake_r)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _install_signals(self, wake_w: int) -> dict[int, Any]:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self._signals.append(signum)
            with contextlib.suppress(OSError):
                os.write(wake_w, b"\0")

        return {signum: signal.signal(signum, on_signal) for signum in (*_GRACEFUL, *_IMMEDIATE, *_OTHERS)}

    def _spawn(self, listeners: Listeners) -> None:
        with forking():  # the worker starts with the table blocked (launcher.signals)
            handle = self.spawn_process(listeners)
        pid = handle.process.pid
        assert pid is not None  # started
        self.supervision.spawned(pid)
        self._running[handle.process.sentinel] = _Worker(handle, time.monotonic())

    def _stop(self, worker: _Worker) -> None:
        if not worker.stopped:
            worker.stopped = True
            worker.handle.stop()

    def _stop_gracefully(self, pid: int) -> None:
        """MAX_WORKER_MEMORY's stop of one worker (``Supervision.stop_oversized`` marks it stopped
        by the master; the loop replaces it once it has gone)."""
        for worker in self._running.values():
            if worker.pid == pid:
                self._stop(worker)

    def _shutdown_all(self) -> None:
        for worker in self._running.values():
            self._stop(worker)

    def _other_signal(self, signum: int, listeners: Listeners) -> None:
        """SIGHUP: a rolling restart; SIGUSR1: reopen log files; the rest: ignored with a line."""
        if signum == signal.SIGUSR1:
            self.supervision.reopening_logs()
            for worker in self._running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGUSR1)
        elif signum == signal.SIGHUP:
            # Not the ones already on their way out (waiting for a successor, or draining).
            old = [w for w in self._running.values() if w not in self._outgoing and not w.stopped]
            self.log.info(
                "got SIGHUP: starting %d new workers; each old one stops gracefully once a new one has booted",
                len(old),
            )
            for worker in old:
                self.supervision.stopping(worker.pid, "reload")
                self._outgoing.append(worker)
                self._spawn(listeners)
        else:
            self.supervision.ignored(signum)

    def _booted(self) -> None:
        """A new worker is serving: one worker a SIGHUP replaces may stop now."""
        if self._outgoing:
            self._stop(self._outgoing.pop(0))

    def _supervise(self, listeners: Listeners, wake_r: int) -> int:
        limit = self.boot_limit or max(3, self.workers)
        failed_boots = 0
        respawn_at: list[float] = []
        deadline: float | None = None  # set once shutdown starts
        for _ in range(self.workers):
            self._spawn(listeners)
        while True:
            now = time.monotonic()
            # Signals first: they decide whether exits below are crashes or expected.
            while self._signals:
                signum = self._signals.pop(0)
                if signum in _OTHERS:
                    if deadline is None:
                        self._other_signal(signum, listeners)
                    continue
                if deadline is None and signum in _GRACEFUL:
                    self.log.info(
                        "got %s: stopping; in-flight requests have %ss (GRACEFUL_TIMEOUT)",
                        signal.Signals(signum).name,
                        f"{self.graceful_timeout:g}",
                    )
                    self._shutdown_all()
                    deadline = now + self.graceful_timeout + self.kill_margin
                    respawn_at.clear()
                else:
                    self.log.info("got %s: stopping now", signal.Signals(signum).name)
                    self._kill_all()
                    deadline = now
            if deadline is not None and not self._running:
                return 0
            if deadline is not None and now >= deadline:
                self.log.warning(
                    "%d worker(s) still busy after GRACEFUL_TIMEOUT=%s: killed",
                    len(self._running),
                    f"{self.graceful_timeout:g}",
                )
                self._kill_all()
                return 0
            while respawn_at and respawn_at[0] <= now and deadline is None:
                respawn_at.pop(0)
                self._spawn(listeners)

            if deadline is None:
                pids = [w.pid for w in self._running.values() if w.pid]
                self.supervision.stop_overdue(pids)
                self.supervision.stop_oversized(pids, self._stop_gracefully)
            check = now + self.supervision.check_every if self.supervision.check_every else None
            waits = [t for t in (deadline, respawn_at[0] if respawn_at else None, check) if t is not None]
            timeout = max(0.0, min(waits) - now) if waits else None
            watched: list[Any] = [wake_r, *self._running.keys()]
            watched += [w.ready for w in self._running.values() if not (w.booted or w.ready.closed)]
            ready_objects = wait(watched, timeout)
            if wake_r in ready_objects:
                os.read(wake_r, 512)
            for worker in list(self._running.values()):
                if self._read_boot(worker):
                    failed_boots = 0  # a boot succeeded: earlier failures were not a loop
                    self._booted()
            for sentinel in [s for s in ready_objects if isinstance(s, int) and s in self._running]:
                worker = self._running.pop(sentinel)
                if self._read_boot(worker):
                    failed_boots = 0
                    self._booted()
                worker.process.join()
                worker.ready.close()
                if worker in self._outgoing:
                    self._outgoing.remove(worker)
                if deadline is not None:
                    self.supervision.forget(worker.pid)
                    continue
                code = worker.process.exitcode
                if worker.booted:
                    replace = self.supervision.replaces(worker.pid)
                    if self.supervision.exited(worker.pid, code):
                        self._give_up()
                        return EXIT_WORKERS_FAILING
                    if replace:
                        self._spawn(listeners)
                    continue
                if worker.stopped and self.stop_cuts_boot_short:
                    # Stopped by the master while booting: no failed boot. Replaced unless a
                    # SIGHUP stopped it, whose successor already runs (two SIGHUPs in a row).
                    replace = self.supervision.replaces(worker.pid)
                    self.supervision.exited(worker.pid, code, stopping=True)  # counts nothing
                    if replace:
                        self._spawn(listeners)
                    continue
                self.supervision.forget(worker.pid)
                failed_boots += 1
                self.log.error(
                    "worker %d failed to boot (%s after %.1fs); %d of %d failed boots in a row",
                    worker.pid,
                    describe_exit(code),
                    time.monotonic() - worker.started,
                    failed_boots,
                    limit,
                )
                if failed_boots >= limit:
                    self.log.error("workers cannot boot: giving up (exit %d)", EXIT_WORKERS_FAILING)
                    self.supervision.giving_up()
                    self._give_up()
                    return EXIT_WORKERS_FAILING
                # A short, growing pause so a failing dependency is not hammered.
                respawn_at.append(time.monotonic() + min(0.1 * 2**failed_boots, 2.0))
                respawn_at.sort()

    def _read_boot(self, worker: _Worker) -> bool:
        """Read the worker's pipe; True if it has just reported that it booted."""
        if worker.booted or worker.ready.closed:
            return False
        try:
            while worker.ready.poll():
                if worker.ready.recv_bytes() == self.booted_message:
                    worker.booted = True
                    return True
        except (EOFError, OSError):
            worker.ready.close()
        return False

    def _kill_all(self) -> None:
        for worker in self._running.values():
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
        for worker in self._running.values():
            worker.process.join()
            worker.ready.close()
            self.supervision.forget(worker.pid)
        self._running.clear()

    def _give_up(self) -> None:
        """Giving up: let booted siblings finish briefly, then kill."""
        self._shutdown_all()
        until = time.monotonic() + min(self.graceful_timeout, 5.0)
        for worker in self._running.values():
            worker.process.join(max(0.0, until - time.monotonic()))
        self._kill_all()
