"""TLS from the ``SSL_*`` settings: checked once, before anything starts, and the one server
context the Python servers serve with.

``check`` is called by ``launcher.launch.prepare`` for every backend, after the backend's own
config file has had its say: a missing or unreadable file, a key that does not match the
certificate, a wrong or missing password, a key without a certificate, a CA file with no
certificate in it are one line and exit 2 there, instead of a traceback in each worker. It does
so by building the context ``server_context`` builds, which is what Gunicorn's Uvicorn workers,
Uvicorn and Hypercorn then serve with (each worker builds its own when it starts, so a worker
started by SIGHUP reads replaced files); Granian reads the same files itself.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from launcher.errors import ConfigError

if TYPE_CHECKING:
    from launcher.config.model import Config

#: ``SSL_MIN_VERSION`` values.
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
#: ``SSL_CERT_REQS`` values.
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def alpn_protocols(config: Config) -> list[str]:
    """What the server offers through ALPN: ``h2`` first with ``HTTP2``, and HTTP/1.1 always."""
    return ["h2", "http/1.1"] if config.http2 else ["http/1.1"]


def server_context(config: Config) -> ssl.SSLContext:
    """A server-side ``SSLContext`` for ``config`` (``config.tls`` must be true); raises
    ``ConfigError`` naming the setting whose file cannot serve."""
    assert config.ssl_certfile is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[config.ssl_min_version]
    load_certificate(context, config)
    if config.ssl_ca_certs is not None:
        _readable(config, "ssl_ca_certs", config.ssl_ca_certs)
        try:
            context.load_verify_locations(cafile=config.ssl_ca_certs)
        except ssl.SSLError:
            raise _bad(config, "ssl_ca_certs", "PEM CA certificates, but it holds none") from None
    context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
    if config.http2:
        # RFC 9113 section 9.2.2: over TLS 1.2, HTTP/2 refuses CBC ciphers and the like (as Hypercorn's own context).
        context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    context.set_alpn_protocols(alpn_protocols(config))
    return context


def probe_context(config: Config) -> ssl.SSLContext:
    """The context ``asgi-launcher probe`` connects with (``config.tls`` must be true).

    It verifies no certificate: it connects to the server's own address (127.0.0.1 for 0.0.0.0),
    which is not the name the certificate is for, and a health check must not fail because a
    client's trust store would; it asks whether this server answers. Under
    ``SSL_CERT_REQS=required`` it shows the server's own certificate and key as its client
    certificate, which the server accepts where SSL_CA_CERTS holds the CA that issued it (with the
    clientAuth usage, or none); otherwise use ``OPS_PORT`` and ``probe --ready``.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if config.ssl_cert_reqs == "required":
        load_certificate(context, config)
    return context


def load_certificate(context: ssl.SSLContext, config: Config) -> None:
    """Load ``SSL_CERTFILE`` and its key into ``context`` (new connections get them from then
    on); raises ``ConfigError`` saying which file or password is wrong, never showing the password."""
    certfile, keyfile = config.ssl_certfile, config.ssl_keyfile
    assert certfile is not None
    _readable(config, "ssl_certfile", certfile)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=certfile)
    except ssl.SSLError:
        raise _bad(config, "ssl_certfile", "a PEM certificate, but it holds none") from None
    if keyfile is not None:
        _readable(config, "ssl_keyfile", keyfile)
    asked: list[bool] = []
    password = config.ssl_keyfile_password

    def give_password() -> str:
        # Always a callback: without one OpenSSL would ask for the password on the terminal.
        asked.append(True)
        return password or ""

    try:
        context.load_cert_chain(certfile, keyfile, give_password)
    except ssl.SSLError as exc:
        raise _key_error(config, exc, bool(asked)) from None


def _key_error(config: Config, exc: ssl.SSLError, asked: bool) -> ConfigError:
    where, field = ("SSL_KEYFILE", "ssl_keyfile") if config.ssl_keyfile else ("SSL_CERTFILE", "ssl_certfile")
    if asked and not config.ssl_keyfile_password:
        return ConfigError(
            f"{_name(config, field, where)}={_shown(config, field)!r} holds an encrypted private key: "
            "set SSL_KEYFILE_PASSWORD"
        )
    if asked:
        return ConfigError(
            f"SSL_KEYFILE_PASSWORD does not decrypt the private key in {_shown(config, field)}"
        )
    if exc.reason == "KEY_VALUES_MISMATCH":
        return _bad(config, field, "the private key of SSL_CERTFILE's certificate, but it holds another one")
    if field == "ssl_certfile":
        return ConfigError(
            f"{_name(config, field, where)}={_shown(config, field)!r} holds no private key: "
            "set SSL_KEYFILE to the key's file"
        )
    return _bad(config, field, "a PEM private key, but it holds none that can be read")


#: The variable each TLS field comes from.
_VARIABLES = {
    "ssl_certfile": "SSL_CERTFILE",
    "ssl_keyfile": "SSL_KEYFILE",
    "ssl_ca_certs": "SSL_CA_CERTS",
}


def _name(config: Config, field: str, variable: str) -> str:
    """The variable, and the file that set it when a server's config file did."""
    source = config.sources.get(field, "")
    return f"{variable} (from {source[5:]})" if source.startswith("file:") else variable


def _shown(config: Config, field: str) -> str:
    return str(getattr(config, field))


def _bad(config: Config, field: str, expected: str) -> ConfigError:
    variable = _VARIABLES[field]
    return ConfigError.bad_value(_name(config, field, variable), _shown(config, field), expected)


def _readable(config: Config, field: str, path: str) -> None:
    try:
        with open(path, "rb") as file:
            file.read(1)
    except IsADirectoryError:
        raise _bad(config, field, "a PEM file, but it is a directory") from None
    except FileNotFoundError:
        raise _bad(config, field, "a PEM file, but there is no such file") from None
    except OSError as exc:
        raise _bad(config, field, f"a PEM file this user can read ({exc.strerror})") from None


def check(config: Config) -> None:
    """Refuse TLS settings that cannot serve (``ConfigError``), by building the server's context."""
    if not config.tls:
        for field, variable in (
            ("ssl_keyfile", "SSL_KEYFILE"),
            ("ssl_keyfile_password", "SSL_KEYFILE_PASSWORD"),
            ("ssl_ca_certs", "SSL_CA_CERTS"),
        ):
            if getattr(config, field) is not None:
                raise ConfigError(
                    f"{variable} is set but SSL_CERTFILE is not: set the certificate to serve TLS"
                )
        if config.ssl_cert_reqs != "none":
            raise ConfigError(
                f"SSL_CERT_REQS={config.ssl_cert_reqs} is set but SSL_CERTFILE is not: client "
                "certificates need TLS"
            )
        if config.http2:
            raise ConfigError.bad_value(
                "HTTP2",
                "true",
                "false without TLS: HTTP/2 is offered through TLS (set SSL_CERTFILE); "
                "for HTTP/2 without TLS, HTTP2_CLEARTEXT=true",
            )
        return
    if config.http2_cleartext:
        raise ConfigError.bad_value(
            "HTTP2_CLEARTEXT", "true", "false with TLS (SSL_CERTFILE): for HTTP/2 over TLS, HTTP2=true"
        )
    if config.ssl_cert_reqs != "none" and config.ssl_ca_certs is None:
        raise ConfigError(
            f"SSL_CERT_REQS={config.ssl_cert_reqs} needs SSL_CA_CERTS: the CA certificates client "
            "certificates are verified against"
        )
    server_context(config)
