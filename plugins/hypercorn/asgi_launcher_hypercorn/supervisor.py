"""The launcher process as the supervisor of Hypercorn workers.

Hypercorn's own multi-worker mode (``hypercorn.run.run``) shuts every worker down when one
dies and exits 0, also when the app cannot be imported: wrong for a container, where 0 means
"stopped on purpose" and a dead worker should just be replaced. This module keeps Hypercorn's
design (sockets created once, workers started with the spawn context, one stop pipe per worker)
and adds the supervision, which is the core's (``launcher.WorkerSupervisor``: this module is only
how one Hypercorn worker starts and stops):

* a worker that dies after it booted is replaced, with one log line;
* a worker that exits cleanly after MAX_REQUESTS is replaced without counting as a crash;
* workers that die before booting, ``boot_limit`` times in a row, stop the launcher with
  status 3 (Gunicorn's "worker failed to boot" status), within seconds: never a loop, never 0;
* SIGTERM or SIGINT: close every worker's stop pipe, let in-flight requests finish, kill whatever is
  left after GRACEFUL_TIMEOUT, exit 0. A second SIGTERM/SIGINT, or SIGQUIT, kills the
  workers at once (still exit 0: the stop was asked for).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from asgi_launcher_hypercorn.worker import run_worker
from launcher.master import WorkerProcess, WorkerSupervisor


@dataclass(eq=False)
class Supervisor(WorkerSupervisor[Sockets]):
    """Start ``workers`` Hypercorn processes on shared sockets and keep that many running until
    told to stop (the loop and its rules: ``launcher.WorkerSupervisor``)."""

    hc: HypercornConfig = field(kw_only=True)
    _ctx: Any = field(init=False, default_factory=lambda: multiprocessing.get_context("spawn"))

    def spawn_process(self, listeners: Sockets) -> WorkerProcess:
        """A spawned worker, stopped gracefully by closing the master's end of its stop pipe."""
        # A pipe, not a multiprocessing Event: an Event needs a POSIX semaphore on /dev/shm, which
        # a container run with --ipc none has not.
        stop_reader, stop = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=run_worker,
            kwargs={
                "context": self.master.worker_context(),
                "hc": self.hc,
                "sockets": listeners,
                "shutdown": stop_reader,
            },
            name="asgi-launcher-hypercorn-worker",
            daemon=True,
        )
        process.start()
        stop_reader.close()  # and the only reader of its stop pipe: closing ours is EOF on it
        return WorkerProcess(process, stop.close)


def close_sockets(sockets: Sockets) -> None:
    """Close the listening sockets (their unix socket files go at the master's exit)."""
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()
