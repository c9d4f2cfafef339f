"""SIGTERM, SIGINT and SIGQUIT at the worst moments, under every backend: the launcher always exits
0 before GRACEFUL_TIMEOUT (nothing is in flight, so nothing may need the timeout's kill) and
leaves no process behind.

Each (backend mode, moment) is one real trial (``launcher.testing.races``): its signal and its
offset after the moment (0 to 100 ms) rotate through the matrix, and a busy loop keeps the CPUs
loaded so the windows a race needs are wide. ``bench/races.py`` runs the same trials by the
thousand for the figure in the docs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.testing.races import MODES, STOP_SIGNALS, Hogs, moments, trial

pytestmark = pytest.mark.slow

CASES = [(mode, moment) for mode in MODES for moment in moments(mode)]
#: Each case's signal and offset, spread over the matrix so every signal and 0-100 ms are met.
ROTATION = list(
    itertools.islice(itertools.cycle(itertools.product(STOP_SIGNALS, (0.0, 0.03, 0.06, 0.1))), len(CASES))
)


@pytest.fixture(scope="module", autouse=True)
def busy_cpu() -> Iterator[None]:
    with Hogs(1):
        yield


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("mode", "moment"), CASES, ids=[f"{m}-{t}" for m, t in CASES])
def test_a_stop_signal_at_this_moment_ends_the_launcher(mode: str, moment: str, tmp_path: Path) -> None:
    signum, offset = ROTATION[CASES.index((mode, moment))]
    outcome = trial(mode, moment, signum, offset, tmp_path)
    assert not outcome.hung, outcome.describe() + "\n" + outcome.output[-3000:]
    assert outcome.ok, outcome.describe() + "\n" + outcome.output[-3000:]
