"""The image with TLS: HTTPS from mounted certificate files, and a health check that speaks TLS,
as a non-root user on a read-only root filesystem."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from pathlib import Path

import pytest
from imagekit import TAG, Container, Docker

from launcher.testing.tls import Certificates

pytestmark = pytest.mark.image

HARDENED = ("--user", "10001", "--read-only", "--tmpfs", "/tmp")


def https_get(c: Container, certs: Certificates, path: str = "/") -> tuple[int, bytes]:
    with urllib.request.urlopen(f"https://127.0.0.1:{c.port}{path}", timeout=5, context=certs.client()) as r:
        return r.status, r.read()


def health(c: Container) -> dict[str, object]:
    return dict(c.state().get("Health") or {})  # type: ignore[call-overload]


@pytest.mark.parametrize("backend", ["gunicorn", "granian"])
def test_tls_from_mounted_files_and_a_healthy_health_check(
    docker: Docker, tmp_path: Path, backend: str
) -> None:
    certs = Certificates.make(tmp_path / "certs")
    (tmp_path / "certs").chmod(0o755)  # a Secret volume's files: readable by the pod's user
    for file in (tmp_path / "certs").iterdir():
        file.chmod(0o644)
    env = {
        "PORT": "8443",
        "SERVER_BACKEND": backend,
        "SSL_CERTFILE": f"/certs/{certs.cert.name}",
        "SSL_KEYFILE": f"/certs/{certs.key.name}",
    }
    c = docker.run(
        TAG,
        *HARDENED,
        "-v",
        f"{tmp_path / 'certs'}:/certs:ro",
        "--health-interval=1s",
        "--health-start-period=1s",
        env=env,
        port=8443,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, body = https_get(c, certs)
            break
        except OSError:
            assert c.state()["Status"] == "running", c.logs()[-3000:]
            time.sleep(0.3)
    else:
        raise AssertionError(f"no HTTPS answer\n{c.logs()[-3000:]}")
    assert status == 200 and json.loads(body) == {"message": "Hello World!"}
    with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP on the TLS port: no answer
        c.get("/", timeout=5)
    while (state := health(c)).get("Status") != "healthy":
        assert time.monotonic() < deadline, (state, c.logs()[-3000:])
        time.sleep(0.5)
    log = state["Log"][-1]  # type: ignore[index]
    assert log["ExitCode"] == 0 and "over TLSv1.3" in log["Output"], log  # type: ignore[index]
