"""Start the real launcher as a subprocess, talk real HTTP to it, and clean up whatever happens.

Part of the conformance kit: standard library only, so a plugin author's test suite needs
nothing but pytest. Every wait has a deadline; every launcher runs in its own session and its
whole process group is killed on the way out.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_launcher(
    env: Mapping[str, str], args: tuple[str, ...] = ("config",), timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``asgi-launcher ARGS`` to completion with a clean environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "launcher", *args],
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "VIRTUAL_ENV", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "PYTHONUNBUFFERED": "1"}


def request(port: int, path: str, timeout: float = 10.0, close: bool = True) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"} if close else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found.append(child)
                stack.append(child)
    return found


def is_worker(pid: int) -> bool:
    """Not multiprocessing's resource tracker (the Hypercorn backend's spawn context starts one)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> list[int]:
        return [p for p in descendants(self.proc.pid) if is_worker(p)]

    def tree(self) -> list[int]:
        return [self.proc.pid, *descendants(self.proc.pid)]

    def ok(self, path: str = "/plaintext") -> bool:
        try:
            return request(self.port, path, timeout=2)[0] == 200
        except OSError:
            return False

    def wait_until(self, predicate: object, timeout: float, what: str) -> float:
        """Poll ``predicate`` until true; return how long it took, or fail with the server's output."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():  # type: ignore[operator]
                return time.monotonic() - started
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{what}: not within {timeout}s; exit={self.proc.poll()}\n{self.output()[-3000:]}"
        )

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s\n{self.output()[-3000:]}") from None


@contextmanager
def launcher(env: Mapping[str, str], ready: bool = True, ready_timeout: float = 30) -> Iterator[Server]:
    # Listen where the caller said (BIND, or HOST/PORT), else on a free port of 127.0.0.1.
    full = {**base_env(), **env}
    bind_port = env.get("BIND", "").rpartition(":")[2]
    if bind_port.isdigit():
        port = int(bind_port)
    elif "PORT" in env and "BIND" not in env:
        port = int(env["PORT"])
    else:
        port = free_port()
        full.setdefault("BIND", f"127.0.0.1:{port}")
    log = Path(tempfile.mkstemp(prefix="launcher-", suffix=".log")[1])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, port, log)
    try:
        if ready:
            server.wait_until(server.ok, ready_timeout, "server answering")
        yield server
    finally:
        with suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and any worker it left behind
        with suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        log.unlink(missing_ok=True)


@dataclass
class Outcome:
    sent: float  # monotonic time the request was fully sent
    status: int | None  # None: no complete response
    error: str = ""


@dataclass
class Load:
    """Closed-loop clients, each sending Connection: close requests until stopped (bounded in time)."""

    port: int
    path: str
    clients: int
    limit: float = 30.0
    outcomes: list[Outcome] = field(default_factory=list)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                with self._lock:
                    self.refused += 1
                time.sleep(0.02)
                continue
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            conn.sock = sock
            try:
                conn.request("GET", self.path, headers={"Connection": "close"})
                sent = time.monotonic()
            except OSError:
                with self._lock:
                    self.refused += 1
                conn.close()
                continue
            try:
                response = conn.getresponse()
                response.read()
                outcome = Outcome(sent, response.status)
            except (OSError, http.client.HTTPException) as exc:
                outcome = Outcome(sent, None, type(exc).__name__)
            finally:
                conn.close()
            with self._lock:
                self.outcomes.append(outcome)

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)
