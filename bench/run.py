"""Does the launcher cost anything over the servers it starts? Measured side by side, in one run.

For each backend, the launcher and the same server started directly with the equivalent
command line serve the demo app (demo/main.py) with 2 workers on 127.0.0.1; wrk drives them.

Multi-worker throughput on a 2-core machine that also runs wrk is noisy and often bimodal
(which worker the kernel hands each connection to decides a run), so two things compared are
*running at the same time* on two ports and wrk alternates between them, A B then B A, several
times: drift of the machine hits both sides alike, and a ratio is the median of those paired
samples rather than a ratio of two separate runs. Start-up and memory are measured with each
server alone, interleaved the same way.

    python bench/run.py             # full run (about 10 minutes): writes bench/results.md and .json
    python bench/run.py --quick     # at most ~60 s; the last line gives the launcher/direct ratios
    python bench/run.py --self-check  # parses sample wrk output and starts one config briefly
    python bench/run.py --tls --at-once --rounds 3  # TLS: launcher vs direct, and on vs off
    python bench/run.py --compiled --at-once --rounds 3 --reps 6  # the access log compiled by mypyc

Figures: requests/s at 64 and 256 connections, p50/p99 latency, errors (socket errors and
non-2xx), time from process start to the first 200, memory of the whole process tree after
warm-up (PSS, so pages shared between a master and its forked workers count once), and the
time of `asgi-launcher config`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launcher.procfs import descendants

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo"
#: Where the servers start: the demo's directory, or bench/ for ``--app fastapi``.
APP_CWD = DEMO
#: Where pip put the servers' commands: the venv's bin/, or /usr/local/bin under a distribution's python3.
BIN = Path(sysconfig.get_path("scripts"))
WORKERS = "2"
#: Pinned runs (--logging, --metrics): the server's whole tree on one CPU, wrk on the other.
SERVER_CPU, WRK_CPU = "1", "0"

TARGETS = {
    "throughput_ratio": 0.97,  # launcher / direct, at least
    "startup_overhead_ms": 100.0,  # launcher - direct, at most
    "memory_overhead_mb": 10.0,  # launcher tree - direct tree, at most
    "config_ms": 150.0,  # `asgi-launcher config`, at most
    "default_vs_reference": 1.0,  # default backend / the reference image's setup, at least
    "access_log_vs_server": 1.0,  # the launcher's text access log / the server's own, at least
    "access_log_on_vs_off": 0.95,  # access log on / off, at least
    "metrics_on_vs_off": 0.95,  # OPS_PORT metrics on / off, at least
    "tracing_on_vs_off": 0.97,  # tracing off or always_off / without the otel extra, at least
}
#: A spread (max / min) above this across samples of one setup is flagged as noisy or bimodal.
NOISY = 1.2


@dataclass(frozen=True)
class Setup:
    """One way of serving the demo: a command line plus environment ({bind} and {port} filled in)."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    tls: bool = False  # serves HTTPS with the certificate in CERTS ({cert}, {key})

    def command(self, port: int, pinned: bool = False) -> tuple[list[str], dict[str, str]]:
        """The argv and environment on ``port``; ``pinned``: one worker, on SERVER_CPU alone.

        Pinned, a launcher is given MAX_WORKERS=1 rather than WEB_CONCURRENCY=1, so that the
        Uvicorn backend keeps its supervised worker (WEB_CONCURRENCY=1 is its single-process mode).
        """
        values = {
            "bind": f"127.0.0.1:{port}",
            "compiled": str(COMPILED),
            "port": str(port),
            "workers": "1" if pinned else WORKERS,
            **CERTS,
        }
        if any("{ops_port}" in v for v in self.env.values()):
            values["ops_port"] = str(free_port())
        values["otlp"] = OTLP_SINK.endpoint if OTLP_SINK else "http://127.0.0.1:9"
        env = dict(self.env)
        argv = list(self.argv)
        if pinned:
            if env.get("WEB_CONCURRENCY") == "{workers}":
                del env["WEB_CONCURRENCY"]
                env["MAX_WORKERS"] = "1"
            argv = ["taskset", "-c", SERVER_CPU, *argv]
        return [a.format(**values) for a in argv], {k: v.format(**values) for k, v in env.items()}


def _launcher(backend: str, variant: str = "", **more: str) -> Setup:
    env = {
        "APP_DIR": str(DEMO),
        "BIND": "{bind}",
        "WEB_CONCURRENCY": "{workers}",
        "SERVER_BACKEND": backend,
        **more,
    }
    return Setup(f"launcher {backend}{variant}", (str(BIN / "asgi-launcher"),), env, "SSL_CERTFILE" in env)


def _direct(name: str, program: str, options: str) -> Setup:
    """A server's own command line, configured as the launcher configures that server by default
    (2 workers, access log on, same loop), so that only the launcher differs."""
    return Setup(name, (str(BIN / program), *options.split(), "main:app"), tls="{cert}" in options)


#: ``--tls``: the certificate and key every TLS setup serves ({cert}, {key}), made by trustme.
CERTS: dict[str, str] = {}
#: Each server's own TLS options, set as the launcher sets them (TLS 1.2 at least, no client certificate).
_TLS_OPTIONS = {
    "gunicorn": "--certfile {cert} --keyfile {key}",
    "hypercorn": "--certfile {cert} --keyfile {key}",
    "granian": "--ssl-certificate {cert} --ssl-keyfile {key} --ssl-protocol-min tls1.2",
    "uvicorn": "--ssl-certfile {cert} --ssl-keyfile {key}",
}


def make_certificates(directory: Path) -> None:
    """A certificate for 127.0.0.1 and its key, made now (trustme, from the test extra)."""
    import trustme

    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    directory.mkdir(parents=True, exist_ok=True)
    leaf.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    CERTS.update(cert=str(directory / "cert.pem"), key=str(directory / "key.pem"))


