"""Gunicorn's documented in-process entry point, fed from the resolved config."""

from __future__ import annotations

import os
import signal
import time
from types import FrameType
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

import asgi_launcher_gunicorn.settings  # noqa: F401  (Gunicorn's defaults, before BaseApplication makes a Config)
from asgi_launcher_gunicorn.worker import launcher_worker_class
from launcher import EXIT_WORKERS_FAILING, Config
from launcher.master import Master, forking


def following_the_launcher(base: type, master: Master) -> type:
    """Gunicorn's logger class (its statsd one when ``statsd_host`` is set), whose every setup,
    the first and each reload's, ends with the launcher's: LOG_FORMAT, LOG_LEVEL and LOG_CONFIG
    as under every backend, from Gunicorn's first line on (its handlers are also Uvicorn's in
    the workers, which copy them)."""

    def setup(self: Any, cfg: Any) -> None:
        base.setup(self, cfg)  # type: ignore[attr-defined]
        master.configure_logging(loggers=("gunicorn.error",))

    return type(f"Launcher{base.__name__}", (base,), {"setup": setup})


class LauncherArbiter(Arbiter):  # type: ignore[misc]
    """Gunicorn's arbiter, plus the launcher's crash-loop rule.

    Signals follow the launcher's table, the same under every backend: SIGTERM and SIGINT
    drain in-flight requests for up to GRACEFUL_TIMEOUT; SIGQUIT, or a second signal during
    that drain, stops at once. (Gunicorn's own SIGINT/SIGQUIT "quick shutdown" asks Uvicorn
    workers to finish too, then waits out the whole graceful timeout.)

    What happens to workers is decided by the launcher's ``Master``, as under every backend:
    each reaped worker's real exit status and boot say whether it retired (MAX_REQUESTS), was
    stopped by the master, died or failed to boot, and the shared rules halt the server with
    exit 3. TIMEOUT uses the pipeline's heartbeat rather than Gunicorn's own, so the rule and its
    log line are the same everywhere.
    """

    def __init__(self, app: Any) -> None:
        self.master: Master = app.master
        self.stopping = False
        self._spawn_after = 0.0  # a failed boot's pause
        super().__init__(app)

    def setup(self, app: Any) -> None:
        if getattr(self, "log", None) is None:  # the first setup: Gunicorn's logger, following ours
            self.log = following_the_launcher(app.cfg.logger_class, self.master)(app.cfg)
        super().setup(app)
        self.worker_class: type = launcher_worker_class(self.cfg.worker_class)

    def start(self) -> None:
        super().start()  # Gunicorn's signal handlers, then its listening sockets
        self.master.serving()  # SHUTDOWN_DELAY, the operations listener, the sockets' files

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        if exit_status:
            self.master.giving_up()  # /livez 503 while the remaining workers stop
        super().halt(reason, exit_status)

    def spawn_worker(self) -> int:
        with forking():  # the worker starts with the signal table blocked (launcher.signals)
            pid: int = super().spawn_worker()  # only the master returns from it
        self.master.spawned(pid)
        return pid

    def manage_workers(self) -> None:
        if len(self.WORKERS) < self.num_workers and time.monotonic() < self._spawn_after:
            return  # the pause after a failed boot
        super().manage_workers()

    def murder_workers(self) -> None:
        # TIMEOUT's SIGKILL, and MAX_WORKER_MEMORY's SIGTERM (Uvicorn's graceful stop) through
        # kill_worker, which marks the worker stopped by the master; manage_workers starts the
        # replacement once it has been reaped.
        self.master.check(list(self.WORKERS), lambda pid: self.kill_worker(pid, signal.SIGTERM))

    def stop(self, graceful: bool = True) -> None:
        self.stopping = True
        super().stop(graceful)

    def signal(self, sig: int, frame: FrameType | None) -> None:
        if self.stopping and sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.kill_workers(signal.SIGKILL)  # a second signal while draining: stop now
            return
        super().signal(sig, frame)

    def handle_int(self) -> None:
        self.handle_term()  # graceful, like SIGTERM

    # The rest of the launcher's signal table (the same under every backend).

    def handle_hup(self) -> None:
        self.master.log.info("got SIGHUP: starting new workers, then stopping the old ones gracefully")
        super().handle_hup()  # Gunicorn's reload: new workers first, the oldest stopped after

    def handle_usr1(self) -> None:
        self.master.reopening_logs()
        super().handle_usr1()  # Gunicorn's own log files, and SIGUSR1 to every worker

    def handle_usr2(self) -> None:
        self.master.ignored(signal.SIGUSR2)  # Gunicorn would re-exec: prestart again, port in use

    def handle_winch(self) -> None:
        self.master.ignored(signal.SIGWINCH)

    def handle_ttin(self) -> None:
        self.master.ignored(signal.SIGTTIN)

    def handle_ttou(self) -> None:
        self.master.ignored(signal.SIGTTOU)

    def kill_worker(self, pid: int, sig: int) -> None:
        # A worker the arbiter itself stops (reload, a second signal) is not a crash, however it
        # ends (Uvicorn re-raises the SIGTERM it was stopped with).
        if sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGKILL) and not self.stopping:
            self.master.stopping(pid, "stopped by the master")
        super().kill_worker(pid, sig)

    def handle_quit(self) -> None:
        self.stopping = True
        self.kill_workers(signal.SIGKILL)
        raise StopIteration

    def reap_workers(self) -> None:
        """Gunicorn's reap, each exit decided by the ``Master`` from its real status (Gunicorn's
        own would halt on a worker's boot-error status and log a SIGKILL as "perhaps out of
        memory?")."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            if self.dirty_arbiter_pid and pid == self.dirty_arbiter_pid:
                self.handle_dirty_arbiter_exit(pid, status)
                continue
            worker = self.WORKERS.pop(pid, None)
            if worker is None and not self.master.stopped_by_master(pid):
                continue  # not a worker of ours (an orphan reparented to a master run as PID 1)
            if worker is not None:
                worker.tmp.close()
                self.cfg.child_exit(self, worker)
            decision = self.master.exited(pid, os.waitstatus_to_exitcode(status))
            if decision.give_up and not self.stopping:
                raise HaltServer("workers cannot be kept running: giving up", EXIT_WORKERS_FAILING)
            self._spawn_after = time.monotonic() + decision.after


class LauncherApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config, master: Master) -> None:
        self.config = config
        self.master = master
        super().__init__()

    def load_config(self) -> None:
        from asgi_launcher_gunicorn import gunicorn_settings

        for name, value in gunicorn_settings(self.config).items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        """Not used: each worker imports the app through the pipeline (``LauncherWorker.load_wsgi``)."""
        return None

    def run(self) -> None:
        # BaseApplication.run, with our arbiter.
        try:
            LauncherArbiter(self).run()
        except RuntimeError as exc:
            self.master.log.error("%s", exc)
            raise SystemExit(1) from None
