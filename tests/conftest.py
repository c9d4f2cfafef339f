"""The ``docker`` fixture: the image built once per test session on a real Docker engine, for
tests/image and tests/docs (see tests/image/imagekit.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "image"))

from imagekit import BUILD_TIMEOUT, REPO, SANDBOX, TAG, UP_TIMEOUT, Docker, _unavailable

#: The first image test also waits for ``image-sandbox up`` and the image build, each under its
#: own deadline; on a machine with a cold Docker cache the build alone took longer than the
#: suite's per-test timeout, and every image test then failed at setup.
SETUP_DEADLINE = UP_TIMEOUT + BUILD_TIMEOUT


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give the first test that sets up ``docker`` the setup's deadline on top of its own."""
    for item in items:
        if "docker" in getattr(item, "fixturenames", ()):
            own = item.get_closest_marker("timeout")
            seconds = own.args[0] if own and own.args else item.config.getini("timeout")
            item.add_marker(pytest.mark.timeout(SETUP_DEADLINE + float(seconds)))
            return


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    if not SANDBOX.exists():
        _unavailable(f"{SANDBOX} not found")
    if shutil.which("bash") is None:
        _unavailable("bash is needed to run image-sandbox")
    try:
        up = subprocess.run([str(SANDBOX), "up"], capture_output=True, text=True, timeout=UP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _unavailable("image-sandbox up did not finish within 20 minutes")
    if up.returncode != 0:
        _unavailable(f"image-sandbox could not start Docker: {up.stderr.strip()[-500:]}")
    env = dict(os.environ)
    for line in up.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    base = subprocess.run(
        [str(SANDBOX), "base-tag"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    d = Docker(env, base)
    d.build(REPO, TAG, "--build-arg", f"BASE_IMAGE={base}")
    yield d
    for name in d.containers:
        d("rm", "-f", name, check=False)
