"""Certificates made at test time (with trustme), and the TLS clients of the conformance kit.

``Certificates.make(directory)`` writes a server certificate and its key (also encrypted), the
CA that issued it, and client certificates for mutual TLS: one issued by a client CA the server
may trust, one by a CA it does not. Nothing is read from the machine's trust store.

Needs the ``trustme`` package (``pip install trustme``), imported only here.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

#: The password of ``Certificates.encrypted_key``.
KEY_PASSWORD = "kit password 7"


@dataclass(frozen=True)
class Certificates:
    """Files under one directory (PEM), for a server on 127.0.0.1 / localhost."""

    ca: Path  #: the CA that issued ``cert``: what a client trusts
    cert: Path  #: the server's certificate
    key: Path  #: its private key
    encrypted_key: Path  #: the same key, encrypted with ``KEY_PASSWORD``
    client_ca: Path  #: the CA of ``client_cert``: what the server trusts (SSL_CA_CERTS)
    client_cert: Path  #: a client certificate with its key, issued by ``client_ca``
    stranger_cert: Path  #: a client certificate with its key, issued by a CA nobody trusts

    @classmethod
    def make(cls, directory: Path, name: str = "kit") -> Certificates:
        import trustme
        from cryptography.hazmat.primitives import serialization

        directory.mkdir(parents=True, exist_ok=True)
        ca, client_ca, stranger = trustme.CA(), trustme.CA(), trustme.CA()
        server = ca.issue_cert("localhost", "127.0.0.1", "::1")
        paths = {n: directory / f"{name}-{n}.pem" for n in cls.__dataclass_fields__}
        ca.cert_pem.write_to_path(str(paths["ca"]))
        client_ca.cert_pem.write_to_path(str(paths["client_ca"]))
        for blob in server.cert_chain_pems:
            blob.write_to_path(str(paths["cert"]), append=True)
        server.private_key_pem.write_to_path(str(paths["key"]))
        key = serialization.load_pem_private_key(server.private_key_pem.bytes(), None)
        paths["encrypted_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
            )
        )
        client_ca.issue_cert("client@example.com").private_key_and_cert_chain_pem.write_to_path(
            str(paths["client_cert"])
        )
        stranger.issue_cert("stranger@example.com").private_key_and_cert_chain_pem.write_to_path(
            str(paths["stranger_cert"])
        )
        return cls(**paths)

    def env(self, **more: str) -> dict[str, str]:
        """SSL_CERTFILE and SSL_KEYFILE for the server, plus ``more``."""
        return {"SSL_CERTFILE": str(self.cert), "SSL_KEYFILE": str(self.key), **more}

    def client(
        self,
        cert: Path | None = None,
        key: Path | None = None,
        maximum: ssl.TLSVersion | None = None,
        alpn: tuple[str, ...] = (),
    ) -> ssl.SSLContext:
        """A client context that trusts ``ca`` (and checks the name), showing ``cert`` (with
        ``key``, or its key in the same file) if given."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert is not None:
            context.load_cert_chain(str(cert), None if key is None else str(key))
        if maximum is not None:
            context.maximum_version = maximum
        if alpn:
            context.set_alpn_protocols(list(alpn))
        return context

    def replace_with(self, other: Certificates) -> None:
        """Put ``other``'s server certificate and key in place of this one's, each file replaced
        at once (``os.replace``), as cert-manager and Kubernetes' secret volumes do."""
        for mine, theirs in ((self.cert, other.cert), (self.key, other.key)):
            staged = mine.with_name(mine.name + ".new")
            staged.write_bytes(theirs.read_bytes())
            os.replace(staged, mine)


def peer_certificate(host: str, port: int, context: ssl.SSLContext, timeout: float = 10.0) -> bytes:
    """The DER certificate the server at ``host:port`` presents now (a new connection)."""
    import socket

    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der
