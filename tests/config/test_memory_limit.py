"""The memory limit this process may use (cgroup v2 and v1) and the worker count it allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import Backend, Config, ConfigError
from launcher.config.resolve import resolve, worker_bound
from launcher.config.resources import MASTER_RESERVE_MIB, MIB, memory_cap, memory_limit
from launcher.launch.prepare import describe_workers, memory_warning

V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 reads back for "no limit" (4 KiB pages)


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -- the limit, cgroup v2 and v1 -----------------------------------------------------------


def test_no_cgroup_at_all_is_no_limit(tmp_path: Path) -> None:
    assert memory_limit(tmp_path) is None


def test_v2_limit_at_the_container_root(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/memory.max", f"{600 * MIB}\n")
    assert memory_limit(tmp_path) == 600 * MIB


def test_v2_max_means_no_limit(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/memory.max", "max\n")
    assert memory_limit(tmp_path) is None


def test_v2_nested_cgroups_take_the_tightest_ancestor(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/kubepods/pod1/ctr\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/memory.max", f"{8192 * MIB}\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/memory.max", f"{1024 * MIB}\n")  # the pod's
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/ctr/memory.max", "max\n")
    assert memory_limit(tmp_path) == 1024 * MIB


def test_v1_limit_inside_a_container(tmp_path: Path) -> None:
    # Docker on cgroup v1: /proc/self/cgroup names a host path that is not mounted in the
    # container; the container's own cgroup is the mount root.
    write(tmp_path, "proc/self/cgroup", "4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n0::/docker/abc\n")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", "629145600\n")
    assert memory_limit(tmp_path) == 629145600


def test_v1_unlimited_sentinel_is_no_limit(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "4:memory:/\n")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", f"{V1_UNLIMITED}\n")
    assert memory_limit(tmp_path) is None
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854710272\n")  # 64 KiB pages
    assert memory_limit(tmp_path) is None


def test_v1_nested_limit_under_an_unlimited_one(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "4:memory:/process_api/job\n")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", f"{V1_UNLIMITED}\n")
    write(tmp_path, "sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", f"{2048 * MIB}\n")
    write(tmp_path, "sys/fs/cgroup/memory/process_api/job/memory.limit_in_bytes", f"{V1_UNLIMITED}\n")
    assert memory_limit(tmp_path) == 2048 * MIB


def test_v1_and_v2_together_the_smallest_applies(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "4:memory:/\n0::/\n")
    write(tmp_path, "sys/fs/cgroup/memory.max", f"{900 * MIB}\n")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", f"{700 * MIB}\n")
    assert memory_limit(tmp_path) == 700 * MIB


@pytest.mark.parametrize("garbage", ["", "nonsense", "0", "-1", "12.5", "\xff"])
def test_garbage_limit_files_are_ignored(tmp_path: Path, garbage: str) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/memory.max", garbage)
    assert memory_limit(tmp_path) is None


def test_unreadable_limit_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/ctr\n")
    (tmp_path / "sys/fs/cgroup/ctr/memory.max").mkdir(parents=True)  # reading it fails (EISDIR)
    write(tmp_path, "sys/fs/cgroup/memory.max", f"{500 * MIB}\n")
    assert memory_limit(tmp_path) == 500 * MIB
    (tmp_path / "sys/fs/cgroup/memory.max").write_bytes(b"\xff\xfe")  # not text
    assert memory_limit(tmp_path) is None


def test_unreadable_proc_self_cgroup_still_reads_the_mount_root(tmp_path: Path) -> None:
    (tmp_path / "proc/self/cgroup").mkdir(parents=True)
    write(tmp_path, "sys/fs/cgroup/memory.max", f"{300 * MIB}\n")
    assert memory_limit(tmp_path) == 300 * MIB


def test_this_machine() -> None:
    limit = memory_limit()
    assert limit is None or limit > 0


# -- the formula ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpus", "per_core", "max_workers", "web_concurrency", "limit_mib", "worker_mib", "expected"),
    [
        # No memory limit: the reference's formula, exactly.
        (8, 1.0, None, None, None, 128, (8, "cpus")),
        (1, 1.0, None, None, None, 128, (2, "cpus")),
        (2, 3.0, None, None, None, 128, (6, "cpus")),
        # The CPU formula is the tighter bound.
        (2, 1.0, None, None, 600, 128, (2, "cpus")),
        # The memory limit is: (600 - 64) // 128 = 4.
        (8, 1.0, None, None, 600, 128, (4, "memory")),
        (2, 4.0, None, None, 600, 128, (4, "memory")),
        # Below the CPU formula's floor of 2, at least 1 worker.
        (2, 1.0, None, None, 256, 128, (1, "memory")),
        (2, 1.0, None, None, 32, 128, (1, "memory")),
        # MAX_WORKERS caps both.
        (8, 1.0, 3, None, 600, 128, (3, "max_workers")),
        (8, 1.0, 6, None, 600, 128, (4, "memory")),
        # WEB_CONCURRENCY wins over all of it.
        (8, 1.0, 1, 7, 600, 128, (7, "web_concurrency")),
        # WORKER_MEMORY=0 turns the cap off.
        (8, 1.0, None, None, 600, 0, (8, "cpus")),
        # Smaller workers fit more: (600 - 64) // 64 = 8.
        (16, 1.0, None, None, 600, 64, (8, "memory")),
    ],
)
def test_formula_table(
    cpus: int,
    per_core: float,
    max_workers: int | None,
    web_concurrency: int | None,
    limit_mib: int | None,
    worker_mib: int,
    expected: tuple[int, str],
) -> None:
    limit = None if limit_mib is None else limit_mib * MIB
    assert worker_bound(cpus, per_core, max_workers, web_concurrency, limit, worker_mib) == expected


def test_memory_cap() -> None:
    assert MASTER_RESERVE_MIB == 64
    assert memory_cap(None, 128) is None
    assert memory_cap(600 * MIB, 0) is None
    assert memory_cap(600 * MIB, 128) == 4
    assert memory_cap(1024 * MIB, 128) == 7
    assert memory_cap(10 * MIB, 128) == 1


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake root with /app/main.py and a 600 MiB cgroup v2 limit."""
    write(tmp_path, "app/main.py", "app = None\n")
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/memory.max", f"{600 * MIB}\n")
    return tmp_path


