"""The kit's hello app, in plain ASGI (no framework, so the kit needs nothing installed).

``/`` says hello; ``/slow?seconds=N`` answers after N seconds and first writes
``slow request started`` to stderr, so a test can wait for the request to be in flight
instead of sleeping; ``/block?seconds=N`` blocks the worker's event loop with ``time.sleep(N)``
(a stuck worker, for ``TIMEOUT``) after writing ``blocking in <pid>`` to stderr; ``/pid``
names the worker process; ``/log?x`` logs ``hello app log line x`` at INFO through the
``logging`` logger ``hello`` with the extra field ``kit_extra`` (``kit-7``); ``/raise?x`` raises
``RuntimeError: hello app raised x``; ``/grow?mb=N`` makes the worker N MiB bigger (kept in a global list,
for ``MAX_WORKER_MEMORY``) and answers its pid and how much it has grown; ``/shrink`` lets it all go; ``/headers`` echoes
the client address, scheme and HTTP version the server settled on (what proxy-header handling
changes); any path ending in ``/scope`` echoes the scope's ``root_path`` and ``path`` (with
``ROOT_PATH`` set, the path the app sees starts with it). It
supports lifespan, and WebSockets on ``/ws``: accepted, each text or bytes message echoed back
until the client disconnects; ``/ws-close`` is accepted and then echoes the close code the
client sent, printing ``client closed with CODE`` to stderr.

Apps that break the ASGI rules (what the pipeline must turn into the 500 the client gets):
``/status?N`` answers status ``N`` (``/status?x``: the string ``"x"``); ``/bad-header?KIND``
sends a header whose value holds a NUL (``nul``), a CR LF (``crlf``), or whose name holds a
space (``name``), or a ``str`` value outside Latin-1 (``unicode``); ``/silent`` returns without
sending anything; ``/raise-after?x`` sends a complete response, then raises (as FastAPI and
Starlette re-raise after their own 500); ``/raise-midway?x`` sends the head and half the body,
then raises.
"""

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

#: What ``/grow`` has allocated in this worker, kept alive for as long as it runs.
GROWN: list[bytes] = []


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "scheme?":
            await send({"type": "websocket.send", "text": scope["scheme"]})
        elif message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        elif message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def websocket_close(receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            print(f"client closed with {message.get('code')}", file=sys.stderr, flush=True)
            return


async def status(query: str, send: Any) -> None:
    code: Any = int(query) if query.lstrip("-").isdigit() else query
    await send({"type": "http.response.start", "status": code, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"no"})


BAD_HEADERS: dict[str, Any] = {
    "nul": (b"x-bad", b"a\x00b"),
    "crlf": (b"x-bad", b"a\r\nx-injected: 1"),
    "name": (b"x bad", b"a"),
    "unicode": ("x-bad", "\u2603"),
}


async def bad_header(query: str, send: Any) -> None:
    headers = [(b"content-length", b"2"), BAD_HEADERS[query]]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"no"})


async def silent(query: str, send: Any) -> None:
    return


async def raise_after(query: str, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"done"})
    raise RuntimeError(f"hello app raised after its response {query}")


async def raise_midway(query: str, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})
    raise RuntimeError(f"hello app raised midway {query}")


BROKEN = {
    "/status": status,
    "/bad-header": bad_header,
    "/silent": silent,
    "/raise-after": raise_after,
    "/raise-midway": raise_midway,
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].split(".")[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "websocket":
        if scope["path"] == "/ws-close":
            await websocket_close(receive, send)
        else:
            await websocket(scope, receive, send)
        return
    path, query = scope["path"], scope.get("query_string", b"").decode()
    if path in BROKEN:
        await BROKEN[path](query, send)
        return
    if path == "/slow":
        print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.sleep(float(query.partition("seconds=")[2] or 1))
        body = b"slow done"
    elif path == "/block":
        print(f"blocking in {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(float(query.partition("seconds=")[2] or 1))  # the event loop stops turning
        body = b"block done"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/log":  # one record through the app's own logging, with an extra field
        logging.getLogger("hello").info("hello app log line %s", query, extra={"kit_extra": "kit-7"})
        body = str(os.getpid()).encode()
    elif path == "/raise":  # the server answers 500 and logs the traceback
        raise RuntimeError(f"hello app raised {query}")
    elif path == "/grow":
        mb = int(query.partition("mb=")[2] or 1)
        GROWN.append(b"\x01" * (mb * 1024 * 1024))  # written, so resident (not lazily zero pages)
        body = json.dumps({"pid": os.getpid(), "grown_mb": sum(map(len, GROWN)) // 2**20}).encode()
    elif path == "/shrink":
        GROWN.clear()
        body = str(os.getpid()).encode()
    elif path == "/headers":
        client = scope.get("client") or ["", 0]
        body = json.dumps(
            {"client": client[0], "scheme": scope["scheme"], "http_version": scope.get("http_version")}
        ).encode()
    elif path.endswith("/scope"):
        body = json.dumps({"root_path": scope.get("root_path", ""), "path": path}).encode()
    else:
        body = json.dumps({"message": "Hello World!"}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
