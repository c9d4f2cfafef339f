"""The retirement layer: MAX_WORKER_MEMORY looked at after every request, in the worker itself."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from launcher import Backend, Config, statedir
from launcher.config.resolve import resolve
from launcher.master import Master
from launcher.procfs import OwnMemory
from launcher.worker.bootstrap import WorkerContext
from launcher.worker.pipeline import build

MIB = 1024 * 1024


def config(tmp_path: Path, **env: str) -> Config:
    (tmp_path / "main.py").write_text("app = None\n")
    return resolve({"APP_DIR": str(tmp_path), "ACCESS_LOG": "", **env}, Backend)


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(app: Any, requests: int) -> list[list[Any]]:
    """The response headers of ``requests`` requests, one after the other."""
    heads: list[list[Any]] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            heads.append(list(message["headers"]))

    async def run() -> None:
        for _ in range(requests):
            scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": ("127.0.0.1", 1)}
            await app(scope, None, send)

    asyncio.run(run())
    return heads


def test_own_memory_measures_the_uss_only_past_the_limit() -> None:
    small = OwnMemory(1 * MIB)  # this test process is well past 1 MiB
    used = small.over()
    assert used is not None and used[0] > MIB and used[1] in ("USS", "RSS")
    large = OwnMemory(1 << 40)
    assert large.rss() > MIB and large.over() is None and large.next_look == 1 << 40


def test_a_worker_over_the_limit_after_a_request_retires_itself_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    retired: list[int] = []
    context = WorkerContext(config(tmp_path, MAX_WORKER_MEMORY="1"), str(tmp_path), os.getppid())
    built = build(context, retire=lambda: retired.append(1), app=answer)
    heads = serve(built.app, 3)
    assert retired == [1], "asked once, after the first request"
    assert (b"connection", b"close") not in heads[0]  # sent before the look
    assert all((b"connection", b"close") in head for head in heads[1:])
    assert Path(statedir.retiring(str(tmp_path), os.getpid())).read_text() == "memory"
    lines = [line for line in capsys.readouterr().err.splitlines() if "MAX_WORKER_MEMORY=1 MiB" in line]
    assert len(lines) == 1 and f"worker {os.getpid()} uses " in lines[0], lines


def test_the_master_counts_a_self_retired_worker_and_does_not_retire_it_again(tmp_path: Path) -> None:
    master = Master(config(tmp_path, MAX_WORKER_MEMORY="1"))
    try:
        me = os.getpid()
        master.spawned(me)
        statedir.write(statedir.retiring(master.state.path, me), "memory")
        stopped: list[int] = []
        assert master.stop_oversized([me], stopped.append) == [] and stopped == []
        assert master.exited(me, 0).replace
        assert master.restarts == {"memory": 1}
    finally:
        master.close()


def test_a_worker_its_master_retires_during_a_request_does_not_say_so_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The master's once-a-second look found the worker over while its request ran (and said
    so, and stops it): the worker's own look after that request adds no second line."""
    retired: list[int] = []
    context = WorkerContext(config(tmp_path, MAX_WORKER_MEMORY="1"), str(tmp_path), os.getppid())
    built = build(context, retire=lambda: retired.append(1), app=answer)
    statedir.write(statedir.retiring(str(tmp_path), os.getpid()), "memory")  # the master's look
    serve(built.app, 1)
    assert retired == []
    assert "MAX_WORKER_MEMORY=1 MiB" not in capsys.readouterr().err


def test_a_master_whose_worker_said_so_first_does_not_retire_it_again(tmp_path: Path) -> None:
    """The other order: the worker's look after a request claims the retirement while the
    master measures it; the master neither says so nor stops it."""
    master = Master(config(tmp_path, MAX_WORKER_MEMORY="1"))
    try:
        me = os.getpid()
        master.spawned(me)

        def measure(pid: int, limit: int) -> tuple[int, str]:
            statedir.write(statedir.retiring(master.state.path, pid), "memory")  # the worker, meanwhile
            return 2 * MIB, "USS"

        stopped: list[int] = []
        assert master.stop_oversized([me], stopped.append, measure) == [] and stopped == []
    finally:
        master.close()
