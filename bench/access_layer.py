"""What the access log and metrics layer costs a request, in-process: the real worker pipeline
(``launcher.worker.build_worker_app``, as a backend builds it) around a hello-world app, called
directly on one event loop with synthetic scope, receive and send, access log off and on.

    .venv/bin/python bench/access_layer.py                 # text, json, text+metrics, metrics only
    .venv/bin/python bench/access_layer.py --rounds 15 --requests 20000 --only text,json
    .venv/bin/python bench/access_layer.py --cpu           # CPU time, not wall: for a loaded machine
    .venv/bin/python bench/access_layer.py --instructions --requests 1000   # callgrind; exact, slow
    .venv/bin/python bench/access_layer.py --in-server --only text,json     # the same, in a real server
    .venv/bin/python bench/access_layer.py --profile text  # cProfile of the text variant
    .venv/bin/python bench/access_layer.py --app fastapi   # bench/fastapi_app.py's /items/1

Every variant is the same pipeline but for its settings (``ACCESS_LOG=/dev/null`` for the log,
so the writer formats and writes, at no cost of a reader; ``OPS_PORT`` with a
``PROMETHEUS_MULTIPROC_DIR`` for the metrics); "off" is the pipeline with neither. Rounds are
interleaved (off, then each variant, then off again ...) so a machine whose load changes under
the run moves every variant alike, and each figure is the median over rounds of microseconds a
request. The layer's cost is a variant's median minus off's, and the ratio ``off / on`` is what
``bench/run.py``'s on/off throughput ratio would be for a server that spends only this much on a
request (a real server spends more elsewhere, so its ratio is closer to 1).

The garbage collector runs as in a server (thresholds left alone), and each request allocates a
fresh scope, headers list and messages, as a server does. The trivial app sends a start and one
body, ``Content-Length`` set, as the bench's hello app. ``--app fastapi`` serves the FastAPI
endpoint of ``bench/run.py --app fastapi`` (``/items/1``) instead: the case the on/off target is
set for, where the layer's instructions are the same but its microseconds are not (the app's
larger working set leaves the layer's code and data colder).

``--in-server`` counts the instructions a request inside a real server instead: the launcher in
single-process mode (Uvicorn, the demo app's ``/plaintext``, what ``bench/run.py`` serves) under
callgrind, wrk's requests counted between ``callgrind_control``'s zero and dump. What a request
costs the server's user space in all, and so what share of it the layer is: the on/off ratio
the bench would see if the kernel's share and the caches moved nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS: dict[str, dict[str, str]] = {
    "off": {"ACCESS_LOG": ""},
    "text": {"ACCESS_LOG": "/dev/null"},
    "json": {"ACCESS_LOG": "/dev/null", "LOG_FORMAT": "json"},
    "text+metrics": {"ACCESS_LOG": "/dev/null", "OPS_PORT": "9191"},
    "metrics": {"ACCESS_LOG": "", "OPS_PORT": "9191"},
}


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!"})


#: The path each request asks for: the hello app answers any; ``--app fastapi`` sets its endpoint.
PATH = "/"


def new_scope() -> dict[str, Any]:
    """A request's scope as a server builds it: every object fresh."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51234),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk/4.2"),
            (b"accept", b"*/*"),
        ],
        "state": {},
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    return None


def build(env: dict[str, str], app_dir: str, app: Any = hello) -> Any:
    from launcher import Backend
    from launcher.config.resolve import resolve
    from launcher.worker import build_worker_app
    from launcher.worker.bootstrap import WorkerContext

    config = resolve({"APP_DIR": app_dir, "APP": "main:app", **env}, Backend)
    built = build_worker_app(WorkerContext(config, None, None), retire=lambda: None, app=app)
    return built.app


#: What a round measures: wall time (what a client sees), or CPU time of the process (not moved
#: by the machine's other load).
CLOCK = time.perf_counter


async def serve(app: Any, requests: int) -> float:
    """Microseconds a request, over ``requests`` of them."""
    start = CLOCK()
    for _ in range(requests):
        await app(new_scope(), receive, send)
    return (CLOCK() - start) / requests * 1e6