def res(env: dict[str, str], root: Path, affinity: int) -> Config:
    return resolve(env, Backend, root=root, affinity=affinity)


@pytest.mark.parametrize(
    ("env", "affinity", "workers", "source", "line"),
    [
        ({}, 8, 4, "computed (memory limit)", "4 workers: 8 CPUs, capped by a 600 MiB memory limit at 128 MiB a worker"),
        ({}, 2, 2, "computed (CPU formula)", "2 workers: 2 CPUs (a 600 MiB memory limit allows 4 at 128 MiB a worker)"),
        ({"MAX_WORKERS": "3"}, 8, 3, "computed (MAX_WORKERS)", "3 workers: 8 CPUs, capped by MAX_WORKERS=3"),
        ({"WEB_CONCURRENCY": "3"}, 8, 3, "env:WEB_CONCURRENCY", "3 workers: WEB_CONCURRENCY (8 CPUs)"),
        ({"WORKER_MEMORY": "0"}, 8, 8, "computed (CPU formula)", "8 workers: 8 CPUs"),
        ({"WORKER_MEMORY": "256"}, 8, 2, "computed (memory limit)", "2 workers: 8 CPUs, capped by a 600 MiB memory limit at 256 MiB a worker"),
        ({"WORKER_MEMORY": "1000"}, 1, 1, "computed (memory limit)", "1 worker: 1 CPU, capped by a 600 MiB memory limit at 1000 MiB a worker"),
    ],
)  # fmt: skip
def test_resolve_shows_the_bound_that_decided(
    root: Path, env: dict[str, str], affinity: int, workers: int, source: str, line: str
) -> None:
    c = res(env, root, affinity)
    assert (c.workers, c.sources["workers"]) == (workers, source)
    assert (c.memory_limit, c.sources["memory_limit"]) == (600 * MIB, "computed")
    assert describe_workers(c) == line
    data = c.to_dict()
    assert data["memory_limit"] == 600 * MIB and "worker_memory" in data and "max_worker_memory" in data


