"""Failed requests through rolling restarts (SIGHUP) and the drain after SHUTDOWN_DELAY.

    python bench/rolling.py                               # 10 SIGHUPs, every backend
    python bench/rolling.py --backends granian --hups 10 --clients 8
    python bench/rolling.py --drain                       # SIGTERM with SHUTDOWN_DELAY instead
    python bench/rolling.py --code /tmp/base              # the launcher of another checkout

Each backend serves the kit's hello app with 2 workers on 127.0.0.1; ``--clients`` threads each
send ``GET /pid`` in a loop on a keep-alive connection, opening a new one only when a response
says ``connection: close`` or the connection fails (``--fresh``: a new connection for every
request). Meanwhile the launcher gets ``--hups`` SIGHUPs, each once every worker of the one
before has been replaced. A request counts as failed when it was sent and no complete response
came back (a connection reset, closed or timed out under it), or when the response is not 200;
a connection refused before anything was sent is counted apart (it is no failed request). With
``--drain`` the launcher gets one SIGTERM with ``SHUTDOWN_DELAY`` instead, and the clients go on
until it has exited: what they sent to a server that had stopped listening is refused, not
failed.

``--code DIR`` runs the launcher and plugins found in DIR (``git archive`` of another commit,
say) instead of this checkout's, to measure before and after with the same driver.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.testing import apps
from launcher.testing.process import Launcher, start_launcher

BACKENDS = ("gunicorn", "hypercorn", "granian", "uvicorn")
PLUGIN_DIRS = ("plugins/gunicorn-uvicorn", "plugins/hypercorn", "plugins/granian", "plugins/uvicorn")


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    refused: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, error: str = "") -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1


def client(port: int, tally: Tally, stop: threading.Event, fresh: bool) -> None:
    conn: http.client.HTTPConnection | None = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            try:
                conn.connect()
            except OSError:
                tally.add("refused")
                conn = None
                time.sleep(0.01)
                continue
        try:
            conn.request("GET", "/pid", headers={"Connection": "close"} if fresh else {})
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            tally.add("failed", type(exc).__name__)
            conn.close()
            conn = None
            continue
        tally.add(
            "ok" if response.status == 200 else "failed",
            "" if response.status == 200 else str(response.status),
        )
        if response.will_close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def renewed(server: Launcher, before: set[int], workers: int) -> bool:
    serving = set(server.serving())
    return len(serving) == workers and not serving & before


def run(backend: str, args: argparse.Namespace, app_dir: Path) -> Tally:
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(app_dir),
        "WEB_CONCURRENCY": "2",
        "ACCESS_LOG": "",
        "KEEP_ALIVE": str(args.keep_alive),
    }
    if args.code:
        code = Path(args.code).resolve()
        env["PYTHONPATH"] = os.pathsep.join(str(code / d) for d in ("", *PLUGIN_DIRS))
    if args.drain:
        env["SHUTDOWN_DELAY"] = str(args.delay)
    tally, stop = Tally(), threading.Event()
    with start_launcher(env, cwd=app_dir) as server:  # (not this checkout's directory: -m looks there first)
        server.wait_ready("/", 60)
        server.wait_until(lambda: len(server.serving()) == 2, 60, "2 workers")
        threads = [
            threading.Thread(target=client, args=(server.port, tally, stop, args.fresh), daemon=True)
            for _ in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1)
        if args.drain:
            server.signal(signal.SIGTERM)
            server.wait(args.delay + 60)
        else:
            for _ in range(args.hups):
                before = set(server.serving())
                server.signal(signal.SIGHUP)
                server.wait_until(lambda before=before: renewed(server, before, 2), 60, "renewed workers")
                time.sleep(args.pause)
        stop.set()
        for thread in threads:
            thread.join(30)
        if not args.drain and server.proc.poll() is None:
            server.signal(signal.SIGTERM)
            server.wait(60)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--hups", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds between a renewal and the next SIGHUP"
    )
    parser.add_argument("--keep-alive", type=int, default=5, help="KEEP_ALIVE")
    parser.add_argument("--fresh", action="store_true", help="a new connection for every request")
    parser.add_argument(
        "--drain", action="store_true", help="one SIGTERM with SHUTDOWN_DELAY instead of SIGHUPs"
    )
    parser.add_argument("--delay", type=int, default=3, help="SHUTDOWN_DELAY with --drain")
    parser.add_argument("--code", default="", help="a checkout whose launcher and plugins to run")
    args = parser.parse_args(argv)
    what = "drain after SHUTDOWN_DELAY" if args.drain else f"{args.hups} SIGHUPs"
    mode = "a new connection a request" if args.fresh else "keep-alive"
    print(f"{what}, {args.clients} {mode} clients, 2 workers, code: {args.code or 'this checkout'}")
    with tempfile.TemporaryDirectory() as tmp:
        apps.install("hello", Path(tmp))
        for backend in args.backends.split(","):
            tally = run(backend, args, Path(tmp))
            total = tally.ok + tally.failed
            errors = ", ".join(f"{k} {v}" for k, v in sorted(tally.errors.items())) or "-"
            print(
                f"{backend:10} failed {tally.failed} of {total} ({tally.failed / max(total, 1):.5%}); "
                f"refused {tally.refused}; errors: {errors}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
