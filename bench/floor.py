"""The demo app behind the least a layer can do to see each response's status and size.

``bench/run.py --floor`` serves this with the launcher's access log off, against the demo app
itself (also with it off): the ratio is what any pipeline layer that observes responses costs
before it records or writes anything, the floor under the access log's and the metrics' costs.
It is the shape both layers use: an ``async`` frame around the app and a plain function in
front of ``send`` that looks at each message and returns the server's own awaitable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from main import app as demo

Message = MutableMapping[str, Any]


async def app(
    scope: MutableMapping[str, Any], receive: Any, send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        await demo(scope, receive, send)
        return
    status = 0
    size = 0

    def observing_send(message: Message) -> Awaitable[None]:
        nonlocal status, size
        if message["type"] == "http.response.body":
            size += len(message.get("body", b""))
        elif message["type"] == "http.response.start":
            status = message["status"]
        return send(message)

    await demo(scope, receive, observing_send)
