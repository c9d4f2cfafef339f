"""An app whose variable is ``api``, not ``app``: for VARIABLE_NAME and APP_MODULE=module:api.

There is deliberately no ``app`` here, so a launcher that ignored the setting cannot pass.
"""

import json
from typing import Any


async def api(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].split(".")[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    body = json.dumps({"message": "Hello from api"}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
