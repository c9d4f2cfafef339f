"""``/proc``: a worker's own memory, as MAX_WORKER_MEMORY measures it."""

from __future__ import annotations

import os
from pathlib import Path

from launcher.config.resources import MIB
from launcher.procfs import memory_over, worker_memory


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


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
