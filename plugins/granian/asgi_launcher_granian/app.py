"""What each Granian worker loads: the launcher's worker pipeline around the user's app.

A module-level function so that Granian's workers can unpickle it when they are spawned.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from launcher import Config
from launcher.pipeline import WorkerApp, build


def retire() -> None:
    """Granian's own graceful stop for this worker: what its SIGTERM handler does."""
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
            if not stopping:  # WorkerSignal.set must be called once: a second call blocks
                stopping = True
                loop.create_task(stop())

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, handler)
        return event

    granian_signals.set_loop_signals = set_loop_signals


def load_app(target: str, config: Config, heartbeat_dir: str | None) -> Any:
    # Granian applies none of FORWARDED_ALLOW_IPS, ROOT_PATH, MAX_REQUESTS or TIMEOUT: the
    # pipeline's layers do, as under every backend.
    worker_app = build(config, retire=retire, heartbeat_dir=heartbeat_dir)
    _drain_before_stopping(worker_app)
    return worker_app.app
