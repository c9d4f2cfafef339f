"""One supervised Uvicorn worker process: serve the pipeline on the master's sockets until told.

Forked by the supervisor (``asgi_launcher_uvicorn.supervisor``), so it starts with the
server already imported and the listening sockets already open; it imports the app itself
(the master never does), so a SIGHUP's new workers serve new code. It:

* serves ``launcher.build_worker_app``'s callable, with ``master_pid`` (die with the master,
  reopen logs on SIGUSR1, be the OOM killer's choice, the launcher's logging);
* tells the supervisor it has booted (over a pipe) once Uvicorn's startup, lifespan included,
  is done, so a crash-looping boot is told apart from a worker that died after serving;
* stops gracefully on SIGTERM (the supervisor's stop of one worker: shutdown, SIGHUP,
  MAX_WORKER_MEMORY) and when the pipeline retires it (MAX_REQUESTS), exiting 0. SIGINT and the
  master's other signals are the master's: a Ctrl-C reaching the whole process group must not
  cut the workers' requests short.
"""

from __future__ import annotations

import contextlib
import os
import signal
from multiprocessing.connection import Connection
from socket import socket
from types import FrameType

from asgi_launcher_uvicorn.server import LauncherServer, uvicorn_config
from launcher.worker import WorkerContext, accept_stop_signals, build_worker_app

#: The one message a worker sends on its pipe.
BOOTED = b"booted"


def _leave_now(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM while still importing the app: nothing is served yet, so nothing to drain. (The
    # handler inherited from the master would only note the signal in this process's copy of it,
    # and the worker would serve on until the master killed it after GRACEFUL_TIMEOUT.)
    os._exit(0)


def run_worker(context: WorkerContext, sockets: list[socket], ready: Connection) -> None:
    """Process target (fork context): boot, report, serve until stopped; exit 0 when stopped."""
    signal.signal(signal.SIGTERM, _leave_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master's: a Ctrl-C to the group must not cut requests
    accept_stop_signals()  # blocked by the master across the fork (launcher.signals)

    def booted() -> None:
        with contextlib.suppress(OSError):  # the master is gone: the pdeath signal ends us
            ready.send_bytes(BOOTED)

    uc, traits = uvicorn_config(context.config)  # sets up Uvicorn's loggers, before the pipeline adopts them
    server = LauncherServer(uc, on_started=booted)
    server.worker_app = build_worker_app(context, retire=server.retire, traits=traits)
    uc.app = server.worker_app.app

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_term)
    server.run(sockets=sockets)
