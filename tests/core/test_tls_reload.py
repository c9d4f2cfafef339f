"""RELOAD=true with TLS: every server the reloader starts serves HTTPS with the same settings."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from launcher.testing.process import start_launcher
from launcher.testing.tls import Certificates

APP = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ('{{"version": "{version}", "scheme": "' + scope["scheme"] + '"}}').encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
"""


@pytest.mark.parametrize("backend", ["gunicorn", "hypercorn", "granian", "uvicorn"])
def test_reload_restarts_serve_https(backend: str, tmp_path: Path) -> None:
    certs = Certificates.make(tmp_path / "tls")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(APP.format(version="v1"))
    env = {"APP_DIR": str(app_dir), "SERVER_BACKEND": backend, "RELOAD": "true", **certs.env()}
    with start_launcher(env, tls=certs.client()) as server:
        server.wait_ready("/", 60)
        assert json.loads(server.get("/")[2]) == {"version": "v1", "scheme": "https"}
        time.sleep(0.2)
        (app_dir / "main.py").write_text(APP.format(version="v2"))

        def served_v2() -> bool:
            try:
                return bool(json.loads(server.get("/", timeout=2)[2]) == {"version": "v2", "scheme": "https"})
            except (OSError, ValueError):
                return False

        server.wait_until(served_v2, 30, "the edit served over HTTPS")
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
