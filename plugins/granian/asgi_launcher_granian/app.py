"""What each Granian worker loads: the launcher's worker pipeline around the user's app.

A module-level function so that Granian's workers can unpickle it when they are spawned.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from launcher import Config, ServerTraits, WorkerApp, build_worker_app

#: Granian's accept loop runs in its own threads and stops a moment after the worker is told to:
#: the request that retires a worker waits that long before it is served, so its client cannot
#: open a new connection that the stopping worker would accept and then drop unanswered.
#: Its graceful stop also closes idle keep-alive connections at once, under a next request
#: already on its way: a retiring worker first tells every keep-alive client to leave
#: (``retire_delay``; measured: 3.4 such failures a retirement without, about 1 with).
TRAITS = ServerTraits(retire_settle=0.05, retire_delay=0.3, int_ports=False, loggers=("_granian",))

#: This worker's graceful stop, once Granian has set up its signals (see below).
_stop_worker: Callable[[], None] | None = None


def retire() -> None:
    """Granian's own graceful stop for this worker, what its SIGTERM handler does, started at
    once (a signal to ourselves would reach the loop only after it had accepted more)."""
    if _stop_worker is not None:
        _stop_worker()
    else:
        os.kill(os.getpid(), signal.SIGTERM)


def _drain_before_stopping(worker_app: WorkerApp) -> None:
    """Close open WebSockets with 1012 before Granian stops the worker.

    Granian's worker drops its WebSocket connections without a close frame when it stops. Its
    worker installs its SIGINT/SIGTERM handlers through ``granian._signals.set_loop_signals``,
    after loading the app (here); ours wrap that: the pipeline closes the sessions first (for
    at most a second), then Granian's own stop runs.
    """
    import granian._signals as granian_signals

    original = granian_signals.set_loop_signals

    def set_loop_signals(loop: asyncio.AbstractEventLoop) -> Any:
        event = original(loop)  # type: ignore[no-untyped-call]
        stopping = False

        async def stop() -> None:
            try:
                await worker_app.drain_websockets()
            finally:
                event.set()

        def handler() -> None:
            nonlocal stopping
            if stopping:  # WorkerSignal.set must be called once: a second call blocks
                return
            stopping = True
            if worker_app.has_websockets():
                loop.create_task(stop())
            else:
                event.set()  # nothing to drain: stop accepting now

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, handler)
        global _stop_worker
        _stop_worker = handler
        return event

    granian_signals.set_loop_signals = set_loop_signals


def load_app(target: str, config: Config, heartbeat_dir: str | None, master_pid: int) -> Any:
    # Granian applies none of FORWARDED_ALLOW_IPS, ROOT_PATH, MAX_REQUESTS or TIMEOUT: the
    # pipeline's layers do, as under every backend.
    worker_app = build_worker_app(
        config, retire=retire, heartbeat_dir=heartbeat_dir, traits=TRAITS, master_pid=master_pid
    )
    _drain_before_stopping(worker_app)
    return worker_app.app
