"""A client's WebSocket close code, given to the app as the client sent it.

Hypercorn answers a client's close frame and then tells the app ``websocket.disconnect`` with
1006 (abnormal closure) whatever code the client sent: its stream ends in the connected state,
which it takes for a dropped connection. The other servers give the app the client's code (1000
for a normal close), as the ASGI spec asks. ``ClientCodeWSStream`` remembers the code of the
close frame it answers and gives that one.
"""

from __future__ import annotations

from typing import Any

import hypercorn.protocol.h2
import hypercorn.protocol.h11
from hypercorn.protocol.events import Event, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection


class ClientCodeWSStream(WSStream):  # type: ignore[misc]
    client_code: int | None = None

    async def _send_wsproto_event(self, event: Any) -> None:
        # The answer to the client's close frame carries the client's code.
        if isinstance(event, CloseConnection) and self.connection.state is ConnectionState.REMOTE_CLOSING:
            self.client_code = event.code
        await super()._send_wsproto_event(event)

    async def handle(self, event: Event) -> None:
        if (
            isinstance(event, StreamClosed)
            and self.client_code is not None
            and self.state not in (ASGIWebsocketState.HTTPCLOSED, ASGIWebsocketState.CLOSED)
        ):
            self.closed = True
            if self.app_put is not None:
                await self.app_put({"type": "websocket.disconnect", "code": self.client_code})
            return
        await super().handle(event)


def install() -> None:
    """Make this worker's HTTP/1.1 and HTTP/2 protocols open their WebSockets with the stream above."""
    hypercorn.protocol.h11.WSStream = ClientCodeWSStream  # type: ignore[attr-defined, misc]
    hypercorn.protocol.h2.WSStream = ClientCodeWSStream  # type: ignore[attr-defined, misc]
