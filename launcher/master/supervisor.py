"""The master loop for a server that has no master of its own (Hypercorn, Uvicorn).

Their servers' multi-worker modes do not keep the launcher's rules, so the launcher's process
supervises their workers itself, with one loop for both; a plugin supplies only what is its
server's: how to start one worker process and how to begin its graceful stop
(``WorkerSupervisor.spawn_process``, returning a ``WorkerProcess``). Like Gunicorn's arbiter, the
loop is a few named steps run in turn: act on the signals that arrived, read boot reports, reap
the workers that ended (each decided by ``Master.exited``), check TIMEOUT and memory, start
the workers that are due, then sleep until something happens.

* **The signal table.** SIGTERM / SIGINT: stop gracefully, kill whatever is left after
  GRACEFUL_TIMEOUT (+ ``kill_margin`` for the lifespan shutdown), exit 0. A second one, or
  SIGQUIT: kill the workers now (still exit 0: the stop was asked for). SIGHUP: a rolling
  restart, every worker gets a successor at once and each old one stops gracefully as a
  successor reports booted. SIGUSR1: reopen the log files, and forward it to the workers. The
  others: ignored, with a line. Handlers only note the signal and wake the loop through a
  self-pipe.
* **Boots.** A worker has booted when its pipeline has marked it so in the master's state
  directory (its app's lifespan startup is done: ``launcher.worker.pipeline.Boot``), the same
  mark every backend's master reads; while one boots, the loop looks for it every ``BOOT_POLL``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from launcher.errors import EXIT_WORKERS_FAILING
from launcher.signals import OTHER_SIGNALS, STOP_SIGNALS, forking

if TYPE_CHECKING:
    from launcher.master.facade import Master

#: What a plugin passes to its workers to listen on (Hypercorn's ``Sockets``, a list of sockets).
Listeners = TypeVar("Listeners")

#: Seconds between two looks for a booting worker's mark.
BOOT_POLL = 0.05


@dataclass(frozen=True, eq=False)
class WorkerProcess:
    """One worker process a plugin has just started, as ``WorkerSupervisor.spawn_process``
    returns it: all the loop needs to watch it and stop it."""

    #: Started already: the loop uses ``.pid``, ``.sentinel``, ``.join()``, ``.kill()``, ``.exitcode``.
    process: BaseProcess
    #: Begin its graceful stop: finish what is in flight (up to GRACEFUL_TIMEOUT), exit 0.
    #: Called at most once per worker.
    stop: Callable[[], None]


@dataclass(eq=False)
class _Worker:
    """The loop's record of one worker (compared by identity: ``_outgoing`` holds the same ones)."""

    handle: WorkerProcess
    booted: bool = False
    stopped: bool = False  # the master has begun its graceful stop

    @property
    def pid(self) -> int:
        return self.handle.process.pid or 0


