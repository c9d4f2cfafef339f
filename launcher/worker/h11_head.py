"""The request-head rules inside h11, for plugins whose servers parse HTTP/1.1 with it.

Hypercorn and Uvicorn's h11 protocol read request heads through ``h11.Connection``; a subclass
that holds each head to ``HeadLimits`` can refuse it before the app, or a body, is reached, with
h11's own error (the server answers it). Imported only by such plugins: h11 comes with their
servers, not with the launcher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h11

from launcher.worker.request_head import HeadLimits, origin_form

__all__ = ["CheckedConnection"]


class CheckedConnection(h11.Connection):
    """h11's server side, holding each request head to ``head``.

    A head that breaks a rule raises ``h11.RemoteProtocolError`` from ``next_event``, as h11's own
    errors do, with the status to answer as its hint (and in ``status``). The HTTP/2 preface is
    refused unless ``preface_allowed``; an absolute-form target reaches the app as its path.
    ``head_started`` is called when a request head is complete. Once ``ended`` (the server is
    closing the connection), ``next_event`` says ``ConnectionClosed``: a reading loop paused on a
    pipelined request that will never be served ends instead of waiting for ever.
    """

    def __init__(
        self,
        head: HeadLimits,
        max_incomplete_event_size: int,
        *,
        preface_allowed: bool = False,
        head_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self.head = head
        self.preface_allowed = preface_allowed
        self.head_started = head_started
        self.status = 400
        self.ended = False
        self._unchecked = 0  # bytes received since the request line was last looked at
        self._line_ok = False

    def receive_data(self, data: bytes) -> None:
        super().receive_data(data)
        self._unchecked += len(data)

    def next_event(self) -> Any:
        if self.ended:
            return h11.ConnectionClosed()
        line = self.head.line  # checked first: a long line also makes h11 find the head too large
        if not self._line_ok and self._unchecked > line + 1 and self.their_state is h11.IDLE:
            self._check_first_line(line)
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.status = exc.error_status_hint
            raise
        if type(event) is h11.Request:
            self._line_ok = False
            self._unchecked = 0
            event = self._checked(event)
            if self.head_started is not None:
                self.head_started()
        return event

    def _refuse(self, status: int, reason: str) -> h11.RemoteProtocolError:
        self.status = status
        return h11.RemoteProtocolError(reason, error_status_hint=status)

    def _check_first_line(self, line: int) -> None:
        """Refuse a head whose request line is already too long, complete or not."""
        buffered = self.trailing_data[0]  # their_state is IDLE: it starts with the new head
        if len(buffered) <= line + 1:
            self._unchecked = len(buffered)
            return
        if buffered.find(b"\n", 0, line + 2) < 0:
            raise self._refuse(414, HeadLimits.reasons[414])
        self._line_ok = True

    def _checked(self, event: h11.Request) -> h11.Request:
        target = event.target
        status = self.head.refusal(len(event.method), len(target), len(event.http_version), event.headers)
        if status:
            raise self._refuse(status, HeadLimits.reasons[status])
        if event.method == b"PRI" and target == b"*" and not self.preface_allowed:
            raise self._refuse(400, "HTTP/2 is not served here: HTTP2_CLEARTEXT is off")
        if target[:1] != b"/" and b"://" in target:
            return h11.Request(
                method=event.method,
                target=origin_form(target),
                headers=event.headers.raw_items(),
                http_version=event.http_version,
            )
        return event
