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

The images are made once per run by pyversions.py, which also starts each version's core tests
in a detached container as soon as its test image is built (under ``.ci/run``, in the background
from the run's start), so that they run beside the rest of the suite; the test here waits for
that container's exit and checks its result.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from imagekit import Container, Docker
from pyversions import (
    HOST,
    VERSIONS_DEADLINE,
    Version,
    core_result,
    core_tests,
    declared_versions,
    prepare_versions,
)

#: The first test waits for every version's images (pyversions.py), then for its own run.
pytestmark = [pytest.mark.image, pytest.mark.timeout(VERSIONS_DEADLINE + 1800)]
BACKENDS = ("gunicorn", "hypercorn", "granian", "uvicorn")
#: A DeprecationWarning line that points into the launcher's or a plugin's code.
OWN_WARNING = re.compile(r"/(launcher|asgi_launcher_\w+)/\S+\.py:\d+: \w*DeprecationWarning")

APP = """\
VERSION = "{version}"


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": VERSION.encode()}})
"""


@pytest.fixture(scope="module")
def pythons(docker: Docker) -> dict[str, Version]:
    """Every declared version's images (made once per run, whichever process asks first)."""
    made = prepare_versions(docker)
    for python in made.values():
        if python.note:
            print(python.note)
    return made


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
    # The four at once: each mostly waits (its health check, its slow request), one after the
    # other they were the last 20 s of a CI run, its CPUs idle.
    with ThreadPoolExecutor(len(BACKENDS)) as pool:
        list(pool.map(lambda backend: serve_stop_and_drain(docker, python.image, backend), BACKENDS))


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
    status, output = core_result(docker, pythons[version])
    summary = output.strip().splitlines()[-1:] or ["(no output)"]
    print(f"Python {version}: {' '.join(core_tests())}: {summary[0]}")
    assert status == 0, output[-8000:]
