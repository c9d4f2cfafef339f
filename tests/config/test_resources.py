"""The CPU budget, read through fake /proc and /sys trees (the seam cpu_budget really uses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.config.resources import cgroup_quota, cpu_budget


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_cgroup_at_all_uses_affinity(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None
    assert cpu_budget(tmp_path, affinity=64) == 64


def test_v2_quota_at_the_container_root(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    assert cpu_budget(tmp_path, affinity=64) == 2  # rounded up


def test_v2_max_means_unlimited(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "max 100000\n")
    assert cpu_budget(tmp_path, affinity=8) == 8


def test_v2_nested_cgroup_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/kubepods/pod1/ctr\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/cpu.max", "max 100000\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/cpu.max", "300000 100000\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/ctr/cpu.max", "max 100000\n")
    assert cpu_budget(tmp_path, affinity=64) == 3


def test_v1_quota(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "200000\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cpu_budget(tmp_path, affinity=64) == 2


def test_v1_unlimited_is_minus_one(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "4:cpu,cpuacct:/\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cpu_budget(tmp_path, affinity=4) == 4


def test_affinity_lower_than_quota_wins(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "800000 100000\n")
    assert cpu_budget(tmp_path, affinity=2) == 2


def test_tiny_quota_is_still_one_cpu(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "10000 100000\n")
    assert cpu_budget(tmp_path, affinity=16) == 1


@pytest.mark.parametrize("garbage", ["", "nonsense", "0 100000", "100000 0", "abc def"])
def test_garbage_cgroup_files_are_ignored(tmp_path: Path, garbage: str) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", garbage)
    assert cpu_budget(tmp_path, affinity=3) == 3


def test_this_machine() -> None:
    import os

    assert 1 <= cpu_budget() <= len(os.sched_getaffinity(0))
