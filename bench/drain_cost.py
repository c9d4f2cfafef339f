"""What draining workers cost as the network namespace fills with other sockets.

    python bench/drain_cost.py                          # uvicorn, 0 and 30,000 TIME_WAIT sockets
    python bench/drain_cost.py --backend hypercorn --rounds 3
    python bench/drain_cost.py --tree /path/to/other/checkout   # another version of the launcher

Each trial serves the kit's hello app with ``MAX_REQUESTS=100`` and 2 workers to 4 keep-alive
clients (``launcher.testing.process.Load``) for ``--seconds``, so a worker retires every 50
requests or so, and each retirement drains (the worker looks at the connections it still holds
until they are gone). Before the load, the trial leaves N sockets in TIME_WAIT on 127.0.0.1 (the
client side closing first), as a busy host or a long test run does. Prints the launcher tree's
CPU seconds (the master and every worker, reaped) per 1,000 requests for each N, and their ratio.
A drain that reads ``/proc/net/tcp`` pays for every socket of the namespace (docs/benchmarks.md,
"What a drain costs"); one that asks the worker's own sockets does not.
"""

from __future__ import annotations

import argparse
import resource
import signal
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launcher.testing.process import Load, start_launcher  # noqa: E402


def time_wait(count: int) -> None:
    """Leave ``count`` sockets in TIME_WAIT (they stay a minute: the kernel's TCP_TIMEWAIT_LEN)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        made = 0
        while made < count:
            pairs = []
            for _ in range(min(500, count - made)):
                client = socket.create_connection(listener.getsockname())
                pairs.append((client, listener.accept()[0]))
            for client, served in pairs:
                client.close()
                served.close()
            made += len(pairs)


def trial(tree: Path, backend: str, sockets: int, seconds: float) -> tuple[float, int]:
    """The launcher tree's CPU seconds per 1,000 requests under the load, and the failed requests."""
    time_wait(sockets)
    env = {
        "PYTHONPATH": str(tree),
        "SERVER_BACKEND": backend,
        "APP_MODULE": "launcher.testing.apps.hello:app",
        "WEB_CONCURRENCY": "2",
        "MAX_REQUESTS": "100",
        "ACCESS_LOG": "",
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with start_launcher(env, cwd=tree) as server:
        server.wait_ready("/", 60)
        load = Load(server.port, "/", clients=4, keep_alive=True).start()
        time.sleep(seconds)
        load.stop()
        server.signal(signal.SIGTERM)
        server.wait(60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    answered = sum(outcome.status == 200 for outcome in load.outcomes)
    return cpu / answered * 1000, len(load.outcomes) - answered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="uvicorn")
    parser.add_argument("--sockets", type=int, default=30_000, help="TIME_WAIT sockets of the second trial")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose launcher runs")
    args = parser.parse_args(argv)
    for _ in range(args.rounds):
        quiet, quiet_failed = trial(args.tree, args.backend, 0, args.seconds)
        busy, busy_failed = trial(args.tree, args.backend, args.sockets, args.seconds)
        print(
            f"{args.backend}: CPU-s per 1,000 requests: {quiet:.3f} with 0 sockets, {busy:.3f} with "
            f"{args.sockets:,}, ratio {busy / quiet:.2f}; failed requests {quiet_failed} and {busy_failed}",
            flush=True,
        )
        time.sleep(61)  # TCP_TIMEWAIT_LEN: the next quiet trial (this one's or the next run's) is quiet
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
