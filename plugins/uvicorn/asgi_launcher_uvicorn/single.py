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
the deployment, for new code), except that with TLS a SIGHUP loads the certificate files again
into the context being served, so new connections get a replaced certificate, as the rolling
restart gives them under a master. ``Master`` is used as a master uses it (``serving`` for the
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
from types import FrameType

from asgi_launcher_uvicorn.server import LauncherServer, uvicorn_config
from launcher import EXIT_WORKERS_FAILING, ConfigError
from launcher.master import Master, memory_over
from launcher.worker import build_worker_app, load_certificate

#: Exit status when the event loop is stuck (TIMEOUT): the process "died", as a timed-out worker.
EXIT_TIMED_OUT = EXIT_WORKERS_FAILING
#: Seconds between two looks at this process's memory (MAX_WORKER_MEMORY), as the masters' look.
MEMORY_CHECK_EVERY = 1.0
MIB = 1024 * 1024

_IGNORED_WHY: dict[int, str] = {
    signal.SIGHUP: "single-process mode has no worker to restart: restart the container for new code",
}


class Monitor(threading.Thread):
    """TIMEOUT and MAX_WORKER_MEMORY for a process that is its own worker.

    A thread, not a timer on the loop, because the loop is what TIMEOUT watches: the pipeline's
    heartbeat layer touches this process's heartbeat file from the loop, and this thread (which a
    blocked loop does not stop) asks the shared ``Master``'s state directory whether it is overdue, as a
    master asks about its workers.
    """

    def __init__(self, master: Master, loop: asyncio.AbstractEventLoop, server: LauncherServer) -> None:
        super().__init__(name="asgi-launcher-monitor", daemon=True)
        self.master = master
        self.timeout = master.config.timeout
        self.limit = master.config.max_worker_memory
        self.log = master.log
        self.loop = loop
        self.server = server
        # As often as the pipeline beats (TIMEOUT/4, at most 1 s), and at least once a second.
        self.every = master.check_every or MEMORY_CHECK_EVERY
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
        # No beat yet counts from ``Master.spawned``, as a master counts boot time.
        return bool(self.master.state.overdue([os.getpid()], self.timeout))

    def _oversized(self) -> bool:
        assert self.limit is not None
        if self.master.state.retiring(os.getpid()):
            return True  # the pipeline found it over after a request, and is retiring it
        used = memory_over(os.getpid(), self.limit * MIB)  # as a master measures a worker
        if used is None:
            return False
        if not self.master.state.claim_retiring(os.getpid()):
            return True  # the pipeline found it over after a request, just now, and said so
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


def serve(master: Master, sockets: list[socket.socket]) -> int:
    """Serve the app in this process until stopped; return the exit status."""
    config, log = master.config, master.log
    uc, traits = uvicorn_config(config)
    master.configure_logging(traits.loggers)  # no master above: the pipeline does not do it
    server = LauncherServer(uc)
    retired: list[str] = []

    def retire() -> None:
        if not retired and not master.state.retiring(os.getpid()):  # (the pipeline's memory line said it)
            retired.append("max_requests")
            log.info(
                "served MAX_REQUESTS=%d requests; single-process mode: draining, then exiting (status 0) "
                "for the orchestrator to start a fresh process",
                config.max_requests,
            )
        server.retire()

    pid = os.getpid()
    server.worker_app = build_worker_app(master.worker_context(in_master=True), retire=retire, traits=traits)
    uc.app = server.worker_app.app
    _install_signals(server, master)
    log.info(
        "single-process mode (WEB_CONCURRENCY=1): serving in this process, %d, with no supervisor; "
        "the orchestrator restarts it when it exits",
        pid,
    )
    master.serving()  # the operations listener (OPS_PORT), SHUTDOWN_DELAY
    master.spawned(pid)  # this process is its own one worker
    return _run(master, server, sockets)


def _run(master: Master, server: LauncherServer, sockets: list[socket.socket]) -> int:
    monitor: Monitor | None = None

    async def main() -> None:
        nonlocal monitor
        monitor = Monitor(master, asyncio.get_running_loop(), server)
        monitor.cleanup.append(master.close)
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


def _install_signals(server: LauncherServer, master: Master) -> list[int]:
    """The launcher's signal table for a process without workers; returns the stop signals seen."""
    stops: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        # (Its lines said by the master's thread, not here: see Master.say.)
        if stops or signum == signal.SIGQUIT:
            server.stop(now=True)
            master.say(f"got {name}: stopping now")
        else:
            server.stop()
            master.say(
                f"got {name}: stopping; in-flight requests have "
                f"{server.config.timeout_graceful_shutdown}s (GRACEFUL_TIMEOUT)"
            )
        stops.append(signum)

    def reopen(_signum: int, _frame: FrameType | None) -> None:
        master.reopening_logs(workers=False)

    def ignore(signum: int, _frame: FrameType | None) -> None:
        context = server.config.ssl if server.config.loaded else None
        if signum == signal.SIGHUP and context is not None:
            try:
                load_certificate(context, master.config)
            except ConfigError as exc:
                master.say(
                    f"got SIGHUP: the certificate was not reloaded ({exc}); still serving the previous one",
                    logging.ERROR,
                )
                return
            master.say(
                f"got SIGHUP: certificate reloaded from SSL_CERTFILE: new connections get it ({_IGNORED_WHY[signum]})"
            )
            return
        why = _IGNORED_WHY.get(signum)
        if why is None:
            master.ignored(signum)
        else:
            master.say(f"got {signal.Signals(signum).name}: ignored ({why})")

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, stop)
    signal.signal(signal.SIGUSR1, reopen)
    for signum in (signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
        signal.signal(signum, ignore)
    return stops


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through asgi-launcher with SERVER_BACKEND=uvicorn and WEB_CONCURRENCY=1")
