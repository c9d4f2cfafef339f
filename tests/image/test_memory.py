"""The memory limit in real containers (``docker run --memory``, which this sandbox's Docker
enforces through the cgroup v1 memory controller): the worker count it caps, the kernel's OOM
killer taking a worker and never the master, and MAX_WORKER_MEMORY retiring a growing worker."""

from __future__ import annotations

import http.client
import json
import re
import time
from dataclasses import dataclass

import pytest
from imagekit import TAG, Container, Docker

from launcher.testing import BACKENDS, DEFAULT_BACKEND

pytestmark = pytest.mark.image

MIB = 1024 * 1024
#: The kit's hello app is in the image (launcher.testing); /grow?mb=N keeps N MiB more alive.
HELLO = {"APP_MODULE": "launcher.testing.apps.hello:app", "ACCESS_LOG": ""}
DIED = re.compile(r"asgi-launcher: worker (\d+) died \(killed by SIGKILL\)")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    oom_score_adj: int
    cmdline: str


def processes(c: Container) -> list[Proc]:
    script = (
        "for p in /proc/[0-9]*; do [ -r $p/stat ] || continue; "
        'echo "$(cut -d" " -f1,4 $p/stat) $(cat $p/oom_score_adj) $(tr "\\0" " " < $p/cmdline)"; done'
    )
    found = []
    for line in c.docker("exec", c.name, "sh", "-c", script).stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and parts[0].isdigit():
            found.append(Proc(int(parts[0]), int(parts[1]), int(parts[2]), parts[3].strip()))
    return found


def master(c: Container) -> Proc:
    """The launcher process: dumb-init's (pid 1's) one child."""
    (launcher,) = [p for p in processes(c) if p.ppid == 1 and "asgi-launcher run" in p.cmdline]
    return launcher


def oom_kills(c: Container) -> int:
    """How many processes the kernel's OOM killer has killed in the container's cgroup."""
    script = "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null"
    text = c.docker("exec", c.name, "sh", "-c", script, check=False).stdout
    match = re.search(r"^oom_kill (\d+)$", text, re.M)
    assert match, f"no oom_kill counter in the container's cgroup: {text!r}"
    return int(match.group(1))


def config(docker: Docker, c: Container) -> dict[str, object]:
    return dict(json.loads(docker("exec", c.name, "asgi-launcher", "config", "--json").stdout))


@pytest.mark.timeout(300)  # seven containers at once
def test_the_memory_limit_caps_the_worker_count(docker: Docker) -> None:
    default = docker.run(TAG, "--memory=600m")  # the defaults: WORKER_MEMORY=128
    wide = docker.run(TAG, "--memory=600m", env={"WORKERS_PER_CORE": "4"})
    small = docker.run(TAG, "--memory=256m")
    over = docker.run(TAG, "--memory=600m", env={"WEB_CONCURRENCY": "6"})
    others = {
        backend: docker.run(TAG, "--memory=600m", env={"WORKERS_PER_CORE": "4", "SERVER_BACKEND": backend})
        for backend in BACKENDS
        if backend != DEFAULT_BACKEND
    }
    for c in (default, wide, small, over, *others.values()):
        c.wait_ready()
    cpus = int(config(docker, default)["cpus"])  # type: ignore[call-overload]
    cap = (600 - 64) // 128  # 4
    cases = [
        (default, 600, min(max(cpus, 2), cap), 1),
        (wide, 600, min(4 * cpus, cap), 4),
        (small, 256, 1, 1),  # (256 - 64) // 128 = 1, below the CPU formula's floor of 2
        *((c, 600, min(4 * cpus, cap), 4) for c in others.values()),
    ]
    for c, limit, workers, per_core in cases:
        shown = config(docker, c)
        assert shown["memory_limit"] == limit * MIB and shown["worker_memory"] == 128, shown
        assert shown["workers"] == workers, shown
        sources = shown["sources"]
        assert isinstance(sources, dict)
        capped = workers < max(int(per_core * cpus), 2)
        bound = "computed (memory limit)" if capped else "computed (CPU formula)"
        # The image's /gunicorn_conf.py spells the env contract as Gunicorn settings: it sets the
        # same count, so the bound that decided it stays the source under Gunicorn too.
        assert sources["workers"] == bound, shown
        assert c.workers() == workers, c.processes()  # the process list agrees
    if cpus == 2:  # this machine
        assert "2 workers: 2 CPUs (a 600 MiB memory limit allows 4 at 128 MiB a worker)" in default.logs()
    for c in (wide, *others.values()):
        line = f"4 workers: {cpus} CPUs, capped by a 600 MiB memory limit at 128 MiB a worker"
        assert line in c.logs(), c.logs()[-2000:]
    assert "1 worker: " in small.logs() and "capped by a 256 MiB memory limit" in small.logs()
    # WEB_CONCURRENCY still wins, with one warning line.
    assert over.workers() == 6
    warnings = [line for line in over.logs().splitlines() if "warning:" in line and "memory limit" in line]
    assert len(warnings) == 1 and "WEB_CONCURRENCY=6" in warnings[0], over.logs()[-2000:]


