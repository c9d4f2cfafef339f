"""The ``docker`` fixture: the image built once per test session on a real Docker engine, for
tests/image and tests/docs (see tests/image/imagekit.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "image"))

from imagekit import SETUP_DEADLINE, Docker, Unavailable, _unavailable, prepare

#: Whether this process has its engine and image (each xdist worker sets up its own session).
_ready = False


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """The first test of this process that needs ``docker`` also waits for ``image-sandbox up`` and
    the image build (or for another process of the run doing them), each under its own deadline:
    on a cold Docker cache the build alone takes longer than the suite's per-test timeout. That
    test gets the setup's deadline on top of its own (outermost, so pytest-timeout sees it)."""
    if not _ready and "docker" in getattr(item, "fixturenames", ()):
        own = item.get_closest_marker("timeout")
        seconds = own.args[0] if own and own.args else item.config.getini("timeout")
        item.add_marker(pytest.mark.timeout(SETUP_DEADLINE + float(seconds)), append=False)
    yield


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    global _ready
    try:
        d = prepare()
    except (Unavailable, subprocess.TimeoutExpired) as exc:
        _unavailable(str(exc))
    _ready = True
    yield d
    d.remove(d.containers)  # (each test's are gone already; this is for any a fixture kept)


@pytest.fixture(autouse=True)
def _containers_end_with_their_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """``docker rm -f`` every container the test started (and its health checks with it)."""
    if "docker" not in request.fixturenames:
        yield
        return
    d: Docker = request.getfixturevalue("docker")
    before = len(d.containers)
    yield
    d.remove(d.containers[before:])
