"""One HTTP request to the running server: the container's health check, with no curl needed."""

from __future__ import annotations

import http.client
import socket

from launcher.addresses import parse


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def probe(bind: str, path: str = "/", timeout: float = 5.0) -> tuple[bool, str]:
    """Send ``GET path`` to ``bind``; any HTTP status counts as alive (the server answered)."""
    address = parse(bind).local()
    conn: http.client.HTTPConnection
    if address.family == socket.AF_UNIX:
        conn = _UnixConnection(address.host, timeout)
    else:
        conn = http.client.HTTPConnection(address.host, address.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "asgi-launcher-probe"})
        response = conn.getresponse()
        return True, f"{bind}: HTTP {response.status} {response.reason}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{bind}: no HTTP answer ({type(exc).__name__}: {exc})"
    finally:
        conn.close()
