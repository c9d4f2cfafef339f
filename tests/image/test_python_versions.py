"""Every Python version the distributions declare: the image built on it and used as a user of
that version uses it, and the core tests run inside a container of that version.

The versions are the launcher's classifiers (pyproject.toml; tests/architecture/test_packaging.py
keeps every distribution in step), each on image-sandbox's stand-in Debian base whose ``python3``
is that version (SUITES). For each:

* the image, built with ``--build-arg BASE_IMAGE=`` that base (for the default base's version it
  is the image conftest built for every image test): every backend is installed and serves as
  ``--user 10001 --read-only``, the HEALTHCHECK turns healthy, ``docker stop`` lets a request in
  flight finish and exits 0, ``/start-reload.sh`` serves an edit, and with Python's
  DeprecationWarnings shown no process warns from the launcher's own code;
* a test image on it (pytest and this repository's tests) running CORE_TESTS inside a container
  of that version, the launcher's own DeprecationWarnings turned into errors (pyproject.toml's
  ``filterwarnings``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from imagekit import BUILD_TIMEOUT, REPO, SANDBOX, TAG, UP_TIMEOUT, Container, Docker

#: The Debian suite whose python3 is each version (image-sandbox's ISB_SUITE).
SUITES = {"3.11": "bookworm", "3.13": "trixie", "3.14": "sid"}
#: The first test waits for every version's base (image-sandbox up: a debootstrap each on a cold
#: machine, one after the other) and their image builds (at once), then for its own run.
pytestmark = [pytest.mark.image, pytest.mark.timeout(len(SUITES) * UP_TIMEOUT + 2 * BUILD_TIMEOUT + 1800)]
BACKENDS = ("gunicorn", "hypercorn", "granian", "uvicorn")
#: What runs inside each version's container, chosen to take a couple of minutes there: the
#: core's own tests (config, pipeline, logs, signals, discovery, importer, the master's façade,
#: the access log and metrics, the public API) and the default backend's conformance kit (real
#: launchers and workers: signals, limits, drain, reload, the command line), which drives what
#: differs between versions: fork, signals, asyncio, importlib's entry points. Not tests/cli
#: (a minute more; what it runs for real the kit runs too).
CORE_TESTS = (
    *("tests/config", "tests/launch", "tests/master", "tests/worker", "tests/observability"),
    *("tests/core", "tests/architecture", "plugins/gunicorn-uvicorn/tests"),
)
#: The version running this suite: the whole suite runs on it already, so not again in a container.
HOST = f"{sys.version_info.major}.{sys.version_info.minor}"
#: What the test image adds to the image: the test runner and what CORE_TESTS import.
TEST_REQUIREMENTS = (
    *("pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "hypothesis>=6"),
    *("trustme>=1.1", "httpx[http2]>=0.27", "websockets>=12"),
    *("opentelemetry-proto>=1.40", "opentelemetry-instrumentation-httpx>=0.60b0"),
)
#: A DeprecationWarning line that points into the launcher's or a plugin's code.
OWN_WARNING = re.compile(r"/(launcher|asgi_launcher_\w+)/\S+\.py:\d+: \w*DeprecationWarning")

APP = """\
VERSION = "{version}"


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": VERSION.encode()}})
"""


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


def base_of(docker: Docker, version: str) -> str:
    """The stand-in base whose python3 is ``version``, made by image-sandbox if not there yet."""
    assert version in SUITES, f"no Debian suite known for Python {version}: add it to SUITES"
    env = {**docker.env, "ISB_SUITE": SUITES[version]}
    up = subprocess.run([str(SANDBOX), "up"], env=env, capture_output=True, text=True, timeout=UP_TIMEOUT)
    assert up.returncode == 0, up.stderr[-2000:]
    tag = subprocess.run([str(SANDBOX), "base-tag"], env=env, capture_output=True, text=True, timeout=30)
    return tag.stdout.strip()


def build(docker: Docker, version: str, context: Path) -> Version:
    """The image on this version's base (conftest's, for the default base), and the test image."""
    base = base_of(docker, version)
    image = TAG
    if base != docker.base:
        image = f"{TAG}-py{version}"
        started = time.monotonic()
        docker.build(REPO, image, "--build-arg", f"BASE_IMAGE={base}")
        print(f"Python {version}: the image built on {base} in {time.monotonic() - started:.0f} s")
    shown = docker("run", "--rm", image, "python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    assert shown.stdout.strip() == version, f"{base} runs Python {shown.stdout.strip()}, not {version}"
    if version == HOST:
        return Version(version, image, "")
    requirements = " ".join(f"'{r}'" for r in TEST_REQUIREMENTS)
    dockerfile = context / f"Dockerfile.py{version}"
    dockerfile.write_text(
        f"FROM {image}\nRUN python3 -m pip install {requirements}\nCOPY . /src\nWORKDIR /src\n"
    )
    docker.build(context, f"{image}-tests", "-f", str(dockerfile))
    return Version(version, image, f"{image}-tests")


@pytest.fixture(scope="module")
def pythons(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Version]:
    """Every declared version's images, built at once: the builds mostly wait on the package
    index, so together they take about as long as the longest."""
    context = tmp_path_factory.mktemp("repository") / "context"
    shutil.copytree(
        REPO,
        context,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis", "out"
        ),
    )
    (context / ".dockerignore").write_text("")  # the image's leaves the tests out
    versions = declared_versions()
    with ThreadPoolExecutor(len(versions)) as pool:
        return dict(zip(versions, pool.map(lambda v: build(docker, v, context), versions), strict=True))


def each_version(test: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.parametrize("version", declared_versions(), ids=lambda v: f"py{v}")(test)


def answer(c: Container) -> tuple[int, bytes] | None:
    """The app's answer, or None while nothing answers (a reload restarting the server)."""
    try:
        return c.get("/", timeout=2)
    except OSError:
        return None


