"""What each Granian worker loads: the launcher's worker pipeline around the user's app.

A module-level function so that Granian's workers can unpickle it when they are spawned.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from launcher.worker import ServerTraits, WorkerApp, WorkerContext, accept_stop_signals, build_worker_app

#: Granian's scope says HTTP/1.0 as "1" and gives ports as strings (the pipeline's spec-scope
#: layer fixes both). Its accept loop runs in Rust and its graceful stop closes idle keep-alive
#: connections at once: a gentle stop drains first (``WorkerApp.drain``, listeners detached).
TRAITS = ServerTraits(spec_scope=False, loggers=("_granian",))

#: This worker's graceful stop, once Granian has set up its signals (see below).
_stop_worker: Callable[[], None] | None = None


def retire() -> None:
    """Granian's own graceful stop for this worker, what its SIGTERM handler does, started at
    once (a signal to ourselves would reach the loop only after it had accepted more)."""
    if _stop_worker is not None:
        _stop_worker()
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """Run ``stop`` in ``loop`` on SIGINT or SIGTERM, whenever the signal arrives.

    Not ``loop.add_signal_handler``: under uvloop (Granian's default loop) a signal that lands
    while the loop is not running is recorded and then never handled, since uvloop reads it back
    only with a later signal's wake-up byte. A Granian worker runs its loop twice (lifespan
    startup, then serving) and starts its Rust server in between: a SIGTERM there was lost, and
    the worker served on until the master killed it after GRACEFUL_TIMEOUT. A plain handler runs
    at the worker's next bytecode, and ``call_soon_threadsafe`` keeps the call for the loop's
    next run (and wakes it if it runs). ``stop`` may be called more than once.
    """

    def on_signal(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(stop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    accept_stop_signals()  # blocked by the master across the fork (launcher.signals)


def _drain_before_stopping(worker_app: WorkerApp) -> None:
    """Close open WebSockets with 1012 before Granian stops the worker.

    Granian's worker drops its WebSocket connections without a close frame when it stops. Its
    worker installs its SIGINT/SIGTERM handlers through ``granian._signals.set_loop_signals``,
    after loading the app (here); ours replace that: the pipeline closes the sessions first (for
    at most a second), then Granian's own stop runs (``WorkerSignal.set``, which stops the Rust
    server and then the worker's loop).
    """
    import granian._signals as granian_signals
    from granian._granian import WorkerSignal

    def set_loop_signals(loop: asyncio.AbstractEventLoop) -> Any:
        event = WorkerSignal()
        stopping = False

        async def stop(gentle: bool) -> None:
            try:
                if gentle:  # the Rust server stops accepting only when it stops: detach first
                    await worker_app.drain()
                await worker_app.drain_websockets()
            finally:
                event.set()

        def handler() -> None:
            nonlocal stopping
            if stopping:  # WorkerSignal.set must be called once: a second call blocks
                return
            stopping = True
            gentle = worker_app.gentle()
            if gentle or worker_app.has_websockets():
                loop.create_task(stop(gentle))
            else:
                event.set()  # a prompt stop with nothing to close first

        stop_signals(loop, handler)
        global _stop_worker
        _stop_worker = handler
        return event

    granian_signals.set_loop_signals = set_loop_signals


def load_app(target: str, context: WorkerContext) -> Any:
    # Granian applies none of FORWARDED_ALLOW_IPS, ROOT_PATH, MAX_REQUESTS or TIMEOUT: the
    # pipeline's layers do, as under every backend.
    worker_app = build_worker_app(context, retire=retire, traits=TRAITS)
    _drain_before_stopping(worker_app)
    return worker_app.app
