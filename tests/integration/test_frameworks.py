"""Real framework apps, served the way users serve them, under every backend.

Each framework's app is written into a temporary ``APP_DIR`` as ``main.py`` (the default
``MODULE_NAME``), with ``GET /hello`` (its name, and whether its startup hook ran), ``GET /where``
(the root path and the URL path as the framework reports them) and, where the framework has
WebSocket routing, an echo on ``/ws``. "Every other variable means the same under each backend",
so what a framework sees must not depend on ``SERVER_BACKEND``: the ``ROOT_PATH`` results are
compared with what the same framework reports under Gunicorn, the reference.

Two launches per (framework, backend): one for ``/hello``, ``/where`` and SIGTERM with a
WebSocket open; one with ``ROOT_PATH=/api``.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from launcher.testing import BACKENDS, DEFAULT_BACKEND
from launcher.testing.conformance import close_code
from launcher.testing.process import Launcher, start_launcher

pytestmark = pytest.mark.slow

#: What the others are compared with: the default backend (Uvicorn's semantics).
REFERENCE = DEFAULT_BACKEND
#: WebSocket close code "service restart", what Uvicorn sends to open WebSockets on shutdown.
SERVICE_RESTART = 1012
READY_TIMEOUT = 30.0
#: Seconds from SIGTERM to the launcher's exit with a WebSocket open (and nothing in flight): a
#: deadline, far below GRACEFUL_TIMEOUT, so a launcher that waits for the WebSocket misses it.
EXIT_WITHIN = 30.0
GRACEFUL_TIMEOUT = 4 * int(EXIT_WITHIN)

FASTAPI = """
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

state = {"started": False}


@asynccontextmanager
async def lifespan(app):
    state["started"] = True
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/hello")
async def hello():
    return {"framework": "fastapi", "started": state["started"]}


@app.get("/where")
async def where(request: Request):
    return {"root_path": request.scope.get("root_path", ""), "path": request.url.path}


@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
"""

STARLETTE = """
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

state = {"started": False}


@asynccontextmanager
async def lifespan(app):
    state["started"] = True
    yield


async def hello(request):
    return JSONResponse({"framework": "starlette", "started": state["started"]})


async def where(request):
    return JSONResponse({"root_path": request.scope.get("root_path", ""), "path": request.url.path})


async def ws(websocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(
    routes=[Route("/hello", hello), Route("/where", where), WebSocketRoute("/ws", ws)],
    lifespan=lifespan,
)
"""

LITESTAR = """
from contextlib import asynccontextmanager

from litestar import Litestar, Request, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect

state = {"started": False}


@asynccontextmanager
async def lifespan(app):
    state["started"] = True
    yield


@get("/hello")
async def hello() -> dict:
    return {"framework": "litestar", "started": state["started"]}


@get("/where")
async def where(request: Request) -> dict:
    return {"root_path": request.scope.get("root_path", ""), "path": request.url.path}


@websocket("/ws")
async def ws(socket: WebSocket) -> None:
    await socket.accept()
    try:
        while True:
            await socket.send_text(await socket.receive_text())
    except WebSocketDisconnect:
        pass


app = Litestar(route_handlers=[hello, where, ws], lifespan=[lifespan])
"""

QUART = """
from urllib.parse import urlsplit

from quart import Quart, request, websocket

app = Quart(__name__)
state = {"started": False}


@app.before_serving
async def startup():
    state["started"] = True


@app.get("/hello")
async def hello():
    return {"framework": "quart", "started": state["started"]}


@app.get("/where")
async def where():
    return {"root_path": request.root_path, "path": urlsplit(request.url).path}


@app.websocket("/ws")
async def ws():
    while True:
        await websocket.send(await websocket.receive())
"""

DJANGO = """
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        SECRET_KEY="not-a-secret",
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
    )

from django.core.asgi import get_asgi_application
from django.http import JsonResponse
from django.urls import path


def hello(request):
    return JsonResponse({"framework": "django"})


def where(request):
    return JsonResponse({"root_path": request.META["SCRIPT_NAME"], "path": request.path})


urlpatterns = [path("hello", hello), path("where", where)]

