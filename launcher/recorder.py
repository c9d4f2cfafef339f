"""What a response was, seen on its way to the server: the send the access log and metrics give the app.

A layer that must know a response's status and size (the access log, the metrics) puts a
``Recorder`` between the app and the server's ``send``: each message is passed on unchanged, the
server's own awaitable returned (no coroutine frame), and what it says about the response kept:

* ``status``: ``http.response.start``'s status; 101 once a WebSocket is accepted, 403 for one
  closed before it was (what the server answers); 0 before either;
* ``size``: body bytes (``http.response.body``), or WebSocket message bytes (``websocket.send``,
  text counted as UTF-8);
* ``headers``: the response's headers (``()`` before its start).

``Recorder`` is the C type of ``launcher._speedups`` where it was built: measured in-process, a
Python closure doing the same cost more than everything else the access log does a request.
``PyRecorder`` is the same in Python, used without the extension; a unit test holds the two to
the same results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


class PyRecorder:
    """``Recorder`` in Python (see the module docstring)."""

    __slots__ = ("headers", "send", "size", "status")

    def __init__(self, send: Send, /) -> None:
        self.send = send
        self.status: Any = 0
        self.size = 0
        self.headers: Iterable[tuple[bytes, bytes]] = ()

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = message.get("headers", ())
        elif kind == "http.response.body":
            self.size += len(message.get("body") or b"")
        elif kind == "websocket.accept":
            self.status = 101
        elif kind == "websocket.send":
            self.size += len(message.get("bytes") or b"") + len((message.get("text") or "").encode())
        elif kind == "websocket.close" and not self.status:
            self.status = 403
        return self.send(message)


Recorder: type[PyRecorder]
try:
    from launcher._speedups import Recorder  # type: ignore[no-redef]
except ImportError:  # pragma: no cover - installed without a compiler
    Recorder = PyRecorder
