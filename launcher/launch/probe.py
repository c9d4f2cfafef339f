"""One HTTP request to the running server: the container's health check, with no curl needed.

The health check is a separate process that does not get what the prestart script exported,
so ``run`` leaves a small state file saying where it really serves (see ``serving_state``).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from launcher.config.addresses import Address, parse

STATE_FILE = "serving.json"


def _shown(family: socket.AddressFamily, sockaddr: Any) -> str:
    """``127.0.0.1:8000``, ``[::1]:8000`` or the socket path: where the request really went."""
    if family == socket.AF_UNIX:
        return str(sockaddr)
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def _open(address: Address, timeout: float) -> socket.socket:
    """A connected socket to ``address`` (TCP or Unix), with ``timeout`` on every operation."""
    if address.family == socket.AF_UNIX:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address.host)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((address.host, address.port), timeout)


def probe(
    bind: str,
    path: str = "/",
    timeout: float = 5.0,
    *,
    want_200: bool = False,
    tls: ssl.SSLContext | None = None,
) -> tuple[bool, str]:
    """Send ``GET path`` to ``bind``; any HTTP status counts as alive (the server answered),
    or with ``want_200`` only 200 (``probe --ready``: the master's ``/readyz``). With ``tls``
    (``launcher.config.tls.probe_context``) the request goes over TLS.

    The message names the address connected to (``127.0.0.1:80`` for a bind of ``0.0.0.0:80``,
    the socket path for ``unix:``), not the bind string, and the TLS version.
    """
    # Imported here: `run` imports this module for the state file only, and starts faster without.
    import http.client

    address = parse(bind).local()
    peer = _shown(address.family, address.sockaddr)
    host = "localhost" if address.family == socket.AF_UNIX else address.host
    conn = http.client.HTTPConnection(host, address.port or None, timeout=timeout)
    over = ""
    try:
        conn.sock = _open(address, timeout)
        if address.family != socket.AF_UNIX:
            peer = _shown(conn.sock.family, conn.sock.getpeername())
        if tls is not None:
            conn.sock = tls.wrap_socket(conn.sock)  # the handshake, within the timeout
            over = f" over {conn.sock.version()}"
        conn.request("GET", path, headers={"User-Agent": "asgi-launcher-probe"})
        response = conn.getresponse()
        ok = response.status == 200 or not want_200
        return ok, f"{peer}: HTTP {response.status} {response.reason}{over}"
    except (OSError, http.client.HTTPException) as exc:
        return (
            False,
            f"{peer}: no HTTP answer{over or (' over TLS' if tls else '')} ({type(exc).__name__}: {exc})",
        )
    finally:
        conn.close()


# -- where `run` really serves ---------------------------------------------------------------


def state_dir() -> str:
    """This user's private runtime directory; raises ``OSError`` when no temp dir is usable."""
    return os.path.join(tempfile.gettempdir(), f"asgi-launcher-{os.getuid()}")


def _private(path: str) -> str:
    """``path`` if it is a directory of this user that nobody else may enter; else ``OSError``.

    Anyone may create names in a shared /tmp: a state file there must not come from someone else.
    """
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} is not a directory only this user may use")
    return path


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` (``/proc/PID/stat`` field 22), to tell a reused pid apart.

    In a restarted container the new launcher often gets the old one's pid.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def write_state(bind: Sequence[str], bind_before_prestart: Sequence[str]) -> str:
    """Record, atomically, that this process serves on ``bind``; return the file's path.

    ``bind_before_prestart`` is what the environment resolved to before prestart ran, which is
    what a probe started with that same environment resolves: the probe's key to this file.
    """
    directory = state_dir()
    with suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    _private(directory)
    pid = os.getpid()
    state = {
        "pid": pid,
        "started": _process_start(pid),
        "bind": list(bind),
        "bind_before_prestart": list(bind_before_prestart),
    }
    fd, tmp = tempfile.mkstemp(prefix=".serving-", suffix=".tmp", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f)
        path = os.path.join(directory, STATE_FILE)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _read_state() -> dict[str, Any] | None:
    """The state file's content, or None if there is none this user may trust."""
    try:
        path = os.path.join(_private(state_dir()), STATE_FILE)
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _is_pid(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _alive(pid: int, started: object) -> bool:
    """Whether ``pid`` is still the process that wrote the state file."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _process_start(pid)
    return started is None or now is None or now == started


def remove_state() -> None:
    """Remove the state file if it still names this process.

    Not otherwise: a newer launcher may have replaced it, and a forked worker leaving the
    server's code runs this too.
    """
    state = _read_state()
    if state is None or state.get("pid") != os.getpid():
        return
    with suppress(OSError):
        os.unlink(os.path.join(state_dir(), STATE_FILE))


@contextmanager
def serving_state(
    bind: Sequence[str], bind_before_prestart: Sequence[str], say: Callable[[str], None]
) -> Iterator[None]:
    """Keep the state file for as long as the block serves; failing to write it is only a warning."""
    try:
        write_state(bind, bind_before_prestart)
    except OSError as exc:
        say(f"warning: cannot record where this server listens for `asgi-launcher probe` ({exc})")
        yield
        return
    try:
        yield
    finally:
        remove_state()


def served_bind(resolved: Sequence[str]) -> str:
    """The bind to probe: the first of ``resolved``, unless a live launcher started from the same
    environment serves elsewhere (its prestart exported ``PORT``, ``BIND`` or ``HOST``)."""
    state = _read_state()
    if state is not None:
        served, before = state.get("bind"), state.get("bind_before_prestart")
        if (
            isinstance(served, list)
            and served
            and all(isinstance(b, str) for b in served)
            and before == list(resolved)
            and _is_pid(state.get("pid"))
            and _alive(state["pid"], state.get("started"))
        ):
            return str(served[0])
    return resolved[0]
