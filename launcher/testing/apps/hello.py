"""The kit's hello app, in plain ASGI (no framework, so the kit needs nothing installed).

``/`` says hello; ``/slow?seconds=N`` answers after N seconds and first writes
``slow request started`` to stderr, so a test can wait for the request to be in flight
instead of sleeping; ``/pid`` names the worker process; ``/headers`` echoes the client address
and scheme the server settled on (what proxy-header handling changes). It supports lifespan.
"""

import asyncio
import json
import os
import sys
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].split(".")[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    path, query = scope["path"], scope.get("query_string", b"").decode()
    if path == "/slow":
        print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
        await asyncio.sleep(float(query.partition("seconds=")[2] or 1))
        body = b"slow done"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/headers":
        client = scope.get("client") or ["", 0]
        body = json.dumps({"client": client[0], "scheme": scope["scheme"]}).encode()
    else:
        body = json.dumps({"message": "Hello World!"}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
