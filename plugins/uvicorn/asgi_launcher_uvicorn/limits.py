"""Request limits for Uvicorn's HTTP/1.1 protocols: what Gunicorn's own parser would do.

The Gunicorn backend serves the same Uvicorn protocols and uses this module too (its
distribution depends on this one). The head rules themselves are the core's
(``launcher.HeadLimits``, ``launcher.origin_form``); what is here is the part that lives inside
Uvicorn's parsers' callbacks.

Uvicorn has no request-line or header limits (its httptools parser takes a 4 MB header, or
200 000 of them) and keeps a connection that never finishes its request head for ever. Every
process of this backend serves one of these subclasses instead of the protocol ``WORKER_CLASS``
picks (httptools under ``uvloop``, h11 under ``asyncio``):

* a request line longer than ``LIMIT_REQUEST_LINE`` is answered 414, more header fields than
  ``LIMIT_REQUEST_FIELDS`` or one longer than ``LIMIT_REQUEST_FIELD_SIZE`` 431, and a head
  still incomplete past ``Config.head_budget`` bytes 431; the connection is then closed. A
  field is measured as ``Name: value`` (the value as the parser gives it), a line as
  ``METHOD target HTTP/1.1``;
* a connection that has not delivered a complete request head ``Config.head_timeout`` seconds
  after it opened, or after its previous response, is closed without an answer;
* under h11 also what httptools already does: a request with both Content-Length and
  Transfer-Encoding is answered 400 (Uvicorn's own answer to a request its parser refuses), an
  absolute-form target (``GET http://host/path``) reaches the app as its path, and the HTTP/2
  preface is refused with 400 (Uvicorn speaks no HTTP/2).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.config import Config as UvicornConfig
from uvicorn.importer import import_from_string
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol
from uvicorn.server import ServerState

from launcher import Config
from launcher.worker import HeadLimits, origin_form
from launcher.worker.h11_head import CheckedConnection

#: The refusals answered here with their own body (the core's reason phrases).
REASONS = {status: HeadLimits.reasons[status] for status in (414, 431)}


@dataclass(frozen=True)
class Limits:
    """The launcher's request limits, in the form the protocols check them (0: no limit)."""

    line: int
    fields: int
    field_size: int
    budget: int | None
    head_timeout: float
    head: HeadLimits  # the rules every backend holds a head to

    @classmethod
    def of(cls, config: Config) -> Limits:
        return cls(
            config.limit_request_line,
            config.limit_request_fields,
            config.limit_request_field_size,
            config.head_budget,
            float(config.head_timeout),
            HeadLimits.of(config),
        )


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that breaks a limit."""


class HeadDeadline:
    """The time a connection has to deliver its next complete request head."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds
        self.handle: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.BaseTransport) -> None:
        self.cancel()
        self.handle = self.loop.call_later(self.seconds, self._expire, transport)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self.handle = None
        if not transport.is_closing():
            transport.close()


class CheckedH11Protocol(H11Protocol):
    """Uvicorn's h11 protocol with the launcher's request limits (see the module docstring)."""

    limits: ClassVar[Limits]

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.deadline = HeadDeadline(self.loop, self.limits.head_timeout)
        self.conn = CheckedConnection(
            self.limits.head, self.limits.budget or sys.maxsize, head_started=self.deadline.cancel
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline.start(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.deadline.start(self.transport)

    def send_400_response(self, msg: str) -> None:
        status = self.conn.status if isinstance(self.conn, CheckedConnection) else 400
        if status not in REASONS:
            super().send_400_response(msg)
            return
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        for event in (
            h11.Response(status_code=status, headers=headers, reason=STATUS_PHRASES[status]),
            h11.Data(data=REASONS[status].encode()),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def _httptools_class() -> type[Any] | None:
    """``CheckedHttpToolsProtocol``, defined only where httptools is installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        return None

    class CheckedHttpToolsProtocol(HttpToolsProtocol):
        """Uvicorn's httptools protocol with the launcher's request limits.

        httptools hands the URL and each complete header to callbacks, which count; a head that
        is still incomplete is measured in ``data_received``, so no more than the head budget
        (plus one read) is ever buffered. A callback that finds a limit broken raises, which
        stops httptools; Uvicorn then answers the parser's error, here with 414 or 431.
        """

        limits: ClassVar[Limits]

        def __init__(
            self,
            config: UvicornConfig,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self.deadline = HeadDeadline(self.loop, self.limits.head_timeout)
            self.refusal: int | None = None
            self.in_head = False
            self.head_bytes = 0
            self.url_bytes = 0
            self.field_count = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.deadline.start(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            self.deadline.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.refusal is not None:
                return
            super().data_received(data)
            budget = self.limits.budget
            if self.in_head and budget is not None and self.refusal is None:
                self.head_bytes += len(data)
                if self.head_bytes > budget:
                    self.refusal = 431
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response(REASONS[431])

        def _refuse(self, status: int) -> None:
            self.refusal = status
            raise _Refused(REASONS[status])

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_head = True
            self.head_bytes = self.url_bytes = self.field_count = 0

        def on_url(self, url: bytes) -> None:
            self.url_bytes += len(url)
            line = self.limits.line
            if line and self.url_bytes + len(self.parser.get_method()) + 10 > line:
                self._refuse(414)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.field_count += 1
            limits = self.limits
            if limits.fields and self.field_count > limits.fields:
                self._refuse(431)
            if limits.field_size and len(name) + len(value) + 2 > limits.field_size:
                self._refuse(431)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.in_head = False
            self.deadline.cancel()
            if self.url[:1] != b"/" and b"://" in self.url:
                self.url = origin_form(self.url)  # (Uvicorn fails on one without a path)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timeout_keep_alive_task is not None:  # idle, waiting for the next request
                self.deadline.start(self.transport)

        def send_400_response(self, msg: str) -> None:
            if self.refusal is None:
                super().send_400_response(msg)
                return
            body = REASONS[self.refusal].encode()
            content = [STATUS_LINE[self.refusal]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend(
                [
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
            self.transport.write(b"".join(content))
            self.transport.close()

    return CheckedHttpToolsProtocol


_CHECKED_HTTPTOOLS = _httptools_class()


def checked_protocol(http: Any, config: Config) -> tuple[Any, bool]:
    """The protocol class to serve instead of ``http`` (Uvicorn's ``Config.http``) and whether it
    enforces the limits: a subclass of Uvicorn's httptools or h11 protocol, or of ``http`` itself
    when that subclasses one of them. Any other protocol is returned as it is, with False."""
    base = import_from_string(HTTP_PROTOCOLS.get(http, http)) if isinstance(http, str) else http
    checked: type[Any] | None = None
    if isinstance(base, type):
        if _CHECKED_HTTPTOOLS is not None and issubclass(base, _CHECKED_HTTPTOOLS.__mro__[1]):
            checked = _CHECKED_HTTPTOOLS
        elif issubclass(base, H11Protocol):
            checked = CheckedH11Protocol
    if checked is None:
        return http, False
    bases = (checked,) if base is checked.__mro__[1] else (checked, base)
    return type(f"Checked{base.__name__}", bases, {"limits": Limits.of(config), "__module__": __name__}), True
