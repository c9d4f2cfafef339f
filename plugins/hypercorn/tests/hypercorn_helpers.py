"""Helpers to start the real launcher with SERVER_BACKEND=hypercorn and talk to it.

Each launcher runs in its own session (process group) so teardown can kill it and every
worker it spawned, whatever state the test left them in.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Launcher:
    proc: subprocess.Popen[bytes]
    port: int
    out: Path
    err: Path
    stopped: list[int] = field(default_factory=list)

    def request(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        source: str | None = None,
        timeout: float = 10,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=timeout, source_address=(source, 0) if source else None
        )
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def info(self, **kwargs: Any) -> dict[str, Any]:
        status, body = self.request("/info", **kwargs)
        assert status == 200, body
        result: dict[str, Any] = json.loads(body)
        return result

    def answers(self) -> bool:
        try:
            return self.request("/", timeout=2)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited {self.proc.returncode}:\n{self.stderr()}")
            return self.answers()

        wait_for(ready, timeout, "the server to answer")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"launcher still running after {timeout}s:\n{self.stderr()}") from None

    def children(self) -> set[int]:
        """The launcher's live worker processes.

        multiprocessing's spawn context also starts its resource tracker as a child: not a worker.
        """
        pids: set[int] = set()
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (task / "children").read_text().split())
        return {pid for pid in pids if b"resource_tracker" not in _cmdline(pid)}

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def write_app(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    return directory
