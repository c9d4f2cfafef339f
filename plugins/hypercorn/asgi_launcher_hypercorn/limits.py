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
  is read; here a connection then serves one request, and its head gets the default 5 s;
* a connection Hypercorn closes instead of serving its next request (the app raised mid-response,
  or shutdown) stops reading: with a pipelined request waiting it would otherwise stay open, and
  a SIGTERM would wait the whole GRACEFUL_TIMEOUT for it.

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

from launcher import Config
from launcher.worker import HeadLimits
from launcher.worker.h11_head import CheckedConnection


def apply(hc: HypercornConfig, config: Config) -> None:
    """Hypercorn's own settings for the limits (what ``HYPERCORN_CONF`` sets wins)."""
    chosen = config.server_settings
    if "h11_max_incomplete_size" not in chosen:
        hc.h11_max_incomplete_size = config.head_budget or sys.maxsize
    if not hc.keep_alive_timeout:
        hc.keep_alive_timeout = float(config.head_timeout)
        if "keep_alive_max_requests" not in chosen:
            hc.keep_alive_max_requests = 1


class CheckedH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol with the launcher's request checks (see the module docstring)."""

    launcher: ClassVar[Config]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection = CheckedConnection(
            HeadLimits.of(self.launcher),
            self.config.h11_max_incomplete_size,
            preface_allowed=self.launcher.http2_cleartext,
        )

    async def _maybe_recycle(self) -> None:
        # Where Hypercorn closes the connection instead of serving its next request (a response
        # the app left incomplete by raising, or shutdown), its reading loop may be paused on a
        # pipelined request: it would wait there for ever, and a SIGTERM for GRACEFUL_TIMEOUT.
        connection = self.connection
        if isinstance(connection, CheckedConnection) and (
            self.context.terminated.is_set()
            or connection.our_state is not h11.DONE
            or connection.their_state is not h11.DONE
        ):
            connection.ended = True
        await super()._maybe_recycle()

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
