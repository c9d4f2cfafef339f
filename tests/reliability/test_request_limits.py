"""Request limits and smuggling defences, the same under every backend: raw sockets against the
real launcher serving the kit's hello app (see docs/backends.md, Request limits)."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.conformance import BackendConformance
from launcher.testing.process import Launcher, run_launcher, start_launcher

pytestmark = pytest.mark.slow

exchange = BackendConformance.exchange
statuses = BackendConformance.statuses

HOST = b"Host: x\r\n"
CLOSE = b"Connection: close\r\n"


def serve(backend: str, app_dir: Path, **env: str) -> Launcher:
    apps.install("hello", app_dir)
    server = start_launcher(
        {"SERVER_BACKEND": backend, "APP_DIR": str(app_dir), "WEB_CONCURRENCY": "1", "ACCESS_LOG": "", **env}
    )
    try:
        server.wait_ready("/", 30)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Launcher]]:
    """A backend's server with the default limits, started once for the module: the checks that
    use it only send it requests (and see that it still serves), so one launch serves them all."""
    servers: dict[str, Launcher] = {}

    def server(backend: str) -> Launcher:
        if backend not in servers:
            servers[backend] = serve(backend, tmp_path_factory.mktemp(f"defaults-{backend}"))
        return servers[backend]

    yield server
    for launched in servers.values():
        launched.close()


def get(target: bytes, *fields: bytes) -> bytes:
    return (
        b"GET " + target + b" HTTP/1.1\r\n" + HOST + CLOSE + b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    )


def answer(server: Launcher, data: bytes) -> tuple[int | None, bool, float]:
    """The first status the server answers ``data`` with, whether it then closed, how long it took."""
    started = time.monotonic()
    received, closed = exchange(server.port, data, timeout=15)
    codes = statuses(received)
    return (codes[0] if codes else None), closed, time.monotonic() - started


def test_default_limits(backend: str, defaults: Callable[[str], Launcher], figures: list[str]) -> None:
    line, fields, size = 8190, 100, 8190  # the defaults
    target = line - len(b"GET  HTTP/1.1")
    big = 4 * 1024 * 1024
    # Granian's head buffer is full before a 4 MB line ends: 431 (docs/backends.md, Granian).
    long_line = 431 if backend == "granian" else 414
    cases = [
        ("a line of 8190 bytes", get(b"/" + b"a" * (target - 1)), 200),
        ("a line of 8191 bytes", get(b"/" + b"a" * target), 414),
        ("a line of 4 MB", get(b"/" + b"a" * big), long_line),
        ("100 fields", get(b"/", *[b"X-%d: v" % i for i in range(fields - 2)]), 200),
        ("101 fields", get(b"/", *[b"X-%d: v" % i for i in range(fields - 1)]), 431),
        ("200 000 fields", get(b"/", *[b"X-%d: v" % i for i in range(200_000)]), 431),
        ("a field of 8190 bytes", get(b"/", b"X-Big: " + b"b" * (size - 7)), 200),
        ("a field of 8191 bytes", get(b"/", b"X-Big: " + b"b" * (size - 6)), 431),
        ("a field of 4 MB", get(b"/", b"X-Big: " + b"b" * big), 431),
    ]
    took: dict[str, float] = {}
    with nullcontext(defaults(backend)) as server:
        for what, data, expected in cases:
            status, closed, seconds = answer(server, data)
            assert (status, closed) == (expected, True), (what, status, closed, server.output()[-2000:])
            took[what] = seconds
        assert server.ok("/"), server.output()[-3000:]
        assert server.proc.poll() is None
    slowest = max(took, key=lambda what: took[what])
    figures.append(
        f"request limits [{backend}]: 414/431 for every oversized head, connection closed; slowest "
        f"answer {took[slowest] * 1000:.0f} ms ({slowest})"
    )


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
    ],
    ids=["CL then TE", "TE then CL"],
)
def test_content_length_with_transfer_encoding_is_never_smuggled(
    backend: str, defaults: Callable[[str], Launcher], head: bytes
) -> None:
    smuggled = head + b"0\r\n\r\nGET /pid HTTP/1.1\r\nHost: x\r\n\r\n"
    with nullcontext(defaults(backend)) as server:
        received, closed = exchange(server.port, smuggled)
        assert server.ok("/")
    assert closed, received[:500]
    # Granian frames it as chunked, drops the Content-Length and closes after the one answer.
    assert statuses(received) == ([200] if backend == "granian" else [400]), received[:500]


def test_absolute_form_targets_reach_the_app_as_their_path(
    backend: str, defaults: Callable[[str], Launcher]
) -> None:
    with nullcontext(defaults(backend)) as server:
        for target, path in [
            (b"http://evil.example/admin/scope", "/admin/scope"),
            (b"https://evil.example:8443/admin/scope?next=http://x/", "/admin/scope"),
            (b"http://evil.example", None),
        ]:
            received, _ = exchange(server.port, get(target))
            assert statuses(received) == [200], (target, received[:500])
            found = re.search(rb"\{.*\}", received)
            assert found, (target, received[:500])
            body = json.loads(found.group())
            if path is None:
                assert body == {"message": "Hello World!"}, (target, body)
            else:
                assert body["path"] == path, (target, body)


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS


def is_settings_frame(data: bytes) -> bool:
    return len(data) >= 9 and data[3] == 0x04  # HTTP/2 frame header: length (3), type 4 = SETTINGS


def test_cleartext_http2_is_off_unless_asked_for(
    backend: str, defaults: Callable[[str], Launcher], tmp_path: Path
) -> None:
    with nullcontext(defaults(backend)) as server:
        received, _ = exchange(server.port, UPGRADE)
        assert statuses(received)[:1] == [200], received[:300]
        received, closed = exchange(server.port, PREFACE)
        assert not is_settings_frame(received) and closed, received[:300]
        assert received == b"" or statuses(received) == [400], received[:300]
    apps.install("hello", tmp_path / "off")
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(tmp_path / "off"), "HTTP2_CLEARTEXT": "true"}
    if backend in ("gunicorn", "uvicorn"):  # HTTP/1.1 only: refused, exit 2
        result = run_launcher(env, ("run",), timeout=30)
        assert result.returncode == 2
        assert "HTTP2_CLEARTEXT='true' is invalid" in result.stderr, result.stderr
        return
    with serve(backend, tmp_path / "on", HTTP2_CLEARTEXT="true") as server:
        # (The connection stays open for HTTP/2: read until the answer is there, within a deadline.)
        received, _ = exchange(server.port, UPGRADE, until=lambda data: bool(statuses(data)))
        # Hypercorn takes up the upgrade; Granian serves HTTP/2 by prior knowledge only.
        assert statuses(received)[:1] == ([101] if backend == "hypercorn" else [200]), received[:300]
        received, _ = exchange(server.port, PREFACE, until=is_settings_frame)
        assert is_settings_frame(received), received[:300]


def closed_after(sock: socket.socket, started: float, limit: float, drip: bool = False) -> float | None:
    """Seconds from ``started`` until the server closes ``sock`` (None: still open at ``limit``)."""
    while time.monotonic() - started < limit:
        sock.settimeout(0.2)
        try:
            if drip:
                sock.sendall(b"X-Drip: 1\r\n")
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


@pytest.mark.parametrize(("keep_alive", "expected"), [("3", 3.0), ("0", 5.0)])
def test_a_head_not_complete_in_time_is_closed(
    backend: str, tmp_path: Path, figures: list[str], keep_alive: str, expected: float
) -> None:
    limit = expected + 5
    with serve(backend, tmp_path, KEEP_ALIVE=keep_alive) as server:
        address = ("127.0.0.1", server.port)
        # A client that is slow, not hostile, is still served (Hypercorn alone closed every
        # connection at once with KEEP_ALIVE=0).
        with socket.create_connection(address, timeout=10) as late:
            time.sleep(1)
            late.sendall(get(b"/"))
            assert late.recv(100).startswith(b"HTTP/1.1 200"), "a request sent 1 s late was not served"

        def after(first: bytes, drip: bool = False) -> float | None:
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(first)
                return closed_after(sock, time.monotonic(), limit, drip)

        def after_a_response() -> float | None:
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                reply = b""
                while b"Hello World!" not in reply:
                    reply += sock.recv(4096)
                ended = time.monotonic()
                sock.sendall(b"GET / HTTP/1.1\r\n")
                return closed_after(sock, ended, limit)

        cases: dict[str, Callable[[], float | None]] = {
            "nothing": lambda: after(b""),
            "half a head": lambda: after(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            "a field every 0.2 s": lambda: after(b"GET / HTTP/1.1\r\n", drip=True),
        }
        if keep_alive != "0":
            cases["half a head after a response"] = after_a_response
        # At once, each on its own connection: every one waits out the timeout.
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = {what: pool.submit(case) for what, case in cases.items()}
            found = {what: future.result() for what, future in futures.items()}
    assert all(took is not None for took in found.values()), f"still open after {limit}s: {found}"
    off = {
        what: took
        for what, took in found.items()
        if took is None or not expected - 0.5 <= took <= expected + 1
    }
    assert not off, f"expected closing after {expected}s (KEEP_ALIVE={keep_alive}): {found}"
    shown = ", ".join(f"{what} {took:.1f} s" for what, took in found.items() if took is not None)
    figures.append(f"slow request heads [{backend}, KEEP_ALIVE={keep_alive}]: closed after {shown}")


@pytest.mark.parametrize("worker_class", ["uvicorn_worker.UvicornWorker", "uvicorn_worker.UvicornH11Worker"])
@pytest.mark.parametrize("where", ["GUNICORN_CMD_ARGS", "GUNICORN_CONF"])
def test_gunicorn_limit_settings_are_honoured(tmp_path: Path, worker_class: str, where: str) -> None:
    settings = {"limit_request_line": 200, "limit_request_fields": 20, "limit_request_field_size": 300}
    env = {"WORKER_CLASS": worker_class}
    if where == "GUNICORN_CMD_ARGS":
        env[where] = "--limit-request-line 200 --limit-request-fields 20 --limit-request-field_size 300"
    else:
        conf = tmp_path / "conf.py"
        conf.write_text("".join(f"{name} = {value}\n" for name, value in settings.items()))
        env[where] = str(conf)
    apps.install("hello", tmp_path)
    shown = run_launcher({"APP_DIR": str(tmp_path), **env}, ("config", "--json"))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert {name: data[name] for name in settings} == settings
    assert data["sources"]["limit_request_line"] in ("cmdline", f"file:{tmp_path / 'conf.py'}")
    target = 200 - len(b"GET  HTTP/1.1")
    with serve("gunicorn", tmp_path, **env) as server:
        assert answer(server, get(b"/" + b"a" * (target - 1)))[:2] == (200, True)
        assert answer(server, get(b"/" + b"a" * target))[:2] == (414, True)
        assert answer(server, get(b"/", *[b"X-%d: v" % i for i in range(19)]))[:2] == (431, True)
        assert answer(server, get(b"/", b"X-Big: " + b"b" * 294))[:2] == (431, True)


def test_hypercorn_conf_h11_max_incomplete_size_wins(tmp_path: Path) -> None:
    # 90 fields of 1 KB: within the launcher's limits, and more than one read of Hypercorn's
    # (h11 measures only a head that is still incomplete after a read).
    within_limits = get(b"/", *[b"X-%d: " % i + b"b" * 1000 for i in range(90)])
    with serve("hypercorn", tmp_path / "default") as server:
        assert answer(server, within_limits)[:2] == (200, True)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "hypercorn.toml").write_text("h11_max_incomplete_size = 2048\n")
    with serve("hypercorn", tmp_path / "own") as server:
        assert answer(server, within_limits)[:2] == (431, True)
