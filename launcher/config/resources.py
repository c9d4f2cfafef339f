"""How many CPUs and how much memory this process may really use.

``os.cpu_count()`` reports the host's cores, but a container limited with ``--cpus=1`` on a
64-core host would then fork 64 workers that fight over one core's worth of quota. The budget
is the smallest of the affinity mask and the cgroup (v2 or v1) quota, rounded up.

Everything is read relative to ``root`` so tests can build fake ``/proc`` and ``/sys`` trees.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from launcher.procfs import read_text as _read

CGROUP_MOUNT = "sys/fs/cgroup"


def _own_cgroups(root: Path) -> dict[str, str]:
    """Map controller name ("" for the v2 unified hierarchy) to this process's cgroup path."""
    text = _read(root / "proc/self/cgroup") or ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _candidate_dirs(mount: Path, cgroup_path: str) -> list[Path]:
    """The process's own cgroup and its ancestors, up to the mount point.

    A limit set on any ancestor applies too. Inside a container the path in /proc/self/cgroup
    often names a host path that is not mounted, so the mount root itself is always checked.
    """
    dirs: list[Path] = []
    rel = Path(cgroup_path.lstrip("/"))
    while True:
        candidate = mount / rel
        if candidate.is_dir() and candidate not in dirs:
            dirs.append(candidate)
        if rel == Path("."):
            break
        rel = rel.parent
    if mount not in dirs:
        dirs.append(mount)
    return dirs


def _quota(quota: str | None, period: str | None) -> float | None:
    if quota is None or period is None or quota == "max":
        return None
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # v1 uses -1 for "no limit"
        return None
    return q / p


def cgroup_quota(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota (in CPUs) that cgroup v2 or v1 imposes, or None if unlimited."""
    cgroups = _own_cgroups(root)
    limits: list[float] = []
    if "" in cgroups or not cgroups:  # v2 unified hierarchy
        for d in _candidate_dirs(root / CGROUP_MOUNT, cgroups.get("", "/")):
            fields = (_read(d / "cpu.max") or "").split()
            if len(fields) == 2 and (q := _quota(fields[0], fields[1])) is not None:
                limits.append(q)
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        mount = root / CGROUP_MOUNT / controller
        if not mount.is_dir():
            continue
        for d in _candidate_dirs(mount, cgroups.get("cpu", "/")):
            q = _quota(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))
            if q is not None:
                limits.append(q)
        break
    return min(limits) if limits else None


def cpu_budget(root: Path = Path("/"), affinity: int | None = None) -> int:
    """CPUs available to this process: min(affinity, cgroup quota), rounded up, at least 1."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    budget = float(affinity)
    quota = cgroup_quota(root)
    if quota is not None:
        budget = min(budget, quota)
    return max(1, math.ceil(budget))


# -- memory ---------------------------------------------------------------------------------

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
