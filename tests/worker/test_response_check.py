"""The response check: what the app sends is checked before the server sees it, and what the
client gets is what the request log records."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from launcher.observability.access_log import STATUS, RequestLog
from launcher.worker.pipeline import ResponseCheck, response_problem

SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": []}


def serve(app: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """Run ``app`` once behind the response check and a request log: what the server got, and
    the status the request log recorded."""
    sent: list[dict[str, Any]] = []
    recorded: list[int] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    log = RequestLog([lambda entries: recorded.extend(e[STATUS] for e in entries)])

    async def run() -> None:
        await ResponseCheck(app, log=log)(dict(SCOPE), None, send)
        log.flush()

    asyncio.run(run())
    return sent, recorded


def answering(status: Any = 200, headers: Any = (), then: BaseException | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"ok"})
        if then is not None:
            raise then

    return app


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (999, []),
        (1000, []),
        (99, []),
        ("200", []),
        (True, []),
        (200.0, []),
        (200, [(b"x", b"a\x00b")]),
        (200, [(b"x", b"a\r\nset-cookie: x=1")]),
        (200, [(b"x y", b"a")]),
        (200, [(b"", b"a")]),
        (200, [("x", "\u2603")]),
        (200, [(b"x", 1)]),
        (200, [(b"x",)]),
        (200, {b"x": b"y"}),
    ],
)
def test_an_invalid_response_is_answered_500_and_recorded_so(
    status: Any, headers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sent, recorded = serve(answering(status, headers))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 500 and sent[1]["body"] == b"Internal Server Error"
    assert recorded == [500]
    assert [r.getMessage() for r in caplog.records if "answered 500" in r.getMessage()], caplog.text


def test_latin1_str_headers_are_sent_as_bytes() -> None:
    sent, recorded = serve(answering(200, [("x-name", "caf\xe9")]))
    assert sent[0]["headers"] == [(b"x-name", b"caf\xe9")] and recorded == [200]


def test_a_valid_response_passes_unchanged() -> None:
    headers = [(b"content-type", b"text/plain"), (b"x-tab", b"a\tb\x80")]
    sent, recorded = serve(answering(204, headers))
    assert sent[0] == {"type": "http.response.start", "status": 204, "headers": headers}
    assert recorded == [204]
    assert response_problem({"type": "http.response.start", "status": 599}) is None


def test_an_app_that_sends_nothing_gets_500(caplog: pytest.LogCaptureFixture) -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    sent, recorded = serve(silent)
    assert sent[0]["status"] == 500 and recorded == [500]
    assert "without sending a response" in caplog.text


def test_an_exception_before_the_response_is_answered_500_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def raising(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("before")

    with caplog.at_level(logging.ERROR):
        sent, recorded = serve(raising)
    assert sent[0]["status"] == 500 and recorded == [500]
    assert caplog.text.count("RuntimeError: before") == 1


def test_an_exception_after_a_complete_response_goes_no_further(caplog: pytest.LogCaptureFixture) -> None:
    # What FastAPI and Starlette do: their own 500, then the exception again.
    sent, recorded = serve(answering(500, [], then=RuntimeError("after")))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert recorded == [500]
    assert caplog.text.count("RuntimeError: after") == 1


def test_an_exception_mid_response_reaches_the_server() -> None:
    async def midway(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        serve(midway)


def test_cancellation_is_not_swallowed() -> None:
    async def cancelled(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        serve(cancelled)


def test_websockets_and_lifespan_pass_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        await send({"type": "websocket.accept"} if scope["type"] == "websocket" else {"type": "x"})

    out: list[Any] = []

    async def send(message: Any) -> None:
        out.append(message)

    async def run() -> None:
        await ResponseCheck(app)({"type": "websocket"}, None, send)
        await ResponseCheck(app)({"type": "lifespan"}, None, send)

    asyncio.run(run())
    assert seen == ["websocket", "lifespan"] and out == [{"type": "websocket.accept"}, {"type": "x"}]
