"""The operations listener (``OPS_PORT``): ``/livez``, ``/readyz`` and ``/metrics``, served by the master.

The master, not a worker, answers, so a stuck or busy worker cannot make the answers lie and a
scrape never waits behind the app's requests. It is a small threaded HTTP server in the
master's process (the same under every backend: ``Master.serving`` starts it), reading
what the master knows:

* ``/livez``: 200 while the master supervises, 503 once it has decided to give up;
* ``/readyz``: 200 when at least one worker has booted (app imported, lifespan startup done)
  and no shutdown has begun; else 503. The body is a small JSON object:
  ``{"ready": true, "workers_booted": 2, "workers_wanted": 2, "draining": false}``;
* ``/metrics``: the Prometheus text format, summed across workers (``launcher.observability.metrics``).

A forked worker inherits the listening socket; it closes its copy at once (``os.register_at_fork``)
so only the master ever holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from launcher.observability.metrics import MasterView


class MasterState(MasterView, Protocol):
    """What the listener reads from the master (``launcher.master.Master``)."""

    gave_up: bool
    metrics_dir: str | None

    def readiness(self) -> dict[str, Any]: ...


_servers: list[ThreadingHTTPServer] = []


def _close_in_child() -> None:
    for server in _servers:
        with contextlib.suppress(OSError):
            server.socket.close()
    _servers.clear()


os.register_at_fork(after_in_child=_close_in_child)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: The listen backlog: socketserver's default is 5, so a burst of connections (a scraper and
    #: the probes behind stray clients) had its SYNs dropped and a probe timed out.
    request_queue_size = socket.SOMAXCONN
    master: MasterState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closes without reading the whole answer (``probe --ready`` reads only the
        # status) resets the connection; socketserver would print that traceback into the
        # master's log at every health check.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "asgi-launcher-ops"
    sys_version = ""
    timeout = 10  # a client that sends nothing is dropped: the listener is not a target

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        master = self.server.master
        path = self.path.split("?", 1)[0]
        content_type = "application/json"
        if path == "/livez":
            alive = not master.gave_up
            status = 200 if alive else 503
            payload = json.dumps({"alive": alive}).encode()
        elif path == "/readyz":
            state = master.readiness()
            status = 200 if state["ready"] else 503
            payload = json.dumps(state).encode()
        elif path == "/metrics":
            try:
                status, payload, content_type = _metrics(master)
            except Exception as exc:  # an answer, not a dropped connection, whatever the files hold
                status, content_type = 500, "text/plain; charset=utf-8"
                payload = f"metrics: could not read the workers' values: {exc!r}\n".encode()
        else:
            status, payload = (
                404,
                json.dumps({"error": "not found: try /livez, /readyz or /metrics"}).encode(),
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not news: the listener writes no access lines."""


def _metrics(master: MasterState) -> tuple[int, bytes, str]:
    from launcher.observability import metrics

    if master.metrics_dir is None:
        text = f"metrics are off: prometheus_client is not installed ({metrics.INSTALL_HINT})\n"
        return 501, text.encode(), "text/plain; charset=utf-8"
    body, content_type = metrics.exposition(master, master.metrics_dir)
    return 200, body, content_type


def start(master: MasterState, host: str, port: int) -> ThreadingHTTPServer:
    """Listen on ``host:port`` and answer from a daemon thread until the process ends."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server_class = type("OpsServer", (_Server,), {"address_family": family})
    server: _Server = server_class((host, port), _Handler)
    server.master = master
    _servers.append(server)
    thread = threading.Thread(target=server.serve_forever, name="asgi-launcher-ops", daemon=True)
    thread.start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    if server in _servers:
        _servers.remove(server)
    server.shutdown()
    server.server_close()
