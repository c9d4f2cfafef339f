"""The launcher process as the supervisor of Uvicorn worker processes.

Uvicorn has its own (``uvicorn.supervisors.Multiprocess``, what ``uvicorn --workers N`` runs),
but in Uvicorn 0.54 it does not keep the launcher's rules, so this module replaces it (keeping
its design: sockets bound once by the parent and shared, a fixed set of worker processes):

* **Dead workers, crash loops.** Uvicorn respawns a dead worker for ever, with no crash-loop
  rule, and gives up only when one exits with its startup-failure status (then the parent exits
  0, which reads as "stopped on purpose"). Here a death is reported to the shared
  ``Supervision`` (one line, the crash-loop rule: exit 3), and workers that keep failing to boot
  stop the launcher with exit 3 within seconds.
* **Signals.** Uvicorn's parent handles SIGINT/SIGTERM by SIGTERM to every worker and an
  unbounded ``join``: no GRACEFUL_TIMEOUT, no second-signal "stop now"; SIGQUIT, SIGUSR1 (no log
  reopening) and SIGUSR2/SIGWINCH are dropped with a debug line, and SIGTTIN/SIGTTOU change the
  worker count. Here the launcher's table holds (``_supervise``).
* **SIGHUP.** Uvicorn replaces workers one at a time, each only after a 5 s-timeout health check
  round trip; here every worker gets a successor at once and each old one stops gracefully as a
  successor reports booted, as under the Hypercorn backend.
* **TIMEOUT, MAX_WORKER_MEMORY, MAX_REQUESTS.** Uvicorn's liveness check is a ping answered by a
  thread of the worker, which a blocked event loop does not stop; it has no memory limit; its
  ``limit_max_requests`` exits the worker like any death. Here the pipeline's heartbeat and
  ``Supervision.stop_overdue`` / ``stop_oversized`` apply, and a retired worker is no crash.

Workers are forked (multiprocessing's fork context, which also clears the master's exit hooks in
the child): no interpreter to start and no server to import again per worker, the pages the
master loaded shared, and no resource-tracker helper process. The master never imports the app
(the launcher checks it in a throwaway child), so each worker imports it fresh.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from socket import socket
from types import FrameType
from typing import Any

from asgi_launcher_uvicorn.worker import BOOTED, WorkerSpec, run_worker
from launcher import EXIT_WORKERS_FAILING, Supervision, describe_exit

#: How long after GRACEFUL_TIMEOUT a worker may take for its lifespan shutdown before SIGKILL.
KILL_MARGIN = 1.0

_GRACEFUL = (signal.SIGTERM, signal.SIGINT)
_IMMEDIATE = (signal.SIGQUIT,)
#: The rest of the launcher's signal table: SIGHUP restarts the workers, SIGUSR1 reopens log
#: files, the others are ignored with a line (``Supervision.ignored``).
_OTHERS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


@dataclass(eq=False)
class Worker:
    process: BaseProcess
    ready: Connection
    started: float
    booted: bool = False
    stopped: bool = False  # the master has sent it SIGTERM

    @property
    def pid(self) -> int:
        return self.process.pid or 0


@dataclass
class Supervisor:
    """Start ``workers`` processes on shared sockets and keep that many running until told to stop."""

    spec: WorkerSpec
    workers: int
    graceful_timeout: float
    log: logging.Logger
    supervision: Supervision
    boot_limit: int = 0  # consecutive failed boots before giving up; 0 = max(3, workers)
    _ctx: Any = field(default_factory=lambda: multiprocessing.get_context("fork"))
    _running: dict[int, Worker] = field(default_factory=dict)  # sentinel -> worker
    _signals: list[int] = field(default_factory=list)
    #: Workers a SIGHUP replaces, stopped one by one as their successors report booted.
    _outgoing: list[Worker] = field(default_factory=list)

    def run(self, sockets: list[socket]) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = self._install_signals(wake_w)
        self.supervision.started()  # the operations listener (OPS_PORT), SHUTDOWN_DELAY
        try:
            return self._supervise(sockets, wake_r)
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

    def _spawn(self, sockets: list[socket]) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=run_worker,
            kwargs={"spec": self.spec, "sockets": sockets, "ready": writer},
            name="asgi-launcher-uvicorn-worker",
            daemon=True,
        )
        # SIGTERM stays pending in the child until it has its own handler (run_worker unblocks it):
        # delivered in between, the master's handler it inherits would swallow it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        writer.close()  # the worker holds the only writer: its death is EOF on the reader
        self.supervision.spawned(process.pid)
        self._running[process.sentinel] = Worker(process, reader, time.monotonic())

    def _stop(self, worker: Worker) -> None:
        """Uvicorn's graceful stop of one worker: it stops accepting, finishes what is in flight
        (for up to GRACEFUL_TIMEOUT), runs the lifespan shutdown and exits 0."""
        if not worker.stopped:
            worker.stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)

    def _stop_gracefully(self, pid: int) -> None:
        """MAX_WORKER_MEMORY's stop of one worker (``Supervision.stop_oversized`` marks it stopped
        by the master; the loop replaces it once it has gone)."""
        for worker in self._running.values():
            if worker.pid == pid:
                self._stop(worker)

    def _shutdown_all(self) -> None:
        for worker in self._running.values():
            self._stop(worker)

    def _other_signal(self, signum: int, sockets: list[socket]) -> None:
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
                self._spawn(sockets)
        else:
            self.supervision.ignored(signum)

    def _booted(self) -> None:
        """A new worker is serving: one worker a SIGHUP replaces may stop now."""
        if self._outgoing:
            self._stop(self._outgoing.pop(0))

    def _supervise(self, sockets: list[socket], wake_r: int) -> int:
        limit = self.boot_limit or max(3, self.workers)
        failed_boots = 0
        respawn_at: list[float] = []
        deadline: float | None = None  # set once shutdown starts
        for _ in range(self.workers):
            self._spawn(sockets)
        while True:
            now = time.monotonic()
            # Signals first: they decide whether exits below are crashes or expected.
            while self._signals:
                signum = self._signals.pop(0)
                if signum in _OTHERS:
                    if deadline is None:
                        self._other_signal(signum, sockets)
                    continue
                if deadline is None and signum in _GRACEFUL:
                    self.log.info(
                        "got %s: stopping; in-flight requests have %ss (GRACEFUL_TIMEOUT)",
                        signal.Signals(signum).name,
                        f"{self.graceful_timeout:g}",
                    )
                    self._shutdown_all()
                    deadline = now + self.graceful_timeout + KILL_MARGIN
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
                self._spawn(sockets)

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
                        self._spawn(sockets)
                    continue
                self.supervision.forget(worker.pid)
                if worker.stopped:  # stopped by the master while booting (SIGHUP's successor's turn)
                    self._spawn(sockets)
                    continue
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

    def _read_boot(self, worker: Worker) -> bool:
        """Read the worker's pipe; True if it has just reported that it booted."""
        if worker.booted or worker.ready.closed:
            return False
        try:
            while worker.ready.poll():
                if worker.ready.recv_bytes() == BOOTED:
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
