"""Request limits, smuggling defences and cleartext HTTP/2 under Hypercorn.

What Hypercorn offers: ``h11_max_incomplete_size`` (16 KiB by default: a head still incomplete
past it is answered 431), ``h2_max_header_list_size`` and the other ``h2_*`` limits for
HTTP/2, and ``keep_alive_timeout``, whose timer runs from the moment a connection opens (or its
previous response ends) until a complete request head arrives: a slow head is closed after
``KEEP_ALIVE`` seconds already. What it lacks, and this module adds:

* ``LIMIT_REQUEST_LINE`` (414), ``LIMIT_REQUEST_FIELDS`` and ``LIMIT_REQUEST_FIELD_SIZE`` (431),
  checked on h11's request event, and the request line also while the head is incomplete;
  ``h11_max_incomplete_size`` becomes ``Config.head_budget``, what a head within the limits can
  take, unless ``HYPERCORN_CONF`` sets it;
* a request with both Content-Length and Transfer-Encoding is answered 400 (h11 would frame it
  as chunked and serve what follows the chunked body as a second request: smuggling);
* an absolute-form target (``GET http://host/path``) reaches the app as its path (Hypercorn
  would put the whole URL in ``path``);
* cleartext HTTP/2 only with ``HTTP2_CLEARTEXT``: otherwise ``Upgrade: h2c`` is not taken up
  (the request is served as HTTP/1.1) and the prior-knowledge preface is answered 400. HTTP/2
  negotiated by TLS (ALPN) is untouched;
* ``KEEP_ALIVE=0``: Hypercorn's timer would close every connection at once, before its request
  is read; here a connection then serves one request, and its head gets the default 5 s.

A refused request is answered by Hypercorn itself (its answer to an h11 protocol error: the
status, ``content-length: 0``, ``connection: close``) and the connection is closed. HTTP/2
requests are held to Hypercorn's ``h2_*`` limits only.

``apply`` runs in the supervisor (on the Hypercorn config every worker gets), ``install`` in
each worker, before it serves.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

import h11
import hypercorn.protocol
from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol.h11 import H11Protocol

from launcher import Config, HeadLimits, origin_form

#: The refusals answered here with their own body (the core's reason phrases).
REASONS = {status: HeadLimits.reasons[status] for status in (414, 431)}


def apply(hc: HypercornConfig, config: Config) -> None:
    """Hypercorn's own settings for the limits (what ``HYPERCORN_CONF`` sets wins)."""
    chosen = config.server_settings
    if "h11_max_incomplete_size" not in chosen:
        hc.h11_max_incomplete_size = config.head_budget or sys.maxsize
    if not hc.keep_alive_timeout:
        hc.keep_alive_timeout = float(config.head_timeout)
        if "keep_alive_max_requests" not in chosen:
            hc.keep_alive_max_requests = 1


class CheckedConnection(h11.Connection):
    """h11's server side, holding each request head to the limits.

    A head that breaks one raises ``h11.RemoteProtocolError`` from ``next_event``, with the
    status to answer as its hint, exactly as h11's own errors do: Hypercorn answers it.
    """

    def __init__(self, config: Config, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self.line = config.limit_request_line
        self.fields = config.limit_request_fields
        self.head = HeadLimits.of(config)  # the rules every backend holds a head to
        self.preface_allowed = config.http2_cleartext
        self._unchecked = 0  # bytes received since the request line was last looked at
        self._line_ok = False

    def receive_data(self, data: bytes) -> None:
        super().receive_data(data)
        self._unchecked += len(data)

    def next_event(self) -> Any:
        line = self.line  # checked first: a long line also makes h11 find the head too large
        if line and not self._line_ok and self._unchecked > line + 1 and self.their_state is h11.IDLE:
            self._check_first_line(line)
        event = super().next_event()
        if type(event) is h11.Request:
            self._line_ok = False
            self._unchecked = 0
            event = self._checked(event)
        return event

    def _check_first_line(self, line: int) -> None:
        """Refuse a head whose request line is already too long, complete or not."""
        buffered = self.trailing_data[0]  # their_state is IDLE: it starts with the new head
        if len(buffered) <= line + 1:
            self._unchecked = len(buffered)
            return
        if buffered.find(b"\n", 0, line + 2) < 0:
            raise h11.RemoteProtocolError(REASONS[414], error_status_hint=414)
        self._line_ok = True

    def _checked(self, event: h11.Request) -> h11.Request:
        target = event.target
        status = self.head.refusal(len(event.method), len(target), len(event.http_version), event.headers)
        if status:
            raise h11.RemoteProtocolError(HeadLimits.reasons[status], error_status_hint=status)
        if event.method == b"PRI" and target == b"*" and not self.preface_allowed:
            raise h11.RemoteProtocolError("HTTP2_CLEARTEXT is off", error_status_hint=400)
        if target[:1] != b"/" and b"://" in target:
            return h11.Request(
                method=event.method,
                target=origin_form(target),
                headers=event.headers.raw_items(),
                http_version=event.http_version,
            )
        return event


class CheckedH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol with the launcher's request checks (see the module docstring)."""

    launcher: ClassVar[Config]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection = CheckedConnection(self.launcher, self.config.h11_max_incomplete_size)

    async def _check_protocol(self, event: h11.Request) -> None:
        # Where Hypercorn switches to HTTP/2 (h2c upgrade, prior-knowledge preface).
        if self.launcher.http2_cleartext:
            await super()._check_protocol(event)


def install(config: Config) -> bool:
    """Serve HTTP/1.1 with the checks in this worker; True: the pipeline need not check requests.

    Hypercorn's ``ProtocolWrapper`` makes each connection's ``H11Protocol`` from the name in its
    module, so that name is pointed at the subclass (under asyncio and trio alike).
    """
    checked = type("CheckedH11Protocol", (CheckedH11Protocol,), {"launcher": config})
    hypercorn.protocol.H11Protocol = checked  # type: ignore[attr-defined, misc, assignment]
    return True
