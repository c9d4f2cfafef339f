"""The metrics directory and a /metrics scrape through many worker restarts.

    python bench/metrics_restarts.py                      # 10,000 restarts, folded
    python bench/metrics_restarts.py --unfolded           # what prometheus_client alone keeps

A worker's files are made once for real (a fresh interpreter counts requests through the
pipeline's ``ServerMetrics`` and an app counter, as a worker does), then copied under a new pid
for each restart, which is what a replacement worker leaves behind; after each copy the master's
``metrics.mark_dead`` runs (``--unfolded``: ``prometheus_client``'s ``mark_process_dead``, what
the launcher did before). Prints the directory's size, its file count and a scrape's time every
``--every`` restarts, and checks that no count was lost.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKER = r"""
from launcher.observability.metrics import ServerMetrics
from prometheus_client import Counter
metrics = ServerMetrics()
entry = (0.0, 0.01, 200, 5, "http", "GET", None, None, "/", None, b"", "1.1", (), ())
metrics.begun.extend(["GET"] * 10)
metrics.counted([entry] * 10)
Counter("app_hits", "hits").inc(10)
"""


class Master:
    workers_wanted, restarts = 2, {}

    def booted_count(self) -> int:
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--restarts", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--unfolded", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        subprocess.run([sys.executable, "-c", WORKER], env=env, check=True)
        template = {Path(f).name.rpartition("_")[0]: f for f in glob.glob(os.path.join(directory, "*.db"))}
        (original,) = {Path(f).name.rpartition("_")[2][:-3] for f in template.values()}
        from prometheus_client import multiprocess

        from launcher.observability import metrics

        def scrape() -> tuple[float, bytes]:
            start = time.perf_counter()
            body, _ = metrics.exposition(Master(), directory)
            return time.perf_counter() - start, body

        print(
            f"{'restarts':>8} {'files':>6} {'KiB':>8} {'scrape ms':>10}   ({'unfolded' if args.unfolded else 'folded'})"
        )
        pid = 10_000_000
        for n in range(1, args.restarts + 1):
            pid += 1
            for kind, path in template.items():
                shutil.copyfile(path, os.path.join(directory, f"{kind}_{pid}.db"))
            if args.unfolded:
                multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
            else:
                metrics.mark_dead(pid, directory)
            if n % args.every == 0 or n == args.restarts:
                files = glob.glob(os.path.join(directory, "*.db"))
                size = sum(os.stat(f).st_blocks * 512 for f in files) / 1024
                took, body = scrape()
                print(f"{n:8} {len(files):6} {size:8.0f} {took * 1000:10.1f}", flush=True)
        line = next(x for x in body.decode().splitlines() if x.startswith("app_hits_total"))
        expected = 10 * (args.restarts + 1)  # each copy, and the template's own worker
        assert float(line.split()[-1]) == expected, (line, expected)
        print(f"app_hits_total = {expected}: no count lost (template pid {original})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
