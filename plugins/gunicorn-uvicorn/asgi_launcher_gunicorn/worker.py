"""Uvicorn's Gunicorn worker, serving the launcher's worker pipeline.

Whatever Uvicorn worker class ``WORKER_CLASS`` names (``uvicorn_worker.UvicornWorker`` by
default, or a subclass of it), the arbiter runs it with ``LauncherWorker`` mixed in, which:

* serves ``launcher.pipeline.build``'s callable, declared ASGI 3 (the pipeline has already
  adapted an ASGI 2 app; Uvicorn's guess from ``async def`` would get our layers wrong);
* leaves to the pipeline what it does for every backend: ``FORWARDED_ALLOW_IPS`` (Uvicorn's
  proxy headers off), ``ROOT_PATH``, ``MAX_REQUESTS`` (Uvicorn's own limit off), the access
  log (Uvicorn's off);
* serves Uvicorn's protocol with the launcher's request limits (``asgi_launcher_uvicorn.limits``);
* retires gracefully when the pipeline asks (Uvicorn's own ``should_exit`` path: stop
  accepting, drain, finish in-flight requests, lifespan shutdown, exit 0).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server

from asgi_launcher_uvicorn.limits import checked_protocol
from launcher.worker import ServerTraits, WorkerApp, accept_stop_signals, build_worker_app

#: Uvicorn closes open WebSockets with 1012 when it stops, and its parsers refuse CONNECT; the
#: protocols of ``asgi_launcher_uvicorn.limits`` check request heads: the pipeline need not.
TRAITS = ServerTraits(
    closes_websockets=True,
    refuses_connect=True,
    checks_requests=True,
    loggers=("uvicorn.error", "gunicorn.error"),  # Uvicorn's holds Gunicorn's handlers
)


#: How long a worker stopping promptly (the master's SIGTERM without SHUTDOWN_DELAY) keeps the
#: connections it has just accepted before closing the ones that are still idle.
SETTLE = 0.1


class LauncherServer(Server):
    """Uvicorn's server, whose stop drops no request.

    Uvicorn's shutdown closes every connection that has no request in progress at once, a
    keep-alive connection whose next request is on its way and one accepted a moment ago
    included: under load a stopping worker (SIGHUP, MAX_REQUESTS) failed a few requests. Here it
    stops accepting and, for a gentle stop, drains first (``WorkerApp.drain``: every response
    closes its connection, idle ones close after KEEP_ALIVE); a prompt one (the master's SIGTERM
    without SHUTDOWN_DELAY) gives just-accepted connections ``SETTLE`` seconds. Then Uvicorn's
    shutdown finishes what is in flight.
    """

    worker_app: WorkerApp | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listener in self.servers:
            listener.close()
        if self.worker_app is not None and self.worker_app.gentle():
            await self.worker_app.drain(stop_accepting=lambda: None)
        else:
            await asyncio.sleep(SETTLE)
        await super().shutdown(sockets)


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
        # UvicornWorker._serve, keeping the Server so that retire() can stop it.
        self.config.app = self.wsgi
        self.server = LauncherServer(config=self.config)
        self.server.worker_app = self.worker_app
        self._install_sigquit_handler()  # type: ignore[attr-defined]
        await self.server.serve(sockets=self.sockets)
        if not self.server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def retire(self) -> None:
        """Stop accepting now (Uvicorn would notice ``should_exit`` only at its next 0.1 s tick
        and accept meanwhile), then Uvicorn's stop, which drains (``LauncherServer``)."""
        server = self.server
        if server is None:
            return
        for listener in server.servers:
            listener.close()
        server.should_exit = True


def launcher_worker_class(cls: type) -> type:
    """``cls`` with ``LauncherWorker`` mixed in (``cls`` itself if it already has it)."""
    if issubclass(cls, LauncherWorker):
        return cls
    return type(f"Launcher{cls.__name__}", (LauncherWorker, cls), {"__module__": __name__})
