"""One Hypercorn worker process: serve the pipeline until the supervisor says stop.

This is Hypercorn's own worker (``hypercorn.asyncio.run.asyncio_worker`` and friends) with
these differences: it serves the launcher's worker pipeline (``launcher.worker.build_worker_app``:
the app found by the launcher's importer, with the layers every backend shares, its boot marked
for the master as under every backend); and it stops when the supervisor closes its stop pipe,
when the pipeline retires it (MAX_REQUESTS), or when the supervisor itself disappears (no
orphaned workers). When it begins to stop it tells the pipeline, which
closes open WebSockets with 1012 (Hypercorn itself would wait for them for GRACEFUL_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from asgi_launcher_hypercorn import websocket
from asgi_launcher_hypercorn.limits import install as install_limits
from launcher.worker import ServerTraits, WorkerApp, WorkerContext, accept_stop_signals, build_worker_app

#: How long a worker stopping promptly lets connections it has just accepted deliver their request.
SETTLE = 0.1
#: Seconds a TLS connection the server has closed waits for its client's close_notify.
CLOSE_NOTIFY_WAIT = 1.0


@dataclass
class Stop:
    """Why this worker should stop, besides the supervisor's shared event."""

    retiring: bool = False
    worker_app: WorkerApp | None = None
    listeners: list[asyncio.Server] = field(default_factory=list)
    _wake: asyncio.Event | None = None

    def retire(self) -> None:
        self.retiring = True
        if self._wake is not None:
            self._wake.set()

    def stop_accepting(self) -> None:
        for listener in self.listeners:
            listener.close()

    async def nap(self, seconds: float) -> None:
        """asyncio.sleep that ``retire`` cuts short, so a retiring worker stops accepting at once."""
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


async def _until_stopped(
    shutdown: Connection, master_pid: int | None, stop: Stop, sleep: Callable[[float], Awaitable[Any]]
) -> None:
    """Return when the supervisor asks for shutdown (it closes the pipe: EOF) or is gone (its pid
    is no longer our parent), or when the pipeline retires this worker; tell the pipeline that
    shutdown begins."""
    while not (shutdown.poll() or stop.retiring) and os.getppid() == master_pid:
        await sleep(0.1)
    # Hypercorn's shutdown closes every connection that has no request in progress at once, a
    # keep-alive connection whose next request is on its way and one accepted a moment ago
    # included, which dropped requests under load (a SIGHUP restart, MAX_REQUESTS). Stop
    # accepting first; a gentle stop then drains (WorkerApp.drain), a prompt one (the master's
    # SIGTERM without SHUTDOWN_DELAY) gives just-accepted connections SETTLE seconds.
    worker_app = stop.worker_app
    if worker_app is not None and worker_app.gentle():
        # (Under trio the listeners are not ours to close: the drain detaches them.)
        await worker_app.drain(stop_accepting=stop.stop_accepting if stop.listeners else None, sleep=sleep)
    elif stop.listeners:
        stop.stop_accepting()
        await sleep(SETTLE)
    if worker_app is not None:
        worker_app.shutting_down()


def _load(context: WorkerContext, hc: HypercornConfig, stop: Stop) -> Any:
    # Hypercorn sets up its error logger when it is first asked for it (on serving): now, so
    # that the pipeline makes it follow LOG_FORMAT and LOG_CONFIG applies after it.
    hc.log  # noqa: B018
    websocket.install()  # the client's close code reaches the app (asgi_launcher_hypercorn.websocket)
    # install_limits: request checks in Hypercorn's HTTP/1.1 protocol (asgi_launcher_hypercorn.limits)
    traits = ServerTraits(
        asyncio=hc.worker_class != "trio",
        checks_requests=install_limits(context.config),
        loggers=("hypercorn.error",),
    )
    stop.worker_app = build_worker_app(context, retire=stop.retire, traits=traits)
    app: Any = stop.worker_app.app  # Hypercorn's ASGIFramework type is a union of its own
    return wrap_app(app, hc.wsgi_max_body_size, "asgi")


def _quiet_tls_failures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """As Hypercorn does: a client's failed TLS handshake is not worth a traceback."""
    if not isinstance(context.get("exception"), ssl.SSLError):
        loop.default_exception_handler(context)


def _serve_asyncio(
    app: Any, hc: HypercornConfig, sockets: Sockets, trigger: Callable[[], Awaitable[None]], stop: Stop
) -> None:
    from hypercorn.asyncio.run import worker_serve

    original = asyncio.start_server

    async def start_server(*args: Any, **kwargs: Any) -> asyncio.Server:
        # Hypercorn keeps its listening servers to itself; the stop trigger needs them. A TLS
        # connection it closes waits for the client's close_notify CLOSE_NOTIFY_WAIT seconds, not
        # asyncio's 30 (an idle keep-alive client, not reading, held the stop that long).
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_shutdown_timeout", CLOSE_NOTIFY_WAIT)
        server = await original(*args, **kwargs)
        stop.listeners.append(server)
        return server

    asyncio.start_server = start_server  # type: ignore[assignment]  # this worker process only

    loop_factory = None
    if hc.worker_class == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(debug=hc.debug, loop_factory=loop_factory) as runner:
        runner.get_loop().set_exception_handler(_quiet_tls_failures)
        runner.run(worker_serve(app, hc, sockets=sockets, shutdown_trigger=trigger))


def _serve_trio(
    app: Any, hc: HypercornConfig, sockets: Sockets, master_pid: int | None, shutdown: Connection, stop: Stop
) -> None:
    import trio
    from hypercorn.trio.run import worker_serve

    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.listen(hc.backlog)  # as hypercorn.trio.run.trio_worker does
    trigger = partial(_until_stopped, shutdown, master_pid, stop, trio.sleep)
    trio.run(partial(worker_serve, app, hc, sockets=sockets, shutdown_trigger=trigger))


def run_worker(context: WorkerContext, hc: HypercornConfig, sockets: Sockets, shutdown: Connection) -> None:
    """Process target (spawn context): serve until the supervisor closes the stop pipe."""
    # The supervisor alone decides when to stop: a Ctrl-C or a SIGTERM sent to the whole
    # process group must not cut workers' in-flight requests short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    accept_stop_signals()  # blocked by the master across the spawn (launcher.signals)
    stop = Stop()
    app = _load(context, hc, stop)
    if hc.worker_class == "trio":
        _serve_trio(app, hc, sockets, context.master_pid, shutdown, stop)
    else:
        trigger = partial(_until_stopped, shutdown, context.master_pid, stop, stop.nap)
        _serve_asyncio(app, hc, sockets, trigger, stop)
