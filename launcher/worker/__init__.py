"""What every worker does, whichever server runs it: one pipeline around the user's app.

A plugin's worker calls ``build_worker_app(context, retire=..., traits=...)`` once, at its
start, with the ``WorkerContext`` its master gave it (``Master.worker_context``), and serves the
``WorkerApp.app`` it returns; ``accept_stop_signals()`` once its server's SIGTERM/SIGINT handlers
are in place. A server that takes an ``ssl.SSLContext`` serves with ``server_context(config)``
(TLS from the ``SSL_*`` settings, built in the worker so a new worker reads replaced files). The plugin surface of the worker side is this package's ``__all__``.
"""

from launcher.config.tls import load_certificate, server_context
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
    "load_certificate",
    "origin_form",
    "server_context",
]
