"""Does the launcher cost anything over the servers it starts? Measured side by side, in one run.

For each backend, the launcher and the same server started directly with the equivalent
command line serve the demo app (demo/main.py) with 2 workers on 127.0.0.1; wrk drives them.
Launcher and direct runs alternate (A B A B ...) so drift of this shared machine hits both.

    python bench/run.py             # full run (several minutes): writes bench/results.md and .json
    python bench/run.py --quick     # at most ~60 s; last line gives the launcher/direct ratios
    python bench/run.py --self-check  # parses sample wrk output and starts one config briefly

Figures: requests/s at 64 and 256 connections, p50/p99 latency, errors (socket errors and
non-2xx), time from process start to the first 200, memory of the whole process tree after
warm-up (PSS, so shared pages are not counted twice), and the time of `asgi-launcher config`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo"
BIN = Path(sys.executable).parent
WORKERS = "2"

TARGETS = {
    "throughput_ratio": 0.97,  # launcher / direct, at least
    "startup_overhead_ms": 100.0,  # launcher - direct, at most
    "memory_overhead_mb": 10.0,  # launcher tree - direct tree, at most
    "config_ms": 150.0,  # `asgi-launcher config`, at most
}


@dataclass(frozen=True)
class Setup:
    """One way of serving the demo: a command line plus environment."""

    name: str
    backend: str
    kind: str  # "launcher", "direct" or "peer"
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def setups(port: int) -> list[Setup]:
    """Each direct command is configured as the launcher configures that server by default
    (access log on, log level info, 2 workers, same loop), so the ratio measures the launcher."""
    bind = f"127.0.0.1:{port}"
    launcher = [str(BIN / "asgi-launcher")]
    launch_env = {"APP_DIR": str(DEMO), "BIND": bind, "WEB_CONCURRENCY": WORKERS}
    return [
        Setup(
            "launcher gunicorn",
            "gunicorn",
            "launcher",
            launcher,
            {**launch_env, "SERVER_BACKEND": "gunicorn"},
        ),
        Setup(
            "direct gunicorn",
            "gunicorn",
            "direct",
            [
                str(BIN / "gunicorn"),
                "-k",
                "uvicorn_worker.UvicornWorker",
                "-w",
                WORKERS,
                "-b",
                bind,
                "--no-control-socket",
                "--access-logfile",
                "-",
                "--worker-tmp-dir",
                "/dev/shm",
                "main:app",
            ],
        ),
        Setup(
            "launcher hypercorn",
            "hypercorn",
            "launcher",
            launcher,
            {**launch_env, "SERVER_BACKEND": "hypercorn"},
        ),
        Setup(
            "direct hypercorn",
            "hypercorn",
            "direct",
            [
                str(BIN / "hypercorn"),
                "-w",
                WORKERS,
                "-k",
                "uvloop",
                "-b",
                bind,
                "--access-logfile",
                "-",
                "main:app",
            ],
        ),
        Setup(
            "launcher granian", "granian", "launcher", launcher, {**launch_env, "SERVER_BACKEND": "granian"}
        ),
        Setup(
            "direct granian",
            "granian",
            "direct",
            [
                str(BIN / "granian"),
                "--interface",
                "asgi",
                "--workers",
                WORKERS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--access-log",
                "main:app",
            ],
        ),
        Setup(
            "uvicorn --workers 2",
            "uvicorn",
            "peer",
            [
                str(BIN / "uvicorn"),
                "--workers",
                WORKERS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "main:app",
            ],
        ),
    ]


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
    """Requests/s, p50/p99 latency (ms) and errors from `wrk --latency` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and p50 and p99):
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx[1])
    return {"rps": float(rps[1]), "p50_ms": _ms(p50[1]), "p99_ms": _ms(p99[1]), "errors": errors}


