"""The memory limit (fake /proc and /sys trees, the seam cpu_budget uses too), the worker formula
with its memory cap, MAX_WORKER_MEMORY's measurement and policy, and the workers' OOM score."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from launcher import Backend, Config, ConfigError
from launcher.config.resolve import resolve, worker_bound
from launcher.config.resources import MASTER_RESERVE_MIB, MIB, memory_cap, memory_limit
from launcher.launch.prepare import describe_workers, memory_warning
from launcher.master import Master
from launcher.procfs import memory_over, worker_memory

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


# -- a worker's memory ---------------------------------------------------------------------


def fake_proc(tmp_path: Path, pid: int, rss_kib: int, uss_kib: int | None, swap_kib: int = 0) -> Path:
    write(tmp_path, f"{pid}/status", f"Name:\tpython\nVmRSS:\t{rss_kib} kB\nVmSwap:\t{swap_kib} kB\n")
    if uss_kib is not None:
        write(
            tmp_path,
            f"{pid}/smaps_rollup",
            "00400000-7ffd [rollup]\n"
            f"Rss:            {rss_kib} kB\nPss:            {uss_kib + 5} kB\n"
            f"Private_Clean:  {uss_kib // 4} kB\nPrivate_Dirty:  {uss_kib - uss_kib // 4} kB\n"
            f"SwapPss:        {swap_kib} kB\n",
        )
    return tmp_path


def test_worker_memory_is_the_uss(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 7, rss_kib=300 * 1024, uss_kib=250 * 1024, swap_kib=1024)
    assert worker_memory(7, proc) == (251 * MIB, "USS")
    assert memory_over(7, 200 * MIB, proc) == (251 * MIB, "USS")
    assert memory_over(7, 260 * MIB, proc) is None  # RSS over, USS not: shared pages do not count


def test_the_uss_is_read_only_when_the_rss_is_over(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 8, rss_kib=100 * 1024, uss_kib=None)
    (proc / "8" / "smaps_rollup").mkdir()  # would fail if it were read; it is not
    assert memory_over(8, 200 * MIB, proc) is None


def test_without_smaps_rollup_the_figure_is_rss(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 9, rss_kib=300 * 1024, uss_kib=None)
    assert worker_memory(9, proc) == (300 * MIB, "RSS")
    assert memory_over(9, 200 * MIB, proc) == (300 * MIB, "RSS")


def test_a_gone_process_has_no_figure(tmp_path: Path) -> None:
    assert worker_memory(12345, tmp_path) is None
    assert memory_over(12345, 1, tmp_path) is None


def test_this_process() -> None:
    used = worker_memory(os.getpid())
    assert used is not None and used[1] in ("USS", "RSS") and 1 * MIB < used[0] < 4096 * MIB


# -- MAX_WORKER_MEMORY in the master (Master.stop_oversized) --------------------------------


@pytest.fixture
def supervision(tmp_path: Path) -> Iterator[Callable[..., tuple[Master, list[str]]]]:
    made: list[Master] = []

    def make(**env: str) -> tuple[Master, list[str]]:
        write(tmp_path, "main.py", "app = None\n")
        master = Master(resolve({"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2", **env}, Backend))
        lines: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                lines.append(record.getMessage())

        master.log.handlers = [Collect()]
        made.append(master)
        return master, lines

    yield make
    for master in made:
        master.close()


def test_an_oversized_worker_is_stopped_gracefully_once_and_is_no_crash(
    supervision: Callable[..., tuple[Master, list[str]]],
) -> None:
    policy, lines = supervision(MAX_WORKER_MEMORY="200", TIMEOUT="0")
    assert policy.check_every == 1.0  # the master's loop must turn for it, even without TIMEOUT
    sizes = {101: (250 * MIB, "USS"), 102: None}
    stopped: list[int] = []

    def measure(pid: int, limit: int) -> tuple[int, str] | None:
        assert limit == 200 * MIB
        return sizes.get(pid)

    assert policy.stop_oversized([101, 102], stopped.append, measure) == [101]
    assert stopped == [101]
    assert lines == [
        "worker 101 uses 250.0 MiB (USS), over MAX_WORKER_MEMORY=200 MiB; retiring it gracefully, "
        "starting a new one"
    ]
    assert policy.stopped_by_master(101)
    policy._last_memory_check = 0.0  # the next look, a second later: 101 is already stopping
    assert policy.stop_oversized([101, 102], stopped.append, measure) == []
    assert policy.exited(101, -15, booted=True).replace  # Uvicorn re-raises the SIGTERM; exit 0 elsewhere
    assert len(lines) == 1  # the one line, no "died", no crash counted
    assert policy.crash_loop.describe().startswith("0 ")


def test_looks_at_most_once_a_second(supervision: Callable[..., tuple[Master, list[str]]]) -> None:
    policy, _ = supervision(MAX_WORKER_MEMORY="200")
    calls: list[int] = []

    def measure(pid: int, limit: int) -> None:
        calls.append(pid)

    policy.stop_oversized([1], lambda pid: None, measure)
    policy.stop_oversized([1], lambda pid: None, measure)
    assert calls == [1]


def test_off_by_default(supervision: Callable[..., tuple[Master, list[str]]]) -> None:
    policy, _ = supervision(TIMEOUT="0")
    assert policy.check_every is None
    assert policy.stop_oversized([os.getpid()], lambda pid: pytest.fail("stopped")) == []


def test_a_worker_that_is_gone_meanwhile_is_fine(
    supervision: Callable[..., tuple[Master, list[str]]],
) -> None:
    policy, lines = supervision(MAX_WORKER_MEMORY="1")

    def gone(pid: int) -> None:
        raise ProcessLookupError(pid)

    assert policy.stop_oversized([5], gone, lambda pid, limit: (2 * MIB, "USS")) == [5]
    assert len(lines) == 1


# -- the OOM killer's choice ---------------------------------------------------------------


def test_a_worker_raises_its_oom_score_above_its_masters() -> None:
    """In a child (so this process keeps its score): the child is the "worker", we the master."""
    master = int(Path("/proc/self/oom_score_adj").read_text())
    code = (
        "import os; from launcher.worker.bootstrap import raise_oom_score\n"
        "raise_oom_score(os.getppid())\n"
        "print(open('/proc/self/oom_score_adj').read().strip(), raise_oom_score(os.getppid()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    wanted = min(1000, master + 1000)
    assert out.stdout.split() == [str(wanted), str(wanted)]  # and a second call changes nothing
    assert int(Path("/proc/self/oom_score_adj").read_text()) == master