async def startup(app: Any) -> None:
    """The lifespan startup, as a server runs it (marks the worker booted)."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lifespan_send(message: Any) -> None:
        started.set()

    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, queue.get, lifespan_send)
    )
    await started.wait()
    task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--only", default=",".join(v for v in VARIANTS if v != "off"))
    parser.add_argument("--cpu", action="store_true", help="CPU time of the process, not wall time")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instructions a request (valgrind's callgrind; exact, slow: use fewer --requests)",
    )
    parser.add_argument(
        "--app", choices=["hello", "fastapi"], default="hello", help="the app behind the layer"
    )
    parser.add_argument(
        "--in-server",
        action="store_true",
        help="instructions a request in a real server (the launcher under callgrind, driven by wrk)",
    )
    parser.add_argument(
        "--seconds", type=float, default=20, help="--in-server: seconds of load counted a variant"
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="--in-server: the access log's module compiled by mypyc (built as bench/run.py --compiled)",
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="--in-server: with callgrind's cache simulation; each variant's dump kept, its path printed",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="VARIANT", help="profile one variant with cProfile instead")
    args = parser.parse_args()
    if args.instructions:
        return instructions(args)
    if args.in_server:
        return in_server(args)
    global CLOCK
    if args.cpu:
        CLOCK = time.process_time

    work = tempfile.mkdtemp(prefix="access-layer-")
    atexit.register(shutil.rmtree, work, True)  # (registered first, so it runs after the log's flush)
    (Path(work) / "main.py").write_text("app = None\n")
    os.makedirs(os.path.join(work, "metrics"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(work, "metrics")  # before prometheus_client

    if args.child:
        # Under callgrind a batch of 64 requests takes longer than FLUSH_INTERVAL, which would
        # flush batches by time, smaller than a busy server's; batches here are by count.
        from launcher.observability import access_log

        access_log.FLUSH_INTERVAL = 3600
        names = [args.child]
    else:
        names = ["off", *(args.profile.split(",") if args.profile else args.only.split(","))]
    app: Any = hello
    if args.app == "fastapi":
        global PATH
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fastapi_app import app

        PATH = "/items/1"
    apps = {name: build(VARIANTS[name], work, app) for name in names}

    async def run() -> dict[str, list[float]]:
        for app in apps.values():
            await startup(app)
            await serve(app, 2_000)  # warm up
        if args.child:
            await serve(apps[args.child], args.requests)
            return {}
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await serve(apps[args.profile], args.requests)
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
            return {}
        figures: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, app in apps.items():
                figures[name].append(await serve(app, args.requests))
        return figures

    figures = asyncio.run(run())
    if not figures:
        return
    off = statistics.median(figures["off"])
    print(
        f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.requests} requests, median us/request"
    )
    print(
        f"{'variant':<14} {'us/req':>8} {'layer us':>9} {'off/on':>7}  {'min':>6} {'layer':>6} {'off/on':>6}"
    )
    low = min(figures["off"])
    for name, values in figures.items():
        median = statistics.median(values)
        print(
            f"{name:<14} {median:8.2f} {median - off:9.2f} {off / median:7.3f}  "
            f"{min(values):6.2f} {min(values) - low:6.2f} {low / min(values):6.3f}"
        )
    # Paired per round (off and the variant measured back to back): less moved by the machine.
    for name, values in figures.items():
        if name != "off":
            paired = statistics.median(v - o for v, o in zip(values, figures["off"], strict=True))
            print(f"  {name}: layer {paired:.2f} us/request (median of paired rounds)")


def instructions(args: argparse.Namespace) -> None:
    """Each variant run alone under callgrind, with ``--requests`` requests and with twice as many:
    the difference over ``--requests`` is its instructions a request (the start, imports and
    exit cancelled out)."""
    import re
    import subprocess

    def count(name: str, requests: int) -> int:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                __file__,
                "--child",
                name,
                "--app",
                args.app,
                "--requests",
                str(requests),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts, run to run
        )
        return int(re.findall(r"Collected : (\d+)", done.stderr)[-1])

    per: dict[str, float] = {}
    for name in ["off", *args.only.split(",")]:
        per[name] = (count(name, 2 * args.requests) - count(name, args.requests)) / args.requests
    print(f"Python {sys.version.split()[0]}, instructions a request (callgrind, {args.requests} requests)")
    print(f"{'variant':<14} {'instr/req':>10} {'layer':>8} {'off/on':>7}")
    for name, value in per.items():
        print(f"{name:<14} {value:10.0f} {value - per['off']:8.0f} {per['off'] / value:7.3f}")


def in_server(args: argparse.Namespace) -> None:
    """Each variant served by the launcher (single-process Uvicorn, the demo app) under callgrind:
    wrk warms it up, then callgrind counts ``--seconds`` of wrk's load; instructions over requests."""
    import re
    import signal
    import subprocess
    import urllib.request

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import BIN, COMPILED, DEMO, SERVER_CPU, WRK_CPU, build_compiled, free_port, parse_wrk

    if args.compiled:
        build_compiled()
    if args.app == "fastapi":
        app_env, path = (
            {"APP_DIR": str(Path(__file__).resolve().parent), "APP_MODULE": "fastapi_app:app"},
            "/items/7",
        )
    else:
        app_env, path = {"APP_DIR": str(DEMO)}, "/plaintext"

    def count(name: str) -> tuple[float, int]:
        port, out = free_port(), tempfile.mkdtemp(prefix="access-layer-callgrind-")
        env = {
            **os.environ,
            **VARIANTS[name],
            **app_env,
            "BIND": f"127.0.0.1:{port}",
            "SERVER_BACKEND": "uvicorn",
            "WEB_CONCURRENCY": "1",
            "TIMEOUT": "0",
            "PYTHONHASHSEED": "0",
            "PROMETHEUS_MULTIPROC_DIR": out,
            **({"PYTHONPATH": str(COMPILED)} if args.compiled else {}),
        }
        callgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p"]
        if args.cache_sim:
            callgrind.append("--cache-sim=yes")
        server = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *callgrind, str(BIN / "asgi-launcher")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}{path}"
        load = ["taskset", "-c", WRK_CPU, "wrk", "-t1", "-c32", "--latency", url]
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    urllib.request.urlopen(url, timeout=5).read()
                    break
                except OSError:
                    assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                    time.sleep(0.5)
            subprocess.run([*load, "-d5s"], capture_output=True, check=True)  # warm up
            subprocess.run(["callgrind_control", "--zero", str(server.pid)], capture_output=True, check=True)
            done = subprocess.run([*load, f"-d{args.seconds:g}s"], capture_output=True, text=True, check=True)
            subprocess.run(["callgrind_control", "--dump", str(server.pid)], capture_output=True, check=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(120)
        requests = int(parse_wrk(done.stdout)["requests"])
        (dump,) = Path(out).glob("cg.*.1")  # the dump: only what was counted since the zero
        instructions = int(re.search(r"^summary: (\d+)", dump.read_text(), re.M).group(1))  # type: ignore[union-attr]
        if args.cache_sim:
            print(f"{name}: {dump}")  # for callgrind_annotate (the events include the cache misses)
        else:
            shutil.rmtree(out)
        return instructions / requests, requests

    per = {name: count(name) for name in ["off", *args.only.split(",")]}
    off = per["off"][0]
    build = "compiled by mypyc" if args.compiled else "run as it is"
    print(f"Python {sys.version.split()[0]}, instructions a request in a real server (callgrind; {build})")
    print(f"{'variant':<14} {'instr/req':>10} {'layer':>8} {'off/on':>7} {'requests':>9}")
    for name, (value, requests) in per.items():
        print(f"{name:<14} {value:10.0f} {value - off:8.0f} {off / value:7.3f} {requests:9d}")


if __name__ == "__main__":
    main()
