"""``/proc``, read in one place: processes (alive, their group, their children), a worker's memory,
and sockets (this process's on the app's addresses; who listens on a port).

A worker's memory is its USS: the memory only that process holds (``Private_Clean +
Private_Dirty`` of ``/proc/PID/smaps_rollup``, plus its share of swapped-out pages,
``SwapPss``), which is what retiring it gives back. RSS also counts the pages a forked worker
still shares with the master and its siblings (about 20 MiB of Python and the server, measured
here), so a limit on RSS would trip on memory that no restart frees, differently per backend;
PSS splits shared pages among the processes that map them, so a worker's figure jumps when a
sibling exits. Reading ``smaps_rollup`` walks the page tables (1.5 to 3 ms a worker on the test
machine), so the cheap ``VmRSS + VmSwap`` of ``/proc/PID/status`` (never less than the USS) is
read first, and the USS only for a worker whose RSS is over the limit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from collections.abc import Iterator
from pathlib import Path


def read_text(path: Path) -> str | None:
    """A small file's text, stripped (None: gone or unreadable)."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def processes() -> Iterator[tuple[int, list[str]]]:
    """Every process as (pid, the fields of ``/proc/PID/stat`` after its name: state, ppid,
    pgid, ...); those gone while being read are left out."""
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    yield int(entry), f.read().rpartition(b")")[2].decode().split()
            except OSError:
                continue


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it: until it is reaped its pid, which is
    also the id of the process group it leads, cannot be given to another process, so
    signalling that group can never reach someone else's processes."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def live_group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies have closed their sockets)."""
    return [pid for pid, fields in processes() if int(fields[2]) == pgid and fields[0] not in ("Z", "X")]


def group_exists(pgid: int) -> bool:
    """Whether any process, a zombie included, is in group ``pgid``: only then is the id still
    that group's and not free to be given to someone else's new process."""
    return any(int(fields[2]) == pgid for _, fields in processes())


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for child, fields in processes():
        children.setdefault(int(fields[1]), []).append(child)
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def _kib_fields(text: str | None, names: tuple[str, ...]) -> dict[str, int] | None:
    """The ``Name:  123 kB`` fields of a /proc file, in bytes (None if the file was unreadable)."""
    if text is None:
        return None
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if sep and name in names:
            try:
                found[name] = int(rest.split()[0]) * 1024
            except (IndexError, ValueError):
                continue
    return found


def _rss(pid: int, proc: Path) -> int | None:
    fields = _kib_fields(read_text(proc / str(pid) / "status"), ("VmRSS", "VmSwap"))
    if not fields or "VmRSS" not in fields:
        return None
    return fields["VmRSS"] + fields.get("VmSwap", 0)


def _uss(pid: int, proc: Path) -> int | None:
    names = ("Private_Clean", "Private_Dirty", "SwapPss")
    fields = _kib_fields(read_text(proc / str(pid) / "smaps_rollup"), names)
    if not fields or "Private_Dirty" not in fields:
        return None
    return sum(fields.values())


def worker_memory(pid: int, proc: Path = Path("/proc")) -> tuple[int, str] | None:
    """Process ``pid``'s memory in bytes and which figure it is: ``USS``, or ``RSS`` where
    ``smaps_rollup`` cannot be read (kernels before 4.14); None if the process is gone."""
    uss = _uss(pid, proc)
    if uss is not None:
        return uss, "USS"
    rss = _rss(pid, proc)
    return None if rss is None else (rss, "RSS")


def memory_over(pid: int, limit: int, proc: Path = Path("/proc")) -> tuple[int, str] | None:
    """``worker_memory(pid)`` if it exceeds ``limit`` bytes, else None; cheap when it does not
    (only ``/proc/PID/status`` is read while the RSS, an upper bound of the USS, is under it)."""
    rss = _rss(pid, proc)
    if rss is None or rss <= limit:
        return None
    used = worker_memory(pid, proc)
    return used if used is not None and used[0] > limit else None


