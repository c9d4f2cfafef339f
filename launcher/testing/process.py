"""Start the real launcher as a subprocess, talk real HTTP to it, and clean up whatever happens.

Part of the conformance kit, so it uses the standard library only (and the launcher's own /proc reader): a plugin author's test
suite needs nothing but pytest. Every wait has a deadline; every launcher runs in its own
session, and its whole process group is killed on the way out, so a test that fails halfway
never leaves a server (or an orphaned worker) holding a port.

Linux only: worker processes are found through ``/proc``.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from launcher.procfs import descendants, group_exists, listening_sockets, live_group_members

#: What a launched process inherits from the test's environment; everything else is explicit,
#: so a developer's own ``WEB_CONCURRENCY`` or ``PORT`` cannot change a test's outcome.
INHERITED = ("PATH", "HOME", "LANG", "VIRTUAL_ENV", "TMPDIR")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    """The clean environment every launch starts from (unbuffered, so output arrives in order)."""
    return {**{k: os.environ[k] for k in INHERITED if k in os.environ}, "PYTHONUNBUFFERED": "1"}


def run_launcher(
    env: Mapping[str, str],
    args: Sequence[str] = ("config",),
    timeout: float = 30,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m launcher ARGS`` to completion (config, check, bad input, a server that fails)."""
    return subprocess.run(
        [sys.executable, "-m", "launcher", *args],
        env={**base_env(), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )


def _connection(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    """HTTP, or HTTPS with ``tls`` (which checks the certificate against 127.0.0.1 or localhost)."""
    if tls is None:
        return http.client.HTTPConnection(host, port, timeout=timeout)
    return http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)


def request(
    port: int, path: str, timeout: float = 10.0, close: bool = True, tls: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    """One GET to 127.0.0.1:``port`` (over TLS with ``tls``); returns (status, body). Raises
    ``OSError`` if nobody answers."""
    conn = _connection("127.0.0.1", port, timeout, tls)
    try:
        conn.request("GET", path, headers={"Connection": "close"} if close else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on TCP ``port`` (IPv4 and IPv6).

    Several when a server binds one socket per worker (``SO_REUSEPORT``).
    """
    return {str(inode) for _, inode in listening_sockets(port)}


def holds_socket(pid: int, inodes: set[str]) -> bool:
    """Whether process ``pid`` has one of the socket ``inodes`` open."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
    return False


def is_worker(pid: int) -> bool:
    """Not multiprocessing's resource tracker (the Hypercorn backend's spawn context starts one)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


def rss_kb(pids: list[int]) -> int:
    """Resident memory of ``pids`` together, in KiB (processes that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def _where(env: Mapping[str, str]) -> tuple[str, int | None]:
    """The host to connect to and the TCP port the launcher will listen on, as ``env`` says."""
    bind = env.get("BIND", "").split(",")[0].strip()
    if bind:
        host, _, port = bind.rpartition(":")
        host = host.strip("[]")
    else:
        host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "")
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return connect, int(port) if port.isdigit() else None


class Launcher:
    """One running ``python -m launcher``: its process, its output, and HTTP to what it serves.

    A context manager: leaving it kills the launcher's whole process group (the launcher and
    any worker it left behind) and waits for it with a deadline. ``output()`` still works after.
    With ``tls`` (a client context) every request goes over TLS: ``https://`` and ``wss://``.
    """

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        host: str,
        port: int,
        log: Path,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.log = log
        self.tls = tls
        self._final_output: str | None = None

    # -- output and HTTP ---------------------------------------------------------------------

    def output(self) -> str:
        """Everything the launcher and its workers wrote so far, stdout and stderr interleaved."""
        if self._final_output is not None:
            return self._final_output
        return self.log.read_text(errors="replace")

    def url(self, path: str = "/") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def ws_url(self, path: str = "/ws") -> str:
        """The ``ws://`` (``wss://``) URL of ``path`` on the launcher's address."""
        return "ws" + self.url(path).removeprefix("http")

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` on a fresh connection; (status, headers with lower-case names, body)."""
        conn = _connection(self.host, self.port, timeout, self.tls)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()

    def ok(self, path: str = "/plaintext") -> bool:
        """Whether ``path`` answers 200 right now (any failure to connect counts as no)."""
        try:
            return self.get(path, timeout=2)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def answers(self, path: str = "/") -> bool:
        """Whether anything answers HTTP on ``path`` right now, whatever the status."""
        try:
            self.get(path, timeout=2)
            return True
        except (OSError, http.client.HTTPException):
            return False

    # -- waiting -----------------------------------------------------------------------------

    def wait_until(self, predicate: Callable[[], object], timeout: float, what: str) -> float:
        """Poll ``predicate`` until true; return how long it took, or fail with the launcher's output.

        Fails at once if the launcher exits first: nothing will change after that.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            if self.proc.poll() is not None:
                if predicate():  # the last thing it did may have made it true
                    return time.monotonic() - started
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{what}: not within {timeout}s; exit={self.proc.poll()}\n{self.output()[-4000:]}"
        )

    def wait_ready(self, path: str = "/", timeout: float = 30) -> None:
        """Wait until the server answers HTTP on ``path``; raise with its output if it dies or never does."""
        self.wait_until(lambda: self.answers(path), timeout, f"an HTTP answer on {self.url(path)}")

    def wait(self, timeout: float) -> int:
        """The launcher's exit status, waiting at most ``timeout`` seconds (else fail with its output)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s\n{self.output()[-4000:]}") from None

    wait_exit = wait

    # -- processes ---------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the launcher process only (as a container runtime does), not its group."""
        self.proc.send_signal(sig)

    def children(self) -> list[int]:
        """Every live descendant of the launcher process."""
        return descendants(self.proc.pid)

    def serving(self) -> list[int]:
        """The descendants that hold the listening socket: the workers that serve."""
        inodes = listening_inodes(self.port)
        return [pid for pid in self.children() if inodes and holds_socket(pid, inodes)]

    def listener_pids(self) -> list[int]:
        """The launcher process and its descendants that hold the listening socket."""
        inodes = listening_inodes(self.port)
        return [pid for pid in self.tree() if inodes and holds_socket(pid, inodes)]

    def workers(self) -> list[int]:
        """Descendants other than multiprocessing's resource tracker."""
        return [p for p in self.children() if is_worker(p)]

    def tree(self) -> list[int]:
        """The launcher process and all its descendants."""
        return [self.proc.pid, *self.children()]

    # -- teardown ----------------------------------------------------------------------------

    def close(self, deadline: float = 10.0) -> None:
        """Kill the whole process group, reap the launcher, keep the output, remove the log file."""
        # The launcher and any worker it left behind; once the launcher is reaped, only while
        # someone is still in its group (else the id may be another process's by now).
        if self.proc.returncode is None or group_exists(self.proc.pid):
            with suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(deadline)
        # Orphaned workers die too, but init reaps them when it gets round to it (seconds, on
        # some hosts): wait until none is still running, not until none is left unreaped.
        end = time.monotonic() + deadline
        while time.monotonic() < end and live_group_members(self.proc.pid):
            time.sleep(0.02)
        if self._final_output is None:
            with suppress(OSError):
                self._final_output = self.log.read_text(errors="replace")
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


#: The name the first version of the kit used; the reliability suite still does.
Server = Launcher


def start_launcher(
    env: Mapping[str, str],
    args: Sequence[str] = ("run",),
    cwd: str | Path | None = None,
    tls: ssl.SSLContext | None = None,
) -> Launcher:
    """Start ``python -m launcher ARGS`` in its own session, with a clean environment plus ``env``.

    With neither ``BIND`` nor ``PORT`` in ``env`` it listens on a free port of 127.0.0.1. It
    returns at once: call ``wait_ready()`` to wait for it to serve. ``tls``: the client context
    its requests use (``Launcher.tls``).
    """
    full = {**base_env(), **env}
    host, port = _where(env)
    if port is None and "BIND" not in env and "PORT" not in env:
        port = free_port()
        full["BIND"] = f"127.0.0.1:{port}"
    fd, name = tempfile.mkstemp(prefix="asgi-launcher-", suffix=".log")
    log = Path(name)
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", *args],
            env=full,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Launcher(proc, host, port or 0, log, tls)


@contextmanager
def launcher(env: Mapping[str, str], ready: bool = True, ready_timeout: float = 30) -> Iterator[Launcher]:
    """``start_launcher(env)`` that (unless ``ready=False``) waits until ``/`` answers HTTP."""
    with start_launcher(env) as server:
        if ready:
            server.wait_ready("/", ready_timeout)
        yield server


@dataclass
class Outcome:
    sent: float  # monotonic time the request was fully sent
    status: int | None  # None: no complete response
    error: str = ""


@dataclass
class Load:
    """Closed-loop clients, each sending requests until stopped (bounded in time): a new
    connection for each (``Connection: close``), or with ``keep_alive`` one connection for as long
    as the server keeps it (a new one only after a response that closes it, or a failure), as
    a pooled HTTP client does; over TLS with ``tls``. A connection that cannot be made is
    ``refused`` (nothing was sent); a failed TLS handshake, or a request sent without a complete
    response back, is an ``Outcome`` with no status."""

    port: int
    path: str
    clients: int
    limit: float = 30.0
    keep_alive: bool = False
    tls: ssl.SSLContext | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        deadline = time.monotonic() + self.limit
        conn: http.client.HTTPConnection | None = None
        headers = {} if self.keep_alive else {"Connection": "close"}
        while not self._stop.is_set() and time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                try:
                    conn.connect()
                except OSError:
                    with self._lock:
                        self.refused += 1
                    conn = None
                    time.sleep(0.02)
                    continue
                if self.tls is not None:
                    try:
                        conn.sock = self.tls.wrap_socket(conn.sock, server_hostname="127.0.0.1")
                    except OSError as exc:
                        with self._lock:
                            self.outcomes.append(Outcome(time.monotonic(), None, type(exc).__name__))
                        conn.close()
                        conn = None
                        continue
            sent = time.monotonic()
            try:
                conn.request("GET", self.path, headers=headers)
                sent = time.monotonic()
                response = conn.getresponse()
                response.read()
                outcome = Outcome(sent, response.status)
                closing = response.will_close or not self.keep_alive
            except (OSError, http.client.HTTPException) as exc:
                outcome, closing = Outcome(sent, None, type(exc).__name__), True
            if closing:
                conn.close()
                conn = None
            with self._lock:
                self.outcomes.append(outcome)
        if conn is not None:
            conn.close()

    def start(self) -> Load:
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)
