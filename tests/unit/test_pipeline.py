"""The worker pipeline: each layer present only when its setting is on, in the documented order,
and doing what every backend relies on. Real ASGI calls on a real event loop, no server."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from launcher import Backend
from launcher.config.resolve import Config, resolve
from launcher.worker.pipeline import (
    ASGI2,
    SERVICE_RESTART,
    RequestLimit,
    ServerTraits,
    WebSocketDrain,
    asgi_version,
    build,
)
from launcher.worker.proxy_headers import ProxyHeadersMiddleware


def config(tmp_path: Path, **env: str) -> Config:
    (tmp_path / "main.py").write_text("app = None\n")
    return resolve({"APP_DIR": str(tmp_path), "ACCESS_LOG": "", **env}, Backend)


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
    built = build(off, retire=lambda: None, heartbeat_dir=str(tmp_path), app=modern)
    assert built.layers == ("refuse-connect", "request-checks", "proxy-headers", "websocket-drain")
    traits = ServerTraits(
        proxy_headers=True, closes_websockets=True, refuses_connect=True, checks_requests=True
    )
    assert build(off, retire=lambda: None, traits=traits, app=modern).app is modern


def test_layers_follow_the_documented_order(tmp_path: Path) -> None:
    log = str(tmp_path / "access.log")
    on = config(tmp_path, TIMEOUT="30", MAX_REQUESTS="10", ROOT_PATH="/api", ACCESS_LOG=log)
    traits = ServerTraits(int_ports=False)
    built = build(on, retire=lambda: None, heartbeat_dir=str(tmp_path), app=Legacy, traits=traits)
    assert built.layers == (
        "watchdog",
        "int-ports",
        "refuse-connect",
        "request-checks",
        "request-limit",
        "proxy-headers",
        "access-log",
        "root-path",
        "websocket-drain",
        "asgi2",
    )


def test_asgi2_app_is_served_as_asgi3(tmp_path: Path) -> None:
    built = build(config(tmp_path), retire=lambda: None, app=Legacy)
    assert "asgi2" in built.layers
    assert call(built.app, http_scope("/y"))[-1]["body"] == b"asgi2 /y"
    assert call(ASGI2(legacy_function), http_scope("/z"))[-1]["body"] == b"asgi2 /z"


def test_root_path_is_set_and_included_in_path(tmp_path: Path) -> None:
    built = build(config(tmp_path, ROOT_PATH="/api"), retire=lambda: None, app=echo_scope)
    body = call(built.app, http_scope("/items"))[-1]["body"].decode()
    assert "('root_path', '/api')" in body and "('path', '/api/items')" in body
    assert "('raw_path', b'/api/items')" in body


def test_request_limit_retires_with_the_last_request_which_is_still_served(tmp_path: Path) -> None:
    retired: list[int] = []
    served: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append(len(retired))  # how many retirements had been asked for when this one ran

    built = build(config(tmp_path, MAX_REQUESTS="3"), retire=lambda: retired.append(1), app=app)
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
            config(tmp_path, MAX_REQUESTS="5", MAX_REQUESTS_JITTER="3"), retire=lambda: None, app=modern
        )
        layer: Any = built.app
        while not isinstance(layer, RequestLimit):
            layer = layer.app
        limits.add(layer.limit)
    assert limits <= {5, 6, 7, 8} and len(limits) > 1


def test_watchdog_touches_the_heartbeat_while_the_loop_turns(tmp_path: Path) -> None:
    built = build(config(tmp_path, TIMEOUT="1"), retire=lambda: None, heartbeat_dir=str(tmp_path), app=modern)
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

    built = build(config(tmp_path), retire=lambda: None, app=app)
    sent = call(built.app, {**http_scope(), "method": "CONNECT"})
    assert sent[0]["status"] == 400 and (b"connection", b"close") in sent[0]["headers"]
    assert seen == []
    call(built.app, {**http_scope(), "method": "GET"})
    assert seen == ["GET"]


def test_operations_layers_take_their_documented_places(tmp_path: Path) -> None:
    on = config(tmp_path, TIMEOUT="30", MAX_REQUESTS="10", OPS_PORT="9000", SHUTDOWN_DELAY="3")
    built = build(on, retire=lambda: None, heartbeat_dir=str(tmp_path), app=modern)
    assert built.layers[:2] == ("boot-mark", "watchdog")
    assert built.layers.index("shutdown-notice") == built.layers.index("request-limit") - 1
    # Without the master's directory there is nothing to mark or to look for.
    assert not {"boot-mark", "shutdown-notice"} & set(build(on, retire=lambda: None, app=modern).layers)


def test_responses_close_their_connection_once_the_shutdown_notice_is_there(tmp_path: Path) -> None:
    from launcher.master.policy import SHUTDOWN_NOTICE

    built = build(
        config(tmp_path, SHUTDOWN_DELAY="2"), retire=lambda: None, heartbeat_dir=str(tmp_path), app=echo_scope
    )

    async def scenario() -> list[list[Any]]:
        seen: list[list[Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen.append(list(message["headers"]))

        await built.app(http_scope(), receive, send)
        (tmp_path / SHUTDOWN_NOTICE).touch()
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


def test_a_worker_is_marked_booted_when_its_lifespan_startup_is_complete(tmp_path: Path) -> None:
    marked = {}
    for outcome in ("complete", "failed", "raise"):
        state = tmp_path / outcome
        state.mkdir()
        built = build(
            config(tmp_path, OPS_PORT="9000"),
            retire=lambda: None,
            heartbeat_dir=str(state),
            app=lifespan_app(outcome),
        )

        async def receive() -> dict[str, Any]:
            return {"type": "lifespan.startup"}

        async def send(message: dict[str, Any]) -> None:
            return None

        async def start(app: Any = built.app) -> None:
            with contextlib.suppress(RuntimeError):
                await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

        asyncio.run(start())
        marked[outcome] = (state / f"{os.getpid()}.booted").exists()
    # An app without lifespan support is served anyway, so it is booted; a failed startup is not.
    assert marked == {"complete": True, "failed": False, "raise": True}
