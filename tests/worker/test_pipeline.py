"""The worker pipeline: each layer present only when its setting is on, in the documented order,
and doing what every backend relies on. Real ASGI calls on a real event loop, no server."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from launcher import Backend, statedir
from launcher.config.model import Config
from launcher.config.resolve import resolve
from launcher.worker.bootstrap import WorkerContext
from launcher.worker.pipeline import (
    ASGI2,
    SERVICE_RESTART,
    Retirement,
    ServerTraits,
    WebSocketDrain,
    asgi_version,
    build,
)
from launcher.worker.proxy_headers import ProxyHeadersMiddleware


def config(tmp_path: Path, **env: str) -> Config:
    (tmp_path / "main.py").write_text("app = None\n")
    return resolve({"APP_DIR": str(tmp_path), "ACCESS_LOG": "", **env}, Backend)


def worker(config: Config, state: Path | str | None = None) -> WorkerContext:
    """A worker's context as its master gives it (``state``: the master's state directory)."""
    return WorkerContext(config, None if state is None else str(state), None)


async def echo_scope(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": repr(sorted(scope.items())).encode()})


def call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(path: str = "/x") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "client": ("127.0.0.1", 1),
        "headers": [],
    }


class Legacy:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2 " + self.scope["path"].encode()})


def legacy_function(scope: dict[str, Any]) -> Any:
    return Legacy(scope)


async def modern(scope: Any, receive: Any, send: Any) -> None:
    pass


class Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


def test_asgi_version_tells_the_legacy_form_from_asgi3() -> None:
    assert asgi_version(Legacy) == 2
    assert asgi_version(legacy_function) == 2
    assert asgi_version(modern) == 3
    assert asgi_version(Instance()) == 3
    # Middleware that returns the inner app's awaitable is ASGI 3 (Uvicorn's guess says 2).
    assert asgi_version(ProxyHeadersMiddleware(modern)) == 3
    assert asgi_version(lambda *args: modern(*args)) == 3


def test_layers_are_absent_when_their_settings_are_off(tmp_path: Path) -> None:
    off = config(tmp_path, TIMEOUT="0")
    built = build(worker(off, tmp_path), retire=lambda: None, app=modern)
    assert built.layers == (
        "boot",
        "refuse-connect",
        "request-checks",
        "retirement",
        "proxy-headers",
        "response-check",
        "websocket-drain",
    )
    traits = ServerTraits(
        proxy_headers=True, closes_websockets=True, refuses_connect=True, checks_requests=True
    )
    assert build(worker(off), retire=lambda: None, traits=traits, app=modern).layers == (
        "boot",
        "retirement",
        "response-check",
    )


def test_layers_follow_the_documented_order(tmp_path: Path) -> None:
    log = str(tmp_path / "access.log")
    on = config(tmp_path, TIMEOUT="30", MAX_REQUESTS="10", ROOT_PATH="/api", ACCESS_LOG=log)
    traits = ServerTraits(spec_scope=False)
    built = build(worker(on, tmp_path), retire=lambda: None, app=Legacy, traits=traits)
    assert built.layers == (
        "boot",
        "watchdog",
        "spec-scope",
        "refuse-connect",
        "request-checks",
        "retirement",
        "proxy-headers",
        "access-log",
        "response-check",
        "root-path",
        "websocket-drain",
        "asgi2",
    )


def test_asgi2_app_is_served_as_asgi3(tmp_path: Path) -> None:
    built = build(worker(config(tmp_path)), retire=lambda: None, app=Legacy)
    assert "asgi2" in built.layers
    assert call(built.app, http_scope("/y"))[-1]["body"] == b"asgi2 /y"
    assert call(ASGI2(legacy_function), http_scope("/z"))[-1]["body"] == b"asgi2 /z"


def test_root_path_is_set_and_included_in_path(tmp_path: Path) -> None:
    built = build(worker(config(tmp_path, ROOT_PATH="/api")), retire=lambda: None, app=echo_scope)
    body = call(built.app, http_scope("/items"))[-1]["body"].decode()
    assert "('root_path', '/api')" in body and "('path', '/api/items')" in body
    assert "('raw_path', b'/api/items')" in body


def test_request_limit_retires_with_the_last_request_which_is_still_served(tmp_path: Path) -> None:
    retired: list[int] = []
    served: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append(len(retired))  # how many retirements had been asked for when this one ran

    built = build(worker(config(tmp_path, MAX_REQUESTS="3")), retire=lambda: retired.append(1), app=app)
    for _ in range(3):
        call(built.app, http_scope())
    # The third request asked for retirement (so the worker accepts no more) and was served.
    assert retired == [1] and served == [0, 0, 1]
    call(built.app, {"type": "lifespan"})  # lifespan is not a request
    assert retired == [1]


def test_request_limit_jitter_stays_within_bounds(tmp_path: Path) -> None:
    limits = set()
    for _ in range(60):
        built = build(
            worker(config(tmp_path, MAX_REQUESTS="5", MAX_REQUESTS_JITTER="3")),
            retire=lambda: None,
            app=modern,
        )
        layer: Any = built.app
        while not isinstance(layer, Retirement):
            layer = layer.app
        limits.add(layer.limit)
    assert limits <= {5, 6, 7, 8} and len(limits) > 1


def test_watchdog_touches_the_heartbeat_while_the_loop_turns(tmp_path: Path) -> None:
    built = build(worker(config(tmp_path, TIMEOUT="1"), tmp_path), retire=lambda: None, app=modern)
    beat = tmp_path / str(os.getpid())

    async def run() -> list[float]:
        await built.app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
        seen = []
        for _ in range(3):
            seen.append(beat.stat().st_mtime)
            await asyncio.sleep(0.3)  # heartbeat every 0.25 s for TIMEOUT=1
        return seen

    seen = asyncio.run(run())
    assert seen == sorted(seen) and seen[-1] > seen[0]


def test_websocket_drain_closes_open_sessions_with_1012() -> None:
    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        events.append("app returned")

    events: list[Any] = []
    drain = WebSocketDrain(ws_app)

    async def run() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "websocket.connect"})

        async def send(message: dict[str, Any]) -> None:
            events.append(message)

        session = asyncio.ensure_future(drain({"type": "websocket"}, inbox.get, send))
        await asyncio.sleep(0.05)
        drain.shutting_down()
        await asyncio.wait_for(session, 2)

    asyncio.run(run())
    assert events == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": SERVICE_RESTART, "reason": ""},
        "app returned",
    ]
    assert not drain.sessions


def test_connect_is_refused_before_the_app(tmp_path: Path) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["method"])

    built = build(worker(config(tmp_path)), retire=lambda: None, app=app)
    sent = call(built.app, {**http_scope(), "method": "CONNECT"})
    assert sent[0]["status"] == 400 and (b"connection", b"close") in sent[0]["headers"]
    assert seen == []
    call(built.app, {**http_scope(), "method": "GET"})
    assert seen == ["GET"]


def test_operations_layers_take_their_documented_places(tmp_path: Path) -> None:
    on = config(tmp_path, TIMEOUT="30", MAX_REQUESTS="10", OPS_PORT="9000", SHUTDOWN_DELAY="3")
    built = build(worker(on, tmp_path), retire=lambda: None, app=modern)
    assert built.layers[:2] == ("boot", "watchdog")
    assert built.layers.index("retirement") < built.layers.index("proxy-headers")


def test_responses_close_their_connection_once_the_shutdown_notice_is_there(tmp_path: Path) -> None:
    built = build(worker(config(tmp_path, SHUTDOWN_DELAY="2"), tmp_path), retire=lambda: None, app=echo_scope)

    async def scenario() -> list[list[Any]]:
        seen: list[list[Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.append(list(message["headers"]))

        await built.app(http_scope(), receive, send)
        (tmp_path / statedir.SHUTDOWN_NOTICE).touch()
        await asyncio.sleep(0.5)  # the layer looks every 0.2 s
        await built.app(http_scope(), receive, send)
        return seen

    before, during = asyncio.run(scenario())
    assert (b"connection", b"close") not in before
    assert (b"connection", b"close") in during


def lifespan_app(outcome: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        if outcome == "raise":
            raise RuntimeError("no lifespan here")
        await send({"type": f"lifespan.startup.{outcome}"})

    return app


def start_lifespan(app: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def start() -> None:
        with contextlib.suppress(RuntimeError):
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    asyncio.run(start())


def test_a_worker_is_marked_booted_when_its_lifespan_startup_is_complete(tmp_path: Path) -> None:
    marked = {}
    for outcome in ("complete", "raise"):
        state = tmp_path / outcome
        state.mkdir()
        start_lifespan(
            build(worker(config(tmp_path), state), retire=lambda: None, app=lifespan_app(outcome)).app
        )
        marked[outcome] = Path(statedir.booted(str(state), os.getpid())).exists()
    # An app without lifespan support is served anyway, so it is booted.
    assert marked == {"complete": True, "raise": True}


def test_a_failed_lifespan_startup_ends_the_worker_as_a_failed_boot(tmp_path: Path) -> None:
    """Exit 3 at once with the app's message for the master, whatever the server would do next."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        trace = 'Traceback (most recent call last):\n  File "/app/main.py", line 9, in lifespan\n    connect()\nOSError: db down\n'
        await send({"type": "lifespan.startup.failed", "message": trace})

    context = WorkerContext(
        config(tmp_path), str(tmp_path), os.getpid()
    )  # this process is the worker's master
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the worker
        start_lifespan(build(context, retire=lambda: None, app=app).app)
        os._exit(0)  # not reached: the failed startup ends the process
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert not Path(statedir.booted(str(tmp_path), pid)).exists()
    cause, _, trace = Path(statedir.failed(str(tmp_path), pid)).read_text().partition("\n")
    assert cause == "OSError: db down"
    assert trace.splitlines() == [
        "Traceback (most recent call last):",
        '  File "/app/main.py", line 9, in lifespan',
        "    connect()",
        "OSError: db down",
    ]


def test_an_app_that_cannot_be_imported_in_the_worker_is_a_failed_boot(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(
        "import json\n\ndef broken():\n    raise LookupError('no settings')\n\nbroken()\n"
    )
    cfg = resolve({"APP_DIR": str(tmp_path), "ACCESS_LOG": ""}, Backend)
    context = WorkerContext(cfg, str(tmp_path), os.getpid())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the worker
        build(context, retire=lambda: None)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    cause, _, trace = Path(statedir.failed(str(tmp_path), pid)).read_text().partition("\n")
    assert cause == "LookupError: no settings"
    # The user's frames only: none of the launcher's or importlib's.
    assert "launcher" not in trace and "importlib" not in trace, trace
    assert trace.count('File "') == 2 and str(tmp_path / "main.py") in trace, trace
