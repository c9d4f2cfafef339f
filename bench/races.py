"""Stress the signal races: many trials per backend, and the hangs counted.

    python bench/races.py --trials 1000                  # every mode, every moment
    python bench/races.py --modes gunicorn --moments respawn,hup --trials 200 --hogs 2

Each trial (``launcher.testing.races.trial``) starts a real launcher, brings it to one moment
(the first workers' boot, the prestart script, a respawn, a SIGHUP restart, a MAX_REQUESTS or
memory retirement, a TIMEOUT kill, a reload restart, a first SIGTERM with SHUTDOWN_DELAY set),
sends SIGTERM, SIGINT or SIGQUIT 0-100 ms later and checks that it exits 0 before
GRACEFUL_TIMEOUT with no process left. Trials cycle
through moments, signals and offsets; ``--hogs`` busy loops widen the windows and
``--parallel`` trials run at once. Prints hangs per trial for each mode, and each hang.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.testing.races import MODES, STOP_SIGNALS, Hogs, Outcome, moments, trial

#: Offsets after the moment, in seconds: 0 to 100 ms.
OFFSETS = tuple(i / 100 for i in range(11))


def plan(mode: str, chosen: tuple[str, ...] | None, trials: int) -> list[tuple[str, int, float]]:
    """``trials`` (moment, signal, offset) triples, every combination in turn."""
    names = [m for m in moments(mode) if chosen is None or m in chosen]
    combos = itertools.cycle(itertools.product(OFFSETS, STOP_SIGNALS, names))
    return [(moment, signum, offset) for offset, signum, moment in itertools.islice(combos, trials)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--moments", default="", help="comma-separated moments (default: all)")
    parser.add_argument("--trials", type=int, default=100, help="trials per mode")
    parser.add_argument("--hogs", type=int, default=2, help="busy-loop processes during the run")
    parser.add_argument("--parallel", type=int, default=2, help="trials at once")
    args = parser.parse_args(argv)
    chosen = tuple(args.moments.split(",")) if args.moments else None
    hung_total = 0
    with Hogs(args.hogs), tempfile.TemporaryDirectory(prefix="races-") as tmp:
        for mode in args.modes.split(","):
            started = time.monotonic()
            jobs = plan(mode, chosen, args.trials)
            outcomes: list[Outcome] = []
            unreached = 0

            def run(job: tuple[int, tuple[str, int, float]], mode: str = mode) -> Outcome | str:
                number, (moment, signum, offset) = job
                try:
                    return trial(mode, moment, signum, offset, Path(tmp) / f"{mode}-{number}")
                except AssertionError as exc:  # the moment never came (a machine too loaded): no trial
                    return f"{mode} {moment}: not reached: {str(exc)[:300]}"

            with ThreadPoolExecutor(args.parallel) as pool:
                for outcome in pool.map(run, enumerate(jobs)):
                    if isinstance(outcome, str):
                        unreached += 1
                        print("  " + outcome, flush=True)
                        continue
                    outcomes.append(outcome)
                    if not outcome.ok:
                        print("  " + outcome.describe(), flush=True)
                        print("    " + "\n    ".join(outcome.output.splitlines()[-30:]), flush=True)
            hung = [o for o in outcomes if o.hung]
            bad = [o for o in outcomes if not o.ok]
            hung_total += len(hung)
            by_moment = Counter(o.moment for o in hung)
            slowest = max(o.stopped_after for o in outcomes)
            print(
                f"{mode}: {len(hung)} hangs in {len(outcomes)} trials "
                f"({len(bad)} not exit 0; slowest stop {slowest:.2f}s; "
                f"{time.monotonic() - started:.0f}s)"
                + (f" by moment: {dict(by_moment)}" if hung else "")
                + (f"; {unreached} not reached" if unreached else ""),
                flush=True,
            )
    return 1 if hung_total else 0


if __name__ == "__main__":
    sys.exit(main())
