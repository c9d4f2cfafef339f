"""From a command to a running master: prepare (resolve once, the checks), prestart, launch.

``command`` is how every entry into the launcher runs (the CLI, and each server the reloader
starts): every signal of the table has a meaning from its first step, a user's mistake is one
line and exit 2, and a stop signal before serving is exit 0.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from launcher.errors import EXIT_CONFIG, ConfigError
from launcher.signals import Stopped, before_serving


def note(message: str) -> None:
    """One line on stderr, written with one system call (safe in a signal handler)."""
    from launcher.observability.logs import launcher_line

    os.write(2, (launcher_line(message) + "\n").encode(errors="replace"))


def command(body: Callable[[], int]) -> int:
    """Run ``body`` as the launcher's process: its exit status."""
    before_serving(note)  # every signal of the table has a meaning from here on
    try:
        from launcher.observability.logs import json_console, use_json_console

        if json_console():
            use_json_console()  # a traceback, a warning: one JSON object each, from the start
        return body()
    except ConfigError as exc:
        from launcher.observability.logs import launcher_line

        print(launcher_line(str(exc), "error"), file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except Stopped as stop:
        note(f"got {signal.Signals(stop.signum).name} before serving: stopped")
        return 0
