"""The master's side of the state directory (``launcher.statedir``): make it, read what the
workers write into it, and remove it.

On tmpfs when there is one (no disk writes), named so the next master removes it if this one
is killed (SIGKILL leaves it behind).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable

from launcher import statedir


def _parent() -> str:
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return tempfile.gettempdir()


def remove_stale(parent: str) -> int:
    """Remove the state directories of masters that are gone; returns how many.

    Only directories of this user whose master pid no longer runs.
    """
    removed = 0
    try:
        entries = os.listdir(parent)
    except OSError:
        return 0
    for name in entries:
        pid_text = name[len(statedir.PREFIX) :].partition("-")[0]
        if not name.startswith(statedir.PREFIX) or not pid_text.isdigit():
            continue
        path = os.path.join(parent, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        except OSError:
            continue  # alive (EPERM: another user's process) or unreadable: not ours to remove
    return removed


class StateDirectory:
    """One master's directory, and what its workers have written there."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            parent = _parent()
            remove_stale(parent)
            path = tempfile.mkdtemp(prefix=f"{statedir.PREFIX}{os.getpid()}-", dir=parent)
        self.path = path
        self._born: dict[int, float] = {}

    def born(self, pid: int, now: float | None = None) -> None:
        """A worker has started: its boot counts toward TIMEOUT until its first beat."""
        self._born[pid] = time.time() if now is None else now

    def last_beat(self, pid: int) -> float:
        try:
            return os.stat(statedir.heartbeat(self.path, pid)).st_mtime
        except OSError:
            return self._born.get(pid, time.time())

    def overdue(self, pids: Iterable[int], timeout: float, now: float | None = None) -> list[int]:
        """The workers whose loop has not beaten for ``timeout`` seconds (counted from their start
        until their first beat, as Gunicorn counts boot time)."""
        now = time.time() if now is None else now
        return [pid for pid in pids if now - self.last_beat(pid) > timeout]

    def booted(self, pid: int) -> bool:
        return os.path.exists(statedir.booted(self.path, pid))

    def failure(self, pid: int) -> tuple[str, str]:
        """Why a worker could not boot, as it left it: its cause (one line) and its traceback
        (empty strings: it left nothing)."""
        try:
            with open(statedir.failed(self.path, pid), encoding="utf-8", errors="replace") as f:
                cause, _, trace = f.read().partition("\n")
        except OSError:
            return "", ""
        return cause.strip(), trace

    def retiring(self, pid: int) -> str:
        """Why a worker has asked to be retired (``memory``), or "" if it has not."""
        try:
            with open(statedir.retiring(self.path, pid), encoding="utf-8") as f:
                return f.read().strip()
        except OSError:
            return ""

    def claim_retiring(self, pid: int) -> bool:
        """Retire worker ``pid`` for its memory unless it is retiring itself (``statedir.claim``):
        whether the master is the one to say so."""
        return statedir.claim(statedir.retiring(self.path, pid), "memory")

    def notice_shutdown(self) -> None:
        statedir.write(os.path.join(self.path, statedir.SHUTDOWN_NOTICE))

    def notice_stop(self) -> None:
        statedir.write(os.path.join(self.path, statedir.STOP_NOTICE))

    def forget(self, pid: int) -> None:
        """A reaped worker's files go."""
        self._born.pop(pid, None)
        for path in (
            statedir.heartbeat(self.path, pid),
            statedir.booted(self.path, pid),
            statedir.failed(self.path, pid),
            statedir.retiring(self.path, pid),
        ):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