def health(c: Container) -> object:
    state = c.state().get("Health")
    return state.get("Status") if isinstance(state, dict) else None


def own_warnings(c: Container) -> list[str]:
    return [line for line in c.logs().splitlines() if OWN_WARNING.search(line)]


def serve_stop_and_drain(docker: Docker, image: str, backend: str) -> None:
    """One backend as a user of a hardened deployment runs it: non-root, read-only, health
    checked, stopped by ``docker stop`` with a request in flight."""
    c = docker.run(
        image,
        *("--user", "10001", "--read-only", "--tmpfs", "/tmp"),
        # The image's HEALTHCHECK, probed every second; its 5 s timeout is for a served machine,
        # not for a test machine where starting the probe's interpreter may take longer.
        *("--health-interval=1s", "--health-start-period=1s", "--health-timeout=30s"),
        env={"PORT": "8080", "SERVER_BACKEND": backend, "WEB_CONCURRENCY": "2", "PYTHONWARNINGS": "default"},
        port=8080,
    )
    c.wait_ready()
    assert c.json("/") == {"message": "Hello World!"}
    assert f"with {backend}" in c.logs()
    c.until(lambda: health(c) == "healthy", 60, f"{backend}: healthy")
    answer: list[object] = []

    def slow() -> None:
        try:
            answer.append(c.get("/slow?seconds=3", timeout=30))
        except OSError as exc:
            answer.append(exc)

    in_flight = threading.Thread(target=slow)
    in_flight.start()
    time.sleep(1)  # the request reaches the app (it answers after 3 s)
    docker("stop", "-t", "20", c.name, timeout=60)
    in_flight.join(30)
    assert answer == [(200, b"slept 3.0")], f"{backend}: {answer}\n{c.logs()[-3000:]}"
    assert c.wait_exit(30) == 0, c.logs()[-3000:]
    assert own_warnings(c) == [], backend


@each_version
def test_every_backend_serves_non_root_read_only_healthy_and_drains(
    docker: Docker, pythons: dict[str, Version], version: str
) -> None:
    python = pythons[version]
    listed = docker("run", "--rm", python.image, "asgi-launcher", "backends").stdout
    assert sorted(line.split()[0] for line in listed.splitlines()) == sorted(BACKENDS), listed
    for backend in BACKENDS:
        serve_stop_and_drain(docker, python.image, backend)


@each_version
def test_reload_serves_an_edit(
    docker: Docker, pythons: dict[str, Version], version: str, tmp_path: Path
) -> None:
    python = pythons[version]
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(APP.format(version="v1"))
    app_dir.chmod(0o755)
    (app_dir / "main.py").chmod(0o644)
    c = docker.run(
        python.image,
        *("--user", "10001", "--read-only", "--tmpfs", "/tmp", "-v", f"{app_dir}:/app"),
        *("--entrypoint", "/start-reload.sh"),
        env={"PORT": "8080", "PYTHONWARNINGS": "default"},
        port=8080,
    )
    c.wait_ready()
    assert c.get("/") == (200, b"v1")
    c.write("/app/main.py", APP.format(version="v2"))
    c.until(lambda: answer(c) == (200, b"v2"), 60, "the edit served")
    docker("stop", "-t", "20", c.name, timeout=60)
    assert c.wait_exit(30) == 0, c.logs()[-3000:]
    assert own_warnings(c) == []


@pytest.mark.parametrize("version", [v for v in declared_versions() if v != HOST], ids=lambda v: f"py{v}")
def test_core_tests_pass_inside(docker: Docker, pythons: dict[str, Version], version: str) -> None:
    tests = [path for path in CORE_TESTS if (REPO / path).is_dir()]
    command = ["pytest", "-q", "-p", "no:cacheprovider", *tests]
    result = docker(
        "run", "--rm", "--network", "none", pythons[version].tests, *command, timeout=1800, check=False
    )
    summary = result.stdout.strip().splitlines()[-1:] or [result.stderr[-500:]]
    print(f"Python {version}: {' '.join(tests)}: {summary[0]}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