def _get(c: Container, path: str) -> int | None:
    try:
        return c.get(path, timeout=30)[0]
    except (OSError, http.client.HTTPException):
        return None


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_oom_killer_takes_a_worker_never_the_master(docker: Docker, backend: str) -> None:
    c = docker.run(TAG, "--memory=400m", env={**HELLO, "SERVER_BACKEND": backend})
    c.wait_ready("/pid")
    assert c.workers() == 2  # (400 - 64) // 128 = 2 = the CPU formula here
    before = master(c)
    others = [p for p in processes(c) if p.ppid == before.pid]  # what the master started
    workers = [p for p in others if "resource_tracker" not in p.cmdline]
    assert len(workers) == 2 and all(
        p.oom_score_adj == min(1000, before.oom_score_adj + 1000) for p in workers
    )
    assert all(p.oom_score_adj == before.oom_score_adj for p in others if p not in workers)  # the tracker

    # 40 MiB a request, kept: a worker at ~8 of them fills the container. Stop after 3 OOM kills,
    # below the crash-loop rule (5 deaths within 30 s); the requests in between are answered.
    statuses: list[int | None] = []
    deadline = time.monotonic() + 180
    while len(DIED.findall(c.logs())) < 3 and time.monotonic() < deadline and len(statuses) < 100:
        statuses.append(_get(c, "/grow?mb=40"))
        if statuses[-1] is None:
            time.sleep(1.0)  # the worker it went to was killed: give the master a moment
    logs = c.logs()
    died = DIED.findall(logs)
    assert len(died) >= 3, (statuses, logs[-3000:])
    assert oom_kills(c) >= len(died), logs[-3000:]  # it was the kernel's OOM killer
    assert c.state()["Running"] is True and c.state()["Status"] == "running"
    assert master(c).pid == before.pid  # the master was never the one killed
    assert statuses.count(200) >= len(statuses) - len(died) - 1, (
        statuses
    )  # at most the requests in flight failed
    # Replaced: 2 workers serve again, fresh ones.
    end = time.monotonic() + 30
    while time.monotonic() < end and not (_get(c, "/pid") == 200 and c.workers() == 2):
        time.sleep(0.5)
    assert _get(c, "/pid") == 200 and c.workers() == 2, c.logs()[-3000:]
    assert "workers keep dying" not in c.logs()


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_worker_memory_retires_a_growing_worker_without_a_failed_request(
    docker: Docker, backend: str
) -> None:
    env = {**HELLO, "SERVER_BACKEND": backend, "MAX_WORKER_MEMORY": "150", "WEB_CONCURRENCY": "2"}
    c = docker.run(TAG, "--memory=600m", env=env)
    c.wait_ready("/pid")
    before = master(c).pid
    statuses: list[int | None] = []
    line = re.compile(r"worker (\d+) uses ([\d.]+) MiB \(USS\), over MAX_WORKER_MEMORY=150 MiB")
    after = 0  # requests since both workers were retired: their replacements must serve them
    while len(statuses) < 40 and after < 8:  # 20 MiB a request, 4 a second
        statuses.append(_get(c, "/grow?mb=20"))
        time.sleep(0.25)
        if after or len(line.findall(c.logs())) >= 2:
            after += 1
    logs = c.logs()
    retired = line.findall(logs)
    assert len(retired) >= 2, logs[-3000:]
    assert all(float(size) >= 150 for _, size in retired), retired  # (150.04 MiB shows as 150.0)
    assert len({pid for pid, _ in retired}) == len(retired)  # one line a worker
    assert not DIED.findall(logs) and oom_kills(c) == 0, logs[-3000:]
    if backend == "granian":  # see docs/backends.md: a connection accepted as the worker stops
        assert statuses.count(None) <= 1 and set(statuses) <= {200, None}, statuses
    else:
        assert statuses == [200] * len(statuses), (statuses, logs[-3000:])
    assert master(c).pid == before and c.workers() == 2
