"""One supervised Uvicorn worker process: serve the pipeline on the master's sockets until told.

Forked by the supervisor (``asgi_launcher_uvicorn.supervisor``), so it starts with the
server already imported and the listening sockets already open; it imports the app itself
(the master never does), so a SIGHUP's new workers serve new code. It:

* serves ``launcher.worker.build_worker_app``'s callable (which makes it one of the launcher's
  workers: it dies with the master, reopens logs on SIGUSR1, is the OOM killer's choice, logs as
  every process does, and marks its boot for the master);
* stops gracefully on SIGTERM (the supervisor's stop of one worker: shutdown, SIGHUP,
  MAX_WORKER_MEMORY) and when the pipeline retires it (MAX_REQUESTS), exiting 0. SIGINT and the
  master's other signals are the master's: a Ctrl-C reaching the whole process group must not
  cut the workers' requests short.
"""

from __future__ import annotations

import os
import signal
from socket import socket
from types import FrameType

from asgi_launcher_uvicorn.server import LauncherServer, uvicorn_config
from launcher.worker import WorkerContext, accept_stop_signals, build_worker_app


def _leave_now(_signum: int, _frame: FrameType | None) -> None:
    # SIGTERM while still importing the app: nothing is served yet, so nothing to drain. (The
    # handler inherited from the master would only note the signal in this process's copy of it,
    # and the worker would serve on until the master killed it after GRACEFUL_TIMEOUT.)
    os._exit(0)


def run_worker(context: WorkerContext, sockets: list[socket]) -> None:
    """Process target (fork context): boot, serve until stopped; exit 0 when stopped."""
    signal.signal(signal.SIGTERM, _leave_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master's: a Ctrl-C to the group must not cut requests
    accept_stop_signals()  # blocked by the master across the fork (launcher.signals)

    uc, traits = uvicorn_config(context.config)  # sets up Uvicorn's loggers, before the pipeline adopts them
    server = LauncherServer(uc)
    server.worker_app = build_worker_app(context, retire=server.retire, traits=traits)
    uc.app = server.worker_app.app

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_term)
    server.run(sockets=sockets)