_GUNICORN = "-w {workers} -b {bind} --no-control-socket --access-logfile - --worker-tmp-dir /dev/shm -k"

SETUPS = {
    s.name: s
    for s in [
        _launcher("gunicorn"),
        _direct("direct gunicorn", "gunicorn", f"{_GUNICORN} uvicorn_worker.UvicornWorker"),
        _launcher("hypercorn"),
        _direct("direct hypercorn", "hypercorn", "-w {workers} -b {bind} --access-logfile - -k uvloop"),
        _launcher("granian"),
        _direct(
            "direct granian",
            "granian",
            "--interface asgi --workers {workers} --host 127.0.0.1 --port {port} --access-log",
        ),
        # The reference image's setup when uvicorn comes without its optional speed-ups (as
        # conda's plain `uvicorn` package does): the asyncio loop and the pure-Python h11 parser.
        _direct("reference setup (asyncio, h11)", "gunicorn", f"{_GUNICORN} uvicorn_worker.UvicornH11Worker"),
        _direct("hypercorn -k asyncio", "hypercorn", "-w {workers} -b {bind} --access-logfile - -k asyncio"),
        # Uvicorn's own supervisor (uvicorn.supervisors.Multiprocess) with its defaults: uvloop and
        # httptools when installed (they are: uvicorn[standard]), its access log on. It is also the
        # direct peer of SERVER_BACKEND=uvicorn (DIRECT below).
        _direct("uvicorn --workers 2", "uvicorn", "--workers {workers} --host 127.0.0.1 --port {port}"),
        _launcher("uvicorn"),
        # Single-process mode: the app served in the launcher's own process, no supervisor.
        _launcher("uvicorn", " single-process", WEB_CONCURRENCY="1"),
        *(
            _launcher(b, " access log off", ACCESS_LOG="")
            for b in ("gunicorn", "hypercorn", "granian", "uvicorn")
        ),
        *(
            _launcher(b, " json access log", LOG_FORMAT="json")
            for b in ("gunicorn", "hypercorn", "granian", "uvicorn")
        ),
        *(
            _launcher(b, " metrics", OPS_PORT="{ops_port}")
            for b in ("gunicorn", "hypercorn", "granian", "uvicorn")
        ),
        # --compiled: the access log's module compiled by mypyc (build_compiled puts it first on
        # the launcher's path; a console script's own directory is first, not the tree).
        *(
            _launcher(b, f"{variant} compiled", PYTHONPATH="{compiled}", **more)
            for b in ("gunicorn", "hypercorn", "granian", "uvicorn")
            for variant, more in (("", {}), (" json access log", {"LOG_FORMAT": "json"}))
        ),
        # --tracing: bench/fastapi_app.py, tracing off, always_off and always_on (spans sent to
        # the bench's own OTLP sink, {otlp}), against the launcher without the otel extra.
        *(
            _launcher(
                b,
                variant,
                APP_MODULE="fastapi_app:app",
                PYTHONPATH=extra_path + str(ROOT / "bench"),
                **otel,
            )
            for b in ("gunicorn", "hypercorn", "granian", "uvicorn")
            for variant, extra_path, otel in (
                (" fastapi without the otel extra", str(ROOT / "bench" / "without_otel") + ":", {}),
                (" fastapi tracing off", "", {}),
                (
                    " fastapi tracing always_off",
                    "",
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": "{otlp}", "OTEL_TRACES_SAMPLER": "always_off"},
                ),
                (
                    " fastapi tracing always_on",
                    "",
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": "{otlp}", "OTEL_TRACES_SAMPLER": "always_on"},
                ),
            )
        ),
        # --tls: each launcher with TLS, and each server started directly with the same TLS settings.
        *(
            _launcher(b, " tls", SSL_CERTFILE="{cert}", SSL_KEYFILE="{key}")
            for b in ("gunicorn", "hypercorn", "granian", "uvicorn")
        ),
        _direct(
            "direct gunicorn tls",
            "gunicorn",
            f"{_GUNICORN} uvicorn_worker.UvicornWorker {_TLS_OPTIONS['gunicorn']}",
        ),
        _direct(
            "direct hypercorn tls",
            "hypercorn",
            f"-w {{workers}} -b {{bind}} --access-logfile - -k uvloop {_TLS_OPTIONS['hypercorn']}",
        ),
        _direct(
            "direct granian tls",
            "granian",
            f"--interface asgi --workers {{workers}} --host 127.0.0.1 --port {{port}} --access-log {_TLS_OPTIONS['granian']}",
        ),
        _direct(
            "uvicorn --workers 2 tls",
            "uvicorn",
            f"--workers {{workers}} --host 127.0.0.1 --port {{port}} {_TLS_OPTIONS['uvicorn']}",
        ),
    ]
}


@dataclass(frozen=True)
class Comparison:
    """Two setups run side by side; ``target`` names the threshold their ratio is held to."""

    name: str
    a: str
    b: str
    target: str | None


