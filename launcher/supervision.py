"""When replacing dead workers stops helping: one rule shared by every backend's supervisor.

A worker killed now and then (the OOM killer, an operator's ``kill -9``) should simply be
replaced. Workers that keep dying mean the app is broken, and replacing them forever hides that
behind a service that answers intermittently, so the launcher gives up with a non-zero status
and the container runtime can report it and restart or alert.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

#: The exit status when workers keep dying or cannot boot (Gunicorn's "worker failed to boot").
EXIT_WORKERS_FAILING = 3


@dataclass
class CrashLoop:
    """Counts unexpected deaths of workers in a sliding window.

    ``limit`` deaths within ``window`` seconds (default ``max(5, 2 * workers)`` in 30 s) is a
    crash loop: far more than bad luck, far fewer than a broken app produces in that time.
    """

    workers: int
    window: float = 30.0
    limit: int = 0
    _deaths: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.limit <= 0:
            self.limit = max(5, 2 * self.workers)

    def record_death(self, now: float | None = None) -> bool:
        """Note one unexpected worker death; True when that makes a crash loop."""
        now = time.monotonic() if now is None else now
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.window:
            self._deaths.popleft()
        return len(self._deaths) >= self.limit

    def describe(self) -> str:
        return f"{len(self._deaths)} workers died within {self.window:.0f}s"
