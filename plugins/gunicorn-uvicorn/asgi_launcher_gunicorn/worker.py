"""Uvicorn's Gunicorn worker, serving the launcher's worker pipeline.

Whatever Uvicorn worker class ``WORKER_CLASS`` names (``uvicorn_worker.UvicornWorker`` by
default, or a subclass of it), the arbiter runs it with ``LauncherWorker`` mixed in, which:

* serves ``launcher.pipeline.build``'s callable, declared ASGI 3 (the pipeline has already
  adapted an ASGI 2 app; Uvicorn's guess from ``async def`` would get our layers wrong);
* leaves to the pipeline what it does for every backend: ``FORWARDED_ALLOW_IPS`` (Uvicorn's
  proxy headers off), ``ROOT_PATH``, ``MAX_REQUESTS`` (Uvicorn's own limit off), the access
  log (Uvicorn's off);
* serves Uvicorn's protocol with the launcher's request limits (``asgi_launcher_uvicorn.limits``);
* serves TLS with the launcher's context (``launcher.worker.server_context``);
* serves with the Uvicorn backend's ``LauncherServer``: the same graceful stop (SIGTERM and
  SIGINT drain and exit 0, SIGQUIT stops at once) and the same retirement when the pipeline
  asks (MAX_REQUESTS: stop accepting, drain, finish in-flight requests, lifespan shutdown,
  exit 0).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from typing import Any

from gunicorn.arbiter import Arbiter

from asgi_launcher_uvicorn.limits import checked_protocol
from asgi_launcher_uvicorn.server import LauncherServer
from launcher.worker import ServerTraits, WorkerApp, accept_stop_signals, build_worker_app, server_context

#: Uvicorn closes open WebSockets with 1012 when it stops, and its parsers refuse CONNECT; the
#: protocols of ``asgi_launcher_uvicorn.limits`` check request heads: the pipeline need not.
TRAITS = ServerTraits(
    closes_websockets=True,
    refuses_connect=True,
    checks_requests=True,
    loggers=("uvicorn.error", "gunicorn.error"),  # Uvicorn's holds Gunicorn's handlers
)


class LauncherWorker:
    """Mixed in before a Uvicorn worker class (see the module docstring)."""

    config: Any  # uvicorn.Config, set by UvicornWorker.__init__
    app: Any  # the LauncherApplication
    wsgi: Any
    sockets: Any
    ppid: int  # the arbiter's pid
    cfg: Any  # Gunicorn's settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server: LauncherServer | None = None
        self.worker_app: WorkerApp | None = None
        self.config.interface = "asgi3"
        self.config.proxy_headers = False
        self.config.limit_max_requests = None
        self.config.root_path = ""
        self.config.access_log = False  # the pipeline writes the access line
        # LIMIT_REQUEST_* and the request-head deadline (asgi_launcher_uvicorn.limits).
        self.config.http, checked = checked_protocol(self.config.http, self.app.config)
        self.traits = TRAITS if checked else dataclasses.replace(TRAITS, checks_requests=False)
        launcher_config = self.app.config
        if launcher_config.tls:
            # uvicorn_worker has passed on Gunicorn's certfile, keyfile, ca_certs and cert_reqs; the
            # launcher's context also has SSL_KEYFILE_PASSWORD and SSL_MIN_VERSION, which Gunicorn
            # has no setting for. Built when Uvicorn loads its config, in this worker: a worker
            # started by SIGHUP reads replaced certificate files.
            self.config.ssl_context_factory = lambda _config, _default: server_context(launcher_config)

    def init_signals(self) -> None:
        super().init_signals()  # type: ignore[misc]  # Uvicorn's: SIGTERM and SIGINT back to their defaults
        accept_stop_signals()  # blocked by the arbiter across the fork (launcher.signals)

    def load_wsgi(self) -> None:
        # The pipeline imports the app (a failure is a failed boot, told as under every backend).
        self.worker_app = build_worker_app(
            self.app.master.worker_context(), retire=self.retire, traits=self.traits
        )
        self.wsgi = self.worker_app.app

    async def _serve(self) -> None:
        # UvicornWorker._serve, with the Uvicorn backend's server (the same graceful stop and
        # retirement as under SERVER_BACKEND=uvicorn) and the worker's signal table: SIGTERM and
        # SIGINT drain (exit 0), SIGQUIT stops at once.
        self.config.app = self.wsgi
        server = self.server = LauncherServer(self.config)
        server.worker_app = self.worker_app
        signal.signal(signal.SIGTERM, lambda _signum, _frame: server.stop())
        signal.signal(signal.SIGINT, lambda _signum, _frame: server.stop())
        signal.signal(signal.SIGQUIT, lambda _signum, _frame: server.stop(now=True))
        # The sockets themselves, not Gunicorn's wrappers of them: closing its server, uvloop would
        # close a wrapper's unix socket behind it, and Gunicorn's own close then logged "Error
        # while closing socket [Errno 9]" from every worker at each stop.
        await server.serve(sockets=[listener.sock for listener in self.sockets])
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def retire(self) -> None:
        """MAX_REQUESTS: the server's own retirement (``LauncherServer.retire``: it drains)."""
        if self.server is not None:
            self.server.retire()


def launcher_worker_class(cls: type) -> type:
    """``cls`` with ``LauncherWorker`` mixed in (``cls`` itself if it already has it)."""
    if issubclass(cls, LauncherWorker):
        return cls
    return type(f"Launcher{cls.__name__}", (LauncherWorker, cls), {"__module__": __name__})
