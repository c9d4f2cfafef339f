"""``ACCESS_LOG_FORMAT``: Gunicorn's access-log atoms (and the launcher's two for tracing), and
the rule a layout is held to.

The settings table checks a layout with ``parse_format``; the access log
(``launcher.observability.access_log``) lays its lines out with the same atoms.
"""

from __future__ import annotations

import re

from launcher.errors import ConfigError

#: Gunicorn's atoms: name -> what it is (for the docs and the error message).
ATOMS: dict[str, str] = {
    "h": "client address (after FORWARDED_ALLOW_IPS)",
    "l": "'-'",
    "u": "user name ('-')",
    "t": "time, [10/Oct/2000:13:55:36 -0700]",
    "r": 'request line, "GET /path?query HTTP/1.1"',
    "m": "request method",
    "U": "URL path, without query",
    "q": "query string",
    "H": "protocol, HTTP/1.1",
    "s": "status",
    "B": "response body bytes",
    "b": "response body bytes, or '-' for none",
    "f": "referer",
    "a": "user agent",
    "T": "duration, whole seconds",
    "M": "duration, milliseconds",
    "D": "duration, microseconds",
    "L": "duration, decimal seconds",
    "p": "worker pid",
    "trace_id": "the request's trace id, with tracing on ('-' otherwise)",
    "span_id": "the request's span id, with tracing on ('-' otherwise)",
    "{header}i": "a request header",
    "{header}o": "a response header",
    "{variable}e": "an environment variable",
}

ATOM = re.compile(r"%\((?P<atom>\{[^}]+\}[ioe]|[A-Za-z_]+)\)s")

#: The combined log format that Gunicorn and nginx write, plus the duration, the worker's pid
#: and the ``X-Request-ID``.
DEFAULT_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms pid=%(p)s rid=%({x-request-id}i)s'
)


def _known(atom: str) -> bool:
    return atom in ATOMS or (atom.startswith("{") and atom[-1] in "ioe")


def parse_format(raw: str) -> str:
    """``ACCESS_LOG_FORMAT``: every ``%(...)s`` must be one of Gunicorn's atoms."""
    value = raw.strip()
    unknown = [m["atom"] for m in ATOM.finditer(value) if not _known(m["atom"])]
    if unknown:
        raise ConfigError.bad_value(
            "ACCESS_LOG_FORMAT",
            value,
            f"Gunicorn's access-log atoms ({', '.join('%(' + a + ')s' for a in ATOMS)}); unknown: "
            + ", ".join(f"%({a})s" for a in unknown),
        )
    if not ATOM.search(value):
        raise ConfigError.bad_value("ACCESS_LOG_FORMAT", value, "a layout with at least one %(atom)s")
    return value
