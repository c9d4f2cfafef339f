"""What every worker does, whichever server runs it: one pipeline around the user's app.

A plugin's worker calls ``build_worker_app(context, retire=..., traits=...)`` once, at its
start, with the ``WorkerContext`` its master gave it (``Master.worker_context``), and serves the
``WorkerApp.app`` it returns; ``accept_stop_signals()`` once its server's SIGTERM/SIGINT handlers
are in place. The plugin surface of the worker side is this package's ``__all__``.
"""

from launcher.signals import accept_stop_signals
from launcher.worker.bootstrap import WorkerContext
from launcher.worker.pipeline import ServerTraits, WorkerApp
from launcher.worker.pipeline import build as build_worker_app
from launcher.worker.request_head import HeadLimits, origin_form

__all__ = [
    "HeadLimits",
    "ServerTraits",
    "WorkerApp",
    "WorkerContext",
    "accept_stop_signals",
    "build_worker_app",
    "origin_form",
]
