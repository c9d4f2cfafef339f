"""An app in the legacy ASGI 2 ("double callable") form: ``app`` is a class, instantiated with
the scope, whose instances are then awaited with ``receive`` and ``send``.

It supports lifespan, and ``/`` (any HTTP path) answers JSON saying whether lifespan startup ran
in this process, so a test can tell a server that served it without running startup.
"""

import json
from typing import Any

#: Set by lifespan startup in the worker process, reported by every HTTP answer.
STATE = {"lifespan_startup": False}


class App:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[-1]
                if kind == "startup":
                    STATE["lifespan_startup"] = True
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if self.scope["type"] != "http":
            return
        body = json.dumps({"message": "Hello from asgi2", **STATE}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


app = App
