"""What every backend's master does, whichever server it runs: one façade, ``Master``.

A plugin's master (Gunicorn's arbiter, Granian's server, or ``WorkerSupervisor`` for servers
without a master of their own) owns its processes; everything else it does at start, at stop
and when a worker comes or goes is here, so a user who switches backend sees the same
behaviour and the same lines::

    with Master(config) as master:                 # logging, the state directory, metrics
        ...                                        # the server installs its signal handlers
        master.serving()                           # SHUTDOWN_DELAY, the operations listener
        ... master.spawned(pid) ... decision = master.exited(pid, code) ...

* **Exits** (``exited``): each worker's end is decided by ``launcher.master.policy`` (retired,
  stopped by the master, died, failed to boot) and said in one line; the decision says whether
  to replace it, after what pause, or to give up with exit 3.
* **TIMEOUT** and **MAX_WORKER_MEMORY** (``check``): a worker whose event loop has not turned
  for TIMEOUT seconds is killed; one whose own memory (USS) has grown past the limit is retired
  gracefully. Neither is a crash.
* **Readiness and SHUTDOWN_DELAY**: with ``OPS_PORT`` the master answers ``/livez``,
  ``/readyz`` and ``/metrics`` (``launcher.master.ops``); the first SIGTERM makes ``/readyz``
  503 at once and, with ``SHUTDOWN_DELAY``, reaches the master's own handler only that many
  seconds later (a second SIGTERM, or SIGQUIT, at once).

The plugin surface of the master side is this package's ``__all__``.
"""

from launcher.config.addresses import parse as parse_address
from launcher.master.facade import Master
from launcher.master.policy import Decision
from launcher.master.supervisor import WorkerProcess, WorkerSupervisor
from launcher.procfs import memory_over
from launcher.signals import forking

__all__ = [
    "Decision",
    "Master",
    "WorkerProcess",
    "WorkerSupervisor",
    "forking",
    "memory_over",
    "parse_address",
]
