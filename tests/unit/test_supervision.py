"""The shared crash-loop rule: occasional deaths are replaced, a burst is a broken app."""

from __future__ import annotations

from launcher.supervision import CrashLoop


def test_default_limit_scales_with_workers() -> None:
    assert CrashLoop(workers=1).limit == 5
    assert CrashLoop(workers=8).limit == 16


def test_a_burst_within_the_window_is_a_crash_loop() -> None:
    loop = CrashLoop(workers=2, window=30)
    assert [loop.record_death(now=t) for t in (0, 1, 2, 3, 4)] == [False, False, False, False, True]


def test_deaths_spread_beyond_the_window_are_not() -> None:
    loop = CrashLoop(workers=2, window=30)
    assert not any(loop.record_death(now=t * 10.0) for t in range(20))