def test_no_memory_limit_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path, "app/main.py", "app = None\n")
    for affinity in (1, 2, 8, 64):
        c = res({}, tmp_path, affinity)
        assert c.workers == max(affinity, 2) and c.memory_limit is None
        assert describe_workers(c) == f"{c.workers} workers: {affinity} CPU{'s' if affinity > 1 else ''}"
        assert memory_warning(res({"WEB_CONCURRENCY": "50"}, tmp_path, affinity)) is None


def test_web_concurrency_over_the_limit_warns_in_one_line(root: Path) -> None:
    assert memory_warning(res({"WEB_CONCURRENCY": "4"}, root, 2)) is None  # 4 x 128 fit in 600 - 64
    c = res({"WEB_CONCURRENCY": "5"}, root, 2)
    assert c.workers == 5  # still wins
    warning = memory_warning(c)
    assert warning is not None and "\n" not in warning
    assert "WEB_CONCURRENCY=5" in warning and "640 MiB" in warning and "600 MiB memory limit" in warning
    assert memory_warning(res({"WEB_CONCURRENCY": "5", "WORKER_MEMORY": "0"}, root, 2)) is None
    assert memory_warning(res({}, root, 64)) is None  # computed counts never exceed the cap


def test_a_config_file_setting_the_same_count_does_not_hide_the_bound(root: Path) -> None:
    formula = res({}, root, 8)
    same = formula.with_file_settings({"workers": (4, "file:/gunicorn_conf.py")})
    assert same.sources["workers"] == formula.sources["workers"] == "computed (memory limit)"
    assert describe_workers(same) == describe_workers(formula)
    other = formula.with_file_settings({"workers": (6, "file:/app/gunicorn_conf.py")})
    assert describe_workers(other) == "6 workers: file:/app/gunicorn_conf.py"
    warning = memory_warning(other)
    assert warning is not None and "file:/app/gunicorn_conf.py" in warning
    asked = res({"WEB_CONCURRENCY": "6"}, root, 8)
    spelled = asked.with_file_settings({"workers": (6, "file:/gunicorn_conf.py")})
    assert spelled.sources["workers"] == "env:WEB_CONCURRENCY"
    warning = memory_warning(spelled)
    assert warning is not None and "WEB_CONCURRENCY=6" in warning


def test_empty_memory_variables_mean_their_defaults(root: Path) -> None:
    c = res({"WORKER_MEMORY": "", "MAX_WORKER_MEMORY": " "}, root, 8)
    assert (c.worker_memory, c.max_worker_memory) == (128, None)
    assert c.sources["worker_memory"] == "default (empty env:WORKER_MEMORY)"
    assert c.sources["max_worker_memory"] == "default (empty env:MAX_WORKER_MEMORY)"


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"MAX_WORKER_MEMORY": "300"}, "max_worker_memory", 300),
        ({"MAX_WORKER_MEMORY": "0"}, "max_worker_memory", None),
        ({"WORKER_MEMORY": "64"}, "worker_memory", 64),
    ],
)
def test_memory_settings_parse(root: Path, env: dict[str, str], field: str, value: object) -> None:
    assert getattr(res(env, root, 2), field) == value


@pytest.mark.parametrize(
    "env", [{"WORKER_MEMORY": "-1"}, {"WORKER_MEMORY": "1.5"}, {"MAX_WORKER_MEMORY": "lots"}]
)
def test_bad_memory_values_are_refused(root: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        res(env, root, 2)
    assert next(iter(env)) in str(err.value) and "MiB" in str(err.value)
