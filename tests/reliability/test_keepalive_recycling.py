"""MAX_REQUESTS under keep-alive load: a retiring worker answers its keep-alive connections'
next requests with Connection: close and lets them end, instead of cutting them under a request."""

from __future__ import annotations

import http.client
import threading
from pathlib import Path

import pytest

from launcher.testing import apps
from launcher.testing.process import launcher

pytestmark = pytest.mark.slow


def keep_alive_clients(port: int, clients: int, requests: int) -> tuple[int, int]:
    ok, failed = [0], [0]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(requests):
            try:
                conn.request("GET", "/pid")
                response = conn.getresponse()
                response.read()
                with lock:
                    ok[0] += response.status == 200
                if response.will_close:
                    conn.close()  # the next request opens a new connection
            except (OSError, http.client.HTTPException):
                with lock:
                    failed[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return ok[0], failed[0]


def test_recycling_under_keep_alive_load_fails_no_request(
    backend: str, tmp_path: Path, figures: list[str]
) -> None:
    apps.install("hello", tmp_path)
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(tmp_path),
        "WEB_CONCURRENCY": "2",
        "MAX_REQUESTS": "100",
        "ACCESS_LOG": "",
    }
    with launcher(env) as server:
        ok, failed = keep_alive_clients(server.port, clients=8, requests=500)
        retired = server.output().count("retired after MAX_REQUESTS=100")
    figures.append(
        f"MAX_REQUESTS=100 under 8 keep-alive clients [{backend}]: {ok} answered, {failed} failed, "
        f"{retired} workers retired"
    )
    assert retired >= 5, server.output()[-2000:]
    assert failed == 0, (ok, failed)  # a retiring worker drains: no backend cuts a request
