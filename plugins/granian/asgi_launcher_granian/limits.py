"""Request limits under Granian: what its HTTP/1 settings can do, and what they cannot.

Granian's HTTP/1 core (hyper) offers ``HTTP1Settings.max_buffer_size`` (a request head still
incomplete when its read buffer is full is answered 431; 408 KiB by default, and only checked
between reads, so a head may pass it by up to one read) and ``header_read_timeout`` (the time a
connection has to deliver a complete head, from its opening or the end of its previous
response; 30 s by default). It also caps, unchangeably (Granian exposes no setting for them),
a head at 100 header fields (431) and a request target at 65,534 bytes (414). It has no limit
on the request line or on one field, and it frames a request that carries both Content-Length
and Transfer-Encoding by the chunked encoding, drops its Content-Length and closes the
connection after answering: no smuggling, but the app answers, not a 400.

So here: ``max_buffer_size`` is ``Config.head_budget`` (at least ``MIN_BUFFER``, 72 KiB) and
``header_read_timeout`` is ``Config.head_timeout``; the line and field limits are checked by the
launcher's pipeline (its request-checks layer, on the complete head); values Granian's own caps
would silently override are refused before anything starts (``check_limits``, in the
package). What cannot be had: a request line longer than that buffer (827 KB with the default
limits) is answered 431, not 414, because Granian finds the buffer full before the line ends.

Cleartext HTTP/2 is off unless ``HTTP2_CLEARTEXT`` (Granian's ``http`` mode 1, not auto). With it on, Granian's auto mode reads
the first bytes of each connection to tell HTTP/2 from HTTP/1 before hyper's header timer runs:
a connection that sends nothing at all is then never closed. (Granian does not take up
``Upgrade: h2c``; with ``HTTP2_CLEARTEXT`` it serves HTTP/2 by prior knowledge only.)
"""

from __future__ import annotations

from typing import Any

from asgi_launcher_granian import MAX_LINE
from launcher import Config

#: The smallest ``max_buffer_size`` given: a head this big is read whole, so a request line up
#: to MAX_LINE and a little more is answered 414 (by the pipeline, or Granian's target cap)
#: rather than 431 for a full buffer. (Granian's own minimum is 8 KiB.)
MIN_BUFFER = MAX_LINE + 8192


def http1_options(config: Config) -> dict[str, Any]:
    """Granian's ``HTTP1Settings`` for ``config`` (``http`` is HTTPModes.http1 unless HTTP2_CLEARTEXT)."""
    return {
        "keep_alive": config.keep_alive > 0,
        "header_read_timeout": config.head_timeout * 1000,  # milliseconds
        "max_buffer_size": max(MIN_BUFFER, config.head_budget or 0),
    }
