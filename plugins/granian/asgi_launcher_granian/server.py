"""Run Granian's multi-process server in the launcher's process, with the launcher's rules.

Granian's own supervisor respawns a dead worker only if asked, and exits 1 as soon as one
worker dies twice within 5.5 s. Here it follows the launcher's shared rules instead: a worker
that dies is replaced; ``launcher.supervision.CrashLoop`` decides when deaths mean a broken app
(exit 3); SIGTERM/SIGINT drain for GRACEFUL_TIMEOUT; SIGQUIT or a second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from functools import partial
from typing import Any

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.mp import MPServer

from asgi_launcher_granian.app import load_app
from launcher import Config
from launcher.addresses import parse
from launcher.supervision import EXIT_WORKERS_FAILING, CrashLoop

log = logging.getLogger("_granian")


def _log_config(config: Config) -> dict[str, Any]:
    """Route Granian's two loggers where ERROR_LOG and ACCESS_LOG say."""

    def handler(target: str | None, stream: str, formatter: str) -> dict[str, Any]:
        if target in (None, "-"):
            return {"formatter": formatter, "class": "logging.StreamHandler", "stream": stream}
        return {"formatter": formatter, "class": "logging.FileHandler", "filename": target}

    return {
        "handlers": {
            "console": handler(config.error_log, "ext://sys.stderr", "generic"),
            "access": handler(config.access_log, "ext://sys.stdout", "access"),
        },
    }


class LauncherGranian(MPServer):  # type: ignore[misc]
    exit_status = 0
    draining = False

    def _serve_loop(self, spawn_target: Any, target_loader: Any) -> None:
        crash_loop = CrashLoop(workers=self.workers)
        while True:
            self.main_loop_interrupt.wait()
            # Clear before reading the state: a worker that dies from here on sets the event
            # again. (Clearing after handling, as Granian's own loop does, can swallow a death
            # that happens meanwhile, and the master then waits for ever.)
            self.main_loop_interrupt.clear()
            if self.interrupt_signal:
                break
            dead = self.interrupt_children[:]
            del self.interrupt_children[: len(dead)]  # a watcher thread may append meanwhile
            if dead:
                if any(crash_loop.record_death() for _ in dead):
                    log.error("workers keep dying (%s): the app is failing; giving up", crash_loop.describe())
                    self.exit_status = EXIT_WORKERS_FAILING
                    break
                self._respawn_workers(dead, spawn_target, target_loader)
            if self.reload_signal:
                self._reload(spawn_target, target_loader)

    def _serve(self, spawn_target: Any, target_loader: Any) -> None:
        self.startup(spawn_target, target_loader)
        signal.signal(signal.SIGQUIT, self._stop_now)
        self._serve_loop(spawn_target, target_loader)
        self.draining = True
        self.interrupt_children.clear()  # workers stopped from here on are not failures
        self.shutdown(self.exit_status)

    def _in_booting_worker(self) -> bool:
        """True in a forked worker that still runs the master's handlers.

        A forked worker inherits them and keeps them until it installs its own, after importing
        the app. A SIGTERM that lands in between would only flip flags in the worker's copy of
        this object: the worker would then serve on, and the master wait out the whole graceful
        timeout for it. Such a worker serves nothing yet, so it can simply leave.
        """
        return os.getpid() != self.pid

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        if self._in_booting_worker():
            os._exit(0)
        if self.draining:
            self._stop_now()
            return
        super().signal_handler_interrupt(*args, **kwargs)

    def _stop_now(self, *args: Any) -> None:
        if self._in_booting_worker():
            os._exit(0)
        self.draining = True
        for worker in list(self.wrks):
            worker.kill()
        self.interrupt_signal = True
        self.main_loop_interrupt.set()


def serve(config: Config) -> int:
    address = parse(config.bind[0])
    kwargs: dict[str, Any] = {}
    if address.family.name == "AF_UNIX":
        from pathlib import Path

        kwargs["uds"] = Path(address.host)
    else:
        kwargs.update(address=address.host, port=address.port)
    server = LauncherGranian(
        config.app,
        interface=Interfaces.ASGI,
        workers=config.workers,
        loop=Loops(config.worker_class),
        http=HTTPModes.auto,
        log_level=LogLevels(config.log_level),
        log_access=config.access_log is not None,
        log_dictconfig=_log_config(config),
        http1_settings=HTTP1Settings(keep_alive=config.keep_alive > 0),
        respawn_failed_workers=True,
        workers_kill_timeout=config.graceful_timeout or None,
        working_dir=None,
        **kwargs,
    )
    loader = partial(
        load_app,
        app_dir=config.app_dir,
        source=config.sources.get("app", ""),
        trusted=config.forwarded_allow_ips,
    )
    try:
        server.serve(target_loader=loader)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through asgi-launcher with SERVER_BACKEND=granian")
