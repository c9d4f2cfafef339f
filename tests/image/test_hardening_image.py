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


@pytest.mark.parametrize(
    ("user", "path", "why"),
    [
        ("0", "/app/access.log", "Read-only file system"),  # --read-only: even root creates nothing
        ("10001", "/app/access.log", "Read-only file system"),
        ("0", "/proc/x.log", "No such file or directory"),  # root passes os.access on /proc
    ],
)
@pytest.mark.parametrize("variable", ["ACCESS_LOG", "ERROR_LOG"])
def test_a_log_file_on_a_read_only_root_is_exit_2_in_one_line(
    docker: Docker, user: str, path: str, why: str, variable: str
) -> None:
    done = docker(
        "run",
        "--rm",
        "--user",
        user,
        "--read-only",
        "--tmpfs",
        "/tmp",
        f"-e{variable}={path}",
        TAG,
        check=False,
    )
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("WARNING: IPv4")]
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and f"{variable}={path!r}" in lines[0] and why in lines[0], lines
