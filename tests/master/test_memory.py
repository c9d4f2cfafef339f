"""MAX_WORKER_MEMORY in the master: an oversized worker retired gracefully, once, no crash."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher import Backend
from launcher.config.resolve import resolve
from launcher.config.resources import MIB
from launcher.master import Master


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- MAX_WORKER_MEMORY in the master (Master.stop_oversized) --------------------------------


@pytest.fixture
def supervision(tmp_path: Path) -> Iterator[Callable[..., tuple[Master, list[str]]]]:
    made: list[Master] = []

    def make(**env: str) -> tuple[Master, list[str]]:
        write(tmp_path, "main.py", "app = None\n")
        master = Master(resolve({"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2", **env}, Backend))
        lines: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(record.getMessage())

        master.log.handlers = [Collect()]
        made.append(master)
        return master, lines

    yield make
    for master in made:
        master.close()


def test_an_oversized_worker_is_stopped_gracefully_once_and_is_no_crash(
    supervision: Callable[..., tuple[Master, list[str]]],
) -> None:
    policy, lines = supervision(MAX_WORKER_MEMORY="200", TIMEOUT="0")
    assert policy.check_every == 1.0  # the master's loop must turn for it, even without TIMEOUT
    sizes = {101: (250 * MIB, "USS"), 102: None}
    stopped: list[int] = []

    def measure(pid: int, limit: int) -> tuple[int, str] | None:
        assert limit == 200 * MIB
        return sizes.get(pid)

    assert policy.stop_oversized([101, 102], stopped.append, measure) == [101]
    assert stopped == [101]
    assert lines == [
        "worker 101 uses 250.0 MiB (USS), over MAX_WORKER_MEMORY=200 MiB; retiring it gracefully, "
        "starting a new one"
    ]
    assert policy.stopped_by_master(101)
    policy._last_memory_check = 0.0  # the next look, a second later: 101 is already stopping
    assert policy.stop_oversized([101, 102], stopped.append, measure) == []
    assert policy.exited(101, -15, booted=True).replace  # Uvicorn re-raises the SIGTERM; exit 0 elsewhere
    assert len(lines) == 1  # the one line, no "died", no crash counted
    assert policy.crash_loop.describe().startswith("0 ")


def test_looks_at_most_once_a_second(supervision: Callable[..., tuple[Master, list[str]]]) -> None:
    policy, _ = supervision(MAX_WORKER_MEMORY="200")
    calls: list[int] = []

    def measure(pid: int, limit: int) -> None:
        calls.append(pid)

    policy.stop_oversized([1], lambda pid: None, measure)
    policy.stop_oversized([1], lambda pid: None, measure)
    assert calls == [1]


def test_off_by_default(supervision: Callable[..., tuple[Master, list[str]]]) -> None:
    policy, _ = supervision(TIMEOUT="0")
    assert policy.check_every is None
    assert policy.stop_oversized([os.getpid()], lambda pid: pytest.fail("stopped")) == []


def test_a_worker_that_is_gone_meanwhile_is_fine(
    supervision: Callable[..., tuple[Master, list[str]]],
) -> None:
    policy, lines = supervision(MAX_WORKER_MEMORY="1")

    def gone(pid: int) -> None:
        raise ProcessLookupError(pid)

    assert policy.stop_oversized([5], gone, lambda pid, limit: (2 * MIB, "USS")) == [5]
    assert len(lines) == 1
