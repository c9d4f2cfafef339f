"""The rules a master applies to its workers, the same under every backend: pure decisions.

* **Which exits count.** A worker that exits 0 on its own has retired (``MAX_REQUESTS``); one the
  master stopped itself (SIGHUP, ``TIMEOUT``, ``MAX_WORKER_MEMORY``) or that obeyed a SIGTERM is
  not the app's fault. Neither counts as a crash.
* **Crash loop.** A worker killed now and then (the OOM killer, an operator's ``kill -9``) is
  simply replaced. Workers that keep dying after they booted mean the app is broken: ``limit``
  deaths within ``window`` seconds and the master gives up with exit 3, rather than hiding it
  behind a service that answers intermittently.
* **Failed boots.** A worker that ends before its app has started (import error, a failed
  lifespan startup) failed to boot: ``max(3, workers)`` in a row and the master gives up with
  exit 3 within seconds; between two, a short growing pause, so a failing dependency is not
  hammered. Never a loop, never exit 0.

``launcher.master.Master`` asks these rules and says what they decided, in the lines every
backend shares.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from dataclasses import dataclass, field

#: Seconds between two looks at the workers' memory (MAX_WORKER_MEMORY).
MEMORY_CHECK_EVERY = 1.0


@dataclass(frozen=True)
class Decision:
    """What a master does after a worker has gone."""

    #: Start a worker in its place.
    replace: bool
    #: Seconds to wait before starting it (after a failed boot).
    after: float = 0.0
    #: Stop the launcher with ``EXIT_WORKERS_FAILING``.
    give_up: bool = False


@dataclass
class CrashLoop:
    """Unexpected deaths of booted workers in a sliding window: ``max(5, 2 * workers)`` within
    30 s by default: far more than bad luck, far fewer than a broken app produces in that time."""

    workers: int
    window: float = 30.0
    limit: int = 0
    _deaths: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.limit <= 0:
            self.limit = max(5, 2 * self.workers)

    def record_death(self, now: float | None = None) -> bool:
        """Note one unexpected death; True when that makes a crash loop."""
        now = time.monotonic() if now is None else now
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.window:
            self._deaths.popleft()
        return len(self._deaths) >= self.limit

    def describe(self) -> str:
        return f"{len(self._deaths)} workers died within {self.window:.0f}s"


@dataclass
class FailedBoots:
    """Failed boots in a row: ``limit`` (default ``max(3, workers)``) of them and the master gives
    up; a worker that boots resets the count."""

    workers: int
    limit: int = 0
    count: int = 0

    def __post_init__(self) -> None:
        if self.limit <= 0:
            self.limit = max(3, self.workers)

    def failed(self) -> bool:
        """Note one failed boot; True when that is the last one allowed."""
        self.count += 1
        return self.count >= self.limit

    def booted(self) -> None:
        self.count = 0

    def pause(self) -> float:
        """Seconds before the next attempt: 0.2, 0.4, 0.8 ... at most 2."""
        return min(0.1 * float(2**self.count), 2.0)


def describe_exit(code: int | None) -> str:
    """``exit status 1`` or ``killed by SIGKILL``, from a ``waitstatus_to_exitcode``-style code."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


#: Why the master itself stopped a worker, as ``asgi_launcher_worker_restarts_total``'s reason.
REASONS = {"timeout": "timeout", "memory": "memory", "reload": "reload"}

#: The signal table's "ignored" rows: signal -> why. (SIGTERM/SIGINT drain, SIGQUIT stops at
#: once, SIGHUP restarts the workers, SIGUSR1 reopens log files.)
IGNORED_SIGNALS: dict[int, str] = {
    signal.SIGTTIN: "the worker count follows the environment: set WEB_CONCURRENCY, or scale replicas",
    signal.SIGTTOU: "the worker count follows the environment: set WEB_CONCURRENCY, or scale replicas",
    signal.SIGUSR2: "no re-exec: send SIGHUP to restart the workers on new code",
    signal.SIGWINCH: "not a daemon",
}
