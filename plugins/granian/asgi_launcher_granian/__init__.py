"""Granian backend: a third-party-style plugin built only on the launcher's public API.

It uses nothing but ``launcher.Backend``/``Config``/``ConfigError``, the shared helpers
``launcher.worker.importer``, ``launcher.worker.proxy_headers`` and ``launcher.master.policy``, and the
``asgi_launcher.backends`` entry point declared in this distribution's own pyproject.toml:
exactly what an outside author has. It is the worked example of the README's plugin guide.
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar

from launcher import Backend, Config, ConfigError

#: WORKER_CLASS under Granian names its event loop. "auto" lets Granian pick (uvloop or rloop if present).
LOOPS = ("auto", "asyncio", "uvloop", "rloop")

#: What Granian's HTTP/1 parser refuses whatever it is told: more header fields (431), longer
#: request targets (414). See ``asgi_launcher_granian.limits``.
MAX_FIELDS = 100
MAX_TARGET = 65534
#: The longest request line a target of MAX_TARGET bytes allows for every method (``GET``).
MAX_LINE = MAX_TARGET + len("GET  HTTP/1.1")


def check_limits(config: Config) -> None:
    """Refuse ``LIMIT_REQUEST_*`` values Granian cannot honour (it would refuse more than they allow)."""
    bounds = [
        ("LIMIT_REQUEST_LINE", config.limit_request_line, MAX_LINE, f"targets over {MAX_TARGET} bytes"),
        ("LIMIT_REQUEST_FIELDS", config.limit_request_fields, MAX_FIELDS, f"over {MAX_FIELDS} header fields"),
    ]
    for variable, value, most, refused in bounds:
        if not 1 <= value <= most:
            raise ConfigError.bad_value(
                variable, str(value), f"1 to {most} under the granian backend (its parser refuses {refused})"
            )
    if not config.limit_request_field_size:
        raise ConfigError.bad_value(
            "LIMIT_REQUEST_FIELD_SIZE",
            "0",
            "1 or more under the granian backend (its read buffer always has a size)",
        )


class GranianBackend(Backend):
    default_worker_class: ClassVar[str] = "auto"

    def validate(self, config: Config) -> None:
        if len(config.bind) != 1:
            raise ConfigError.bad_value(
                "BIND",
                ",".join(config.bind),
                "one address under the granian backend (it listens on one socket)",
            )
        if config.worker_class not in LOOPS:
            raise ConfigError.bad_value(
                "WORKER_CLASS", config.worker_class, "one of " + ", ".join(LOOPS) + " (Granian's event loop)"
            )
        if (
            config.worker_class in ("uvloop", "rloop")
            and importlib.util.find_spec(config.worker_class) is None
        ):
            raise ConfigError.bad_value(
                "WORKER_CLASS", config.worker_class, f"an installed loop; pip install {config.worker_class}"
            )
        check_limits(config)
        if config.ssl_keyfile_password is not None:
            raise ConfigError(
                "SSL_KEYFILE_PASSWORD cannot be used under the granian backend: Granian 2 cannot read "
                "an encrypted private key (its PKCS#8 reader fails on them); give it the key "
                "decrypted (openssl pkey -in KEY -out PLAIN), or use another backend"
            )
        if config.ssl_cert_reqs == "optional":
            raise ConfigError.bad_value(
                "SSL_CERT_REQS",
                "optional",
                "none or required under the granian backend (Granian verifies a client certificate "
                "only when it requires one)",
            )

    def preload(self, config: Config) -> None:
        import asgi_launcher_granian.server  # noqa: F401  (Granian's own import, while the app check runs)

    def run(self, config: Config) -> int:
        from asgi_launcher_granian.server import serve

        return serve(config)
