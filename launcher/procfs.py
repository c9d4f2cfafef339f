"""How much memory this process may use (the cgroup limit), and how much a worker uses.

The limit is read like the CPU budget (``launcher.config.resources``, whose cgroup helpers this reuses):
from this process's own cgroup (``/proc/self/cgroup``) and its ancestors, cgroup v2
``memory.max`` (``max``: none) and cgroup v1 ``memory.limit_in_bytes`` (a huge value: none),
the smallest that applies. Everything is read relative to ``root`` so tests can build fake
``/proc`` and ``/sys`` trees.

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

from pathlib import Path

from launcher.config.resources import CGROUP_MOUNT, _candidate_dirs, _own_cgroups, _read

MIB = 1024 * 1024

#: MiB the worker formula leaves to the master and its helper processes before it counts
#: workers: ``(memory_limit - MASTER_RESERVE_MIB) // WORKER_MEMORY``. Measured masters take
#: 30 to 34 MiB resident (Gunicorn's arbiter, the Hypercorn supervisor, Granian's master), and
#: multiprocessing's resource tracker (Hypercorn) 12 MiB more; the rest is headroom for dumb-init
#: and the page cache of the files the processes read, which cgroups charge too.
MASTER_RESERVE_MIB = 64

#: cgroup v1 writes "no limit" as the largest page-aligned counter value (9223372036854771712
#: with 4 KiB pages, less with larger pages); anything from 2**62 bytes (4 EiB) up is no limit.
UNLIMITED_FROM = 2**62


def _limit(raw: str | None) -> int | None:
    """A limit file's value in bytes, or None for no limit (``max``, the v1 sentinel, garbage)."""
    if raw is None or raw == "max":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    if value <= 0 or value >= UNLIMITED_FROM:
        return None
    return value


def memory_limit(root: Path = Path("/")) -> int | None:
    """The tightest memory limit (bytes) cgroup v2 or v1 imposes on this process, or None."""
    cgroups = _own_cgroups(root)
    limits: list[int] = []
    if "" in cgroups or not cgroups:  # v2 unified hierarchy
        for d in _candidate_dirs(root / CGROUP_MOUNT, cgroups.get("", "/")):
            if (limit := _limit(_read(d / "memory.max"))) is not None:
                limits.append(limit)
    mount = root / CGROUP_MOUNT / "memory"  # v1 memory controller
    if mount.is_dir():
        for d in _candidate_dirs(mount, cgroups.get("memory", "/")):
            if (limit := _limit(_read(d / "memory.limit_in_bytes"))) is not None:
                limits.append(limit)
    return min(limits) if limits else None


def memory_cap(limit: int | None, worker_memory: int) -> int | None:
    """The most workers ``limit`` bytes hold at ``worker_memory`` MiB each, after the master's
    reserve, at least 1; None without a limit or with ``worker_memory`` 0 (the cap off)."""
    if limit is None or worker_memory <= 0:
        return None
    return max(1, (limit - MASTER_RESERVE_MIB * MIB) // (worker_memory * MIB))


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
    fields = _kib_fields(_read(proc / str(pid) / "status"), ("VmRSS", "VmSwap"))
    if not fields or "VmRSS" not in fields:
        return None
    return fields["VmRSS"] + fields.get("VmSwap", 0)


def _uss(pid: int, proc: Path) -> int | None:
    names = ("Private_Clean", "Private_Dirty", "SwapPss")
    fields = _kib_fields(_read(proc / str(pid) / "smaps_rollup"), names)
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
