"""Uvicorn's server as every process of this backend runs it, and the sockets it serves on.

Both modes (a supervised worker, ``asgi_launcher_uvicorn.supervisor``; the one process of
``asgi_launcher_uvicorn.single``) serve the same thing, built here:

* ``uvicorn.Config`` from the launcher's ``Config``: the loop and HTTP parser ``WORKER_CLASS``
  names (uvloop + httptools by default, as the Gunicorn backend's ``UvicornWorker``),
  ``KEEP_ALIVE``, ``GRACEFUL_TIMEOUT``, ``LOG_LEVEL``/``ERROR_LOG``; Uvicorn's own access log,
  proxy headers, root path and request limit off, because the launcher's worker pipeline does
  them, as under every backend;
* the HTTP protocol with the launcher's request limits (``asgi_launcher_uvicorn.limits``);
* ``LauncherServer``: Uvicorn's ``Server`` whose signal handling is the caller's (Uvicorn's own
  would re-raise the signal after its shutdown and treat SIGINT from a terminal's process group
  as a stop of every worker at once), which reports when it has started (the boot signal the
  supervisor counts), retires gracefully for ``MAX_REQUESTS`` and does not drop connections
  it accepted an instant before it stops.

The listening sockets are made once, by the launcher's process, before any worker exists: the
workers inherit them (fork), so while no worker is up (two retiring at once, a crash)
connections wait in the backlog instead of being refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from uvicorn.config import Config as UvicornConfig
from uvicorn.server import Server

from asgi_launcher_uvicorn.limits import checked_protocol
from launcher import Config
from launcher.master import parse_address
from launcher.worker import ServerTraits, WorkerApp, server_context

#: WORKER_CLASS under this backend: the event loop and the HTTP/1.1 parser, as Uvicorn's
#: ``--loop`` and ``--http`` take them. ``uvloop`` is what ``uvicorn_worker.UvicornWorker``
#: serves with uvicorn[standard]; ``asyncio`` is its pure-Python ``UvicornH11Worker``.
WORKER_CLASSES: dict[str, tuple[str, str]] = {
    "uvloop": ("uvloop", "httptools"),
    "asyncio": ("asyncio", "h11"),
}

#: Uvicorn closes open WebSockets with 1012 when it stops and its parsers refuse CONNECT; the
#: protocols of ``asgi_launcher_uvicorn.limits`` check request heads: the pipeline need not.
TRAITS = ServerTraits(
    closes_websockets=True, refuses_connect=True, checks_requests=True, loggers=("uvicorn.error",)
)

#: Listen backlog (Uvicorn's and Gunicorn's default).
BACKLOG = 2048
#: How long a server stopping promptly (the master's SIGTERM without SHUTDOWN_DELAY) keeps the
#: connections it has just accepted before closing the ones that are still idle.
SETTLE = 0.1
#: Seconds a closed TLS connection may wait for its client's close_notify once the server stops.
CLOSE_NOTIFY_WAIT = 1.0


def log_config(config: Config) -> dict[str, Any]:
    """Uvicorn's loggers routed where ERROR_LOG says, at LOG_LEVEL, in Uvicorn's own layout.

    The handler sits on ``uvicorn.error`` itself (Uvicorn's default puts it on the ``uvicorn``
    parent), so that ``configure_logging`` can adopt it: JSON under ``LOG_FORMAT=json``, never
    passed on to the root logger too. ``uvicorn.access`` has none: the pipeline writes the
    access line.
    """
    handler: dict[str, Any]
    if config.error_log is None:  # ERROR_LOG="": off
        handler = {"class": "logging.NullHandler"}
    elif config.error_log == "-":
        handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "default"}
    else:
        handler = {"class": "logging.FileHandler", "filename": config.error_log, "formatter": "default"}
    level = config.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": False,
            }
        },
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": False},
        },
    }


def uvicorn_config(config: Config) -> tuple[UvicornConfig, ServerTraits]:
    """Uvicorn's settings for a resolved launcher config, and what the server does itself.

    Creating it sets up Uvicorn's loggers (``log_config``) in this process.
    """
    loop, http = WORKER_CLASSES[config.worker_class]
    protocol, checked = checked_protocol(http, config)
    uc = UvicornConfig(
        app=_not_loaded,  # the pipeline's callable, set by the caller once it is built
        loop=loop,
        http=protocol,
        ws="auto",
        lifespan="auto",
        interface="asgi3",  # the pipeline has adapted an ASGI 2 app already
        log_config=log_config(config),
        log_level=config.log_level,
        access_log=False,  # the pipeline writes ACCESS_LOG, the same under every backend
        proxy_headers=False,  # FORWARDED_ALLOW_IPS: the pipeline
        root_path="",  # ROOT_PATH: the pipeline
        limit_max_requests=None,  # MAX_REQUESTS: the pipeline
        timeout_keep_alive=config.keep_alive,
        timeout_graceful_shutdown=config.graceful_timeout,
        backlog=BACKLOG,
        # TLS: the launcher's context, built when the server loads its config, in the process
        # that serves (a worker started by SIGHUP reads replaced certificate files).
        ssl_context_factory=(lambda _uc, _default: server_context(config)) if config.tls else None,
    )
    return uc, TRAITS if checked else ServerTraits(
        closes_websockets=True, refuses_connect=True, loggers=TRAITS.loggers
    )


async def _not_loaded(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - replaced
    raise RuntimeError("the worker pipeline was not set")


class LauncherServer(Server):
    """Uvicorn's server, minus its own signal handling, plus a stop that drops no request.

    Uvicorn's shutdown closes every connection that has no request in progress at once, a
    keep-alive connection whose next request is on its way and one accepted a moment ago
    included: under load a stopping server (SIGHUP, MAX_REQUESTS) failed a few requests. Here it
    stops accepting and, for a gentle stop, drains first (``WorkerApp.drain``: every response
    closes its connection, idle ones close after KEEP_ALIVE); a prompt one (the master's SIGTERM
    without SHUTDOWN_DELAY) gives just-accepted connections ``SETTLE`` seconds. Then Uvicorn's
    shutdown finishes what is in flight.
    """

    def __init__(self, config: UvicornConfig) -> None:
        super().__init__(config)
        self.servers: list[asyncio.base_events.Server] = []
        #: The pipeline this server serves (set once built): its drain.
        self.worker_app: WorkerApp | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The caller installs the launcher's signal table; Uvicorn's would replace it, and re-raise
        # the signal after shutdown (the process would die by SIGTERM instead of exiting 0).
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stop_accepting()
        cutting = asyncio.ensure_future(self._cut_unanswered_closes())
        try:
            if self.worker_app is not None and self.worker_app.gentle():
                await self.worker_app.drain(stop_accepting=lambda: None)
            else:
                await asyncio.sleep(SETTLE)
            await super().shutdown(sockets)
        finally:
            cutting.cancel()

    async def _cut_unanswered_closes(self) -> None:
        """A TLS connection the server has closed (idle, or its last response sent) stays open
        until the client answers its close_notify, up to asyncio's 30 s: a client that is not
        reading (an idle keep-alive connection) held the stop that long. Once everything it
        had to send is sent, such a connection is cut after ``CLOSE_NOTIFY_WAIT`` seconds."""
        while True:
            await asyncio.sleep(CLOSE_NOTIFY_WAIT)
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None and transport.is_closing() and not transport.get_write_buffer_size():
                    transport.abort()

    def stop_accepting(self) -> None:
        for listener in self.servers:
            listener.close()

    def stop(self, now: bool = False) -> None:
        """Begin the graceful stop (Uvicorn's ``should_exit``); ``now``: do not wait for requests."""
        if now:
            self.force_exit = True
        self.should_exit = True

    def retire(self) -> None:
        """``MAX_REQUESTS``: stop accepting now (Uvicorn would notice ``should_exit`` only at its
        next 0.1 s tick and accept meanwhile), then the graceful stop, which drains."""
        self.stop_accepting()
        self.stop()


def create_sockets(binds: tuple[str, ...]) -> list[socket.socket]:
    """Bind and listen on every ``BIND`` address, once, in the launcher's process.

    The launcher has already checked each address (in use, stale unix socket removed,
    permissions): what can still fail here is an ``OSError`` for the caller to report.
    A unix socket gets the mode ``0o777 & ~umask``, as under every backend.
    """
    sockets: list[socket.socket] = []
    try:
        for bind in binds:
            address = parse_address(bind)
            sock = socket.socket(address.family, socket.SOCK_STREAM)
            sockets.append(sock)
            if address.family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if address.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address.sockaddr)
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        close_sockets(sockets)
        raise
    return sockets


def close_sockets(sockets: list[socket.socket]) -> None:
    """Close the listening sockets (their unix socket files go at the master's exit)."""
    for sock in sockets:
        sock.close()
