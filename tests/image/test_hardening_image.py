"""Hardening points that are about containers, checked in the image."""

from __future__ import annotations

from pathlib import Path

import pytest
from imagekit import TAG, Docker

from launcher.testing import BACKENDS

pytestmark = pytest.mark.image


@pytest.mark.parametrize("backend", BACKENDS)
def test_serves_with_ipc_none(docker: Docker, backend: str) -> None:
    # --ipc none: no /dev/shm, so no POSIX semaphores (Hypercorn's workers used an Event).
    c = docker.run(TAG, "--ipc", "none", env={"SERVER_BACKEND": backend, "WEB_CONCURRENCY": "2"})
    c.wait_ready()
    assert c.get("/")[0] == 200
    assert "Traceback" not in c.logs()
    docker("stop", "-t", "20", c.name, timeout=60)
    assert c.wait_exit(30) == 0


def test_the_health_check_follows_the_port_prestart_exports(docker: Docker, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {TAG}\nCOPY prestart.sh /app/prestart.sh\n")
    (tmp_path / "prestart.sh").write_text("export PORT=8081\n")
    docker.build(tmp_path, "user/prestart-port")
    c = docker.run("user/prestart-port", port=8081)
    c.wait_ready()
    # What Docker's HEALTHCHECK runs: a separate process with the container's env, without the
    # export. It must reach the port the launcher really serves on.
    probe = docker("exec", c.name, "asgi-launcher", "probe", check=False)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert ":8081" in probe.stdout, probe.stdout
