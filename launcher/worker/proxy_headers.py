"""Trusted-proxy headers as an ASGI middleware, for servers that do not apply them themselves.

``FORWARDED_ALLOW_IPS`` must mean the same under every backend. Gunicorn + Uvicorn apply it
with Uvicorn's ``ProxyHeadersMiddleware``; Hypercorn and Granian have no equivalent, so their
plugins wrap the app in this one, which follows Uvicorn's rules exactly and imports no server:

* only when the direct peer (``scope["client"]``) is trusted are the headers read at all;
* ``X-Forwarded-Proto`` sets the scheme if it is http, https, ws or wss (``ws``/``wss`` for
  websockets);
* the client becomes the right-most ``X-Forwarded-For`` entry that is not itself a trusted
  proxy (each proxy appends), or the left-most when all are trusted, or with ``*``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SCHEMES = frozenset({"http", "https", "ws", "wss"})
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def _host_port(value: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:5``, ``[::1]`` or ``[::1]:5``; anything odd is kept whole, port 0."""
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return value, 0
        host, rest = value[1:end], value[end + 1 :]
        if not rest:
            return host, 0
        if not rest.startswith(":"):
            return value, 0
        try:
            return host, int(rest[1:])
        except ValueError:
            return host, 0
    if value.count(":") == 1:
        host, port = value.rsplit(":", 1)
        try:
            return host, int(port)
        except ValueError:
            return value, 0
    return value, 0


class TrustedHosts:
    """A ``FORWARDED_ALLOW_IPS`` value: ``*``, or IPs, CIDR networks and literal names.

    Addresses are compared as addresses (``::1`` and ``0:0::1`` are the same host); anything
    that is not an IP or network is kept as a literal, as Uvicorn does (e.g. a unix socket name).
    """

    def __init__(self, trusted: str) -> None:
        self.always = trusted.strip() == "*"
        self.literals: set[str] = set()
        self.hosts: set[IPAddress] = set()
        self.networks: set[IPNetwork] = set()
        if not self.always:
            for item in _split(trusted):
                if not item:
                    continue
                try:
                    if "/" in item:
                        self.networks.add(ipaddress.ip_network(item))
                    else:
                        self.hosts.add(ipaddress.ip_address(item))
                except ValueError:
                    self.literals.add(item)
        # Every request from a trusted peer asks about the same few hosts: a plain dict answers
        # in tens of nanoseconds, where parsing the address again costs a microsecond or more.
        self._known: dict[str, bool] = {}

    def __contains__(self, host: object) -> bool:
        if self.always:
            return True
        if not isinstance(host, str) or not host:
            return False
        known = self._known.get(host)
        if known is None:
            known = self._compute(host)
            if len(self._known) < 4096 and len(host) <= 253:  # bounded: peers are not ours to choose
                self._known[host] = known
        return known

    def _compute(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        return ip in self.hosts or any(ip in net for net in self.networks)

    def client_from(self, x_forwarded_for: str) -> tuple[str, int]:
        """The first untrusted hop from the right; the left-most if every hop is trusted."""
        hops = _split(x_forwarded_for)
        if not self.always:
            for hop in reversed(hops):
                host, port = _host_port(hop)
                if host not in self:
                    return host, port
        return _host_port(hops[0])


class ProxyHeadersMiddleware:
    """Rewrite ``client`` and ``scheme`` from a trusted proxy's X-Forwarded-For/-Proto.

    It sits in front of every request, so it is kept cheap (about a microsecond, which is a few
    per cent of a fast server's whole cost per request): ``__call__`` is a plain method that
    returns the app's own awaitable instead of adding a coroutine frame. Servers that guess an
    app's ASGI version from ``async def`` must be told it is ASGI 3 (the plugins do).
    """

    def __init__(self, app: ASGIApp, trusted: str = "127.0.0.1") -> None:
        self.app = app
        self.trusted = TrustedHosts(trusted)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            client = scope.get("client")
            if (client[0] if client else None) in self.trusted:  # no client: trusted only with "*"
                self._apply(scope)
        return self.app(scope, receive, send)

    def _apply(self, scope: Scope) -> None:
        proto: bytes | None = None
        forwarded_for: list[bytes] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-for":
                forwarded_for.append(value)
        if proto is not None:
            scheme = proto.decode("latin1").strip()
            if scheme in _SCHEMES:
                scope["scheme"] = scheme.replace("http", "ws") if scope["type"] == "websocket" else scheme
        if forwarded_for:
            host, port = self.trusted.client_from(b", ".join(forwarded_for).decode("latin1"))
            if host:  # an empty header says nothing about the client
                scope["client"] = (host, port)
