"""The env contract, declared once.

Each ``Setting`` names one environment variable with its type, default, meaning, the
command-line option that sets the same value, and the group it is listed under. Parsing
(``launcher.config.resolve``), the command line and its ``--help`` (``launcher.cli``), the
documentation's table (``launcher.docs``) and ``asgi-launcher config`` are all derived from this
table, so a variable cannot be documented one way and parsed another, nor an option mean
something else than its variable.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from launcher.config import tracing
from launcher.config.access_format import parse_format
from launcher.config.addresses import repeated
from launcher.errors import BadPart, ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Kind:
    """How a raw string becomes a value; ``expected`` finishes the error message.

    ``empty_is_value``: an empty (or blank) value is a value of its own (the log targets: off).
    For every other kind an empty value counts as not set (see ``launcher.config.effective_env``).
    """

    expected: str
    convert: Callable[[str], Any]
    empty_is_value: bool = False
    #: The value may hold credentials: an error message shows ``***`` instead.
    secret: bool = False
    #: How an error message shows the value, when only part of it is a secret (a URL's password).
    shown: Callable[[str], str] | None = None

    def parse(self, variable: str, raw: str) -> Any:
        shown = "***" if self.secret else (self.shown(raw) if self.shown else raw)
        try:
            return self.convert(raw)
        except BadPart as exc:
            raise ConfigError.bad_value(variable, shown, f"{self.expected} ({exc})") from None
        except (ValueError, TypeError):
            raise ConfigError.bad_value(variable, shown, self.expected) from None


#: Numbers as a person writes them: ASCII digits only. Python's ``int`` and ``float`` also take
#: ``2_0`` (20), fullwidth and other Unicode digits (fullwidth 2 is 2), which no user meant.
_WHOLE = re.compile(r"-?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)

#: The most worker processes a launch may ask for (``WEB_CONCURRENCY``, or what the formula
#: computes). Each is an interpreter with the app loaded, tens of MiB: past this, a count is a
#: typo (``99999999999999999999``), not a machine, and forking it would take the host down
#: before anything could be stopped.
MOST_WORKERS = 1024


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def convert(raw: str) -> int:
        text = raw.strip()
        if not _WHOLE.fullmatch(text):
            raise ValueError(raw)
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(raw)
        return value

    return convert


def _positive_float(raw: str) -> float:
    text = raw.strip()
    if not _DECIMAL.fullmatch(text):
        raise ValueError(raw)
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(raw)
    return value


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError(raw)
    return raw.strip()


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(raw)
        return value

    return convert


def _host(raw: str) -> str:
    value = raw.strip().strip("[]")
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise ValueError(raw)
    if ":" in value:
        ipaddress.IPv6Address(value)
    return value


def _binds(raw: str) -> tuple[str, ...]:
    parts = [p for p in re.split(r"[,\s]+", raw.strip()) if p]
    if not parts:
        raise ValueError(raw)
    problem = repeated(parts)  # ValueError: not an address
    if problem:
        raise BadPart(problem)
    return tuple(parts)


def _app_module(raw: str) -> str:
    value = raw.strip()
    module, sep, attr = value.partition(":")
    ident = r"[A-Za-z_]\w*"
    if (
        not sep
        or not re.fullmatch(rf"{ident}(\.{ident})*", module)
        or not re.fullmatch(rf"{ident}(\.{ident})*", attr)
    ):
        raise ValueError(raw)
    return value


def _dotted(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", value):
        raise ValueError(raw)
    return value


def _log_target(raw: str) -> str | None:
    """``-`` is the standard stream, empty switches the log off, anything else is a file."""
    value = raw.strip()
    return value or None


def _proxies(raw: str) -> str:
    """``*``, or IP addresses and CIDR networks (host bits allowed), as ``a,b,c`` without spaces."""
    parts = [p for p in re.split(r"[,\s]+", raw.strip()) if p]
    if not parts:
        raise ValueError(raw)
    if "*" in parts:
        return "*"
    normalized: list[str] = []
    for part in parts:
        try:
            value = str(
                ipaddress.ip_network(part, strict=False) if "/" in part else ipaddress.ip_address(part)
            )
        except ValueError:
            raise BadPart(f"{part!r} is not an IP address or network") from None
        if value not in normalized:
            normalized.append(value)
    return ",".join(normalized)


def _root_path(raw: str) -> str:
    """A URL path prefix such as ``/api``; one trailing slash is dropped, ``/`` alone means none."""
    value = raw.strip()
    if value.endswith("/"):
        value = value[:-1]
    if not value:
        return ""
    if not value.startswith("/") or value.endswith("/") or any(c.isspace() or c in "?#" for c in value):
        raise ValueError(raw)
    return value


def _path(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError(raw)
    return value


def _mib_limit(raw: str) -> int | None:
    """A size in MiB; 0 means off, like leaving it unset."""
    return _int(0)(raw) or None


_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def _bool(raw: str) -> bool:
    value = _BOOLEANS.get(raw.strip().lower())
    if value is None:
        raise ValueError(raw)
    return value


def _tls_version(raw: str) -> str:
    """``TLSv1.2`` or ``TLSv1.3`` (``ssl.TLSVersion``'s names), also written ``1.2`` or ``tls1.3``."""
    value = raw.strip().lower().removeprefix("tlsv").removeprefix("tls")
    if value not in ("1.2", "1.3"):
        raise ValueError(raw)
    return f"TLSv{value}"


def _dirs(raw: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not parts:
        raise ValueError(raw)
    return parts


def _globs(raw: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not parts or any(p.startswith("/") for p in parts):
        raise BadPart("patterns are relative to the watched directories")
    return parts


INT_SECONDS = Kind("a whole number of seconds, 0 or more", _int(0))
STRING = Kind("a non-empty string", _nonempty)

KINDS: dict[str, Kind] = {
    "backend": Kind("the name of an installed backend plugin (see: asgi-launcher backends)", _nonempty),
    "path": Kind("a path", _path),
    "module": Kind("a dotted Python module name such as app.main", _dotted),
    "identifier": Kind("a Python attribute name such as app", _dotted),
    "app": Kind("MODULE:VARIABLE, such as app.main:app", _app_module),
    "workers_per_core": Kind("a number greater than 0, such as 1 or 0.5", _positive_float),
    "count": Kind("a whole number, 1 or more", _int(1)),
    "workers": Kind(f"a whole number from 1 to {MOST_WORKERS}", _int(1, MOST_WORKERS)),
    "count0": Kind("a whole number, 0 or more", _int(0)),
    "mib0": Kind("a whole number of MiB, 0 (off) or more", _int(0)),
    "mib_limit": Kind("a whole number of MiB, 1 or more (0 or unset: off)", _mib_limit),
    "host": Kind("an IP address or host name, such as 0.0.0.0 or ::", _host),
    "port": Kind("a port number from 1 to 65535", _int(1, 65535)),
    "bind": Kind("HOST:PORT, [IPv6]:PORT or unix:/path, several separated by commas", _binds),
    "log_level": Kind("one of " + ", ".join(LOG_LEVELS), _choice(LOG_LEVELS)),
    "seconds": INT_SECONDS,
    "log_target": Kind("- (the console), a file path, or empty to turn it off", _log_target, True),
    "access_log_format": Kind("Gunicorn's access-log atoms", parse_format),
    "log_format": Kind("text or json", _choice(("text", "json"))),
    "proxies": Kind(
        "IP addresses or CIDR networks such as 127.0.0.1, ::1 or 10.0.0.0/8, separated by commas, "
        "or * for every peer",
        _proxies,
    ),
    "root_path": Kind("a URL path starting with /, such as /api, without spaces, ? or #", _root_path),
    "string": STRING,
    "byte_limit": Kind("a whole number of bytes, 0 (no limit) or more", _int(0)),
    "count_limit": Kind("a whole number, 0 (no limit) or more", _int(0)),
    "bool": Kind("true or false (or 1/0, yes/no, on/off)", _bool),
    "ops_port": Kind("a port number from 1 to 65535, or empty (off)", _int(1, 65535)),
    "dirs": Kind("directories separated by commas", _dirs),
    "secret": Kind("a password (kept as written, never shown)", str),
    "tls_version": Kind("TLSv1.2 or TLSv1.3", _tls_version),
    "cert_reqs": Kind("none, optional or required", _choice(("none", "optional", "required"))),
    "globs": Kind("file patterns such as *.html or templates/*.jinja2, separated by commas", _globs),
    "otel_exporters": Kind("otlp, console, both separated by a comma, or none", tracing.exporters),
    "otlp_protocol": Kind("http/protobuf or grpc", tracing.protocol),
    "otlp_endpoint": Kind(
        "an http:// or https:// URL with a host, such as http://collector:4318",
        tracing.endpoint,
        shown=tracing.without_password,
    ),
    "otel_pairs": Kind(
        "key=value pairs separated by commas, such as deployment.environment=prod", tracing.pairs
    ),
    "otlp_headers": Kind(
        "header=value pairs separated by commas (values percent-encoded)", tracing.header_pairs, secret=True
    ),
    "otel_sampler": Kind("one of " + ", ".join(tracing.SAMPLERS), tracing.sampler),
    "ratio": Kind("a number from 0 to 1, such as 0.25", tracing.ratio),
    "otel_propagators": Kind(
        "propagators separated by commas (" + ", ".join(tracing.PROPAGATORS) + "), or none",
        tracing.propagators,
    ),
    "otel_bool": Kind("true or false", tracing.true_or_false),
}


#: The headings the settings are listed under, in order: the documentation's configuration page
#: and ``asgi-launcher --help`` group them alike.
GROUPS = (
    "The app",
    "Address",
    "Workers",
    "Logging",
    "Requests",
    "TLS",
    "Timeouts and worker recycling",
    "Operations",
    "Tracing",
    "Start-up and development",
)


#: Variables no command-line option spells: a secret (an option's value is in every process
#: listing), and OpenTelemetry's own variables, which the SDK and every other tool read by name.
ENV_ONLY_GROUPS = ("Tracing",)
ENV_ONLY = ("SSL_KEYFILE_PASSWORD",)


@dataclass(frozen=True)
class Setting:
    """One environment variable of the contract.

    ``flags`` are the command-line spellings that set the same value (the first is the one
    ``config`` names as the source): ``--port``, or a positional name such as ``APP``. A flag
    takes a value, except for a ``bool`` setting (the flag alone means true) and a spelling
    ``--name=VALUE``, which alone sets VALUE (``--no-access-log=``: empty, off). A flag of a
    list-valued setting (``bind``, ``dirs``, ``globs``) may be given several times.
    """

    env: str
    feeds: str  # the Config field this variable decides (several variables may feed one)
    kind: str
    default: Any
    default_doc: str
    doc: str
    flags: tuple[str, ...] = ()
    group: str = GROUPS[-1]

    def parse(self, raw: str, given_as: str | None = None) -> Any:
        """``raw`` as a value; a malformed one is a ``ConfigError`` naming ``given_as`` (the
        flag it was given with) or the variable."""
        return KINDS[self.kind].parse(given_as or self.env, raw)

    @property
    def repeatable(self) -> bool:
        """Whether its flag may be given several times (the values joined with commas)."""
        return self.kind in ("bind", "dirs", "globs")

    @property
    def empty_is_value(self) -> bool:
        """Whether an empty value means something (log off) rather than "not set"."""
        return KINDS[self.kind].empty_is_value


# Within a group, the order of the documentation's table and of `--help`. Of the variables that
# feed one Config field, the last wins over the others (BIND over HOST and PORT).
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "SERVER_BACKEND",
        "backend",
        "backend",
        "gunicorn",
        "`gunicorn`",
        "Entry-point name of the backend plugin that serves the app.",
        flags=("--backend",),
        group="The app",
    ),
    Setting(
        "APP_DIR",
        "app_dir",
        "path",
        None,
        "`/app` if it exists, else the current directory",
        "Directory that holds the app; it goes first on `sys.path`, and every default "
        "path below is relative to it.",
        flags=("--app-dir",),
        group="The app",
    ),
    Setting(
        "MODULE_NAME",
        "app",
        "module",
        None,
        "`app.main` if `$APP_DIR/app/main.py` exists, else `main` if `$APP_DIR/main.py` exists",
        "Python module that holds the app.",
        flags=("--module-name",),
        group="The app",
    ),
    Setting(
        "VARIABLE_NAME",
        "app",
        "identifier",
        "app",
        "`app`",
        "Variable in that module that holds the ASGI app.",
        flags=("--variable-name",),
        group="The app",
    ),
    Setting(
        "APP_MODULE",
        "app",
        "app",
        None,
        "`$MODULE_NAME:$VARIABLE_NAME`",
        "The app as `module:variable`; wins over both.",
        flags=("APP",),
        group="The app",
    ),
    Setting(
        "WORKERS_PER_CORE",
        "workers",
        "workers_per_core",
        1.0,
        "`1`",
        "Workers per available CPU (floats allowed).",
        flags=("--workers-per-core",),
        group="Workers",
    ),
    Setting(
        "MAX_WORKERS",
        "workers",
        "count",
        None,
        "unset",
        "Upper limit on the computed worker count; ignored when `WEB_CONCURRENCY` is set.",
        flags=("--max-workers",),
        group="Workers",
    ),
    Setting(
        "WEB_CONCURRENCY",
        "workers",
        "workers",
        None,
        "`max(int(WORKERS_PER_CORE * cpus), 2)`, capped by the memory limit (`WORKER_MEMORY`) and `MAX_WORKERS`",
        "Exact number of worker processes, 1 to 1024 (more is refused, as is a formula giving more); "
        "wins over the formula (a warning when they need more memory than the limit holds).",
        flags=("--workers", "-w"),
        group="Workers",
    ),
    Setting(
        "WORKER_MEMORY",
        "worker_memory",
        "mib0",
        128,
        "`128`",
        "MiB a worker is expected to need: with a cgroup memory limit, the computed worker count is "
        "at most `max(1, (limit - 64 MiB for the master) // WORKER_MEMORY)`. `0`: no memory cap.",
        flags=("--worker-memory",),
        group="Workers",
    ),
    Setting(
        "HOST",
        "bind",
        "host",
        "0.0.0.0",
        "`0.0.0.0`",
        "Address to listen on.",
        flags=("--host",),
        group="Address",
    ),
    Setting("PORT", "bind", "port", 80, "`80`", "Port to listen on.", flags=("--port",), group="Address"),
    Setting(
        "BIND",
        "bind",
        "bind",
        None,
        "`$HOST:$PORT`",
        "Listen address(es): `HOST:PORT`, `[IPv6]:PORT` or `unix:/path`, comma-separated; "
        "wins over `HOST` and `PORT`.",
        flags=("--bind", "-b"),
        group="Address",
    ),
    Setting(
        "LOG_LEVEL",
        "log_level",
        "log_level",
        "info",
        "`info`",
        "One of debug, info, warning, error, critical (any case).",
        flags=("--log-level",),
        group="Logging",
    ),
    Setting(
        "TIMEOUT",
        "timeout",
        "seconds",
        120,
        "`120`",
        "A worker silent for this long is killed and replaced (0 disables).",
        flags=("--timeout", "-t"),
        group="Timeouts and worker recycling",
    ),
    Setting(
        "GRACEFUL_TIMEOUT",
        "graceful_timeout",
        "seconds",
        120,
        "`120`",
        "On SIGTERM, how long in-flight requests may take before workers are killed.",
        flags=("--graceful-timeout", "--timeout-graceful-shutdown"),
        group="Timeouts and worker recycling",
    ),
    Setting(
        "KEEP_ALIVE",
        "keep_alive",
        "seconds",
        5,
        "`5`",
        "Seconds an idle keep-alive connection stays open; also the time a client has to send a "
        "complete request head, from connecting or from the end of the previous response (5 s with "
        "`0`, which turns keep-alive off), else the connection is closed without an answer.",
        flags=("--keep-alive", "--timeout-keep-alive"),
        group="Requests",
    ),
    Setting(
        "LIMIT_REQUEST_LINE",
        "limit_request_line",
        "byte_limit",
        8190,
        "`8190`",
        "Longest request line (method, target and version) in bytes; a longer one is answered 414 "
        "and the connection closed. `0`: no limit (Gunicorn's name and meaning).",
        flags=("--limit-request-line",),
        group="Requests",
    ),
    Setting(
        "LIMIT_REQUEST_FIELDS",
        "limit_request_fields",
        "count_limit",
        100,
        "`100`",
        "Most header fields a request may have; more are answered 431 and the connection closed. "
        "`0`: no limit.",
        flags=("--limit-request-fields",),
        group="Requests",
    ),
    Setting(
        "LIMIT_REQUEST_FIELD_SIZE",
        "limit_request_field_size",
        "byte_limit",
        8190,
        "`8190`",
        "Longest header field (`Name: value`) in bytes; a longer one is answered 431 and the "
        "connection closed. `0`: no limit.",
        flags=("--limit-request-field-size", "--limit-request-field_size"),
        group="Requests",
    ),
    Setting(
        "HTTP2_CLEARTEXT",
        "http2_cleartext",
        "bool",
        False,
        "`false`",
        "Serve HTTP/2 without TLS (h2c: `Upgrade: h2c` and prior knowledge). Off, an `Upgrade: h2c` "
        "is ignored (served as HTTP/1.1) and the HTTP/2 preface is refused. `true` needs a backend "
        "that speaks HTTP/2, and no TLS: HTTP/2 over TLS is `HTTP2`.",
        flags=("--http2-cleartext",),
        group="Requests",
    ),
    Setting(
        "SSL_CERTFILE",
        "ssl_certfile",
        "path",
        None,
        "unset (no TLS)",
        "Serve HTTPS (and WSS): the server's certificate, PEM, followed by its chain; it may hold the "
        "private key too. Read by every worker when it starts, so a `SIGHUP` serves a replaced file.",
        flags=("--ssl-certfile",),
        group="TLS",
    ),
    Setting(
        "SSL_KEYFILE",
        "ssl_keyfile",
        "path",
        None,
        "unset (the key is in `SSL_CERTFILE`)",
        "The certificate's private key, PEM; it must match the certificate.",
        flags=("--ssl-keyfile",),
        group="TLS",
    ),
    Setting(
        "SSL_KEYFILE_PASSWORD",
        "ssl_keyfile_password",
        "secret",
        None,
        "unset",
        "Password of an encrypted private key. Never shown: `config` prints `***`.",
        group="TLS",
    ),
    Setting(
        "SSL_CA_CERTS",
        "ssl_ca_certs",
        "path",
        None,
        "unset",
        "CA certificates, PEM, that client certificates are verified against (mutual TLS).",
        flags=("--ssl-ca-certs",),
        group="TLS",
    ),
    Setting(
        "SSL_CERT_REQS",
        "ssl_cert_reqs",
        "cert_reqs",
        "none",
        "`none`",
        "Client certificates: `none` (not asked for), `optional` (asked for, verified when sent) or "
        "`required` (mutual TLS: a client without a valid one is refused); the last two need "
        "`SSL_CA_CERTS`.",
        flags=("--ssl-cert-reqs",),
        group="TLS",
    ),
    Setting(
        "SSL_MIN_VERSION",
        "ssl_min_version",
        "tls_version",
        "TLSv1.2",
        "`TLSv1.2`",
        "The oldest TLS version a client may use: `TLSv1.2` or `TLSv1.3`.",
        flags=("--ssl-min-version",),
        group="TLS",
    ),
    Setting(
        "HTTP2",
        "http2",
        "bool",
        False,
        "`false`",
        "Serve HTTP/2 over TLS, offered through ALPN (`h2`); clients that do not offer it get "
        "HTTP/1.1. Needs `SSL_CERTFILE` and a backend that speaks HTTP/2 (hypercorn, granian).",
        flags=("--http2",),
        group="TLS",
    ),
    Setting(
        "ACCESS_LOG",
        "access_log",
        "log_target",
        "-",
        "`-` (stdout)",
        "Access log: `-` for stdout, a file path, or empty to turn access logging off.",
        flags=("--access-logfile", "--no-access-log="),
        group="Logging",
    ),
    Setting(
        "ERROR_LOG",
        "error_log",
        "log_target",
        "-",
        "`-` (stderr)",
        "Error log: `-` for stderr, a file path, or empty to turn error logging off.",
        flags=("--error-logfile", "--log-file"),
        group="Logging",
    ),
    Setting(
        "ACCESS_LOG_FORMAT",
        "access_log_format",
        "access_log_format",
        None,
        "combined log format + duration, pid, request id",
        "Layout of the access line with Gunicorn's atoms (`%(h)s %(r)s %(s)s %(b)s %(M)s "
        "%({x-request-id}i)s` ...); the same under every backend. Unknown atoms are an error.",
        flags=("--access-logformat", "--access-log-format"),
        group="Logging",
    ),
    Setting(
        "LOG_FORMAT",
        "log_format",
        "log_format",
        "text",
        "`text`",
        "`text`, or `json`: every line the launcher, the server and the app's `logging` print is one "
        "JSON object (Elastic Common Schema names; a traceback is one object).",
        flags=("--log-format",),
        group="Logging",
    ),
    Setting(
        "LOG_CONFIG",
        "log_config",
        "path",
        None,
        "unset",
        "A `logging.config.dictConfig` file (`.json` or `.toml`) applied in the master and in every "
        "worker, after the launcher's own set-up: what it configures wins over `LOG_FORMAT`. An "
        "invalid file is an error.",
        flags=("--log-config",),
        group="Logging",
    ),
    Setting(
        "FORWARDED_ALLOW_IPS",
        "forwarded_allow_ips",
        "proxies",
        "127.0.0.1",
        "`127.0.0.1`",
        "Proxies whose X-Forwarded-For/-Proto headers set the client address and scheme: IP "
        "addresses and CIDR networks (host bits ignored: `10.0.0.1/8` is `10.0.0.0/8`), separated "
        "by commas or spaces, or `*` for every peer.",
        flags=("--forwarded-allow-ips",),
        group="Requests",
    ),
    Setting(
        "ROOT_PATH",
        "root_path",
        "root_path",
        "",
        "empty (none)",
        "ASGI `root_path` the app sees: the prefix it is mounted under behind a proxy (uvicorn "
        "`--root-path`); the request path includes it. A trailing `/` is dropped.",
        flags=("--root-path",),
        group="Requests",
    ),
    Setting(
        "MAX_REQUESTS",
        "max_requests",
        "count0",
        0,
        "`0` (off)",
        "Restart a worker after it has served this many requests, to bound memory growth.",
        flags=("--max-requests", "--limit-max-requests"),
        group="Timeouts and worker recycling",
    ),
    Setting(
        "MAX_REQUESTS_JITTER",
        "max_requests_jitter",
        "count0",
        0,
        "`0`",
        "Random extra requests (0..N) added per worker to `MAX_REQUESTS`, so workers do "
        "not all restart at once.",
        flags=("--max-requests-jitter",),
        group="Timeouts and worker recycling",
    ),
    Setting(
        "MAX_WORKER_MEMORY",
        "max_worker_memory",
        "mib_limit",
        None,
        "unset (off)",
        "A worker whose own memory (USS) exceeds this many MiB is retired gracefully and replaced, "
        "as after `MAX_REQUESTS`; checked by the worker after each request (so it passes the limit "
        "by at most one request's allocation) and by the master about once a second.",
        flags=("--max-worker-memory",),
        group="Timeouts and worker recycling",
    ),
    Setting(
        "OPS_PORT",
        "ops_port",
        "ops_port",
        None,
        "unset (off)",
        "Port of the operations listener the master serves (not a worker): `/livez`, `/readyz` and "
        "`/metrics` (Prometheus, across every worker). Use it for Kubernetes probes.",
        flags=("--ops-port",),
        group="Operations",
    ),
    Setting(
        "OPS_HOST",
        "ops_host",
        "host",
        None,
        "the app's address: the host of the first TCP address in `BIND` (`$HOST`), `127.0.0.1` "
        "for unix sockets only",
        "Address the operations listener listens on: by default no more public than the app "
        "(`BIND=127.0.0.1:8000` keeps it on loopback; the image's `0.0.0.0` lets the kubelet probe it).",
        flags=("--ops-host",),
        group="Operations",
    ),
    Setting(
        "SHUTDOWN_DELAY",
        "shutdown_delay",
        "seconds",
        0,
        "`0`",
        "On SIGTERM, `/readyz` answers 503 at once while the app keeps serving, new connections "
        "included, for this many seconds; then the drain (`GRACEFUL_TIMEOUT`) begins. A second "
        "SIGTERM, or SIGQUIT, skips the delay.",
        flags=("--shutdown-delay",),
        group="Operations",
    ),
    Setting(
        "OTEL_TRACES_EXPORTER",
        "tracing",
        "otel_exporters",
        ("otlp",),
        "`otlp`",
        "Where spans go: `otlp`, `console`, or `none`. Set (to other than `none`), it turns tracing on "
        "in every worker, as `OTEL_EXPORTER_OTLP_ENDPOINT` does (see docs/tracing.md).",
        group="Tracing",
    ),
    Setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "tracing",
        "otlp_endpoint",
        None,
        "`http://localhost:4318` (`:4317` for grpc)",
        "The collector's base URL (`/v1/traces` is added for http/protobuf); set, it turns tracing on.",
        group="Tracing",
    ),
    Setting(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "tracing",
        "otlp_protocol",
        "http/protobuf",
        "`http/protobuf`",
        "`http/protobuf`, or `grpc` (with `opentelemetry-exporter-otlp-proto-grpc` installed).",
        group="Tracing",
    ),
    Setting(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "tracing",
        "otlp_headers",
        (),
        "none",
        "Headers of each export request, `name=value,...` (credentials: `config` shows `name=***`).",
        group="Tracing",
    ),
    Setting(
        "OTEL_SERVICE_NAME",
        "tracing",
        "string",
        None,
        "`unknown_service`",
        "The `service.name` of every span; wins over one in `OTEL_RESOURCE_ATTRIBUTES`.",
        group="Tracing",
    ),
    Setting(
        "OTEL_RESOURCE_ATTRIBUTES",
        "tracing",
        "otel_pairs",
        (),
        "none",
        "Resource attributes, `key=value,...`; each worker adds its own `service.instance.id` and "
        "`process.pid`.",
        group="Tracing",
    ),
    Setting(
        "OTEL_TRACES_SAMPLER",
        "tracing",
        "otel_sampler",
        "parentbased_always_on",
        "`parentbased_always_on`",
        "Which requests are recorded: " + ", ".join(f"`{s}`" for s in tracing.SAMPLERS) + ".",
        group="Tracing",
    ),
    Setting(
        "OTEL_TRACES_SAMPLER_ARG",
        "tracing",
        "ratio",
        1.0,
        "`1.0`",
        "The ratio of the `traceidratio` samplers, from 0 to 1.",
        group="Tracing",
    ),
    Setting(
        "OTEL_PROPAGATORS",
        "tracing",
        "otel_propagators",
        ("tracecontext", "baggage"),
        "`tracecontext,baggage`",
        "How a request's trace context is read (and passed on by the app's instrumentation).",
        group="Tracing",
    ),
    Setting(
        "OTEL_SDK_DISABLED",
        "tracing",
        "otel_bool",
        False,
        "`false`",
        "`true` turns tracing off, whatever else is set.",
        group="Tracing",
    ),
    Setting(
        "PRE_START_PATH",
        "prestart",
        "path",
        None,
        "`$APP_DIR/prestart.sh`",
        "Script sourced by bash before the server starts; what it exports reaches the app.",
        flags=("--prestart",),
        group="Start-up and development",
    ),
    Setting(
        "RELOAD",
        "reload",
        "bool",
        False,
        "`false`",
        "Development: serve with one worker and restart it when a `.py` file under `$APP_DIR` "
        "(or `RELOAD_DIRS`) changes (`asgi-launcher run --reload`). Not for production.",
        flags=("--reload",),
        group="Start-up and development",
    ),
    Setting(
        "RELOAD_DIRS",
        "reload_dirs",
        "dirs",
        (),
        "none",
        "Further directories `RELOAD` watches, separated by commas (relative ones are relative "
        "to `$APP_DIR`).",
        flags=("--reload-dir",),
        group="Start-up and development",
    ),
    Setting(
        "RELOAD_INCLUDE",
        "reload_include",
        "globs",
        (),
        "none",
        "Further file patterns whose changes `RELOAD` acts on, besides `*.py` (such as `*.html`).",
        flags=("--reload-include",),
        group="Start-up and development",
    ),
    Setting(
        "WORKER_CLASS",
        "worker_class",
        "string",
        None,
        "the backend's own",
        "Worker class; its meaning is the backend's own.",
        flags=("--worker-class", "-k"),
        group="Workers",
    ),
)

BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}

#: The variable that wins over the others feeding the same field (BIND over HOST and PORT).
WINNER: dict[str, Setting] = {s.feeds: s for s in SETTINGS}


def flag_source(flag: str) -> str:
    """The source ``config`` shows for a value given on the command line."""
    return f"flag {flag}" if flag.startswith("-") else f"argument {flag}"


def from_command_line(source: str) -> bool:
    """Whether a source (``Config.sources``) is the command line's, which a config file does not
    override."""
    return source.startswith(("flag ", "argument "))


def parse_setting(variable: str, raw: str) -> Any:
    """``raw`` parsed as the setting ``variable`` is (``ConfigError`` naming it if malformed).

    For plugins that read a contract value from their server's own config file and must hold it
    to the same rules as the environment.
    """
    return BY_ENV[variable].parse(raw)
