"""Single-process mode (``WEB_CONCURRENCY=1`` under this backend): the launcher's own process serves.

For one-process-per-pod deployments, where Kubernetes (or Docker's restart policy) is the
supervisor: exactly one process below the init, no supervisor, no spawned worker, so the
smallest memory and the fastest start. What a master would do to a worker, this process does
to itself, by exiting for the orchestrator to start a fresh one:

* ``TIMEOUT`` (default 120 s): the pipeline's heartbeat is watched by a thread of this process;
  when the event loop has not turned for TIMEOUT seconds it logs one line and exits with status 3
  at once (the loop is stuck: nothing could drain). Liveness probes would notice too, later.
* ``MAX_REQUESTS`` (+ jitter): with its last request the process drains (that request is still
  served), logs one line and exits 0.
* ``MAX_WORKER_MEMORY``: the same thread measures this process's own memory (USS, as the masters
  do for their workers) about once a second; over the limit, one line, a graceful drain, exit 0.
* A fatal error exits non-zero: the app failing its lifespan startup (3), a stuck loop (3), an
  exception escaping the server (1).

The signal table is the launcher's, as far as it applies without workers: SIGTERM and SIGINT
drain in-flight requests (for up to GRACEFUL_TIMEOUT) and exit 0, a second one or SIGQUIT stops
at once (exit 0); SIGUSR1 reopens the log files; SIGHUP, SIGTTIN, SIGTTOU, SIGUSR2 and SIGWINCH
are ignored with one line each (there is no worker to restart: restart the container, or roll
the deployment, for new code). ``Supervision`` is used as a master uses it (``started`` for the
operations listener and SHUTDOWN_DELAY, ``spawned`` for this process as its one worker, the
state directory for the pipeline's heartbeat and boot mark), so ``/readyz`` and ``/metrics``
mean what they mean under a master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from asgi_launcher_uvicorn.server import LauncherServer, uvicorn_config
from launcher import EXIT_WORKERS_FAILING, Config, Supervision, build_worker_app, configure_logging

#: Exit status when the event loop is stuck (TIMEOUT): the process "died", as a timed-out worker.
EXIT_TIMED_OUT = EXIT_WORKERS_FAILING
#: Seconds between two looks at this process's memory (MAX_WORKER_MEMORY), as the masters' look.
MEMORY_CHECK_EVERY = 1.0
MIB = 1024 * 1024

_IGNORED_WHY: dict[int, str] = {
    signal.SIGHUP: "single-process mode has no worker to restart: restart the container for new code",
}


def _kib(path: str, names: tuple[str, ...]) -> int | None:
    """The sum of the ``Name:  123 kB`` fields ``names`` of a /proc file, in bytes."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    total, seen = 0, False
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name in names:
            with contextlib.suppress(IndexError, ValueError):
                total += int(rest.split()[0]) * 1024
                seen = True
    return total if seen else None


def own_memory() -> tuple[int, str] | None:
    """This process's own memory and which figure it is, as the masters measure a worker: the
    cheap RSS first, the USS (``smaps_rollup``: what a restart frees) only when asked for."""
    uss = _kib("/proc/self/smaps_rollup", ("Private_Clean", "Private_Dirty", "SwapPss"))
    if uss is not None:
        return uss, "USS"
    rss = _kib("/proc/self/status", ("VmRSS", "VmSwap"))
    return (rss, "RSS") if rss is not None else None


def _rss() -> int | None:
    return _kib("/proc/self/status", ("VmRSS", "VmSwap"))


