"""What every worker does first: be the OOM killer's choice before its master."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