class OwnMemory:
    """This process's own memory measured against a limit, cheaply enough to look after every
    request (``MAX_WORKER_MEMORY`` in the worker pipeline).

    The RSS is one ``pread`` of ``/proc/self/statm``, kept open (a few microseconds). Only past
    ``next_look`` is the USS measured (``smaps_rollup``, milliseconds): while it is under the
    limit, the RSS must grow by the USS's headroom before the USS could pass it, and that is
    the next look. (A page shared with the master that this process writes becomes its own
    without growing the RSS: the master's once-a-second look still sees that.)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.next_look = limit
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        self._pid = os.getpid()

    def rss(self) -> int:
        return int(os.pread(self._statm, 64, 0).split()[1]) * self._page

    def over(self) -> tuple[int, str] | None:
        """``worker_memory`` of this process if it is over the limit, else None."""
        rss = self.rss()
        if rss <= self.next_look:
            return None
        used = worker_memory(self._pid)
        if used is None:
            return None
        if used[0] > self.limit:
            return used
        self.next_look = rss + (self.limit - used[0])
        return None


# -- sockets: this process's on the app's addresses (a worker's drain), and who listens on a port --
#
# Not from /proc/net/tcp: that table lists every TCP socket of the network namespace, TIME_WAIT
# ones included, and reading it costs about 4 ms per thousand (70 ms with the 18,000 a test run
# leaves behind), on the event loop of a draining worker ten times a second. A process's own
# sockets are asked of the sockets themselves; the listeners on a port, of the kernel's socket
# diagnostics (netlink sock_diag), which walks only the listening sockets.


def _own_stream_sockets() -> Iterator[tuple[int, int, socket.socket]]:
    """(fd, inode, socket) of each of this process's stream sockets; the socket object only
    borrows the descriptor (detached, never closed, once the caller moves on)."""
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc/self/fd"):
            fd = int(entry)
            try:
                status = os.fstat(fd)
                if not stat.S_ISSOCK(status.st_mode):
                    continue
                sock = socket.socket(fileno=fd)
            except OSError:  # (closed meanwhile, or listdir's own descriptor)
                continue
            try:
                if sock.type == socket.SOCK_STREAM:
                    yield fd, status.st_ino, sock
            finally:
                sock.detach()


def _on(sock: socket.socket, ports: frozenset[int], paths: frozenset[str]) -> bool:
    """Whether ``sock``'s own address is one of the app's (``ports``, unix socket ``paths``)."""
    try:
        name = sock.getsockname()
    except OSError:
        return False
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return bool(name[1] in ports)
    return sock.family == socket.AF_UNIX and isinstance(name, str) and name in paths


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def served_connections(ports: frozenset[int], paths: frozenset[str] = frozenset()) -> int:
    """How many client connections this process holds on the app's addresses (``ports``, unix
    socket ``paths``): what a draining worker waits to see closed, whatever its server."""
    served = {
        inode for _, inode, sock in _own_stream_sockets() if _on(sock, ports, paths) and not _listening(sock)
    }
    return len(served)


def listening_fds(ports: frozenset[int], paths: frozenset[str] = frozenset()) -> list[int]:
    """This process's file descriptors of the sockets listening on the app's addresses."""
    return [fd for fd, _, sock in _own_stream_sockets() if _on(sock, ports, paths) and _listening(sock)]


#: Netlink's socket diagnostics (linux/sock_diag.h, inet_diag.h); Python's socket module names none.
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_ERROR, _NLMSG_DONE = 4, 20, 2, 3
_NLM_F_REQUEST_DUMP = 0x301
_TCP_LISTEN = 10


def listening_sockets(port: int) -> list[tuple[str, int]]:
    """(address, inode) of each TCP socket listening on ``port`` in this network namespace:
    several when a server binds one socket per worker (``SO_REUSEPORT``)."""
    found: list[tuple[str, int]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as netlink:
        for family, size in ((socket.AF_INET, 4), (socket.AF_INET6, 16)):
            # nlmsghdr, then inet_diag_req_v2: family, protocol, extensions, states, an empty sockid
            header = struct.pack("=IHHII", 16 + 56, _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
            request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN) + bytes(48)
            netlink.send(header + request)
            while (data := netlink.recv(1 << 16)) and not _diag_messages(data, port, size, found):
                pass
    return found


def _diag_messages(data: bytes, port: int, size: int, found: list[tuple[str, int]]) -> bool:
    """Add the sockets on ``port`` among the inet_diag_msg replies in ``data``; True at the dump's end."""
    offset = 0
    while offset < len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            raise OSError(-struct.unpack_from("=i", data, offset + 16)[0], "sock_diag refused the dump")
        body = offset + 16  # inet_diag_msg: family, state, timer, retrans, then the sockid
        if struct.unpack_from(">H", data, body + 4)[0] == port:
            address = socket.inet_ntop(data[body], data[body + 8 : body + 8 + size])
            found.append((address, struct.unpack_from("=I", data, body + 68)[0]))
        offset += (length + 3) & ~3
    return False