class Monitor(threading.Thread):
    """TIMEOUT and MAX_WORKER_MEMORY for a process that is its own worker.

    A thread, not a timer on the loop, because the loop is what TIMEOUT watches: the pipeline's
    heartbeat layer touches ``heartbeat`` from the loop at least every TIMEOUT/4 seconds, and
    this thread (which a blocked loop does not stop) looks at its age.
    """

    def __init__(
        self,
        config: Config,
        log: logging.Logger,
        heartbeat: str | None,
        loop: asyncio.AbstractEventLoop,
        server: LauncherServer,
    ) -> None:
        super().__init__(name="asgi-launcher-monitor", daemon=True)
        self.timeout = config.timeout if heartbeat else 0
        self.limit = config.max_worker_memory
        self.log = log
        self.heartbeat = heartbeat
        self.loop = loop
        self.server = server
        self.born = time.time()
        # As often as the pipeline beats (TIMEOUT/4, at most 1 s), and at least once a second.
        self.every = max(0.05, min(1.0, self.timeout / 4)) if self.timeout else MEMORY_CHECK_EVERY
        self.done = threading.Event()
        self.cleanup: list[Callable[[], None]] = []

    def wanted(self) -> bool:
        return bool(self.timeout or self.limit)

    def run(self) -> None:
        last_memory = 0.0
        while not self.done.wait(self.every):
            if self.timeout and self._stalled():
                self.log.error(
                    "worker %d timed out: its event loop did not turn for %ss (TIMEOUT=%s); single-process "
                    "mode: exiting (status %d) for the orchestrator to start a fresh process",
                    os.getpid(),
                    self.timeout,
                    self.timeout,
                    EXIT_TIMED_OUT,
                )
                for action in self.cleanup:
                    with contextlib.suppress(Exception):
                        action()
                for handler in (*self.log.handlers, *logging.getLogger().handlers):
                    with contextlib.suppress(Exception):
                        handler.flush()
                os._exit(EXIT_TIMED_OUT)  # the loop is stuck: nothing could run a graceful exit
            now = time.monotonic()
            if self.limit and now - last_memory >= MEMORY_CHECK_EVERY * 0.9:
                last_memory = now
                if self._oversized():
                    return

    def _stalled(self) -> bool:
        assert self.heartbeat is not None
        try:
            beat = os.stat(self.heartbeat).st_mtime
        except OSError:
            beat = self.born  # no beat yet: counted from the start, as a master counts boot time
        return time.time() - beat > self.timeout

    def _oversized(self) -> bool:
        assert self.limit is not None
        limit = self.limit * MIB
        rss = _rss()
        if rss is None or rss <= limit:  # RSS is never below the USS: the cheap look first
            return False
        used = own_memory()
        if used is None or used[0] <= limit:
            return False
        self.log.warning(
            "worker %d uses %.1f MiB (%s), over MAX_WORKER_MEMORY=%d MiB; single-process mode: draining, "
            "then exiting (status 0) for the orchestrator to start a fresh process",
            os.getpid(),
            used[0] / MIB,
            used[1],
            self.limit,
        )
        self.loop.call_soon_threadsafe(self.server.retire)
        return True


def serve(config: Config, log: logging.Logger, sockets: list[socket.socket]) -> int:
    """Serve the app in this process until stopped; return the exit status."""
    supervision = Supervision(config, log)
    uc, traits = uvicorn_config(config)
    configure_logging(config, loggers=traits.loggers)  # no master: the pipeline will not do it
    server = LauncherServer(uc)
    retired: list[str] = []

    def retire() -> None:
        if not retired:
            retired.append("max_requests")
            log.info(
                "served MAX_REQUESTS=%d requests; single-process mode: draining, then exiting (status 0) "
                "for the orchestrator to start a fresh process",
                config.max_requests,
            )
        server.retire()

    pid = os.getpid()
    heartbeat_dir = supervision.heartbeat_dir
    try:
        worker_app = build_worker_app(config, retire=retire, heartbeat_dir=heartbeat_dir, traits=traits)
        uc.app = worker_app.app
        _install_signals(server, supervision)
        log.info(
            "single-process mode (WEB_CONCURRENCY=1): serving in this process, %d, with no supervisor; "
            "the orchestrator restarts it when it exits",
            pid,
        )
        supervision.started()  # the operations listener (OPS_PORT), SHUTDOWN_DELAY
        supervision.spawned(pid)  # this process is its own one worker
        heartbeat = os.path.join(heartbeat_dir, str(pid)) if heartbeat_dir and config.timeout > 0 else None
        return _run(config, log, server, sockets, heartbeat, supervision.close)
    finally:
        supervision.close()


def _run(
    config: Config,
    log: logging.Logger,
    server: LauncherServer,
    sockets: list[socket.socket],
    heartbeat: str | None,
    cleanup: Callable[[], None],
) -> int:
    monitor: Monitor | None = None

    async def main() -> None:
        nonlocal monitor
        monitor = Monitor(config, log, heartbeat, asyncio.get_running_loop(), server)
        monitor.cleanup.append(cleanup)
        if monitor.wanted():
            monitor.start()
        await server.serve(sockets=sockets)

    try:
        # Uvicorn's Server.run, on the loop WORKER_CLASS names.
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            runner.run(main())
    except SystemExit as exc:  # Uvicorn exits 3 when the lifespan startup fails
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        if monitor is not None:
            monitor.done.set()
    return 0


def _install_signals(server: LauncherServer, supervision: Supervision) -> list[int]:
    """The launcher's signal table for a process without workers; returns the stop signals seen."""
    stops: list[int] = []
    log = supervision.log

    def stop(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stops or signum == signal.SIGQUIT:
            log.info("got %s: stopping now", name)
            server.stop(now=True)
        else:
            log.info(
                "got %s: stopping; in-flight requests have %ss (GRACEFUL_TIMEOUT)",
                name,
                server.config.timeout_graceful_shutdown,
            )
            server.stop()
        stops.append(signum)

    def reopen(_signum: int, _frame: FrameType | None) -> None:
        supervision.reopening_logs()

    def ignore(signum: int, _frame: FrameType | None) -> None:
        why = _IGNORED_WHY.get(signum)
        if why is None:
            supervision.ignored(signum)
        else:
            log.info("got %s: ignored (%s)", signal.Signals(signum).name, why)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, stop)
    signal.signal(signal.SIGUSR1, reopen)
    for signum in (signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
        signal.signal(signum, ignore)
    return stops


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through asgi-launcher with SERVER_BACKEND=uvicorn and WEB_CONCURRENCY=1")
