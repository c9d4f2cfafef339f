"""Turn bind strings into socket addresses, and check they can be listened on.

Checking before the server starts turns "address in use" into one line naming the address,
instead of a server's retry loop and traceback.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from launcher.errors import ConfigError


@dataclass(frozen=True)
class Address:
    family: socket.AddressFamily
    host: str  # or the socket path for AF_UNIX
    port: int

    @property
    def sockaddr(self) -> str | tuple[str, int]:
        return self.host if self.family == socket.AF_UNIX else (self.host, self.port)

    def local(self) -> Address:
        """Where a client on this machine reaches it (wildcards become loopback)."""
        if self.host == "0.0.0.0":
            return Address(self.family, "127.0.0.1", self.port)
        if self.host == "::":
            return Address(self.family, "::1", self.port)
        return self


def parse(bind: str) -> Address:
    """Parse one already-validated ``HOST:PORT``, ``[V6]:PORT`` or ``unix:/path``."""
    if bind.startswith("unix:"):
        return Address(socket.AF_UNIX, bind[5:], 0)
    host, _, port = bind.rpartition(":")
    if host.startswith("["):
        return Address(socket.AF_INET6, host[1:-1], int(port))
    try:
        socket.inet_pton(socket.AF_INET6, host)
        family = socket.AF_INET6
    except OSError:
        family = socket.AF_INET
    return Address(family, host, int(port))


_HINTS = {
    errno.EADDRINUSE: "address already in use; stop what listens there or set PORT or BIND to a free port",
    errno.EACCES: "permission denied; ports below 1024 need root, so set PORT (e.g. 8080) instead",
    errno.EADDRNOTAVAIL: "this machine has no such address; set HOST or BIND to one of its addresses",
}


def check_can_listen(binds: tuple[str, ...], variable: str = "BIND") -> None:
    """Raise ``ConfigError`` naming the first address that cannot be bound."""
    for bind in binds:
        address = parse(bind)
        if address.family == socket.AF_UNIX:
            continue  # servers replace a stale socket file themselves
        family = address.family
        try:
            infos = socket.getaddrinfo(address.host, address.port, family, socket.SOCK_STREAM)
        except socket.gaierror:
            infos = []
        if not infos and family == socket.AF_INET:
            raise ConfigError(f"{variable}={bind!r} cannot be used: host {address.host!r} does not resolve")
        sockaddr = infos[0][4] if infos else address.sockaddr
        with socket.socket(infos[0][0] if infos else family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                hint = _HINTS.get(exc.errno or 0, exc.strerror or str(exc))
                raise ConfigError(f"{variable}={bind!r} cannot be used: {hint}") from None