app = get_asgi_application()
"""

APPS = {"fastapi": FASTAPI, "starlette": STARLETTE, "litestar": LITESTAR, "quart": QUART, "django": DJANGO}
#: Frameworks whose app has a startup hook (Django's ASGI handler has no lifespan).
LIFESPAN = {"fastapi", "starlette", "litestar", "quart"}
#: Frameworks whose app has a WebSocket echo on /ws (Django's plain ASGI app routes no WebSockets).
WEBSOCKET = {"fastapi", "starlette", "litestar", "quart"}

CASES = [pytest.param(f, b, id=f"{f}-{b}") for f in APPS for b in BACKENDS]

#: What ``/where`` answered under the reference backend, by (framework, ROOT_PATH).
_reference: dict[tuple[str, str], dict[str, Any]] = {}


def install(framework: str, tmp_path: Path) -> Path:
    """An APP_DIR holding the framework's app as ``main.py``."""
    app_dir = tmp_path / framework
    app_dir.mkdir(parents=True, exist_ok=True)  # (tmp_path / "reference" for reference_where)
    (app_dir / "main.py").write_text(textwrap.dedent(APPS[framework]).lstrip())
    return app_dir


def serve(backend: str, app_dir: Path, **env: str) -> Launcher:
    return start_launcher({"SERVER_BACKEND": backend, "APP_DIR": str(app_dir), "WEB_CONCURRENCY": "1", **env})


def get_json(server: Launcher, path: str) -> dict[str, Any]:
    status, headers, body = server.get(path)
    assert status == 200, (path, status, headers, body[:500], server.output()[-3000:])
    answer: dict[str, Any] = json.loads(body)
    return answer


def where_under(backend: str, framework: str, tmp_path: Path, root_path: str) -> dict[str, Any]:
    """``/where`` from a fresh launch of ``framework`` under ``backend`` with ``ROOT_PATH``."""
    with serve(backend, install(framework, tmp_path), ROOT_PATH=root_path) as server:
        server.wait_ready("/hello", READY_TIMEOUT)
        return get_json(server, "/where")


def reference_where(framework: str, tmp_path: Path, root_path: str) -> dict[str, Any]:
    """What the reference backend answers (launched here unless its own test already ran)."""
    key = (framework, root_path)
    if key not in _reference:
        _reference[key] = where_under(REFERENCE, framework, tmp_path / "reference", root_path)
    return _reference[key]


def sigterm_and_wait(server: Launcher) -> tuple[int, float]:
    """SIGTERM the launcher; its exit status and the seconds it took to exit."""
    sent = time.monotonic()
    server.signal(signal.SIGTERM)
    code = server.wait(EXIT_WITHIN)
    return code, time.monotonic() - sent


@pytest.mark.parametrize(("framework", "backend"), CASES)
def test_serves_the_app_and_closes_its_websocket_on_sigterm(
    framework: str, backend: str, tmp_path: Path
) -> None:
    with serve(backend, install(framework, tmp_path), GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT)) as server:
        server.wait_ready("/hello", READY_TIMEOUT)
        expected: dict[str, Any] = {"framework": framework}
        if framework in LIFESPAN:
            expected["started"] = True  # the startup hook ran before the first request
        assert get_json(server, "/hello") == expected, server.output()[-3000:]
        assert get_json(server, "/where") == {"root_path": "", "path": "/where"}

        if framework not in WEBSOCKET:
            code, took = sigterm_and_wait(server)
            output = server.output()[-3000:]
            assert code == 0, output
            assert took <= EXIT_WITHIN, f"exited {took:.1f}s after SIGTERM\n{output}"
            return

        from websockets.sync.client import connect

        with connect(server.ws_url("/ws"), open_timeout=10, close_timeout=2) as ws:
            ws.send("ping")
            assert ws.recv(timeout=10) == "ping"
            code, took = sigterm_and_wait(server)
            # The client reads frames in the background: a close sent before the exit is waiting.
            closed_with = close_code(ws, EXIT_WITHIN)
        output = server.output()[-3000:]
        assert closed_with == SERVICE_RESTART, (closed_with, output)
        assert code == 0, output
        assert took <= EXIT_WITHIN, f"exited {took:.1f}s after SIGTERM\n{output}"


@pytest.mark.parametrize(("framework", "backend"), CASES)
def test_root_path_is_seen_the_same_under_every_backend(framework: str, backend: str, tmp_path: Path) -> None:
    # Uvicorn's semantics: the proxy strips /api, the client path is /where, the app sees
    # root_path "/api" and a path that includes it; the framework routes on the rest.
    with serve(backend, install(framework, tmp_path), ROOT_PATH="/api") as server:
        server.wait_ready("/hello", READY_TIMEOUT)
        assert get_json(server, "/hello")["framework"] == framework
        seen = get_json(server, "/where")
    assert seen["root_path"] == "/api", seen
    assert "/api" in seen["path"], seen
    if backend == REFERENCE:
        _reference[(framework, "/api")] = seen
    else:
        assert seen == reference_where(framework, tmp_path, "/api"), f"{backend} differs from {REFERENCE}"
