"""Turn bind strings into socket addresses, and check they can be listened on.

Checking before the server starts turns "address in use" into one line naming the address,
instead of a server's retry loop and traceback. A unix socket gets the same treatment, decided
here once for every backend (each server has its own idea: Gunicorn and Hypercorn remove any
socket file, even one another server is listening on; Granian refuses a stale one).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import socket
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import ConfigError
from launcher.procfs import listening_fds


@dataclass(frozen=True)
class Address:
    family: socket.AddressFamily
    host: str  # or the socket path for AF_UNIX
    port: int

    @property
    def sockaddr(self) -> str | tuple[str, int]:
        return self.host if self.family == socket.AF_UNIX else (self.host, self.port)

    def local(self) -> Address:
        """Where a client on this machine reaches it (wildcards become loopback)."""
        if self.host == "0.0.0.0":
            return Address(self.family, "127.0.0.1", self.port)
        if self.host == "::":
            return Address(self.family, "::1", self.port)
        return self


_BIND = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^:\[\]\s/]+)):(?P<port>[0-9]{1,5})$")


def parse(bind: str) -> Address:
    """One listen address, ``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:/absolute/path``; the one
    parser of bind strings (``ValueError`` if it is none of them)."""
    bind = bind.strip()
    if bind.startswith("unix:"):
        if not bind[5:].startswith("/") or len(bind) == 6:
            raise ValueError(bind)
        return Address(socket.AF_UNIX, bind[5:], 0)
    match = _BIND.match(bind)
    if not match or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(bind)
    port = int(match["port"])
    if match["v6"] is not None:
        ipaddress.IPv6Address(match["v6"].split("%")[0])
        return Address(socket.AF_INET6, match["v6"], port)
    host = match["host"]
    try:
        socket.inet_pton(socket.AF_INET6, host)
        family = socket.AF_INET6
    except OSError:
        family = socket.AF_INET
    return Address(family, host, port)


def ops_host_for(binds: Iterable[str]) -> str:
    """Where the operations listener listens by default: the host of the app's first TCP address
    (a loopback app keeps it loopback, a wildcard one serves the probes on every interface), or
    ``127.0.0.1`` for an app on unix sockets only, which no other machine reaches either."""
    for bind in binds:
        address = parse(bind)
        if address.family != socket.AF_UNIX:
            return address.host
    return "127.0.0.1"


def ports_and_paths(binds: Iterable[str]) -> tuple[frozenset[int], frozenset[str]]:
    """The TCP ports and unix socket paths of listen addresses (what ``launcher.procfs`` matches)."""
    addresses = [parse(bind) for bind in binds]
    ports = frozenset(a.port for a in addresses if a.family != socket.AF_UNIX)
    return ports, frozenset(a.host for a in addresses if a.family == socket.AF_UNIX)


def socket_files(binds: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """The unix socket files of ``binds`` as they are now: path -> (device, inode, change time;
    an inode number is reused at once for a file made at the path anew)."""
    found: dict[str, tuple[int, int, int]] = {}
    for path in ports_and_paths(binds)[1]:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if stat.S_ISSOCK(st.st_mode):
                found[path] = (st.st_dev, st.st_ino, st.st_ctime_ns)
    return found


def remove_socket_files(files: dict[str, tuple[int, int, int]]) -> None:
    """Remove each socket file of ``files`` (``socket_files``) that is still that very file: one
    another process has bound at the path since is left alone."""
    for path, identity in files.items():
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino, st.st_ctime_ns) == identity:
                os.unlink(path)


def detach_listeners(binds: Iterable[str]) -> int:
    """Stop accepting on ``binds`` in this process without closing what a server holds: each of
    this process's descriptors of a socket listening there becomes a non-blocking listening
    socket nobody connects to (its server's accept finds nothing more); returns how many.

    For what Python cannot close: Granian's accept loop runs in Rust, and a master's copy of a
    shared socket may be owned by its server's objects. The socket itself stays open wherever
    else it is held (the other workers accept its connections), and closes once no process
    holds it (later connections are then refused, not left waiting in its queue).
    """
    ports, paths = ports_and_paths(binds)
    fds = listening_fds(ports, paths)
    for fd in fds:
        with socket.socket() as dummy:
            dummy.bind(("127.0.0.1", 0))
            dummy.listen(1)
            dummy.setblocking(False)
            os.dup2(dummy.fileno(), fd, inheritable=False)
    return len(fds)


#: SO_ATTACH_FILTER (Linux; Python's socket module does not name it).
_SO_ATTACH_FILTER = 26


def _syn_dropping_filter() -> tuple[bytes, object]:
    """A classic BPF socket filter that drops TCP segments opening a connection (SYN without
    ACK) and passes everything else; ``(sock_fprog bytes, the program it points to)`` (keep the
    second alive while the first is used). A socket filter sees a segment from its TCP header."""
    import ctypes

    class Instruction(ctypes.Structure):
        _fields_ = (
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        )

    class Program(ctypes.Structure):
        _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Instruction)))

    code = (Instruction * 5)(
        Instruction(0x30, 0, 0, 13),  # ldb [13]: the flags
        Instruction(0x54, 0, 0, 0x12),  # and #SYN|ACK
        Instruction(0x15, 0, 1, 0x02),  # jeq #SYN: drop, else pass
        Instruction(0x06, 0, 0, 0),  # ret #0: drop
        Instruction(0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: pass whole
    )
    return bytes(Program(len(code), code)), code


def can_refuse_new_connections() -> bool:
    """Whether this process may attach the filter ``refuse_new_connections`` uses (some kernels
    ask for ``CAP_NET_ADMIN``, which a container lacks by default)."""
    program, code = _syn_dropping_filter()
    with socket.socket() as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)
        except PermissionError:
            return False
    del code
    return True


def refuse_new_connections(binds: Iterable[str]) -> int:
    """Make the TCP sockets listening on ``binds`` (held by this process and, shared, by the
    workers) ignore new connections from now on, while connections already made wait in the
    queue to be accepted; returns how many sockets.

    A listening socket closed with connections in its queue resets them, after their client
    has sent its request: at a stop, under load, a few requests failed that way. With this
    first, a worker can accept what is queued before it stops accepting; a client that connects
    later gets no answer to its SYN, and once the socket is closed, a refusal: it has sent
    nothing. (Unix sockets have no such step: what is queued there when they close is lost.)

    Best effort: some kernels let only a process with ``CAP_NET_ADMIN`` attach a socket filter,
    which a container does not have by default (``docker run --cap-add NET_ADMIN`` gives it).
    Without it the stop goes on as servers' own do: what is queued when the socket closes is
    reset.
    """
    ports, _ = ports_and_paths(binds)
    program, code = _syn_dropping_filter()
    refused = 0
    for fd in listening_fds(ports):
        with socket.socket(fileno=os.dup(fd)) as sock, contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)
            refused += 1
    del code
    return refused


def repeated(binds: Iterable[str]) -> str | None:
    """What makes a list of listen addresses unusable together (None: nothing): an address
    repeated, or two that take the same socket (``ValueError`` if one is no address at all)."""
    seen: list[tuple[str, Address]] = []
    for bind in binds:
        address = parse(bind)
        for earlier, other in seen:
            if _same_socket(address, other):
                return (
                    f"{bind} is repeated" if earlier == bind else f"{bind} takes the same socket as {earlier}"
                )
        seen.append((bind, address))
    return None


def _same_socket(a: Address, b: Address) -> bool:
    """Whether listening on ``a`` and on ``b`` would take the same socket address: the same path,
    the same IP address (however written) and port, or a wildcard and any address of its family
    on that port (Linux refuses the second bind with EADDRINUSE)."""
    if a.family != b.family or a.port != b.port:
        return False
    if a.family == socket.AF_UNIX:
        return os.path.normpath(a.host) == os.path.normpath(b.host)
    hosts = {_canonical(a.host), _canonical(b.host)}
    return len(hosts) == 1 or bool(hosts & {"0.0.0.0", "::"})


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        return host.lower()


_HINTS = {
    errno.EADDRINUSE: "address already in use; stop what listens there or set PORT or BIND to a free port",
    errno.EACCES: "permission denied: ports below 1024 need root; choose a port from 1024 up: "
    "PORT=8000 or --port 8000",
    errno.EADDRNOTAVAIL: "this machine has no such address; set HOST or BIND to one of its addresses",
}

_OPS_HINTS = {
    errno.EADDRINUSE: "address already in use; stop what listens there or set OPS_PORT to a free port",
    errno.EACCES: "permission denied; ports below 1024 need root, so set OPS_PORT (e.g. 9000) instead",
    errno.EADDRNOTAVAIL: "this machine has no such address; set OPS_HOST to one of its addresses",
}


def check_can_listen(binds: tuple[str, ...], variable: str = "BIND", origin: str | None = None) -> None:
    """Raise ``ConfigError`` naming the first address that cannot be bound: as ``variable``'s
    value, or with ``origin``, what else decided it (``the default``, ``--port``)."""
    for bind in binds:
        address = parse(bind)
        if address.family == socket.AF_UNIX:
            _check_unix_path(bind, address.host, variable)
            continue
        family = address.family
        try:
            infos = socket.getaddrinfo(address.host, address.port, family, socket.SOCK_STREAM)
        except socket.gaierror:
            infos = []
        if not infos and family == socket.AF_INET:
            raise ConfigError(f"{variable}={bind!r} cannot be used: host {address.host!r} does not resolve")
        sockaddr = infos[0][4] if infos else address.sockaddr
        with socket.socket(infos[0][0] if infos else family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                hint = _HINTS.get(exc.errno or 0, exc.strerror or str(exc))
                if variable == "OPS_PORT":  # the hints name the app's variables
                    hint = _OPS_HINTS.get(exc.errno or 0, hint)
                elif exc.errno == errno.EACCES and not origin:
                    hint = "permission denied: ports below 1024 need root; set BIND to a port from 1024 up"
                elif exc.errno == errno.EACCES and origin == "the default":
                    hint = hint.replace("; ", " (the default, 80, is for the image, which runs as root); ", 1)
                named = f"{bind} ({origin})" if origin else f"{variable}={bind!r}"
                raise ConfigError(f"{named} cannot be used: {hint}") from None


#: sockaddr_un's sun_path is 108 bytes on Linux, the terminating NUL included.
_UNIX_PATH_MAX = 107


def _check_unix_path(bind: str, path: str, variable: str) -> None:
    """Refuse a unix socket path that cannot be listened on; remove a stale socket file.

    A socket file that refuses connections was left by a server that is gone (a killed master
    cannot remove it), so it is removed for the server to bind afresh; one that accepts is in
    use, and is left alone. Anything else at the path (a regular file, a directory) is the
    user's, never removed.
    """

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"{variable}={bind!r} cannot be used: {reason}")

    if len(os.fsencode(path)) > _UNIX_PATH_MAX:
        raise refuse(f"a unix socket path may be at most {_UNIX_PATH_MAX} bytes long; choose a shorter one")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        _check_socket_directory(path, refuse)
        return
    except OSError as exc:
        raise refuse(f"{path} cannot be looked at: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a symbolic link, not a socket"
            if stat.S_ISLNK(mode)
            else "a file that is not a socket"
        )
        raise refuse(f"{path} is {kind}; remove it or set BIND to another path")
    try:
        in_use = _unix_socket_in_use(path)
    except PermissionError:
        raise refuse(f"permission denied: this user may not connect to the socket {path}") from None
    if in_use:
        raise refuse(
            "address already in use; a server is listening on that socket: stop it or set BIND to another path"
        )
    try:
        os.unlink(path)  # stale: nobody listens on it any more
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise refuse(f"the stale socket file {path} cannot be removed: {exc.strerror}") from None


def _check_socket_directory(path: str, refuse: Callable[[str], ConfigError]) -> None:
    """The socket will be created in its directory: that must exist and be writable."""
    directory = Path(path).parent
    if not directory.is_dir():
        raise refuse(f"its directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise refuse(f"permission denied: this user cannot create files in {directory}")


def _unix_socket_in_use(path: str) -> bool:
    """Whether something accepts connections on the socket at ``path`` (a refusal means stale).

    A listener whose backlog is full does not accept within the timeout (or says EAGAIN): that
    counts as in use. ``PermissionError``: this user may not write to the socket, so cannot tell.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except PermissionError:
            raise
        except OSError:
            return True
        return True
