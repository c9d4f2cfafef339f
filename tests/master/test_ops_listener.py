"""The operations listener's socket: a normal listen backlog, so a burst of connections (a
scraper and probes behind a thousand stray clients) queues instead of being dropped."""

from __future__ import annotations

import errno
import select
import socket
import time
from typing import Any

from launcher.master import ops
from launcher.testing.process import free_port


class Master:
    gave_up, metrics_dir, workers_wanted, restarts = False, None, 1, {}

    def readiness(self) -> dict[str, Any]:
        return {"ready": True}

    def booted_count(self) -> int:
        return 1


def test_a_burst_of_connections_is_queued_not_dropped() -> None:
    port = free_port()
    server = ops.start(Master(), "127.0.0.1", port)
    server.shutdown()  # the socket still listens; nobody accepts: the backlog alone holds them
    burst = 100
    clients = [socket.socket() for _ in range(burst)]
    try:
        for client in clients:
            client.setblocking(False)
            assert client.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
        pending = list(clients)
        deadline = time.monotonic() + 5  # a dropped SYN is retried after 1 s, and dropped again
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 0.2)
            for client in writable:
                if client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    pending.remove(client)
        assert not pending, f"{len(pending)} of {burst} connections were not accepted into the backlog"
    finally:
        for client in clients:
            client.close()
        server.server_close()
