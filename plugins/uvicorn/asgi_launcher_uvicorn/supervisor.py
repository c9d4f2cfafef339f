"""The launcher process as the supervisor of Uvicorn worker processes.

Uvicorn has its own (``uvicorn.supervisors.Multiprocess``, what ``uvicorn --workers N`` runs),
but in Uvicorn 0.54 it does not keep the launcher's rules, so the launcher's own master loop
(``launcher.WorkerSupervisor``, the same as under the Hypercorn backend) replaces it, keeping its
design (sockets bound once by the parent and shared, a fixed set of worker processes); this
module is only how one Uvicorn worker starts and stops:

* **Dead workers, crash loops.** Uvicorn respawns a dead worker for ever, with no crash-loop
  rule, and gives up only when one exits with its startup-failure status (then the parent exits
  0, which reads as "stopped on purpose"). Here a death is reported to the shared
  ``Supervision`` (one line, the crash-loop rule: exit 3), and workers that keep failing to boot
  stop the launcher with exit 3 within seconds.
* **Signals.** Uvicorn's parent handles SIGINT/SIGTERM by SIGTERM to every worker and an
  unbounded ``join``: no GRACEFUL_TIMEOUT, no second-signal "stop now"; SIGQUIT, SIGUSR1 (no log
  reopening) and SIGUSR2/SIGWINCH are dropped with a debug line, and SIGTTIN/SIGTTOU change the
  worker count. Here the launcher's table holds.
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
import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from socket import socket
from typing import Any

from asgi_launcher_uvicorn.worker import run_worker
from launcher.master import WorkerProcess, WorkerSupervisor


@dataclass(eq=False)
class Supervisor(WorkerSupervisor[list[socket]]):
    """Start ``workers`` Uvicorn processes on shared sockets and keep that many running until
    told to stop (the loop and its rules: ``launcher.WorkerSupervisor``)."""

    _ctx: Any = field(init=False, default_factory=lambda: multiprocessing.get_context("fork"))

    def spawn_process(self, listeners: list[socket]) -> WorkerProcess:
        """A forked worker, stopped gracefully by SIGTERM."""
        process: BaseProcess = self._ctx.Process(
            target=run_worker,
            kwargs={"context": self.master.worker_context(), "sockets": listeners},
            name="asgi-launcher-uvicorn-worker",
            daemon=True,
        )
        process.start()
        pid = process.pid
        assert pid is not None  # started
        return WorkerProcess(process, lambda: _terminate(pid))


def _terminate(pid: int) -> None:
    """Uvicorn's graceful stop of one worker: it stops accepting, finishes what is in flight
    (for up to GRACEFUL_TIMEOUT), runs the lifespan shutdown and exits 0."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
