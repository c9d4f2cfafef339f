"""Who removes a test run's images, containers and directory: the session that named the run.

A pytest run inside a test (tests/observability/test_compiled.py starts one) inherits the run's
name. When it removed the run at its end, it did so a minute into CI, under the image tests'
feet: their images and the Python versions' test containers went, and were built and run again
(3 minutes of CPU, and the last minute and a half of a 9-minute run spent waiting on them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from imagekit import RUN_VARIABLE, run_dir

ROOT = Path(__file__).resolve().parents[2]


def test_a_pytest_run_inside_a_test_leaves_the_run_it_did_not_name() -> None:
    run = f"nested-{uuid.uuid4().hex[:8]}"
    kept = run_dir(run)
    kept.mkdir()
    (kept / "versions.json").write_text("[]")  # what the run's image tests read
    try:
        nested = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "tests/bench"],
            env={**os.environ, RUN_VARIABLE: run},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert nested.returncode == 0, nested.stdout[-2000:] + nested.stderr[-2000:]
        assert (kept / "versions.json").exists(), "the nested session removed a run it did not name"
    finally:
        shutil.rmtree(kept, ignore_errors=True)
