"""Build the image once per test session on a real Docker engine (see imagekit.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from imagekit import REPO, SANDBOX, TAG, Docker, _unavailable


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    if not SANDBOX.exists():
        _unavailable(f"{SANDBOX} not found")
    if shutil.which("bash") is None:
        _unavailable("bash is needed to run image-sandbox")
    try:
        up = subprocess.run([str(SANDBOX), "up"], capture_output=True, text=True, timeout=1200)
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
