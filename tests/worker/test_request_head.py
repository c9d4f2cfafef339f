"""Request limits without a server: the settings, the pipeline's request checks, and each
backend's pieces (h11 connections, Hypercorn and Granian settings, Gunicorn's names)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import h11
import pytest

from launcher import Backend, ConfigError
from launcher.config.model import Config
from launcher.config.resolve import resolve
from launcher.worker.pipeline import RequestChecks


def config(tmp_path: Path, **env: str) -> Config:
    (tmp_path / "main.py").write_text("app = None\n")
    return resolve({"APP_DIR": str(tmp_path), **env}, Backend)


def test_defaults_and_derived_figures(tmp_path: Path) -> None:
    c = config(tmp_path)
    assert (c.limit_request_line, c.limit_request_fields, c.limit_request_field_size) == (8190, 100, 8190)
    assert (c.http2_cleartext, c.head_timeout) == (False, 5)
    assert c.head_budget == 8190 + 2 + 100 * (8190 + 2) + 2
    assert config(tmp_path, KEEP_ALIVE="0").head_timeout == 5
    assert config(tmp_path, KEEP_ALIVE="12").head_timeout == 12
    assert config(tmp_path, LIMIT_REQUEST_FIELDS="0").head_budget is None
    for raw, value in [("true", True), ("Yes", True), ("1", True), ("off", False), (" FALSE ", False)]:
        assert config(tmp_path, HTTP2_CLEARTEXT=raw).http2_cleartext is value


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LIMIT_REQUEST_LINE", "-1", "0 (no limit) or more"),
        ("LIMIT_REQUEST_FIELDS", "many", "0 (no limit) or more"),
        ("LIMIT_REQUEST_FIELD_SIZE", "8k", "bytes, 0 (no limit) or more"),
        ("HTTP2_CLEARTEXT", "maybe", "true or false"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(tmp_path, **{variable: value})
    assert f"{variable}={value!r}" in str(err.value) and expected in str(err.value)


def call(app: Any, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    sent: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app.app = inner
    asyncio.run(app(scope, None, send))
    return sent, (seen or None)


def scope(target: str = "/", headers: list[tuple[bytes, bytes]] | None = None, **more: Any) -> dict[str, Any]:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "method": "GET",
        "http_version": "1.1",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"x")] if headers is None else headers,
        **more,
    }


@pytest.mark.parametrize(
    ("request_scope", "status"),
    [
        (scope("/" + "a" * 86), 200),  # "GET /a... HTTP/1.1" is 100 bytes
        (scope("/" + "a" * 87), 414),
        (scope("/" + "a" * 84 + "?q"), 200),  # the query counts, with its "?"
        (scope("/" + "a" * 85 + "?q"), 414),
        (scope(headers=[(b"x-%d" % i, b"v") for i in range(10)]), 200),
        (scope(headers=[(b"x-%d" % i, b"v") for i in range(11)]), 431),
        (scope(headers=[(b"x-big", b"b" * 53)]), 200),  # "x-big: " + 53 is 60 bytes
        (scope(headers=[(b"x-big", b"b" * 54)]), 431),
        (scope(headers=[(b"content-length", b"4"), (b"transfer-encoding", b"chunked")]), 400),
        (scope(headers=[(b"transfer-encoding", b"chunked")]), 200),
    ],
)
def test_request_checks_refuse_what_breaks_a_limit(
    tmp_path: Path, request_scope: dict[str, Any], status: int
) -> None:
    c = config(tmp_path, LIMIT_REQUEST_LINE="100", LIMIT_REQUEST_FIELDS="10", LIMIT_REQUEST_FIELD_SIZE="60")
    sent, seen = call(RequestChecks(None, c), request_scope)  # type: ignore[arg-type]
    assert sent[0]["status"] == status
    if status != 200:
        assert seen is None, "a refused request reached the app"
        assert (b"connection", b"close") in sent[0]["headers"]


def test_request_checks_with_no_limits_and_absolute_form(tmp_path: Path) -> None:
    c = config(tmp_path, LIMIT_REQUEST_LINE="0", LIMIT_REQUEST_FIELDS="0", LIMIT_REQUEST_FIELD_SIZE="0")
    huge = scope("/" + "a" * 100_000, [(b"x-%d" % i, b"v" * 10_000) for i in range(1000)])
    assert call(RequestChecks(None, c), huge)[0][0]["status"] == 200  # type: ignore[arg-type]
    absolute = scope("http://evil.example/admin?x=1", raw_path=b"http://evil.example/admin")
    _, seen = call(RequestChecks(None, c), absolute)  # type: ignore[arg-type]
    assert seen is not None and (seen["path"], seen["raw_path"]) == ("/admin", b"/admin")
    _, seen = call(RequestChecks(None, c), scope("https://evil.example", raw_path=b"https://evil.example"))  # type: ignore[arg-type]
    assert seen is not None and (seen["path"], seen["raw_path"]) == ("/", b"/")


def h11_events(connection: h11.Connection, data: bytes) -> list[Any]:
    connection.receive_data(data)
    events = []
    while True:
        event = connection.next_event()
        events.append(event)
        if event is h11.NEED_DATA or type(event) is h11.Request:
            return events


def connections(tmp_path: Path, preface_allowed: bool = False) -> list[Any]:
    """The one h11 connection the Hypercorn and Uvicorn plugins serve, held to small limits."""
    from launcher.worker import HeadLimits
    from launcher.worker.h11_head import CheckedConnection

    c = config(tmp_path, LIMIT_REQUEST_LINE="100", LIMIT_REQUEST_FIELDS="10", LIMIT_REQUEST_FIELD_SIZE="60")
    return [CheckedConnection(HeadLimits.of(c), c.head_budget or 0, preface_allowed=preface_allowed)]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /" + b"a" * 86 + b" HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /" + b"a" * 87 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /" + b"a" * 200, 414),  # an incomplete head whose line is already too long
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 54 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 300, 431),  # past the head budget
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ],
)
def test_h11_connections_hold_heads_to_the_limits(tmp_path: Path, data: bytes, status: int | None) -> None:
    for connection in connections(tmp_path):
        if status is None:
            assert type(h11_events(connection, data)[-1]) is h11.Request
            continue
        with pytest.raises(h11.RemoteProtocolError) as err:
            h11_events(connection, data)
        assert err.value.error_status_hint == status, (type(connection).__module__, data[:40])


def test_h11_connections_serve_absolute_form_as_origin_form(tmp_path: Path) -> None:
    for connection in connections(tmp_path):
        request = h11_events(connection, b"GET http://evil.example/x?y=1 HTTP/1.1\r\nHost: x\r\n\r\n")[-1]
        assert request.target == b"/x?y=1"
        assert list(request.headers) == [(b"host", b"x")]


def test_the_preface_is_taken_only_where_allowed(tmp_path: Path) -> None:
    (allowed,) = connections(tmp_path, preface_allowed=True)  # Hypercorn with HTTP2_CLEARTEXT
    assert h11_events(allowed, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")[-1].method == b"PRI"


def test_hypercorn_settings(tmp_path: Path) -> None:
    from asgi_launcher_hypercorn.settings import build

    hc = build(config(tmp_path))
    assert (hc.h11_max_incomplete_size, hc.keep_alive_timeout) == (config(tmp_path).head_budget, 5)
    hc = build(config(tmp_path, KEEP_ALIVE="0"))
    assert (hc.keep_alive_timeout, hc.keep_alive_max_requests) == (5, 1)
    own = config(tmp_path).with_file_settings({"h11_max_incomplete_size": (2048, "file:x")})
    assert build(own).h11_max_incomplete_size == 2048


def test_granian_settings_and_refusals(tmp_path: Path) -> None:
    from asgi_launcher_granian import check_limits
    from asgi_launcher_granian.limits import MIN_BUFFER, http1_options

    assert http1_options(config(tmp_path)) == {
        "keep_alive": True,
        "header_read_timeout": 5000,
        "max_buffer_size": config(tmp_path).head_budget,
    }
    small = http1_options(config(tmp_path, KEEP_ALIVE="0", LIMIT_REQUEST_FIELDS="5"))
    assert small == {"keep_alive": False, "header_read_timeout": 5000, "max_buffer_size": MIN_BUFFER}
    check_limits(config(tmp_path, LIMIT_REQUEST_FIELDS="100", LIMIT_REQUEST_LINE="65547"))
    for env in (
        {"LIMIT_REQUEST_FIELDS": "101"},
        {"LIMIT_REQUEST_LINE": "0"},
        {"LIMIT_REQUEST_FIELD_SIZE": "0"},
    ):
        with pytest.raises(ConfigError, match="under the granian backend"):
            check_limits(config(tmp_path, **env))


def test_gunicorn_names_are_the_contract_and_protocols_are_checked(tmp_path: Path) -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from asgi_launcher_gunicorn.settings import load_file_settings
    from asgi_launcher_uvicorn.limits import checked_protocol

    found = load_file_settings(
        None, "--limit-request-line 4094 --limit-request-fields 50 --limit-request-field_size 0"
    )
    assert found == {
        "limit_request_line": (4094, "cmdline"),
        "limit_request_fields": (50, "cmdline"),
        "limit_request_field_size": (0, "cmdline"),
    }
    c = config(tmp_path)
    for http, base in [("auto", HttpToolsProtocol), ("httptools", HttpToolsProtocol), ("h11", H11Protocol)]:
        protocol, checked = checked_protocol(http, c)
        assert checked and issubclass(protocol, base) and protocol.limits.line == 8190

    class Mine(H11Protocol):
        pass

    protocol, checked = checked_protocol(Mine, c)
    assert checked and protocol.__mro__[1:3][1] is Mine
    assert checked_protocol(asyncio.Protocol, c) == (asyncio.Protocol, False)
