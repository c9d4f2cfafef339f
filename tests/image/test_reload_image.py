"""/start-reload.sh in the image: the launcher's reload mode, edited with `docker exec`.

A user's Dockerfile that names the script (``CMD ["/start-reload.sh"]``, under the image's
dumb-init) gets every edit served, a broken edit shown once, the fix served, and `docker stop`
exit 0; non-root with a read-only root filesystem it serves a bind-mounted app the same way.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest
from imagekit import TAG, Container, Docker

from launcher.testing import BACKENDS, DEFAULT_BACKEND

pytestmark = pytest.mark.image

#: Seconds any wait for the container (an edit served, a line shown) may take: a deadline a loaded
#: machine cannot miss. How long an edit took is printed (the issue promises 2 s), not asserted.
DEADLINE = 30.0

APP = """\
import os

VERSION = "{version}"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            else:
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = f"{{VERSION}} {{os.environ.get('FROM_PRESTART', '-')}}"
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": body.encode()}})
"""


def _answer(c: Container) -> str | None:
    try:
        status, data = c.get("/", timeout=2)
    except (OSError, http.client.HTTPException):  # (a request the reload restart cut)
        return None
    return data.decode() if status == 200 else None


def test_start_reload_serves_edits_made_with_docker_exec(docker: Docker, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        f'FROM {TAG}\nCOPY main.py prestart.sh /app/\nCMD ["/start-reload.sh"]\n'
    )
    (tmp_path / "main.py").write_text(APP.format(version="v1"))
    (tmp_path / "prestart.sh").write_text("echo prestart-ran\nexport FROM_PRESTART=exported\n")
    docker.build(tmp_path, "user/reload")
    c = docker.run("user/reload")
    c.wait_ready()
    assert _answer(c) == "v1 exported"

    c.write("/app/main.py", APP.format(version="v2"))
    took = c.until(lambda: _answer(c) == "v2 exported", DEADLINE, "the edit served")

    c.write("/app/main.py", "VERSION = (\n")
    c.until(lambda: "waiting for a change" in c.logs(), DEADLINE, "the broken edit reported")
    time.sleep(1.5)  # a restart loop would show more tracebacks by now
    logs = c.logs()
    assert logs.count("SyntaxError") == 1, logs[-3000:]
    assert c.state()["Status"] == "running"

    c.write("/app/main.py", APP.format(version="v3"))
    c.until(lambda: _answer(c) == "v3 exported", DEADLINE, "the fix served")
    logs = c.logs()
    assert logs.count("prestart-ran") == 1, logs[-3000:]  # once, not per restart
    assert "reload: watching /app for changes to *.py" in logs
    print(f"image reload: edit served {took:.2f}s after docker exec returned")

    docker("stop", "-t", "20", c.name, timeout=60)
    assert c.wait_exit(30) == 0, c.logs()[-3000:]


@pytest.mark.parametrize("backend", [backend for backend in BACKENDS if backend != DEFAULT_BACKEND])
def test_start_reload_non_root_read_only(docker: Docker, tmp_path: Path, backend: str) -> None:
    """`--user 10001 --read-only`: the app bind-mounted (as in development), edited as root."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "main.py").write_text(APP.format(version="v1"))
    app_dir.chmod(0o755)
    (app_dir / "main.py").chmod(0o644)
    c = docker.run(
        TAG,
        "--user",
        "10001",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "-v",
        f"{app_dir}:/app",
        "--entrypoint",
        "/start-reload.sh",
        env={"PORT": "8080", "SERVER_BACKEND": backend},
        port=8080,
    )
    c.wait_ready()
    assert _answer(c) == "v1 -"
    c.write("/app/main.py", APP.format(version="v2"))
    c.until(lambda: _answer(c) == "v2 -", DEADLINE, "the edit served")
    assert "Traceback" not in c.logs()
    docker("stop", "-t", "20", c.name, timeout=60)
    assert c.wait_exit(30) == 0, c.logs()[-3000:]
