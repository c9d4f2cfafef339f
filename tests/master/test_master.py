"""The master façade's decisions, the same under every backend: which exits count, failed
boots, the crash loop, TIMEOUT, the state directory."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import Backend, statedir
from launcher.config.resolve import resolve
from launcher.master import Master
from launcher.master.policy import CrashLoop, FailedBoots
from launcher.master.state import remove_stale


def test_default_limit_scales_with_workers() -> None:
    assert CrashLoop(workers=1).limit == 5
    assert CrashLoop(workers=8).limit == 16
    assert FailedBoots(workers=2).limit == 3
    assert FailedBoots(workers=8).limit == 8


def test_a_burst_within_the_window_is_a_crash_loop() -> None:
    loop = CrashLoop(workers=2, window=30)
    assert [loop.record_death(now=t) for t in (0, 1, 2, 3, 4)] == [False, False, False, False, True]


def test_deaths_spread_beyond_the_window_are_not() -> None:
    loop = CrashLoop(workers=2, window=30)
    assert not any(loop.record_death(now=t * 10.0) for t in range(20))


def test_failed_boots_pause_longer_each_time_and_a_boot_resets_them() -> None:
    boots = FailedBoots(workers=4)
    pauses = []
    for _ in range(3):
        assert not boots.failed()
        pauses.append(boots.pause())
    assert pauses == [0.2, 0.4, 0.8]
    boots.booted()
    assert boots.count == 0


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def make(tmp_path: Path) -> Iterator[object]:
    made: list[Master] = []

    def master(**env: str) -> tuple[Master, list[str]]:
        (tmp_path / "main.py").write_text("app = None\n")
        config = resolve({"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2", **env}, Backend)
        m = Master(config)
        lines = Lines()
        m.log.handlers = [lines]
        made.append(m)
        return m, lines.lines

    yield master
    for m in made:
        m.close()


def test_exits_are_told_apart_and_only_deaths_count(make) -> None:  # type: ignore[no-untyped-def]
    master, lines = make(MAX_REQUESTS="100", TIMEOUT="0")
    booted = {"booted": True}
    assert master.exited(10, 0, **booted).replace  # retired itself after MAX_REQUESTS
    assert lines[-1] == "worker 10 retired after MAX_REQUESTS=100; starting a new one"
    decisions = [master.exited(20 + n, -9, **booted) for n in range(5)]  # max(5, 2 * 2) deaths
    assert [d.give_up for d in decisions] == [False, False, False, False, True]
    assert lines[1] == "worker 20 died (killed by SIGKILL); starting a replacement"
    assert lines[-1].startswith("workers keep dying (5 workers died within 30s)")
    assert master.gave_up


def test_nothing_counts_once_a_stop_signal_has_arrived(make) -> None:  # type: ignore[no-untyped-def]
    master, lines = make()
    master.draining = True
    decision = master.exited(11, -9, booted=True)
    assert not decision.replace and not decision.give_up and lines == []


def test_a_worker_that_ends_before_its_app_started_failed_to_boot(make) -> None:  # type: ignore[no-untyped-def]
    master, lines = make()
    trace = 'Traceback (most recent call last):\n  File "/app/main.py", line 3\nRuntimeError: no database'
    for pid in (31, 32):
        master.spawned(pid)
        statedir.write(statedir.failed(master.state.path, pid), f"RuntimeError: no database\n{trace}")
    first = master.exited(31, 3)
    assert (first.replace, first.after, first.give_up) == (True, 0.2, False)
    second = master.exited(32, 3)
    assert (second.replace, second.after) == (True, 0.4)
    assert lines.count(trace) == 1  # the traceback once, not once a worker
    assert lines[1].startswith("worker 31 failed to boot: RuntimeError: no database (exit status 3 after ")
    assert lines[1].endswith("1 of 3 failed boots in a row")
    third = master.exited(33, 1)  # no cause left behind (it died before it could say)
    assert third.give_up and not third.replace
    assert lines[-2].startswith("worker 33 failed to boot (exit status 1")
    assert lines[-1] == "workers cannot boot: giving up (exit 3)"


def test_a_boot_in_between_resets_the_count(make) -> None:  # type: ignore[no-untyped-def]
    master, _ = make()
    master.exited(41, 3)
    master.exited(42, 3)
    statedir.write(statedir.booted(master.state.path, 43))
    master.exited(43, -9)  # booted (its mark), then died
    assert master.boots.count == 0
    assert not master.exited(44, 3).give_up


def test_timeout_kills_a_worker_whose_loop_stopped_and_it_does_not_count(make) -> None:  # type: ignore[no-untyped-def]
    master, lines = make(TIMEOUT="1")
    killed: list[tuple[int, int]] = []
    master.spawned(101)
    master.spawned(102)
    now = time.time()
    master.state.born(101, now - 5)  # spawned 5 s ago and never beat: its boot is stuck
    beat = Path(statedir.heartbeat(master.state.path, 102))
    beat.touch()  # 102's loop is turning
    assert master.stop_overdue([101, 102], kill=lambda pid, sig: killed.append((pid, sig))) == [101]
    assert killed == [(101, signal.SIGKILL)]
    assert lines == [
        "worker 101 timed out: its event loop did not turn for 1s (TIMEOUT=1); killed, starting a replacement"
    ]
    assert master.stopped_by_master(101)
    decision = master.exited(101, -9)
    assert decision.replace and not decision.after  # the master's doing: no crash, no failed boot
    assert len(lines) == 1 and not master.stopped_by_master(101)
    assert master.restarts["timeout"] == 1 and master.crash_loop.describe() == "0 workers died within 30s"
    os.utime(beat, (now - 5, now - 5))  # 102's loop stopped 5 s ago
    time.sleep(master.check_every or 0)  # the files are looked at once per heartbeat interval
    assert master.stop_overdue([102], kill=lambda pid, sig: None) == [102]
    directory = master.state.path
    master.close()
    assert not Path(directory).exists()


def test_timeout_zero_turns_the_watchdog_off(make) -> None:  # type: ignore[no-untyped-def]
    master, _ = make(TIMEOUT="0")
    assert master.stop_overdue([1, 2], kill=lambda pid, sig: pytest.fail("nothing is watched")) == []


def test_a_reload_successor_already_runs(make) -> None:  # type: ignore[no-untyped-def]
    master, _ = make()
    master.stopping(51, "reload")
    assert not master.exited(51, 0, booted=True).replace
    master.stopping(52, "memory")
    assert master.exited(52, 0, booted=True).replace
    assert (master.restarts["reload"], master.restarts["memory"]) == (1, 1)


def test_a_forked_copy_does_not_remove_the_masters_directory(make) -> None:  # type: ignore[no-untyped-def]
    master, _ = make(TIMEOUT="5")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        master.close()
        os._exit(0)
    os.waitpid(pid, 0)
    assert Path(master.state.path).is_dir()


def test_state_directories_of_dead_masters_are_removed(tmp_path: Path) -> None:
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
    assert remove_stale(str(tmp_path)) == 1
    assert not dead.exists() and alive.exists() and other.exists()


def test_a_second_sigterm_handled_inside_the_first_skips_shutdown_delay(make) -> None:  # type: ignore[no-untyped-def]
    """Python runs a signal's handler at the next call or loop of whatever it interrupts, the
    first SIGTERM's handler included: a second SIGTERM that lands while the first is still
    beginning SHUTDOWN_DELAY is a second one (the stop, at once), not a first one again. Here the
    second is sent from inside the first handler's own work, so it lands there every time."""
    master, lines = make(SHUTDOWN_DELAY="30")
    reached: list[int] = []
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)}
    notice = master.state.notice_shutdown

    def notice_and_a_second_sigterm() -> None:
        notice()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):  # (a loop: where Python runs the pending handler)
            pass

    master.state.notice_shutdown = notice_and_a_second_sigterm  # type: ignore[method-assign]
    said_by: set[str] = set()  # which threads logged: never the handlers' own (see Master._say)
    master.log.addFilter(lambda record: said_by.add(record.threadName or "") or True)
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: reached.append(signum))
        master.serving()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            pass
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert reached == [signal.SIGTERM], lines  # the server's own handler: told to stop, once
    for thread in master._saying:  # (the handler's lines are said by threads: see _say)
        thread.join(10)
    assert sorted(lines) == [
        "got SIGTERM: not ready (/readyz 503); serving on for SHUTDOWN_DELAY=30s, then stopping",
        "got a second SIGTERM: skipping the rest of SHUTDOWN_DELAY",
    ]
    assert master._delay is not None and master._delay_done  # its timer will do nothing
    assert said_by == {"asgi-launcher-say"}
