"""The master's state directory: how a master and its workers talk without a socket.

The master makes one private directory (``launcher.master.state``) and passes its path to every
worker; each side writes files the other looks at:

* ``<pid>``: the worker's heartbeat, touched by its event loop (``TIMEOUT``);
* ``<pid>.booted``: the worker's app has started (lifespan startup done): ``/readyz``, and the
  line between a worker that failed to boot and one that died after serving;
* ``<pid>.failed``: why the worker could not boot, one line, for the master's report;
* ``<pid>.retiring``: the worker has asked to be retired, and why (``memory``);
* ``shutting-down``: the master's notice that ``SHUTDOWN_DELAY`` has begun;
* ``stopping``: the master's notice that it is stopping (a stop signal reached its server):
  without the one above, its workers stop promptly rather than drain gently.

This module only names them, so neither side imports the other.
"""

from __future__ import annotations

import contextlib
import os

#: Directories are named ``asgi-launcher-<master pid>-<random>``.
PREFIX = "asgi-launcher-"
#: The master's notice that a SHUTDOWN_DELAY has begun.
SHUTDOWN_NOTICE = "shutting-down"
#: The master's notice that it is stopping.
STOP_NOTICE = "stopping"
BOOTED_SUFFIX = ".booted"
FAILED_SUFFIX = ".failed"
RETIRING_SUFFIX = ".retiring"


def heartbeat(directory: str, pid: int) -> str:
    return os.path.join(directory, str(pid))


def booted(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{pid}{BOOTED_SUFFIX}")


def failed(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{pid}{FAILED_SUFFIX}")


def retiring(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{pid}{RETIRING_SUFFIX}")


def heartbeat_interval(timeout: float) -> float:
    """How often a worker's loop refreshes its heartbeat: often enough to be well inside TIMEOUT."""
    return max(0.05, min(1.0, timeout / 4))


def claim(path: str, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists; whether this call made it. Two
    processes that may both act on one event (the master and a worker both finding the worker
    over MAX_WORKER_MEMORY) then act once: the one that claims it. A directory already gone
    leaves nobody to race with: True."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True
    try:
        os.write(fd, text.encode(errors="replace"))
    finally:
        os.close(fd)
    return True


def write(path: str, text: str = "") -> None:
    """Create ``path`` (mode 0600) holding ``text``; a directory already gone is no error (the
    master removes it when it stops)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode(errors="replace"))
        finally:
            os.close(fd)