@dataclass(eq=False)
class WorkerSupervisor(Generic[Listeners]):
    """Start ``Master.workers_wanted`` processes on shared listeners and keep that many running.

    Subclass it (a dataclass; add what your workers need as keyword-only fields) and implement
    ``spawn_process``; call ``run(listeners)`` in the launcher's own process, which returns the
    exit status. Set the class attributes where your server differs.
    """

    #: How long after GRACEFUL_TIMEOUT a worker may take for its lifespan shutdown before SIGKILL.
    kill_margin: ClassVar[float] = 1.0

    master: Master
    _running: dict[int, _Worker] = field(init=False, default_factory=dict)  # sentinel -> worker
    _signals: list[int] = field(init=False, default_factory=list)
    #: Workers a SIGHUP replaces, stopped one by one as their successors report booted.
    _outgoing: list[_Worker] = field(init=False, default_factory=list)
    _spawn_at: list[float] = field(init=False, default_factory=list)
    _deadline: float | None = field(init=False, default=None)  # set once the stop has begun

    def spawn_process(self, listeners: Listeners) -> WorkerProcess:
        """Start one worker process serving on ``listeners`` and return it (the server's part).

        The worker starts with the signal table blocked (``launcher.signals``) and serves
        ``launcher.worker.build_worker_app(self.master.worker_context(), ...)``.
        """
        raise NotImplementedError

    @property
    def log(self) -> logging.Logger:
        return self.master.log

    def run(self, listeners: Listeners) -> int:
        """Supervise until stopped; the exit status (0, or ``EXIT_WORKERS_FAILING``)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = self._install_signals(wake_w)
        self.master.serving()  # the operations listener (OPS_PORT), SHUTDOWN_DELAY
        try:
            self._spawn_at = [time.monotonic()] * self.master.workers_wanted
            while True:
                status = self._turn(listeners, wake_r)
                if status is not None:
                    return status
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _turn(self, listeners: Listeners, wake_r: int) -> int | None:
        """One turn of the loop; the exit status once it is over."""
        self._handle_signals(listeners)
        now = time.monotonic()
        if self._deadline is not None and (not self._running or now >= self._deadline):
            if self._running:
                self.log.warning(
                    "%d worker(s) still busy after GRACEFUL_TIMEOUT=%s: killed",
                    len(self._running),
                    f"{self.master.config.graceful_timeout:g}",
                )
                self._kill_all()
            return 0
        self._spawn_due(listeners, now)
        if self._deadline is None:
            self.master.check([w.pid for w in self._running.values() if w.pid], self._stop_pid)
        ready = self._sleep(wake_r, now)
        self._look_for_boots()
        if self._reap(ready, listeners):
            self._give_up()
            return EXIT_WORKERS_FAILING
        return None

    # -- the steps ---------------------------------------------------------------------------

    def _install_signals(self, wake_w: int) -> dict[int, Any]:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self._signals.append(signum)
            with contextlib.suppress(OSError):
                os.write(wake_w, b"\0")

        return {signum: signal.signal(signum, on_signal) for signum in (*STOP_SIGNALS, *OTHER_SIGNALS)}

    def _handle_signals(self, listeners: Listeners) -> None:
        """Signals first: they decide whether the exits reaped next are crashes or expected."""
        while self._signals:
            signum = self._signals.pop(0)
            if signum in OTHER_SIGNALS:
                if self._deadline is None:
                    self._other_signal(signum, listeners)
            elif self._deadline is None and signum != signal.SIGQUIT:
                self.log.info(
                    "got %s: stopping; in-flight requests have %ss (GRACEFUL_TIMEOUT)",
                    signal.Signals(signum).name,
                    f"{self.master.config.graceful_timeout:g}",
                )
                for worker in self._running.values():
                    self._stop(worker)
                self._deadline = time.monotonic() + self.master.config.graceful_timeout + self.kill_margin
                self._spawn_at.clear()
            else:
                self.log.info("got %s: stopping now", signal.Signals(signum).name)
                self._kill_all()
                self._deadline = time.monotonic()

    def _other_signal(self, signum: int, listeners: Listeners) -> None:
        """SIGHUP: a rolling restart; SIGUSR1: reopen log files; the rest: ignored with a line."""
        if signum == signal.SIGUSR1:
            self.master.reopening_logs()
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
                self.master.stopping(worker.pid, "reload")
                self._outgoing.append(worker)
                self._spawn(listeners)
        else:
            self.master.ignored(signum)

    def _spawn_due(self, listeners: Listeners, now: float) -> None:
        while self._spawn_at and self._spawn_at[0] <= now and self._deadline is None:
            self._spawn_at.pop(0)
            self._spawn(listeners)

    def _spawn(self, listeners: Listeners) -> None:
        with forking():  # the worker starts with the table blocked (launcher.signals)
            handle = self.spawn_process(listeners)
        assert handle.process.pid is not None  # started
        self.master.spawned(handle.process.pid)
        self._running[handle.process.sentinel] = _Worker(handle)

    def _sleep(self, wake_r: int, now: float) -> list[Any]:
        """Wait until a signal, a boot report, a worker's end, or the next timed step."""
        check = now + self.master.check_every if self.master.check_every else None
        booting = now + BOOT_POLL if any(not w.booted for w in self._running.values()) else None
        due = self._spawn_at[0] if self._spawn_at else None
        waits = [t for t in (self._deadline, due, check, booting) if t is not None]
        timeout = max(0.0, min(waits) - now) if waits else None
        ready = wait([wake_r, *self._running.keys()], timeout)
        if wake_r in ready:
            os.read(wake_r, 512)
        return ready

    def _look_for_boots(self) -> None:
        """A worker that has just booted lets one SIGHUP'd worker go."""
        for worker in self._running.values():
            if not worker.booted and self.master.booted(worker.pid):
                worker.booted = True
                if self._outgoing:
                    self._stop(self._outgoing.pop(0))

    def _reap(self, ready: list[Any], listeners: Listeners) -> bool:
        """Reap the workers that ended and act on each decision; True: give up."""
        for sentinel in [s for s in ready if isinstance(s, int) and s in self._running]:
            worker = self._running.pop(sentinel)
            worker.handle.process.join()
            if worker in self._outgoing:
                self._outgoing.remove(worker)
            decision = self.master.exited(worker.pid, worker.handle.process.exitcode)
            if decision.give_up:
                return True
            if decision.replace and self._deadline is None:
                self._spawn_at.append(time.monotonic() + decision.after)
                self._spawn_at.sort()
        return False

    # -- stopping workers --------------------------------------------------------------------

    def _stop(self, worker: _Worker) -> None:
        if not worker.stopped:
            worker.stopped = True
            worker.handle.stop()

    def _stop_pid(self, pid: int) -> None:
        """MAX_WORKER_MEMORY's graceful stop of one worker (replaced once it has gone)."""
        for worker in self._running.values():
            if worker.pid == pid:
                self._stop(worker)

    def _kill_all(self) -> None:
        for worker in self._running.values():
            with contextlib.suppress(ProcessLookupError):
                worker.handle.process.kill()
        for worker in self._running.values():
            worker.handle.process.join()
            self.master.exited(worker.pid, worker.handle.process.exitcode)
        self._running.clear()

    def _give_up(self) -> None:
        """Giving up: let booted siblings finish briefly, then kill."""
        for worker in self._running.values():
            self._stop(worker)
        until = time.monotonic() + min(self.master.config.graceful_timeout, 5.0)
        for worker in self._running.values():
            worker.handle.process.join(max(0.0, until - time.monotonic()))
        self._kill_all()
