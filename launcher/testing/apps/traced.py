"""The kit's app for the tracing checks, in plain ASGI with the OpenTelemetry API only.

Every request and WebSocket session starts a span of its own, ``kit child``, as a user's manual
span would (its parent must be the launcher's server span). ``/items/<id>`` leaves the route
template ``/items/{item_id}`` in the scope as a router does (Litestar's ``path_template``);
``/slow?seconds=N`` answers after N seconds, first writing ``slow request started`` to stderr;
``/raise`` raises ``RuntimeError: traced app raised``; ``/log`` logs ``traced app log line``
through ``logging``; ``/pid`` and every other path answer the worker's pid; ``/grow?mb=N`` makes
the worker N MiB bigger (``MAX_WORKER_MEMORY``); ``/ws`` echoes WebSocket messages.
"""

import asyncio
import logging
import os
import sys
from typing import Any

from opentelemetry import trace

tracer = trace.get_tracer("kit.traced")
GROWN: list[bytes] = []


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"].split(".")[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    with tracer.start_as_current_span("kit child"):
        if scope["type"] == "websocket":
            await websocket(scope, receive, send)
            return
        path, query = scope["path"], scope.get("query_string", b"").decode()
        if path.startswith("/items/"):
            scope["path_template"] = "/items/{item_id}"
        elif path == "/slow":
            print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
            await asyncio.sleep(float(query.partition("seconds=")[2] or 1))
        elif path == "/raise":
            raise RuntimeError("traced app raised")
        elif path == "/log":
            logging.getLogger("traced").warning("traced app log line")
        elif path == "/grow":
            GROWN.append(b"\x01" * (int(query.partition("mb=")[2] or 1) * 1024 * 1024))
        body = str(os.getpid()).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": body})
