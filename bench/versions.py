"""What a Python version costs: the same measurements on each version the packages declare.

    python bench/versions.py                 # every declared version, 3 rounds of 10 s
    python bench/versions.py --rounds 1 --seconds 5 --versions 3.11 3.13

For each version (pyproject.toml's classifiers), on image-sandbox's stand-in Debian base whose
``python3`` is that version:

* **install**: ``pip install`` of the launcher (with its metrics, reload and tracing extras) and
  the four backends into a fresh venv in a container of the base (seconds, the package index's
  latency included: the figure a user's own build sees);
* **image**: ``docker build --no-cache`` of the Dockerfile on that base (seconds) and its size;
* then, round after round with the versions interleaved (so drift hits each alike): **start-up**,
  from ``docker run`` to the first 200 on the app's port (the default backend, 2 workers, the
  image's demo app, host networking: no port proxy in the way), and **hello-world
  throughput** (wrk, 1 thread, 64 connections), median over the rounds.

Needs a Docker engine from ``../shared/tools/image-sandbox`` (``IMAGE_SANDBOX`` points elsewhere)
and wrk. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = Path(os.environ.get("IMAGE_SANDBOX", ROOT.parent / "shared" / "tools" / "image-sandbox"))
#: The Debian suite whose python3 is each version (image-sandbox's ISB_SUITE).
SUITES = {"3.11": "bookworm", "3.13": "trixie", "3.14": "sid"}
INSTALL = (
    "cp -r /src /tmp/src && python3 -m venv /tmp/v && /tmp/v/bin/pip install -q --no-cache-dir "
    "'/tmp/src[metrics,reload,otel]' /tmp/src/plugins/gunicorn-uvicorn /tmp/src/plugins/hypercorn "
    "/tmp/src/plugins/granian /tmp/src/plugins/uvicorn"
)


def declared_versions() -> list[str]:
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    return [
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]


def engine_env() -> dict[str, str]:
    """The environment with image-sandbox's engine (``image-sandbox up`` prints the exports)."""
    up = subprocess.run([str(SANDBOX), "up"], capture_output=True, text=True, timeout=1800, check=True)
    env = dict(os.environ)
    for name, value in re.findall(r"export (\w+)=['\"]?([^'\"\n]*)", up.stdout):
        env[name] = value
    return env


def base_tag(env: dict[str, str], version: str) -> str:
    suite = {**env, "ISB_SUITE": SUITES[version]}
    subprocess.run([str(SANDBOX), "up"], env=suite, capture_output=True, text=True, timeout=1800, check=True)
    out = subprocess.run([str(SANDBOX), "base-tag"], env=suite, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def docker(env: dict[str, str], *args: str, timeout: float = 1800) -> str:
    result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])} ... failed: {result.stderr[-1500:]}")
    return result.stdout


def timed(call: object, *args: object) -> float:
    started = time.monotonic()
    call(*args)  # type: ignore[operator]
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(env: dict[str, str], image: str, seconds: float) -> tuple[float, float]:
    """(seconds from ``docker run`` to the first 200, requests/s) for one container."""
    port = free_port()
    name = f"bench-versions-{port}"
    started = time.monotonic()
    docker(
        env, "run", "-d", "--rm", "--name", name, "--network", "host",
        "-e", f"BIND=127.0.0.1:{port}", "-e", "WEB_CONCURRENCY=2", "-e", "ACCESS_LOG=", image,
    )  # fmt: skip
    try:
        deadline = started + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{image} did not answer within 120 s") from None
                time.sleep(0.01)
        startup = time.monotonic() - started
        wrk = subprocess.run(
            ["wrk", "-t1", "-c64", f"-d{round(seconds)}s", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
        match = re.search(r"Requests/sec:\s+([\d.]+)", wrk.stdout)
        assert match, wrk.stdout
        return startup, float(match.group(1))
    finally:
        docker(env, "stop", "-t", "10", name, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", nargs="+", default=declared_versions())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/versions.py needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    env = {**engine_env(), "DOCKER_BUILDKIT": "0"}
    rows: dict[str, dict[str, object]] = {}
    built: list[str] = []  # removed at the end, whatever happens: a bench leaves nothing behind
    try:
        for version in args.versions:
            base = base_tag(env, version)
            image = f"asgi-launcher-bench:py{version}"
            python = docker(
                env, "run", "--rm", base, "python3", "-c", "import platform; print(platform.python_version())"
            )
            install = timed(
                docker,
                env,
                "run",
                "--rm",
                "--network",
                "host",
                "-v",
                f"{ROOT}:/src:ro",
                base,
                "sh",
                "-c",
                INSTALL,
            )
            with tempfile.TemporaryDirectory():
                build = timed(
                    docker, env, "build", "-q", "--no-cache", "--network", "host",
                    "--build-arg", f"BASE_IMAGE={base}", "-t", image, str(ROOT),
                )  # fmt: skip
            built.append(image)
            size = int(docker(env, "image", "inspect", "-f", "{{.Size}}", image).strip())
            rows[version] = {"python": python.strip(), "base": base, "install": install, "build": build,
                             "size": size, "startup": [], "rps": []}  # fmt: skip
            print(
                f"Python {python.strip()}: install {install:.0f} s, build {build:.0f} s, {size / 1e6:.0f} MB",
                flush=True,
            )
        for round_ in range(args.rounds):
            order = args.versions if round_ % 2 == 0 else list(reversed(args.versions))
            for version in order:
                startup, rps = serve(env, f"asgi-launcher-bench:py{version}", args.seconds)
                rows[version]["startup"].append(startup)  # type: ignore[union-attr]
                rows[version]["rps"].append(rps)  # type: ignore[union-attr]
                print(
                    f"round {round_ + 1} Python {version}: start-up {startup:.2f} s, {rps:.0f} requests/s",
                    flush=True,
                )
        print()
        print(
            "| Python | Base | Install | Image build (no cache) | Image size | Start-up (median) | Hello-world requests/s (median) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for row in rows.values():
            print(
                f"| {row['python']} | `{row['base']}` | {row['install']:.0f} s | {row['build']:.0f} s "
                f"| {int(row['size']) / 1e6:.0f} MB | {statistics.median(row['startup']):.2f} s "  # type: ignore[arg-type]
                f"| {statistics.median(row['rps']):.0f} |"  # type: ignore[arg-type]
            )
    finally:
        if built:
            docker(env, "rmi", "-f", *built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
