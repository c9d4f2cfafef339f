"""The launcher process as the supervisor of Hypercorn workers.

Hypercorn's own multi-worker mode (``hypercorn.run.run``) shuts every worker down when one
dies and exits 0, also when the app cannot be imported: wrong for a container, where 0 means
"stopped on purpose" and a dead worker should just be replaced. This module keeps Hypercorn's
design (sockets created once, workers started with the spawn context, one shared shutdown
event) and adds the supervision:

* a worker that dies after it booted is replaced, with one log line;
* a worker that exits cleanly after MAX_REQUESTS is replaced without counting as a crash;
* workers that die before booting, ``boot_limit`` times in a row, stop the launcher with
  status 3 (Gunicorn's "worker failed to boot" status), within seconds: never a loop, never 0;
* SIGTERM or SIGINT: set the shutdown event, let in-flight requests finish, kill whatever is
  left after GRACEFUL_TIMEOUT, exit 0. A second SIGTERM/SIGINT, or SIGQUIT, kills the
  workers at once (still exit 0: the stop was asked for).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from asgi_launcher_hypercorn.worker import BOOTED, WorkerSpec, run_worker
from launcher import EXIT_WORKERS_FAILING, Supervision, describe_exit

#: Exit status when workers cannot boot or keep dying (the same as Gunicorn's WORKER_BOOT_ERROR).
EXIT_BOOT_FAILURE = EXIT_WORKERS_FAILING
#: How long after GRACEFUL_TIMEOUT a worker may take for its lifespan shutdown before SIGKILL.
KILL_MARGIN = 1.0

_GRACEFUL = (signal.SIGTERM, signal.SIGINT)
_IMMEDIATE = (signal.SIGQUIT,)
#: The rest of the launcher's signal table: SIGHUP restarts the workers, SIGUSR1 reopens log
#: files, the others are ignored with a line (``launcher.supervision``).
_OTHERS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


@dataclass
class Worker:
    process: SpawnProcess
    ready: Connection
    started: float
    stop: Connection  # the write end of this worker's stop pipe: closing it stops the worker
    booted: bool = False


@dataclass
class Supervisor:
    """Start ``workers`` processes on shared sockets and keep that many running until told to stop."""

    hc: HypercornConfig
    spec: WorkerSpec
    workers: int
    graceful_timeout: float
    log: logging.Logger
    supervision: Supervision
    boot_limit: int = 0  # consecutive failed boots before giving up; 0 = max(3, workers)
    _ctx: Any = field(default_factory=lambda: multiprocessing.get_context("spawn"))
    _running: dict[int, Worker] = field(default_factory=dict)
    _signals: list[int] = field(default_factory=list)
    _shutting_down: bool = False
    #: Workers a SIGHUP replaces, stopped one by one as their successors report booted.
    _outgoing: list[Worker] = field(default_factory=list)

    def run(self, sockets: Sockets) -> int:
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

    def _spawn(self, sockets: Sockets) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        # A pipe, not a multiprocessing Event: an Event needs a POSIX semaphore on /dev/shm, which
        # a container run with --ipc none has not.
        stop_reader, stop = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=run_worker,
            kwargs={
                "spec": self.spec,
                "hc": self.hc,
                "sockets": sockets,
                "shutdown": stop_reader,
                "ready": writer,
            },
            name="asgi-launcher-hypercorn-worker",
            daemon=True,
        )
        process.start()
        writer.close()  # the worker holds the only writer: its death is EOF on the reader
        stop_reader.close()  # and the only reader of its stop pipe
        assert process.pid is not None
        self.supervision.spawned(process.pid)
        self._running[process.sentinel] = Worker(process, reader, time.monotonic(), stop)

    def _shutdown_all(self) -> None:
        self._shutting_down = True
        for worker in self._running.values():
            worker.stop.close()

    def _other_signal(self, signum: int, sockets: Sockets) -> None:
        """SIGHUP: a rolling restart; SIGUSR1: reopen log files; the rest: ignored."""
        if signum == signal.SIGUSR1:
            self.supervision.reopening_logs()
            for worker in self._running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid or 0, signal.SIGUSR1)
        elif signum == signal.SIGHUP:
            # Not the ones already on their way out (waiting for a successor, or draining).
            old = [w for w in self._running.values() if w not in self._outgoing and not w.stop.closed]
            self.log.info(
                "got SIGHUP: starting %d new workers; each old one stops gracefully once a new one has booted",
                len(old),
            )
            for worker in old:
                self.supervision.stopping(worker.process.pid or 0, "reload")
                self._outgoing.append(worker)
                self._spawn(sockets)
        else:
            self.supervision.ignored(signum)

    def _stop_gracefully(self, pid: int) -> None:
        """Stop one worker as a shutdown does (MAX_WORKER_MEMORY): closing its stop pipe makes it
        finish its in-flight requests and exit; the loop below replaces it when it has gone."""
        for worker in self._running.values():
            if worker.process.pid == pid:
                worker.stop.close()

    def _booted(self, worker: Worker) -> None:
        """A new worker is serving: one worker a SIGHUP replaces may stop now."""
        if self._outgoing:
            self._outgoing.pop(0).stop.close()

    def _supervise(self, sockets: Sockets, wake_r: int) -> int:
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
                        self._fmt(self.graceful_timeout),
                    )
                    self._shutdown_all()
                    deadline = now + self.graceful_timeout + KILL_MARGIN
                    respawn_at.clear()
                else:
                    self.log.info("got %s: stopping now", signal.Signals(signum).name)
                    self._shutdown_all()
                    self._kill_all()
                    deadline = now
            if deadline is not None and not self._running:
                return 0
            if deadline is not None and now >= deadline:
                self.log.warning(
                    "%d worker(s) still busy after GRACEFUL_TIMEOUT=%s: killed",
                    len(self._running),
                    self._fmt(self.graceful_timeout),
                )
                self._kill_all()
                return 0
            while respawn_at and respawn_at[0] <= now and deadline is None:
                respawn_at.pop(0)
                self._spawn(sockets)

            if deadline is None:
                pids = [w.process.pid for w in self._running.values() if w.process.pid]
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
                    self._booted(worker)
            for sentinel in [s for s in ready_objects if isinstance(s, int) and s in self._running]:
                worker = self._running.pop(sentinel)
                if self._read_boot(worker):
                    failed_boots = 0
                    self._booted(worker)
                worker.process.join()
                worker.ready.close()
                if worker in self._outgoing:
                    self._outgoing.remove(worker)
                if deadline is not None:
                    continue
                code = worker.process.exitcode
                if worker.booted:
                    pid = worker.process.pid or 0
                    replace = self.supervision.replaces(pid)
                    if self.supervision.exited(pid, code):
                        self._shutdown_all()
                        self._stop_quickly()
                        return EXIT_WORKERS_FAILING
                    if replace:
                        self._spawn(sockets)
                    continue
                self.supervision.forget(worker.process.pid or 0)
                failed_boots += 1
                self.log.error(
                    "worker %d failed to boot (%s after %.1fs); %d of %d failed boots in a row",
                    worker.process.pid,
                    describe_exit(code),
                    time.monotonic() - worker.started,
                    failed_boots,
                    limit,
                )
                if failed_boots >= limit:
                    self.log.error("workers cannot boot: giving up (exit %d)", EXIT_BOOT_FAILURE)
                    self.supervision.giving_up()
                    self._shutdown_all()
                    self._stop_quickly()
                    return EXIT_BOOT_FAILURE
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
        self._running.clear()

    def _stop_quickly(self) -> None:
        """Giving up: let booted siblings finish briefly, then kill."""
        until = time.monotonic() + min(self.graceful_timeout, 5.0)
        for worker in self._running.values():
            worker.process.join(max(0.0, until - time.monotonic()))
        self._kill_all()

    @staticmethod
    def _fmt(seconds: float) -> str:
        return f"{seconds:g}"


def close_sockets(sockets: Sockets, binds: list[str], unlink: Callable[[str], None] = os.unlink) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()
    for bind in binds:
        if bind.startswith("unix:"):
            with contextlib.suppress(OSError):
                unlink(bind[5:])
