"""One HTTP request to the running server: the container's health check, with no curl needed."""

from __future__ import annotations

import http.client
import socket
from typing import Any

from launcher.addresses import Address, parse


def _shown(family: socket.AddressFamily, sockaddr: Any) -> str:
    """``127.0.0.1:8000``, ``[::1]:8000`` or the socket path: where the request really went."""
    if family == socket.AF_UNIX:
        return str(sockaddr)
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


class _Connection(http.client.HTTPConnection):
    """An HTTP connection to one ``Address`` that remembers the peer it connected to."""

    def __init__(self, address: Address, timeout: float) -> None:
        host = "localhost" if address.family == socket.AF_UNIX else address.host
        super().__init__(host, address.port or None, timeout=timeout)
        self.address = address
        self.peer = _shown(address.family, address.sockaddr)

    def connect(self) -> None:
        if self.address.family == socket.AF_UNIX:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(self.address.host)
            return
        super().connect()
        self.peer = _shown(self.sock.family, self.sock.getpeername())


def probe(bind: str, path: str = "/", timeout: float = 5.0) -> tuple[bool, str]:
    """Send ``GET path`` to ``bind``; any HTTP status counts as alive (the server answered).

    The message names the address connected to (``127.0.0.1:80`` for a bind of ``0.0.0.0:80``,
    the socket path for ``unix:``), not the bind string.
    """
    conn = _Connection(parse(bind).local(), timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "asgi-launcher-probe"})
        response = conn.getresponse()
        return True, f"{conn.peer}: HTTP {response.status} {response.reason}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{conn.peer}: no HTTP answer ({type(exc).__name__}: {exc})"
    finally:
        conn.close()
