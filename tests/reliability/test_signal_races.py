"""SIGTERM, SIGINT and SIGQUIT at the worst moments, under every backend: the launcher always exits
0 before GRACEFUL_TIMEOUT (nothing is in flight, so nothing may need the timeout's kill) and
leaves no process behind.

Each (backend mode, moment) is one real trial (``launcher.testing.races``): its signal and its
offset after the moment (0 to 100 ms) rotate through the matrix, and the CPUs are kept busy so
the windows a race needs are wide: by the rest of the suite running beside these tests, or else by
a busy loop. ``bench/races.py`` runs the same trials by the
thousand for the figure in the docs.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.testing.process import start_launcher
from launcher.testing.races import MODES, MOMENTS, STOP_SIGNALS, Hogs, app_dir, moments, trial

pytestmark = pytest.mark.slow

CASES = [(mode, moment) for mode in MODES for moment in moments(mode)]
#: Each case's signal and offset, spread over the matrix so every signal and 0-100 ms are met.
ROTATION = list(
    itertools.islice(itertools.cycle(itertools.product(STOP_SIGNALS, (0.0, 0.03, 0.06, 0.1))), len(CASES))
)


@pytest.fixture(scope="module", autouse=True)
def busy_cpu() -> Iterator[None]:
    """A busy loop, unless every CPU is busy already (the whole suite on 2 cores: there a loop
    only took CPU time from the other tests, a share of CI's 10 minutes)."""
    with Hogs(0 if os.getloadavg()[0] >= (os.cpu_count() or 1) else 1):
        yield


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("mode", "moment"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_a_stop_signal_at_this_moment_ends_the_launcher(mode: str, moment: str, tmp_path: Path) -> None:
    signum, offset = ROTATION[CASES.index((mode, moment))]
    outcome = trial(mode, moment, signum, offset, tmp_path)
    assert not outcome.hung, outcome.describe() + "\n" + outcome.output[-3000:]
    assert outcome.ok, outcome.describe() + "\n" + outcome.output[-3000:]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", list(MODES))
def test_the_masters_other_signals_while_workers_boot_change_nothing(mode: str, tmp_path: Path) -> None:
    """SIGUSR1 (logrotate), SIGUSR2 and SIGWINCH while the first workers boot: every worker boots
    (none is killed by a default action), the launcher serves, and SIGTERM still ends it."""
    backend, mode_env = MODES[mode]
    directory = app_dir(tmp_path, "boot", mode)
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(directory), "APP_MODULE": "main:app", **mode_env}
    with start_launcher(env) as server:
        MOMENTS["boot"][1](server, directory)
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH):
            server.signal(sig)
        server.wait_ready("/", 60)
        output = server.output()
        assert "failed to boot" not in output and "died" not in output, output[-3000:]
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()[-3000:]
