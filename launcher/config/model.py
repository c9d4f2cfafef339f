"""The one ``Config``: what a backend gets, frozen, with where each value came from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from launcher.config.addresses import ops_host_for, repeated
from launcher.config.settings import BY_ENV, MOST_WORKERS, from_command_line
from launcher.config.tracing import Tracing
from launcher.errors import ConfigError

#: What a backend's own config file sets (``Backend.load_config_file``): config key -> (value,
#: source), where source is ``file:PATH`` or ``cmdline``. Keys of ``Config`` override it; any
#: other key is kept in ``Config.server_settings`` so ``asgi-launcher config`` shows everything
#: the file sets.
FileSettings = Mapping[str, tuple[Any, str]]


@dataclass(frozen=True)
class Config:
    """Everything a backend needs to serve, with where each value came from.

    ``sources`` maps each field name to ``default``, ``env:NAME``, ``computed``, ``file:PATH``,
    ``cmdline`` (``GUNICORN_CMD_ARGS``), ``flag --NAME`` or ``argument APP`` (the launcher's
    command line); ``default (empty env:NAME)`` when NAME was set to an empty value, which
    counts as not set. A computed ``workers`` names the bound that decided it
    (``WORKER_BOUNDS``: ``computed (CPU formula)``, ``computed (memory limit)``, ...).
    """

    backend: str
    app: str
    app_dir: str
    bind: tuple[str, ...]
    workers: int
    cpus: int
    memory_limit: int | None  # bytes: the cgroup memory limit, None when there is none
    worker_memory: int  # MiB a worker is expected to need (WORKER_MEMORY; 0: no memory cap)
    worker_class: str
    log_level: str
    timeout: int
    graceful_timeout: int
    keep_alive: int
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    http2_cleartext: bool
    access_log: str | None
    error_log: str | None
    access_log_format: str | None
    log_format: str
    log_config: str | None
    forwarded_allow_ips: str
    root_path: str
    max_requests: int
    max_requests_jitter: int
    max_worker_memory: int | None  # MiB (MAX_WORKER_MEMORY; None: off)
    config_file: str | None
    prestart: str | None
    ops_port: int | None = None  # OPS_PORT: the master's operations listener (None: off)
    ops_host: str = "0.0.0.0"
    shutdown_delay: int = 0  # seconds of SHUTDOWN_DELAY
    reload: bool = False
    reload_dirs: tuple[str, ...] = ()  # absolute
    reload_include: tuple[str, ...] = ()
    tracing: Tracing = field(default_factory=Tracing)  # the OTEL_* variables
    # TLS (SSL_*): on when ssl_certfile is set; paths are absolute. launcher.config.tls checks them.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_keyfile_password: str | None = None
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str = "none"  # none, optional, required
    ssl_min_version: str = "TLSv1.2"  # an ssl.TLSVersion name: TLSv1.2, TLSv1.3
    http2: bool = False  # HTTP/2 over TLS (ALPN h2)
    sources: Mapping[str, str] = field(default_factory=dict)
    server_settings: Mapping[str, Any] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()

    @property
    def ops_bind(self) -> str:
        """The operations listener's address as a bind string (``OPS_HOST:OPS_PORT``)."""
        host = f"[{self.ops_host}]" if ":" in self.ops_host else self.ops_host
        return f"{host}:{self.ops_port}"

    @property
    def tls(self) -> bool:
        """Whether the app's listeners speak TLS (``SSL_CERTFILE`` is set)."""
        return self.ssl_certfile is not None

    @property
    def head_timeout(self) -> int:
        """Seconds a client has to send a complete request head, counted from connecting or from
        the end of the previous response: ``KEEP_ALIVE``, or its default when it is 0 (keep-alive
        off). Past it the connection is closed without an answer, under every backend."""
        return self.keep_alive or int(BY_ENV["KEEP_ALIVE"].default)

    @property
    def head_budget(self) -> int | None:
        """The most bytes a request head within the ``LIMIT_REQUEST_*`` limits can take: the
        request line, each field and the blank line with their CRLFs (None if a limit is 0).

        Servers that must buffer a whole head before checking it buffer at most this much; a
        head still incomplete past it is answered 431."""
        line, fields, size = self.limit_request_line, self.limit_request_fields, self.limit_request_field_size
        if not (line and fields and size):
            return None
        return line + 2 + fields * (size + 2) + 2

    def with_file_settings(self, settings: FileSettings) -> Config:
        """Apply what the server's config file (or command-line variable) sets: it wins over the
        environment, and the launcher's own command line wins over it.

        A contract value the file sets to what the environment already gave keeps its own source
        (a file that spells the env contract, as the image's ``/gunicorn_conf.py`` does, is not
        what decided it): the file is named only where it changed a value."""
        known = {f.name for f in dataclasses.fields(self)} - {
            "sources",
            "server_settings",
            "unsupported",
            "tracing",
        }
        changes: dict[str, Any] = {}
        sources = dict(self.sources)
        extra = dict(self.server_settings)
        for key, (value, source) in settings.items():
            if key in known:
                value = tuple(value) if key == "bind" else value
                _check_file_value(key, value, source)
                if value == getattr(self, key) or from_command_line(sources.get(key, "")):
                    continue
                changes[key] = value
                ops_source = self.sources.get("ops_host", "")
                if key == "bind" and not (ops_source.startswith("env:") or from_command_line(ops_source)):
                    changes["ops_host"] = ops_host_for(value)  # OPS_HOST follows the app's address
            else:
                extra[key] = value
            sources[key] = source
        return dataclasses.replace(self, **changes, sources=sources, server_settings=extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view; the keys are a stable, documented interface (`config --json`)."""
        data = {f.name: self.masked(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)}
        data["bind"] = list(self.bind)
        data["unsupported"] = list(self.unsupported)
        data["tracing"] = self.tracing.shown()
        data["sources"] = dict(self.sources)
        shown = {k: self.masked(k, v) for k, v in self.server_settings.items()}
        data["server_settings"] = {
            k: v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
            for k, v in shown.items()
        }
        return data

    @staticmethod
    def masked(name: str, value: Any) -> Any:
        """``value`` as it may be shown (by ``config``, in a message): secrets replaced by ``***``.

        What the launcher prints ends up in CI logs and bug reports. A setting whose name says
        it holds a secret (``keyfile_password``, ``*secret*``, ``*token*``, ...) shows ``***``;
        ``raw_env`` (Gunicorn's ``--env NAME=VALUE``) keeps the names only. Paths such as
        ``keyfile`` and ``certfile`` are not secrets and are shown.
        """
        return _masked(name, value)


def _check_file_value(key: str, value: Any, source: str) -> None:
    """A config file's worker count and listen addresses, held to the environment's rules: a count
    no machine holds, or two addresses that take one socket, stop before anything forks."""
    if key == "workers" and not (isinstance(value, int) and 1 <= value <= MOST_WORKERS):
        raise ConfigError(
            f"{source}: workers={value!r} is invalid: expected a whole number from 1 to {MOST_WORKERS}"
        )
    if key == "bind":
        try:
            problem = repeated(value)
        except ValueError:
            return  # the server's own forms (fd://...): the server decides
        if problem:
            raise ConfigError(f"{source}: bind={list(value)!r} is invalid: {problem}")


#: Words that mark a setting's value as a secret (``h11_pass_raw_headers`` is not one).
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "credential")
MASK = "***"


def _masked(name: str, value: Any) -> Any:
    """See ``Config.masked``."""
    if value is None:
        return None  # "not set" gives nothing away
    if name == "raw_env":
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            return [_masked_assignment(item) for item in items]
        return MASK
    if any(word in name.lower() for word in SECRET_WORDS):
        return MASK
    return value


def _masked_assignment(item: object) -> str:
    """``NAME=VALUE`` as ``NAME=***``: the name says what is set, the value stays private."""
    name, sep, _ = str(item).partition("=")
    return f"{name}={MASK}" if sep else MASK


class MissingApp(ConfigError):
    """No app module was named and none was found where the defaults look.

    ``config`` is everything else resolved (with ``app == ""``), so ``asgi-launcher config``
    can still show it; ``looked_for`` lists the files that were looked for.
    """

    def __init__(self, message: str, looked_for: tuple[str, ...], config: Config | None = None) -> None:
        super().__init__(message)
        self.looked_for = looked_for
        self.config = config

    def with_config(self, config: Config) -> MissingApp:
        return MissingApp(str(self), self.looked_for, config)
