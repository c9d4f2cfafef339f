"""The shared supervision rules: crash loop, which exits count, TIMEOUT."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from launcher import Backend
from launcher.config.resolve import resolve
from launcher.master.policy import CrashLoop, Supervision


def test_default_limit_scales_with_workers() -> None:
    assert CrashLoop(workers=1).limit == 5
    assert CrashLoop(workers=8).limit == 16


def test_a_burst_within_the_window_is_a_crash_loop() -> None:
    loop = CrashLoop(workers=2, window=30)
    assert [loop.record_death(now=t) for t in (0, 1, 2, 3, 4)] == [False, False, False, False, True]


def test_deaths_spread_beyond_the_window_are_not() -> None:
    loop = CrashLoop(workers=2, window=30)
    assert not any(loop.record_death(now=t * 10.0) for t in range(20))


# -- the policy every master applies (Supervision) ------------------------------------------


def supervision(tmp_path: Path, **env: str) -> tuple[Supervision, list[str]]:
    (tmp_path / "main.py").write_text("app = None\n")
    config = resolve({"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2", **env}, Backend)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    log = logging.getLogger(f"test-supervision-{id(lines)}")
    log.handlers = [Collect()]
    log.setLevel(logging.DEBUG)
    return Supervision(config, log), lines


def test_exits_are_told_apart_and_only_deaths_count(tmp_path: Path) -> None:
    policy, lines = supervision(tmp_path, MAX_REQUESTS="100", TIMEOUT="0")
    assert not policy.exited(10, 0)  # retired itself after MAX_REQUESTS
    assert lines[-1] == "worker 10 retired after MAX_REQUESTS=100; starting a new one"
    assert not policy.exited(11, -9, stopping=True)  # during the master's own shutdown
    assert len(lines) == 1
    verdicts = [policy.exited(20 + n, -9) for n in range(5)]  # max(5, 2 * 2) deaths
    assert verdicts == [False, False, False, False, True]
    assert lines[1] == "worker 20 died (killed by SIGKILL); starting a replacement"
    assert lines[-1].startswith("workers keep dying (5 workers died within 30s)")


def test_timeout_kills_a_worker_whose_loop_stopped_and_it_does_not_count(tmp_path: Path) -> None:
    policy, lines = supervision(tmp_path, TIMEOUT="1")
    assert policy.heartbeat_dir is not None and Path(policy.heartbeat_dir).is_dir()
    killed: list[tuple[int, int]] = []
    policy.spawned(101)
    policy.spawned(102)
    assert policy.watchdog is not None
    now = time.time()
    policy.watchdog.born(101, now - 5)  # spawned 5 s ago and never beat: its boot is stuck
    beat = Path(policy.heartbeat_dir) / "102"
    beat.touch()  # 102's loop is turning
    assert policy.stop_overdue([101, 102], kill=lambda pid, sig: killed.append((pid, sig))) == [101]
    assert killed == [(101, signal.SIGKILL)]
    assert lines == [
        "worker 101 timed out: its event loop did not turn for 1s (TIMEOUT=1); killed, starting a replacement"
    ]
    assert policy.stopped_by_master(101)
    assert not policy.exited(101, -9)  # the master's doing: not a crash, and no second line
    assert len(lines) == 1 and not policy.stopped_by_master(101)
    assert policy.crash_loop.describe() == "0 workers died within 30s"
    os.utime(beat, (now - 5, now - 5))  # 102's loop stopped 5 s ago
    time.sleep(policy.check_every or 0)  # the files are looked at once per heartbeat interval
    assert policy.stop_overdue([102], kill=lambda pid, sig: None) == [102]
    directory = policy.heartbeat_dir
    policy.close()
    assert not Path(directory).exists()


def test_timeout_zero_turns_the_watchdog_off(tmp_path: Path) -> None:
    policy, _ = supervision(tmp_path, TIMEOUT="0")
    assert policy.heartbeat_dir is None
    assert policy.stop_overdue([1, 2], kill=lambda pid, sig: pytest.fail("nothing is watched")) == []


def test_a_forked_copy_does_not_remove_the_masters_directory(tmp_path: Path) -> None:
    policy, _ = supervision(tmp_path, TIMEOUT="5")
    assert policy.heartbeat_dir is not None
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        policy.close()
        os._exit(0)
    os.waitpid(pid, 0)
    assert Path(policy.heartbeat_dir).is_dir()
    policy.close()


def test_heartbeat_directories_of_dead_masters_are_removed(tmp_path: Path) -> None:
    from launcher.master.policy import remove_stale_heartbeats

    child = os.fork()
    if child == 0:  # pragma: no cover - a pid that is certainly gone once reaped
        os._exit(0)
    os.waitpid(child, 0)
    dead = tmp_path / f"asgi-launcher-{child}-abc"
    alive = tmp_path / f"asgi-launcher-{os.getpid()}-def"
    other = tmp_path / "asgi-launcher-notapid"
    for path in (dead, alive, other):
        path.mkdir()
    (dead / "123").touch()
    assert remove_stale_heartbeats(str(tmp_path)) == 1
    assert not dead.exists() and alive.exists() and other.exists()
