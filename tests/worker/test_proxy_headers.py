"""FORWARDED_ALLOW_IPS semantics of the backend-neutral middleware, checked against Uvicorn's.

Explicit cases pin the rules a user relies on; a property test drives both middlewares with
the same scopes and requires identical results, so "means what it means under Uvicorn" stays true.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launcher.worker.proxy_headers import ProxyHeadersMiddleware, TrustedHosts


def seen(
    trusted: str,
    client: tuple[str, int] | None,
    headers: list[tuple[bytes, bytes]],
    kind: str = "http",
    middleware: Any = ProxyHeadersMiddleware,
) -> tuple[Any, str]:
    """What the app sees behind the middleware: (client, scheme)."""
    got: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.update(scope)

    scope: dict[str, Any] = {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": client,
        "headers": headers,
    }

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        pass

    asyncio.run(middleware(app, trusted)(scope, receive, send))
    return got["client"], got["scheme"]


XFF = b"x-forwarded-for"
XFP = b"x-forwarded-proto"


def test_untrusted_peer_headers_are_ignored() -> None:
    assert seen("127.0.0.1", ("10.0.0.5", 1234), [(XFF, b"1.2.3.4"), (XFP, b"https")]) == (
        ("10.0.0.5", 1234),
        "http",
    )


def test_trusted_peer_sets_client_and_scheme() -> None:
    assert seen("127.0.0.1", ("127.0.0.1", 1234), [(XFF, b"1.2.3.4"), (XFP, b"https")]) == (
        ("1.2.3.4", 0),
        "https",
    )


def test_cidr_and_list_are_trusted() -> None:
    assert seen("192.168.0.1, 10.0.0.0/8", ("10.9.8.7", 1), [(XFF, b"5.6.7.8")])[0] == ("5.6.7.8", 0)
    assert seen("192.168.0.1, 10.0.0.0/8", ("11.0.0.1", 1), [(XFF, b"5.6.7.8")])[0] == ("11.0.0.1", 1)


def test_star_trusts_everyone_and_takes_the_leftmost_hop() -> None:
    assert seen("*", ("8.8.8.8", 1), [(XFF, b"1.1.1.1, 2.2.2.2")])[0] == ("1.1.1.1", 0)


def test_rightmost_untrusted_hop_is_the_client() -> None:
    # A client cannot spoof its address by sending its own X-Forwarded-For through the proxy.
    headers = [(XFF, b"6.6.6.6, 1.2.3.4, 10.0.0.2")]
    assert seen("127.0.0.1,10.0.0.0/8", ("127.0.0.1", 1), headers)[0] == ("1.2.3.4", 0)


def test_ipv6_compared_as_addresses_and_ports_parsed() -> None:
    assert seen("0:0::1", ("::1", 1), [(XFF, b"[2001:db8::1]:8080")])[0] == ("2001:db8::1", 8080)


def test_unknown_scheme_is_ignored_and_websocket_scheme_follows() -> None:
    assert seen("127.0.0.1", ("127.0.0.1", 1), [(XFP, b"gopher")])[1] == "http"
    assert seen("127.0.0.1", ("127.0.0.1", 1), [(XFP, b"https")], kind="websocket")[1] == "wss"


def test_no_client_is_untrusted_unless_star() -> None:
    assert seen("127.0.0.1", None, [(XFF, b"1.2.3.4")])[0] is None
    assert seen("*", None, [(XFF, b"1.2.3.4")])[0] == ("1.2.3.4", 0)


def test_empty_forwarded_for_keeps_the_peer() -> None:
    assert seen("*", ("127.0.0.1", 9), [(XFF, b"")])[0] == ("127.0.0.1", 9)


def test_lifespan_passes_through_untouched() -> None:
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append(scope)

    scope = {"type": "lifespan"}
    asyncio.run(ProxyHeadersMiddleware(app, "*")(scope, None, None))  # type: ignore[arg-type]
    assert got == [{"type": "lifespan"}]


def test_literal_names_are_trusted_verbatim() -> None:
    trusted = TrustedHosts("proxy.internal, not-a-network/33")
    assert "proxy.internal" in trusted and "not-a-network/33" in trusted
    assert "other" not in trusted and None not in trusted


uvicorn_proxy = pytest.importorskip("uvicorn.middleware.proxy_headers")

ips = st.sampled_from(
    ["127.0.0.1", "10.0.0.1", "10.1.2.3", "192.168.1.1", "::1", "2001:db8::1", "8.8.8.8", "proxy"]
)
hops = st.one_of(
    ips,
    ips.map(lambda ip: f"[{ip}]:81" if ":" in ip else f"{ip}:81"),
    st.sampled_from(["", "[::1", "a:b:c", "1.2.3.4:x", " 1.1.1.1 "]),
)
trusted_values = st.one_of(
    st.just("*"),
    st.lists(
        st.sampled_from(["127.0.0.1", "10.0.0.0/8", "::1", "proxy", "2001:db8::/32", "bad/x"]), max_size=4
    ).map(",".join),
)


@given(
    trusted=trusted_values,
    client=st.one_of(st.none(), ips.map(lambda ip: (ip, 1000))),
    forwarded=st.lists(st.lists(hops, min_size=1, max_size=3).map(", ".join), max_size=2),
    proto=st.one_of(st.none(), st.sampled_from(["http", "https", "ws", "wss", "ftp", " https "])),
    kind=st.sampled_from(["http", "websocket"]),
)
def test_same_result_as_uvicorn(
    trusted: str,
    client: tuple[str, int] | None,
    forwarded: list[str],
    proto: str | None,
    kind: str,
) -> None:
    headers = [(XFF, f.encode("latin1")) for f in forwarded]
    if proto is not None:
        headers.append((XFP, proto.encode("latin1")))
    ours = seen(trusted, client, headers, kind)
    theirs = seen(trusted, client, headers, kind, uvicorn_proxy.ProxyHeadersMiddleware)
    assert ours == theirs
