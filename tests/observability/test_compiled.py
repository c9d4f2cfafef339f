"""The access log's module compiled by mypyc, the optional build (pyproject.toml's mypyc hook):
built from a copy of the tree as ``HATCH_BUILD_HOOK_ENABLE_MYPYC=1 pip install .`` builds it,
then held to the same tests as the module run as it is, and serving a real request. One source;
a difference between the two ways it runs is a failure here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from launcher.testing.process import request, start_launcher

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: The tests that exercise the module: its own (recording, both layouts, the writer, the exit
#: hooks) and the response check's, which records each request in it. (The metrics' and
#: tracing's read the same entries; their own suites run against the module as it is.)
SUITES = ("tests/observability/test_access_log.py", "tests/worker/test_response_check.py")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled wheel's files, unpacked: a directory to put first on ``PYTHONPATH``."""
    work = tmp_path_factory.mktemp("compiled")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # (A copy: the build leaves its objects beside the module, where an editable install of the
    # tree would import them in place of the source.)
    shutil.copytree(
        ROOT / "launcher", source / "launcher", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work),
            str(source),
        ],
        env={**os.environ, "HATCH_BUILD_HOOK_ENABLE_MYPYC": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = work.glob("*.whl")
    assert not wheel.name.endswith("-none-any.whl"), wheel.name  # a platform wheel: compiled code
    site = work / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def test_the_compiled_module_is_what_imports(compiled: Path) -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import launcher.observability.access_log as m; print(m.__file__)"],
        env={**os.environ, "PYTHONPATH": str(compiled)},
        cwd=compiled.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.stdout.strip().startswith(str(compiled / "launcher" / "observability" / "access_log."))
    assert found.stdout.strip().endswith(".so"), found.stdout + found.stderr


def test_the_compiled_module_passes_the_same_tests(compiled: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            *(str(ROOT / suite) for suite in SUITES),
        ],
        env={**os.environ, "PYTHONPATH": str(compiled)},
        cwd=compiled.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " skipped" not in run.stdout.splitlines()[-1]


def test_a_server_writes_its_lines_through_the_compiled_module(compiled: Path) -> None:
    env = {
        "PYTHONPATH": str(compiled),
        "APP_DIR": str(ROOT / "demo"),
        "SERVER_BACKEND": "uvicorn",
        "WEB_CONCURRENCY": "1",
    }
    # (Not started from the tree: ``python -m`` would put it first on the path.)
    with start_launcher(env, cwd=compiled.parent) as server:
        server.wait_ready("/", 30)
        assert request(server.port, "/?from=compiled")[0] == 200
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert str(compiled / "launcher" / "observability" / "access_log.") in maps
        server.wait_until(
            lambda: '"GET /?from=compiled HTTP/1.1" 200' in server.output(), 30, "the access line"
        )
