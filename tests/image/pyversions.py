"""Every declared Python version's images, built once per test run, and the core tests started
inside a container of each version as soon as its test image is there.

tests/image/test_python_versions.py checks what these make; this module only makes them, with
the standard library only, so that ``.ci/run`` can start it in the background at its very start
(``python3 tests/image/pyversions.py prepare``: the engine first, then the run's image, as
``imagekit.py prepare``, and every other version's images at once). The core tests then run in their
containers, detached, while the venv installs and the rest of the suite runs; the test that
checks them waits for each container's exit and reads its log. Without ``.ci/run`` the first test
of test_python_versions.py that needs the images makes them (under the run's lock ``versions``:
one pytest process builds, the others wait and read what it recorded).

Every image and container carries the run's label and tag (imagekit), so ``imagekit.clean()``
removes them at the end of the run, the core containers included.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from imagekit import (
    BUILD_TIMEOUT,
    LABEL,
    REPO,
    RUN,
    RUN_DIR,
    SANDBOX,
    TAG,
    UP_TIMEOUT,
    Docker,
    _engine,
    prepare,
    run_lock,
)

#: The Debian suite whose python3 is each version (image-sandbox's ISB_SUITE).
SUITES = {"3.11": "bookworm", "3.13": "trixie", "3.14": "sid"}
#: The version running this suite: the whole suite runs on it already, so not again in a container.
HOST = f"{sys.version_info.major}.{sys.version_info.minor}"
#: What runs inside each other version's container: the core's own tests (config, pipeline, logs,
#: signals, discovery, importer, the master's façade, the access log and metrics, the public API)
#: and the default backend's conformance kit (real launchers and workers: signals, limits, drain,
#: reload, the command line), which drives what differs between versions: fork, signals, asyncio,
#: importlib's entry points. Not tests/cli (what it runs for real the kit runs too).
CORE_TESTS = (
    *("tests/config", "tests/launch", "tests/master", "tests/worker", "tests/observability"),
    *("tests/core", "tests/architecture", "plugins/gunicorn-uvicorn/tests"),
)
#: The access log compiled by mypyc: built and tested on the host, not in these containers, which
#: hold the image as it ships (the module run as it is, no compiler).
COMPILED_TEST = "tests/observability/test_compiled.py"
#: What the test image adds to the image: the test runner and what CORE_TESTS import.
TEST_REQUIREMENTS = (
    *("pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "hypothesis>=6"),
    *("trustme>=1.1", "httpx[http2]>=0.27", "websockets>=12"),
    *("opentelemetry-proto>=1.40", "opentelemetry-instrumentation-httpx>=0.60b0"),
)
#: Waits for the versions' setup: every base (a debootstrap each on a cold machine, one after the
#: other) and the image builds (at once), two builds deep.
VERSIONS_DEADLINE = len(SUITES) * UP_TIMEOUT + 2 * BUILD_TIMEOUT
#: What the core tests inside one container may take.
CORE_DEADLINE = 1800


def declared_versions() -> list[str]:
    classifiers = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["classifiers"]
    return [
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]


@dataclass(frozen=True)
class Version:
    version: str
    image: str  # the image, built on this version's base
    tests: str  # the image plus pytest and this repository ("" for HOST)
    core: str  # the detached container running CORE_TESTS on it ("" for HOST)
    note: str  # what its setup said (the build's duration)


def core_tests() -> list[str]:
    return [path for path in CORE_TESTS if (REPO / path).is_dir()]


def newest() -> str:
    """The newest declared version: the one whose container runs CORE_TESTS whole, slow tests
    included (the kit's real launchers and workers), as its changes to fork, signals and asyncio
    are the latest. A version between it and HOST runs their fast tier (``-m "not slow"``): the
    kit on each of them too cost CI about 50 s of CPU, of a run that must end within 10 minutes
    on 2 cores."""
    return max(declared_versions(), key=lambda v: tuple(map(int, v.split("."))))


def base_of(docker: Docker, version: str) -> str:
    """The stand-in base whose python3 is ``version``, made by image-sandbox if not there yet."""
    assert version in SUITES, f"no Debian suite known for Python {version}: add it to SUITES"
    env = {**docker.env, "ISB_SUITE": SUITES[version]}
    up = subprocess.run([str(SANDBOX), "up"], env=env, capture_output=True, text=True, timeout=UP_TIMEOUT)
    assert up.returncode == 0, up.stderr[-2000:]
    tag = subprocess.run([str(SANDBOX), "base-tag"], env=env, capture_output=True, text=True, timeout=30)
    return tag.stdout.strip()


def build(docker: Docker, version: str, context: Path) -> Version:
    """The image on this version's base (the run's image, for the default base), its test image,
    and the core tests started in a detached container of it."""
    base = base_of(docker, version)
    if base == docker.base:
        prepare()  # the run's image (.ci/run's background builds it beside the other versions)
    image, note = TAG, ""
    if base != docker.base:
        image = f"{TAG}-py{version}"
        started = time.monotonic()
        docker.build(REPO, image, "--build-arg", f"BASE_IMAGE={base}")
        note = f"Python {version}: the image built on {base} in {time.monotonic() - started:.0f} s"
    shown = docker("run", "--rm", image, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    assert shown.stdout.strip() == version, f"{base} runs Python {shown.stdout.strip()}, not {version}"
    if version == HOST:
        return Version(version, image, "", "", note)
    requirements = " ".join(f"'{r}'" for r in TEST_REQUIREMENTS)
    dockerfile = context / f"Dockerfile.py{version}"
    dockerfile.write_text(
        f"FROM {image}\nRUN python3 -m pip install {requirements}\nCOPY . /src\nWORKDIR /src\n"
    )
    tests = docker.build(context, f"{image}-tests", "-f", str(dockerfile))
    core = f"asgi-launcher-test-core-{RUN}-py{version}"
    tier = [] if version == newest() else ["-m", "not slow"]
    docker(
        "run", "-d", "--name", core, "--label", f"{LABEL}={RUN}", "--network", "none", "--no-healthcheck", tests,
        "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", *tier, *core_tests(), f"--ignore={COMPILED_TEST}",
    )  # fmt: skip
    return Version(version, image, tests, core, note)


def prepare_versions(docker: Docker) -> dict[str, Version]:
    """Every declared version's images (and its core tests started), made once per run: the
    builds mostly wait on the package index, so together they take about as long as the longest."""
    record, failed = RUN_DIR / "versions.json", RUN_DIR / "versions-failed"
    with run_lock(VERSIONS_DEADLINE, name="versions"):
        if failed.exists():
            raise AssertionError(f"this run's Python versions setup failed: {failed.read_text()}")
        if not record.exists():
            context = RUN_DIR / "versions-context"
            shutil.rmtree(context, ignore_errors=True)
            shutil.copytree(
                REPO,
                context,
                ignore=shutil.ignore_patterns(
                    ".git", ".venv*", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis", "out"
                ),
            )
            (context / ".dockerignore").write_text("")  # the image's leaves the tests out
            versions = declared_versions()
            try:
                with ThreadPoolExecutor(len(versions)) as pool:
                    made = list(pool.map(lambda v: build(docker, v, context), versions))
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                failed.write_text(str(exc))
                raise
            finally:
                shutil.rmtree(context, ignore_errors=True)
            record.write_text(json.dumps([asdict(v) for v in made]))
        return {v["version"]: Version(**v) for v in json.loads(record.read_text())}


def core_result(docker: Docker, python: Version) -> tuple[int, str]:
    """The exit status and output of the core tests in ``python``'s container, once it exits
    (the container removed then)."""
    try:
        status = int(docker("wait", python.core, timeout=CORE_DEADLINE).stdout.strip())
        logs = docker("logs", python.core, check=False)
    finally:
        docker.remove([python.core])
    return status, logs.stdout + logs.stderr


def main(argv: list[str]) -> int:
    """``prepare``: the engine and the run's image (imagekit), then every version's images."""
    if argv != ["prepare"]:
        print("usage: pyversions.py prepare  (run with $ASGI_LAUNCHER_TEST_RUN set)", file=sys.stderr)
        return 2
    try:
        with run_lock():
            docker = _engine()
        # The run's image and the other versions' images at once: each mostly waits on the package
        # index, and the core tests start sooner.
        with ThreadPoolExecutor(1) as pool:
            image = pool.submit(prepare)
            versions = prepare_versions(docker)
            image.result()
        print(f"pyversions: {TAG} built on {docker.env.get('DOCKER_HOST', 'the default engine')}")
        for python in versions.values():
            print(f"pyversions: Python {python.version}: {python.image} {python.core} {python.note}")
    except Exception as exc:  # (the tests try again and say why)
        print(f"pyversions: prepare failed (the image tests will try again and say why): {exc!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