BACKENDS = ("gunicorn", "hypercorn", "granian", "uvicorn")
#: Each backend's server started directly, where its name is not ``direct <backend>``.
DIRECT = {"uvicorn": "uvicorn --workers 2"}
SINGLE = "launcher uvicorn single-process"
#: Single-process mode's start-up and memory against each multi-worker launcher (its throughput,
#: one worker against two, is shown but not held to a target).
SINGLE_COMPARISONS = [Comparison(f"single-process vs {b}", SINGLE, f"launcher {b}", None) for b in BACKENDS]
COMPARISONS = [
    *(Comparison(b, f"launcher {b}", DIRECT.get(b, f"direct {b}"), "throughput_ratio") for b in BACKENDS),
    Comparison(
        "default backend vs the reference setup",
        "launcher gunicorn",
        "reference setup (asyncio, h11)",
        "default_vs_reference",
    ),
    Comparison(
        "hypercorn: uvloop (our default) vs asyncio", "launcher hypercorn", "hypercorn -k asyncio", None
    ),
    Comparison("default backend vs uvicorn --workers 2", "launcher gunicorn", "uvicorn --workers 2", None),
    *SINGLE_COMPARISONS,
]
#: `--logging`: the launcher's access log (a pipeline layer, the servers' own turned off) against
#: the server's own access log as started directly, and on against off, in text and in JSON.
LOGGING_COMPARISONS = [
    c
    for b in BACKENDS
    for c in (
        Comparison(
            f"{b}: launcher's access log vs the server's own",
            f"launcher {b}",
            DIRECT.get(b, f"direct {b}"),
            "access_log_vs_server",
        ),
        Comparison(
            f"{b}: text access log on vs off",
            f"launcher {b}",
            f"launcher {b} access log off",
            "access_log_on_vs_off",
        ),
        Comparison(
            f"{b}: JSON access log on vs off",
            f"launcher {b} json access log",
            f"launcher {b} access log off",
            "access_log_on_vs_off",
        ),
    )
]
#: `--compiled`: the access log's module compiled by mypyc (the optional build) against the same
#: module run as it is, and on against off compiled, in text and in JSON.
COMPILED_COMPARISONS = [
    c
    for b in BACKENDS
    for c in (
        Comparison(f"{b}: text access log compiled vs not", f"launcher {b} compiled", f"launcher {b}", None),
        Comparison(
            f"{b}: JSON access log compiled vs not",
            f"launcher {b} json access log compiled",
            f"launcher {b} json access log",
            None,
        ),
        Comparison(
            f"{b}: text access log on vs off, compiled",
            f"launcher {b} compiled",
            f"launcher {b} access log off",
            "access_log_on_vs_off",
        ),
        Comparison(
            f"{b}: JSON access log on vs off, compiled",
            f"launcher {b} json access log compiled",
            f"launcher {b} access log off",
            "access_log_on_vs_off",
        ),
    )
]
#: Where ``--compiled`` unpacks the compiled build of the core (bench/out is git-ignored).
COMPILED = ROOT / "bench" / "out" / "compiled"


