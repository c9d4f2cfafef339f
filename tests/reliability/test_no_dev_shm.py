"""Without a usable /dev/shm (``docker run --ipc none``, or a read-only one) every backend serves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.process import base_env, free_port, request

pytestmark = pytest.mark.slow


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m (root), to hide /dev/shm")
def test_serves_with_a_read_only_dev_shm(backend: str, tmp_path: Path) -> None:
    apps.install("hello", tmp_path)
    port = free_port()
    env = {
        **base_env(),
        "SERVER_BACKEND": backend,
        "APP_DIR": str(tmp_path),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
    }
    # A private mount namespace with a read-only tmpfs over /dev/shm: POSIX semaphores (what a
    # multiprocessing Event needs) cannot be created there, as under --ipc none.
    script = f"mount -t tmpfs -o ro none /dev/shm && exec {sys.executable} -m launcher"
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        answer: tuple[int, bytes] | None = None
        for _ in range(200):
            try:
                answer = request(port, "/", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    break
                subprocess.run(["sleep", "0.1"], check=False)
        proc.terminate()
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert answer is not None and answer[0] == 200, output
    assert "Traceback" not in output, output
    assert proc.returncode == 0, output
