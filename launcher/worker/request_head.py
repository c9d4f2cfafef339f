"""The rules a request head is held to, once, for every place that checks it.

``LIMIT_REQUEST_LINE``, ``LIMIT_REQUEST_FIELDS`` and ``LIMIT_REQUEST_FIELD_SIZE`` (Gunicorn's
names; 0 = no limit), and Content-Length together with Transfer-Encoding (a request smuggling
vector). The worker pipeline applies them for servers whose parser does not
(``launcher.pipeline.RequestChecks``); the Gunicorn and Hypercorn plugins apply them inside
their h11 connections, where a refusal can still close the connection before a body is read.
The request line is measured as ``METHOD target HTTP/x.y``, a field as ``Name: value``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from launcher.config.model import Config

#: The reason phrase of each refusal.
REASONS: dict[int, str] = {
    400: "Content-Length with Transfer-Encoding",
    414: "Request line too long",
    431: "Request header fields too large",
}

_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class HeadLimits:
    """The limits in the form they are checked (no limit is a huge bound)."""

    #: The reason phrase of each refusal (``REASONS``).
    reasons: ClassVar[dict[int, str]] = REASONS

    line: int
    fields: int
    room: int  # bytes for a field's name and value (the size less ": ")

    @classmethod
    def of(cls, config: Config) -> HeadLimits:
        size = config.limit_request_field_size
        return cls(
            config.limit_request_line or _UNLIMITED,
            config.limit_request_fields or _UNLIMITED,
            size - 2 if size else _UNLIMITED,
        )

    def refusal(self, method: int, target: int, version: int, headers: Iterable[tuple[bytes, bytes]]) -> int:
        """The status a head earns (0: none), from the lengths of its request line's parts and its
        (lower-case) header fields. About 1 us for 8 fields."""
        if method + target + version + 7 > self.line:  # "M T HTTP/V" is 7 bytes more
            return 414
        fields = headers if isinstance(headers, list | tuple) else list(headers)
        if len(fields) > self.fields:
            return 431
        room = self.room
        length = encoding = False
        for name, value in fields:
            if len(name) + len(value) > room:
                return 431
            if name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                encoding = True
        return 400 if length and encoding else 0


def origin_form(target: bytes) -> bytes:
    """The path and query of an absolute-form target (``http://host/p?q`` is ``/p?q``)."""
    rest = target.partition(b"://")[2]
    cuts = [i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0]
    path = rest[min(cuts) :] if cuts else b""
    return path if path.startswith(b"/") else b"/" + path