def build_compiled() -> None:
    """Build the core with its mypyc hook from a copy of the tree (the build leaves its objects
    beside the module, where the editable install would import them) and unpack the wheel at
    ``COMPILED``; check that the module imported from there is the compiled one."""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory(prefix="asgi-launcher-compiled-") as work:
        source = Path(work) / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, source / name)
        shutil.copytree(
            ROOT / "launcher", source / "launcher", ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-w",
                work,
                str(source),
            ],
            env={**os.environ, "HATCH_BUILD_HOOK_ENABLE_MYPYC": "1"},
            check=True,
        )
        (wheel,) = Path(work).glob("*.whl")
        shutil.rmtree(COMPILED, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(COMPILED)
    found = subprocess.run(
        [sys.executable, "-c", "import launcher.observability.access_log as m; print(m.__file__)"],
        env={**os.environ, "PYTHONPATH": str(COMPILED)},
        cwd=COMPILED,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found.endswith(".so"):
        raise SystemExit(f"the compiled build did not import: {found}")


#: `--metrics`: the operations listener with Prometheus metrics (a pipeline layer writing each
#: request to prometheus_client's multiprocess files) on against off.
METRICS_COMPARISONS = [
    Comparison(f"{b}: metrics on vs off", f"launcher {b} metrics", f"launcher {b}", "metrics_on_vs_off")
    for b in BACKENDS
]
#: `--tracing`: OpenTelemetry tracing on the FastAPI endpoint, off and on (always_off, always_on),
#: against the launcher without the otel extra.
TRACING_COMPARISONS = [
    Comparison(
        f"{b}: tracing {variant} vs without the extra",
        f"launcher {b} fastapi tracing {variant}",
        f"launcher {b} fastapi without the otel extra",
        "tracing_on_vs_off" if variant != "always_on" else None,
    )
    for b in BACKENDS
    for variant in ("off", "always_off", "always_on")
]
#: The OTLP/HTTP collector the always_off/always_on setups export to (``--tracing`` starts it):
#: it answers every export and keeps nothing.
OTLP_SINK: Any = None
#: `--tls`: each launcher with TLS against its server started directly with the same TLS settings,
#: and TLS on against off, in one run.
TLS_COMPARISONS = [
    c
    for b in BACKENDS
    for c in (
        Comparison(
            f"{b} tls: launcher vs direct",
            f"launcher {b} tls",
            DIRECT.get(b, f"direct {b}") + " tls",
            "throughput_ratio",
        ),
        Comparison(f"{b}: tls on vs off", f"launcher {b} tls", f"launcher {b}", None),
    )
]
#: `--same`: each launcher against itself, A/A: what the method reads when there is no difference.
SAME_COMPARISONS = [Comparison(f"{b}: A/A", f"launcher {b}", f"launcher {b}", None) for b in BACKENDS]
LOADS = {  # name -> (path, connections)
    "plaintext c64": ("/plaintext", 64),
    "json c64": ("/json", 64),
    "plaintext c256": ("/plaintext", 256),
    "fastapi model c64": ("/items/7", 64),
}


@dataclass(frozen=True)
class Plan:
    """How much to measure: --quick and the full run differ only here."""

    quick: bool
    comparisons: list[Comparison]
    loads: list[str]
    rounds: int  # fresh pairs of processes
    seconds: int  # per wrk sample
    warm_seconds: int
    #: One worker a server, the server's tree on SERVER_CPU and wrk on WRK_CPU (see below).
    pinned: bool = False
    #: A/B samples per load per round (the order alternating), for finer interleaving.
    reps: int = 1
    #: A and B measured at the same time, sharing SERVER_CPU (``--at-once``; see below).
    at_once: bool = False

    @classmethod
    def for_mode(
        cls,
        quick: bool,
        rounds: int,
        logging: bool = False,
        metrics: bool = False,
        reps: int = 12,
        only: str = "",
        at_once: bool = False,
        same: bool = False,
        tracing: bool = False,
        tls: bool = False,
        compiled: bool = False,
    ) -> Plan:
        pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
        at_once = at_once and pinned
        # --at-once samples last 2 s: each server has half the CPU, so as many requests.
        seconds = 2 if at_once else 1
        if tracing:
            chosen = [c for c in TRACING_COMPARISONS if only in c.name]
            return cls(True, chosen, ["fastapi model c64"], rounds, seconds, 1, pinned, reps, at_once)
        for chosen_mode, pool in (
            (logging, LOGGING_COMPARISONS),
            (metrics, METRICS_COMPARISONS),
            (same, SAME_COMPARISONS),
            (tls, TLS_COMPARISONS),
            (compiled, COMPILED_COMPARISONS),
        ):
            if chosen_mode:
                chosen = [c for c in pool if only in c.name]
                return cls(True, chosen, ["plaintext c64"], rounds, seconds, 1, pinned, reps, at_once)
        if quick:
            # Launcher against direct for every backend, and single-process mode against the
            # uvicorn backend's own supervised workers.
            quick_comparisons = [*COMPARISONS[: len(BACKENDS)], SINGLE_COMPARISONS[-1]]
            return cls(True, quick_comparisons, ["plaintext c64"], 2, 2, 1)
        return cls(False, COMPARISONS, list(LOADS), rounds, 2, 1)


# Why --logging and --metrics run pinned: what they compare is a pipeline layer's cost, a few
# microseconds of a request's CPU, so a few per cent. With 2 workers sharing 2 CPUs with wrk,
# which worker the kernel hands the connections to moves a sample by 20-40 %, and no affordable
# number of samples brings that under 5 %. One worker alone on one CPU, wrk alone on the other,
# and many 1 s samples alternating A B / B A within each fresh pair, measure the layer rather
# than the scheduler. (The VM's own noise remains: it is why there are many.)
#
# --at-once goes further: A and B are measured at the same time, both pinned to SERVER_CPU, each
# under its own wrk (both on WRK_CPU). Each server's tree is its own session, so the kernel's
# autogroups share the CPU between them fairly; with 64 connections each, neither ever waits
# for work, so the ratio of their requests/s is the inverse ratio of their CPU per request: how
# much more one costs than the other, with whatever the VM does meanwhile (another guest's
# load, the host's memory scans, a slower second) falling on both alike. One after the other,
# that noise falls on one sample of the pair and not the other, and is what bounded the
# method above to about 4 %; at once, the same setup against itself (--same) gives 1.00 to
# within about 1 % (see docs/benchmarks.md).


# -- wrk -------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        subprocess.run(install, capture_output=True, check=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed (apt-get install wrk)")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, requests, p50/p99 latency (ms) and errors from `wrk --latency` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and total and p50 and p99):
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx[1])
    return {
        "rps": float(rps[1]),
        "requests": int(total[1]),
        "p50_ms": _ms(p50[1]),
        "p99_ms": _ms(p99[1]),
        "errors": errors,
    }


def wrk_argv(
    binary: str, port: int, load: str, seconds: int, pinned: bool = False, scheme: str = "http"
) -> list[str]:
    path, connections = LOADS[load]
    return [
        *(["taskset", "-c", WRK_CPU] if pinned else []),
        binary,
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        f"{scheme}://127.0.0.1:{port}{path}",
    ]


def wrk(
    binary: str, port: int, load: str, seconds: int, pinned: bool = False, scheme: str = "http"
) -> dict[str, float]:
    out = subprocess.run(
        wrk_argv(binary, port, load, seconds, pinned, scheme),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    return parse_wrk(out.stdout)


# -- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system time the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS


def served(binary: str, running: Running, load: str, seconds: int, pinned: bool = False) -> dict[str, float]:
    """One wrk sample, plus the CPU time the server's whole tree spent per request meanwhile.

    CPU per request is what the launcher could add to every request; it depends less than
    requests/s on how the kernel spreads connections over 2 workers.
    """
    pids = tree(running.proc.pid)
    before = cpu_seconds(pids)
    result = wrk(binary, running.port, load, seconds, pinned, running.scheme)
    used = cpu_seconds(pids) - before  # workers replaced meanwhile would be missed: none are
    result["cpu_us_per_request"] = used / max(result["requests"], 1) * 1e6
    return result


def served_at_once(
    binary: str, running: list[Running], load: str, seconds: int, pinned: bool = False
) -> list[dict[str, float]]:
    """One wrk sample of each server, all at once (``--at-once``): each under its own wrk, the
    servers sharing SERVER_CPU. Started in the order given; CPU per request as in ``served``."""
    trees = [tree(r.proc.pid) for r in running]
    before = [cpu_seconds(pids) for pids in trees]
    procs = [
        subprocess.Popen(
            wrk_argv(binary, r.port, load, seconds, pinned, r.scheme), stdout=subprocess.PIPE, text=True
        )
        for r in running
    ]
    outputs = [p.communicate(timeout=seconds + 30)[0] for p in procs]
    results = []
    for pids, cpu_before, output in zip(trees, before, outputs, strict=True):
        result = parse_wrk(output)
        used = cpu_seconds(pids) - cpu_before
        result["cpu_us_per_request"] = used / max(result["requests"], 1) * 1e6
        results.append(result)
    return results


def memory_mb(pids: list[int]) -> dict[str, float]:
    """The tree's summed RSS (what the targets use; pages shared after fork count once per
    process) and its PSS (each shared page split between its sharers: the truer total)."""
    totals = {"Rss:": 0, "Pss:": 0}
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key = line.split(maxsplit=1)[0]
                if key in totals:
                    totals[key] += int(line.split()[1])
    return {"rss_mb": totals["Rss:"] / 1024, "pss_mb": totals["Pss:"] / 1024}


def answers(port: int, path: str = "/plaintext", scheme: str = "http") -> bool:
    # The benchmark's own certificate: nothing to verify it against.
    context = ssl._create_unverified_context() if scheme == "https" else None
    try:
        with urllib.request.urlopen(
            f"{scheme}://127.0.0.1:{port}{path}", timeout=1, context=context
        ) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    startup_ms: float
    scheme: str = "http"


def start(setup: Setup, timeout: float = 30, pinned: bool = False) -> Running | None:
    port = free_port()
    argv, extra_env = setup.command(port, pinned)
    env = {**os.environ, **extra_env}
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=APP_CWD,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    scheme = "https" if setup.tls else "http"
    while time.perf_counter() - started < timeout:
        if answers(port, scheme=scheme):
            return Running(proc, port, (time.perf_counter() - started) * 1000, scheme)
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    stop(proc)
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the top process only, as a container runtime sends it; then clear the group.

    Shutdown is not what is measured, so 3 s is all it gets: Granian started directly can miss
    a SIGTERM that lands while a worker is still booting, and would otherwise hold the run up.
    """
    with contextlib.suppress(OSError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(3)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def config_ms(runs: int) -> list[float]:
    env = {**os.environ, "APP_DIR": str(DEMO)}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(BIN / "asgi-launcher"), "config"], env=env, capture_output=True, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


# -- the two phases --------------------------------------------------------------------------


def alternate(names: list[str], index: int) -> list[str]:
    """A B, then B A: neither side always goes first."""
    return names if index % 2 == 0 else names[::-1]


def measure_pair(binary: str, comparison: Comparison, plan: Plan, log: Any) -> dict[str, Any]:
    """A and B, started afresh every round (which one starts first alternates), run at once on
    two ports; wrk alternates between them for every load.

    Fresh processes each round matter: how a pair of servers happens to land (which worker the
    kernel favours, where their threads run) persists for the processes' lifetime, so samples
    from one pair of processes are not independent of each other.
    """
    names = {"a": comparison.a, "b": comparison.b}
    samples: list[dict[str, Any]] = []
    starts: list[dict[str, Any]] = []
    for index in range(plan.rounds):
        running: dict[str, Running] = {}
        try:
            for key in alternate(["a", "b"], index):
                started = start(SETUPS[names[key]], pinned=plan.pinned)
                if started is None:
                    return {"failed": f"{names[key]} failed to start", "samples": samples, "starts": starts}
                running[key] = started
            for key in alternate(["a", "b"], index):
                wrk(
                    binary,
                    running[key].port,
                    "plaintext c64",
                    plan.warm_seconds,
                    plan.pinned,
                    running[key].scheme,
                )
            starts.append(
                {
                    key: {"startup_ms": running[key].startup_ms, **memory_mb(tree(running[key].proc.pid))}
                    for key in ("a", "b")
                }
            )
            for offset, load in enumerate(plan.loads * plan.reps):
                sample: dict[str, Any] = {"round": index + 1, "load": load}
                order = alternate(["a", "b"], index + offset)
                if plan.at_once:
                    both = served_at_once(
                        binary, [running[k] for k in order], load, plan.seconds, plan.pinned
                    )
                    sample.update(zip(order, both, strict=True))
                else:
                    for key in order:
                        sample[key] = served(binary, running[key], load, plan.seconds, plan.pinned)
                sample["ratio"] = sample["a"]["rps"] / sample["b"]["rps"]
                sample["cpu_ratio"] = sample["a"]["cpu_us_per_request"] / sample["b"]["cpu_us_per_request"]
                samples.append(sample)
                log(
                    f"{comparison.name} round {index + 1} {load}: {sample['a']['rps']:.0f} / "
                    f"{sample['b']['rps']:.0f} req/s = {sample['ratio']:.3f}; CPU per request "
                    f"{sample['a']['cpu_us_per_request']:.0f} / {sample['b']['cpu_us_per_request']:.0f} us"
                )
        finally:
            for side in running.values():
                stop(side.proc)
    return {"samples": samples, "starts": starts}


# -- summaries -------------------------------------------------------------------------------


def median_ci(values: list[float], level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """Bootstrap interval of the median: how far the noise alone could move it."""
    rng = random.Random(0)  # the same samples always give the same interval
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    cut = int(resamples * (1 - level) / 2)
    return medians[cut], medians[-cut - 1]


def spread(values: Iterable[float]) -> dict[str, float]:
    v = list(values)
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def summarize_setups(
    pairs: dict[str, dict[str, Any]], comparisons: list[Comparison] = COMPARISONS
) -> dict[str, Any]:
    """Every sample and start of a setup, from every comparison (of those run) it took part in."""
    loads: dict[str, dict[str, list[dict[str, float]]]] = {}
    starts: dict[str, list[dict[str, float]]] = {}
    for comparison in comparisons:
        measured = pairs.get(comparison.name, {})
        for key, name in (("a", comparison.a), ("b", comparison.b)):
            for sample in measured.get("samples", []):
                loads.setdefault(name, {}).setdefault(sample["load"], []).append(sample[key])
            starts.setdefault(name, []).extend(s[key] for s in measured.get("starts", []))
    summary: dict[str, Any] = {}
    for name in SETUPS:
        entry: dict[str, Any] = {}
        for load, results in loads.get(name, {}).items():
            rps = spread(r["rps"] for r in results)
            entry[load] = {
                "rps": rps,
                "p50_ms": spread(r["p50_ms"] for r in results),
                "p99_ms": spread(r["p99_ms"] for r in results),
                "errors": sum(r["errors"] for r in results),
                "noisy": rps["max"] / rps["min"] > NOISY,
            }
        for key in ("startup_ms", "rss_mb", "pss_mb"):
            if starts.get(name):
                entry[key] = spread(s[key] for s in starts[name])
        if entry:
            summary[name] = entry
    return summary


def summarize_comparisons(
    pairs: dict[str, dict[str, Any]], comparisons: list[Comparison] = COMPARISONS
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for comparison in comparisons:
        measured = pairs.get(comparison.name)
        if measured is None:
            continue
        if "failed" in measured:
            out[comparison.name] = {"failed": measured["failed"]}
            continue
        samples = measured["samples"]
        loads = dict.fromkeys(s["load"] for s in samples)
        out[comparison.name] = {
            "a": comparison.a,
            "b": comparison.b,
            "target": comparison.target,
            "ratio": spread(s["ratio"] for s in samples),
            "ratio_ci95": median_ci([s["ratio"] for s in samples]),
            "cpu_ratio": spread(s["cpu_ratio"] for s in samples if "cpu_ratio" in s) if samples else None,
            "by_load": {load: spread(s["ratio"] for s in samples if s["load"] == load) for load in loads},
            # A minus B, round by round (same moment, same machine state), then the median.
            "startup_ms": spread(s["a"]["startup_ms"] - s["b"]["startup_ms"] for s in measured["starts"]),
            "rss_mb": spread(s["a"]["rss_mb"] - s["b"]["rss_mb"] for s in measured["starts"]),
            "pss_mb": spread(s["a"]["pss_mb"] - s["b"]["pss_mb"] for s in measured["starts"]),
        }
    return out


def targets(comparisons: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for backend in BACKENDS:
        c = comparisons.get(backend, {})

        def median(key: str, c: dict[str, Any] = c) -> float | None:
            return c[key]["median"] if key in c else None

        out[backend] = {
            "throughput_ratio": median("ratio"),
            "throughput_ci95": c.get("ratio_ci95"),
            "cpu_ratio": median("cpu_ratio") if c.get("cpu_ratio") else None,
            "startup_overhead_ms": median("startup_ms"),
            "memory_overhead_mb": median("rss_mb"),
            "pss_overhead_mb": median("pss_mb"),
        }
    return out


def verdict(name: str, value: float | None) -> str:
    if value is None:
        return "not measured"
    target = TARGETS[name]
    good = value >= target if name in ("throughput_ratio", "default_vs_reference") else value <= target
    return "PASS" if good else "MISS"


# -- report ----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    names = [
        "asgi-launcher",
        "gunicorn",
        "uvicorn",
        "uvicorn-worker",
        "hypercorn",
        "granian",
        "starlette",
        "uvloop",
        "httptools",
    ]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def fmt(entry: dict[str, float] | None, digits: int = 0) -> str:
    if not entry:
        return "-"
    return f"{entry['median']:.{digits}f} ({entry['min']:.{digits}f}-{entry['max']:.{digits}f})"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {result['date']} with `python bench/run.py{' --quick' if plan['quick'] else ''}`. "
        f"Machine: {result['cores']} cores ({result['cpu']}), Python {result['python']}; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        + ".",
        "",
        f"Each comparison is {plan['rounds']} rounds. A round starts both setups afresh (which one "
        "starts first alternates), lets them run at the same time on two ports, warms each up "
        f"for {plan['warm_seconds']} s, then wrk (1 thread) measures each load on both, "
        f"{plan['seconds']} s a sample, A then B or B then A, alternating. Start-up is from process "
        "start to the first 200. Memory is summed over the whole process tree after warm-up, as RSS "
        "(the target's measure; pages a master shares with its forked workers count once per "
        "process) and as PSS (shared pages split: the truer total). Medians, with (min-max).",
        "",
        "Multi-worker throughput on a 2-core machine that also runs wrk is noisy and often "
        "bimodal: which of the 2 workers the kernel hands each connection to decides a whole "
        f"sample. Rows marked *noisy* had a max/min spread above {NOISY} in their samples; the "
        "paired ratios below are steadier than any single row.",
        "",
        "| Setup | req/s plaintext c64 | p50 / p99 ms | req/s json c64 | req/s plaintext c256 | p50 / p99 ms c256 | errors | start -> 200 ms | RSS MB | PSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in result["setups"].items():

        def rps(load: str, e: dict[str, Any] = e) -> str:
            if load not in e:
                return "-"
            return fmt(e[load]["rps"]) + (" *noisy*" if e[load]["noisy"] else "")

        def latency(load: str, e: dict[str, Any] = e) -> str:
            if load not in e:
                return "-"
            return f"{e[load]['p50_ms']['median']:.2f} / {e[load]['p99_ms']['median']:.2f}"

        errors = sum(e[load]["errors"] for load in LOADS if load in e)
        failed = f" ({e['failed_starts']} failed starts)" if "failed_starts" in e else ""
        lines.append(
            f"| {name}{failed} | {rps('plaintext c64')} | {latency('plaintext c64')} | {rps('json c64')} | "
            f"{rps('plaintext c256')} | {latency('plaintext c256')} | {errors} | "
            f"{fmt(e.get('startup_ms'))} | {fmt(e.get('rss_mb'), 1)} | {fmt(e.get('pss_mb'), 1)} |"
        )
    lines += [
        "",
        "## Side by side",
        "",
        "| A / B | throughput ratio, all samples (95% CI of the median) | per load | CPU per request A / B | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, c in result["comparisons"].items():
        if "failed" in c:
            lines.append(f"| {name} | {c['failed']} | | | |")
            continue
        per_load = "; ".join(f"{load} {r['median']:.3f}" for load, r in c["by_load"].items())
        target = c["target"]
        shown = f"{verdict(target, c['ratio']['median'])} (>= {TARGETS[target]})" if target else "-"
        low, high = c["ratio_ci95"]
        cpu = c.get("cpu_ratio")
        lines.append(
            f"| {c['a']} / {c['b']} | {c['ratio']['median']:.3f} ({low:.3f}-{high:.3f}), "
            f"{c['ratio']['n']} pairs, range {c['ratio']['min']:.3f}-{c['ratio']['max']:.3f} | {per_load} | "
            f"{fmt(cpu, 3) if cpu else '-'} | {shown} |"
        )
    lines += [
        "",
        "## Targets",
        "",
        "| Backend | launcher/direct throughput (>= 0.97) | its 95% CI | launcher/direct CPU per request | start-up overhead ms (<= 100) | RSS overhead MB (<= 10) | PSS overhead MB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for backend, t in result["targets"].items():
        cells = [
            f"{_num(t['throughput_ratio'], '.3f')} {verdict('throughput_ratio', t['throughput_ratio'])}",
            "-" if not t["throughput_ci95"] else "{:.3f}-{:.3f}".format(*t["throughput_ci95"]),
            _num(t["cpu_ratio"], ".3f"),
            f"{_num(t['startup_overhead_ms'], '+.0f')} {verdict('startup_overhead_ms', t['startup_overhead_ms'])}",
            f"{_num(t['memory_overhead_mb'], '+.1f')} {verdict('memory_overhead_mb', t['memory_overhead_mb'])}",
            _num(t["pss_overhead_mb"], "+.1f"),
        ]
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    single = [
        c for name, c in result["comparisons"].items() if name.startswith("single-process") and "a" in c
    ]
    if single:
        lines += [
            "",
            "## Single-process mode (uvicorn, WEB_CONCURRENCY=1) against the multi-worker backends",
            "",
            "| B (2 workers) | single-process start -> 200 ms | B's | difference | single-process RSS / PSS MB | B's | PSS difference |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        setups = result["setups"]
        for c in single:
            a, b = setups.get(c["a"], {}), setups.get(c["b"], {})
            lines.append(
                f"| {c['b']} | {fmt(a.get('startup_ms'))} | {fmt(b.get('startup_ms'))} | "
                f"{c['startup_ms']['median']:+.0f} | {fmt(a.get('rss_mb'), 1)} / {fmt(a.get('pss_mb'), 1)} | "
                f"{fmt(b.get('rss_mb'), 1)} / {fmt(b.get('pss_mb'), 1)} | {c['pss_mb']['median']:+.1f} |"
            )
    c = result["config_ms"]
    lines += [
        "",
        "Throughput ratios are medians over all paired samples, with a bootstrap 95% interval of "
        "that median: where the interval straddles a target, this run cannot tell the two apart "
        "from noise. CPU per request is the user + system time of the server's whole process "
        "tree during a sample divided by the requests wrk counted: what the launcher adds to each "
        "request; it depends less on which worker got the connections, but this shared machine makes "
        "it noisy too. Start-up and memory overheads are medians "
        "of the round-by-round differences.",
        "",
        f"`asgi-launcher config`: {fmt(c)} ms over {c['n']} runs, {verdict('config_ms', c['median'])} "
        f"(target < {TARGETS['config_ms']:.0f} ms).",
        "",
        "Each launcher configuration, as `asgi-launcher config --json` resolved it:",
        "",
    ]
    keys = ("workers", "worker_class", "access_log", "log_level", "keep_alive")
    for backend, shown in result["launcher_configs"].items():
        lines.append(f"- {backend}: `{json.dumps({k: shown.get(k) for k in keys})}`")
    return "\n".join(lines) + "\n"


def launcher_configs() -> dict[str, Any]:
    shown = {}
    for backend in BACKENDS:
        env = {**os.environ, "APP_DIR": str(DEMO), "WEB_CONCURRENCY": WORKERS, "SERVER_BACKEND": backend}
        out = subprocess.run(
            [str(BIN / "asgi-launcher"), "config", "--json"], env=env, capture_output=True, text=True
        )
        shown[backend] = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip()}
    return shown


def run(plan: Plan, out: Path | None) -> dict[str, Any]:
    binary = ensure_wrk()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # First, on a machine not yet busy with servers shutting down.
    config = spread(config_ms(5 if plan.quick else 15))
    pairs = {c.name: measure_pair(binary, c, plan, log) for c in plan.comparisons}
    comparisons = summarize_comparisons(pairs, plan.comparisons)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "plan": {k: v for k, v in plan.__dict__.items() if k != "comparisons"},
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "versions": versions(),
        "config_ms": config,
        "setups": summarize_setups(pairs, plan.comparisons),
        "comparisons": comparisons,
        "targets": targets(comparisons),
        "raw": pairs,
        "launcher_configs": launcher_configs(),
    }
    if out is not None:
        out.write_text(markdown(result))
        out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


def last_line(result: dict[str, Any]) -> str:
    t = result["targets"]

    def each(key: str, spec: str) -> str:
        return " ".join(f"{b}={_num(t[b][key], spec) if b in t else 'failed'}" for b in BACKENDS)

    single = [
        f"{c['b']} start {c['startup_ms']['median']:+.0f} ms PSS {c['pss_mb']['median']:+.1f} MB"
        for name, c in result.get("comparisons", {}).items()
        if name.startswith("single-process") and "a" in c
    ]
    return (
        f"launcher/direct throughput: {each('throughput_ratio', '.2f')}; "
        f"startup overhead ms: {each('startup_overhead_ms', '.0f')}; config ms: {result['config_ms']['median']:.0f}"
        + (f"; single-process vs {', '.join(single)}" if single else "")
    )


SAMPLE = """Running 3s test @ http://127.0.0.1:1/plaintext
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.10ms    1.20ms  30.00ms   90.00%
  Latency Distribution
     50%    4.90ms
     75%    5.50ms
     90%    6.20ms
     99%   10.50ms
  30000 requests in 3.00s, 4.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  10000.00
Transfer/sec:      1.33MB
"""


def self_check() -> int:
    parsed = parse_wrk(SAMPLE)
    assert parsed == {"rps": 10000.0, "requests": 30000, "p50_ms": 4.9, "p99_ms": 10.5, "errors": 7}, parsed
    assert _ms("850us") == 0.85 and _ms("1.5s") == 1500.0
    binary = ensure_wrk()
    running = start(SETUPS["launcher gunicorn"])
    assert running is not None, "the launcher did not start"
    try:
        print("self-check:", wrk(binary, running.port, "plaintext c64", 1))
    finally:
        stop(running.proc)
    return 0


def otlp_sink() -> Any:
    """An OTLP/HTTP collector in this process that answers every export and keeps nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.endpoint = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    return server


def per_span(result: dict[str, Any]) -> str:
    """What one recorded span costs a request: the CPU per request always_on adds over the launcher
    without the extra, less what always_off adds (medians of the paired samples; the bench app
    turns FastAPI's own telemetry off, so a request records exactly one span, the launcher's)."""
    lines = []
    for b in BACKENDS:
        added = {}
        for variant in ("always_off", "always_on"):
            samples = result["raw"].get(f"{b}: tracing {variant} vs without the extra", {}).get("samples", [])
            if samples:
                added[variant] = statistics.median(
                    s["a"]["cpu_us_per_request"] - s["b"]["cpu_us_per_request"] for s in samples
                )
        if len(added) == 2:
            lines.append(
                f"{b}: CPU a request over the launcher without the extra: always_off {added['always_off']:+.1f} us, "
                f"always_on {added['always_on']:+.1f} us; one recorded span: {added['always_on'] - added['always_off']:.1f} us"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (at most ~60 s); no files written")
    parser.add_argument(
        "--rounds", type=int, default=6, help="fresh pairs of processes per comparison (default 6)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--self-check", action="store_true", help="check the harness itself")
    parser.add_argument(
        "--logging",
        action="store_true",
        help="only the access-log comparisons (about 4 minutes with --rounds 3)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="only the metrics on/off comparisons (about 2 minutes with --rounds 3)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=12,
        help="--logging/--metrics: 1 s A/B samples per round (default 12)",
    )
    parser.add_argument(
        "--only", default="", help="--logging/--metrics: only comparisons whose name contains this"
    )
    parser.add_argument(
        "--at-once",
        action="store_true",
        help="--logging/--metrics/--same: measure A and B at the same time, sharing one CPU",
    )
    parser.add_argument(
        "--same", action="store_true", help="each launcher against itself (A/A): the method's own noise"
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="only OpenTelemetry tracing (off, always_off, always_on) against the launcher without the "
        "otel extra, on a FastAPI endpoint (pinned)",
    )
    parser.add_argument(
        "--app",
        choices=("demo", "fastapi"),
        default="demo",
        help="--logging/--metrics: what the launchers serve: the demo (Starlette), or a FastAPI "
        "endpoint returning a small JSON model (bench/fastapi_app.py)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="each launcher with TLS against its server started directly with the same TLS "
        "settings, and TLS on against off (pinned; with --at-once, at the same time)",
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="the access log's module compiled by mypyc against it run as it is, and on vs off "
        "compiled (pinned; builds the compiled core first: needs a C compiler)",
    )
    args = parser.parse_args()
    if args.app == "fastapi":
        # Every setup serves the FastAPI endpoint, the servers started directly included (the
        # launcher against a server's own access log compared FastAPI with the demo before).
        global APP_CWD
        APP_CWD = ROOT / "bench"
        for name, setup in SETUPS.items():
            if "SERVER_BACKEND" in setup.env:
                setup.env.update(APP_DIR=str(ROOT / "bench"), APP_MODULE="fastapi_app:app")
            argv = tuple("fastapi_app:app" if a == "main:app" else a for a in setup.argv)
            SETUPS[name] = dataclasses.replace(setup, argv=argv)
    # Stopped from outside, still stop the servers it started (the `finally` blocks do).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.self_check:
        return self_check()
    plan = Plan.for_mode(
        args.quick,
        args.rounds,
        args.logging,
        args.metrics,
        args.reps,
        args.only,
        args.at_once,
        args.same,
        args.tracing,
        args.tls,
        args.compiled,
    )
    if args.compiled:
        build_compiled()
    if args.app == "fastapi":  # its JSON model, not the text the harness polls
        plan = dataclasses.replace(plan, loads=["fastapi model c64"])
    if args.tracing:
        global OTLP_SINK
        OTLP_SINK = otlp_sink()
    if args.tls:
        import tempfile

        certificates = tempfile.TemporaryDirectory(prefix="asgi-launcher-bench-")
        make_certificates(Path(certificates.name))  # removed at exit
    result = run(plan, None if plan.quick else args.out)
    if args.tracing:
        print(per_span(result))
    if args.logging or args.metrics or args.same or args.tracing or args.tls or args.compiled:
        for name, c in result["comparisons"].items():
            comparison = next(x for x in plan.comparisons if x.name == name)
            if "failed" in c:
                print(f"{name}: failed: {c['failed']}")
                continue
            ratio, (low, high) = c["ratio"]["median"], c["ratio_ci95"]
            target = TARGETS.get(comparison.target or "")
            held = f"target >= {target}: {'PASS' if ratio >= target else 'MISS'}" if target else "no target"
            print(
                f"{name}: throughput {ratio:.3f} (95% CI {low:.3f}-{high:.3f}, {c['ratio']['n']} pairs"
                f"{', pinned, 1 worker' if plan.pinned else ''}{', at once' if plan.at_once else ''}), CPU per request "
                f"{c['cpu_ratio']['median']:.3f}; {held}"
            )
        return 0
    if not plan.quick:
        print(markdown(result))
    print(last_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