def wrk(binary: str, url: str, connections: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [binary, "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency", url],
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
    pids, stack = [pid], [pid]
    while stack:
        current = stack.pop()
        for task in os.listdir(f"/proc/{current}/task") if os.path.exists(f"/proc/{current}/task") else []:
            try:
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
            except OSError:
                continue
            pids += map(int, children)
            stack += map(int, children)
    return pids


def pss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def answers(port: int, path: str = "/plaintext") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    startup_ms: float


def start(setup: Setup, port: int, timeout: float = 30) -> Running | None:
    env = {**os.environ, **setup.env, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        setup.argv,
        cwd=DEMO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while time.perf_counter() - started < timeout:
        if answers(port):
            return Running(proc, (time.perf_counter() - started) * 1000)
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    stop(proc)
    return None


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (OSError, subprocess.TimeoutExpired):
        pass
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


# -- one measurement -------------------------------------------------------------------------


def measure(binary: str, setup: Setup, quick: bool) -> dict[str, Any]:
    port = free_port()
    setup = next(s for s in setups(port) if s.name == setup.name)
    running = start(setup, port)
    if running is None:
        return {"failed": "failed to start"}
    seconds = 3.0 if quick else 5.0
    try:
        wrk(binary, f"http://127.0.0.1:{port}/plaintext", 64, 1.0 if quick else 2.0)  # warm-up
        result: dict[str, Any] = {"startup_ms": running.startup_ms, "pss_mb": pss_mb(tree(running.proc.pid))}
        result["plaintext_64"] = wrk(binary, f"http://127.0.0.1:{port}/plaintext", 64, seconds)
        if not quick:
            result["json_64"] = wrk(binary, f"http://127.0.0.1:{port}/json", 64, seconds)
            result["plaintext_256"] = wrk(binary, f"http://127.0.0.1:{port}/plaintext", 256, seconds)
        return result
    finally:
        stop(running.proc)


def median_min_max(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in rounds[0]:
        ok = [r[name] for r in rounds if "failed" not in r[name]]
        if not ok:
            summary[name] = {"failed": rounds[0][name]["failed"]}
            continue
        entry: dict[str, Any] = {
            "startup_ms": median_min_max([r["startup_ms"] for r in ok]),
            "pss_mb": median_min_max([r["pss_mb"] for r in ok]),
        }
        for load in ("plaintext_64", "json_64", "plaintext_256"):
            if load in ok[0]:
                entry[load] = {k: median_min_max([r[load][k] for r in ok]) for k in ok[0][load]}
        summary[name] = entry
    return summary


def ratios(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for backend in ("gunicorn", "hypercorn", "granian"):
        a, b = summary.get(f"launcher {backend}", {}), summary.get(f"direct {backend}", {})
        if "failed" in a or "failed" in b or not a or not b:
            continue
        out[backend] = {
            "throughput_ratio": a["plaintext_64"]["rps"]["median"] / b["plaintext_64"]["rps"]["median"],
            "startup_overhead_ms": a["startup_ms"]["median"] - b["startup_ms"]["median"],
            "memory_overhead_mb": a["pss_mb"]["median"] - b["pss_mb"]["median"],
        }
    return out


def verdict(name: str, value: float) -> str:
    target = TARGETS[name]
    good = value >= target if name == "throughput_ratio" else value <= target
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


def fmt(entry: dict[str, float], digits: int = 0) -> str:
    return f"{entry['median']:.{digits}f} ({entry['min']:.{digits}f}-{entry['max']:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured {result['date']} with `python bench/run.py{' --quick' if result['quick'] else ''}`: "
        f"{result['rounds']} rounds, launcher and direct interleaved; medians with (min-max).",
        f"Machine: {result['cores']} cores ({result['cpu']}), Python {result['python']}; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
        + ".",
        "",
        "Multi-worker figures on a 2-core machine that also runs wrk are noisy and often bimodal "
        "(the kernel's choice of which worker accepts); a wide min-max range below says so.",
        "",
        "| Setup | req/s plaintext c64 | p50 / p99 ms | req/s json c64 | req/s plaintext c256 | errors | start → 200 ms | PSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in s.items():
        if "failed" in e:
            lines.append(f"| {name} | {e['failed']} | | | | | | |")
            continue
        p = e["plaintext_64"]
        json64 = fmt(e["json_64"]["rps"]) if "json_64" in e else "-"
        c256 = fmt(e["plaintext_256"]["rps"]) if "plaintext_256" in e else "-"
        errors = sum(e[k]["errors"]["max"] for k in ("plaintext_64", "json_64", "plaintext_256") if k in e)
        lines.append(
            f"| {name} | {fmt(p['rps'])} | {p['p50_ms']['median']:.2f} / {p['p99_ms']['median']:.2f} | {json64} | "
            f"{c256} | {errors:.0f} | {fmt(e['startup_ms'])} | {fmt(e['pss_mb'], 1)} |"
        )
    lines += ["", "## Targets", "", "| Backend | launcher/direct throughput | start-up overhead ms | memory overhead MB |",
              "| --- | --- | --- | --- |"]  # fmt: skip
    for backend, r in result["ratios"].items():
        lines.append(
            f"| {backend} | {r['throughput_ratio']:.2f} {verdict('throughput_ratio', r['throughput_ratio'])} | "
            f"{r['startup_overhead_ms']:+.0f} {verdict('startup_overhead_ms', r['startup_overhead_ms'])} | "
            f"{r['memory_overhead_mb']:+.1f} {verdict('memory_overhead_mb', r['memory_overhead_mb'])} |"
        )
    c = result["config_ms"]
    lines += [
        "",
        f"`asgi-launcher config`: {fmt(c)} ms, {verdict('config_ms', c['median'])} (target < 150 ms).",
    ]
    lines += ["", "Each launcher configuration, as `asgi-launcher config --json` resolved it:", ""]
    for backend, shown in result["launcher_configs"].items():
        lines.append(
            f"- {backend}: `{json.dumps({k: shown[k] for k in ('workers', 'worker_class', 'access_log', 'log_level', 'keep_alive')})}`"
        )
    return "\n".join(lines) + "\n"


def launcher_configs() -> dict[str, Any]:
    shown = {}
    for backend in ("gunicorn", "hypercorn", "granian"):
        env = {**os.environ, "APP_DIR": str(DEMO), "WEB_CONCURRENCY": WORKERS, "SERVER_BACKEND": backend}
        out = subprocess.run(
            [str(BIN / "asgi-launcher"), "config", "--json"], env=env, capture_output=True, text=True
        )
        shown[backend] = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip()}
    return shown


def run(quick: bool, rounds: int, out: Path) -> dict[str, Any]:
    binary = ensure_wrk()
    all_setups = setups(0)
    results: list[dict[str, dict[str, Any]]] = []
    for index in range(rounds):
        order = all_setups if index % 2 == 0 else list(reversed(all_setups))  # A B A B, then B A B A
        current: dict[str, dict[str, Any]] = {}
        for setup in order:
            current[setup.name] = measure(binary, setup, quick)
            print(
                f"round {index + 1} {setup.name}: {_brief(current[setup.name])}", file=sys.stderr, flush=True
            )
        results.append({s.name: current[s.name] for s in all_setups})
    summary = summarize(results)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": quick,
        "rounds": rounds,
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "versions": versions(),
        "config_ms": median_min_max(config_ms(5 if quick else 15)),
        "summary": summary,
        "ratios": ratios(summary),
        "raw_rounds": results,
        "launcher_configs": launcher_configs(),
    }
    if not quick:
        out.write_text(markdown(result))
        out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    return result


def _brief(m: dict[str, Any]) -> str:
    if "failed" in m:
        return str(m["failed"])
    return f"{m['plaintext_64']['rps']:.0f} req/s, first 200 after {m['startup_ms']:.0f} ms, PSS {m['pss_mb']:.1f} MB"


def last_line(result: dict[str, Any]) -> str:
    r = result["ratios"]

    def each(key: str, spec: str) -> str:
        return " ".join(
            f"{b}={format(r[b][key], spec)}" if b in r else f"{b}=failed"
            for b in ("gunicorn", "hypercorn", "granian")
        )

    return f"launcher/direct throughput: {each('throughput_ratio', '.2f')}; startup overhead ms: {each('startup_overhead_ms', '.0f')}"


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
    assert parsed == {"rps": 10000.0, "p50_ms": 4.9, "p99_ms": 10.5, "errors": 7}, parsed
    assert _ms("850us") == 0.85 and _ms("1.5s") == 1500.0
    binary = ensure_wrk()
    port = free_port()
    setup = setups(port)[0]
    running = start(setup, port)
    assert running is not None, "the launcher did not start"
    try:
        print("self-check:", wrk(binary, f"http://127.0.0.1:{port}/plaintext", 8, 1.0))
    finally:
        stop(running.proc)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="one short round (at most ~60 s); no files written"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds in the full run (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    parser.add_argument("--self-check", action="store_true", help="check the harness itself")
    args = parser.parse_args()
    if args.self_check:
        return self_check()
    result = run(args.quick, 1 if args.quick else args.rounds, args.out)
    if not args.quick:
        print(markdown(result))
    print(last_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
