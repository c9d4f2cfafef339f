"""The README's and the docs' commands, run as a reader would type them, from their own text.

What cannot run here as written is changed only where this machine differs from the reader's:
port 8000 (which another test may hold) becomes a free port. The Docker quick starts are run in
a real container by test_image_quickstarts.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctext import DOCS, README, REPO, commands, section, under

from launcher.testing.process import free_port

VENV_BIN = Path(sys.executable).parent


def reader_env(**extra: str) -> dict[str, str]:
    """The reader's shell: this venv's commands on PATH, none of the launcher's variables set."""
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR", "PIP_CONFIG_FILE")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    return {**env, **extra}


def get(url: str, deadline: float, proc: subprocess.Popen[bytes]) -> bytes:
    """The body of the first answer from ``url`` before ``deadline`` (the server may be starting)."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read())
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise AssertionError(f"no answer from {url} (exit status {proc.poll()})")


def start(command: str, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A reader's project directory: the quick start's app as main.py."""
    (tmp_path / "main.py").write_text(under(README, "Quick start with Docker", "python")[0])
    return tmp_path


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    """This checkout as a fresh clone would have it (tracked and new files, nothing ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    target = tmp_path / "clone"
    for name in filter(None, files):
        source = REPO / os.fsdecode(name)
        if source.is_file():
            (target / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            (target / os.fsdecode(name)).write_bytes(source.read_bytes())
    yield target


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_set_up_command_installs_and_serves_the_demo(clone: Path, tmp_path: Path) -> None:
    """The first set-up command, in a copy of the checkout: a fresh venv, the install, the demo
    served on the address the README gives (a free port instead of 8000)."""
    command = under(README, "Set up", "bash")[0].strip()
    assert "BIND=127.0.0.1:8000" in command and "<http://127.0.0.1:8000>" in section(README, "Set up")
    port = free_port()
    proc = start(
        command.replace("127.0.0.1:8000", f"127.0.0.1:{port}"), clone, reader_env(), tmp_path / "log"
    )
    try:
        body = get(f"http://127.0.0.1:{port}/", time.monotonic() + 600, proc)
        assert json.loads(body) == {"message": "Hello World!"}
    finally:
        stop(proc)
        print((tmp_path / "log").read_text(errors="replace")[-3000:])


def test_the_test_command_is_what_ci_runs() -> None:
    """The second set-up command is the one .ci/run runs, word for word."""
    command = under(README, "Set up", "bash")[1].strip()
    assert command.startswith("python3 -m venv .venv") and "pytest" in command
    assert command in (REPO / ".ci" / "run").read_text()
    assert "mkdocs build --strict" in (REPO / ".ci" / "run").read_text()


def test_the_quick_start_without_docker_serves(project: Path, tmp_path: Path) -> None:
    [command] = commands(under(README, "Quick start without Docker", "bash")[0])
    assert command == "asgi-launcher main:app --port 8000"
    port = free_port()
    proc = start(command.replace("8000", str(port)), project, reader_env(), tmp_path / "log")
    try:
        body = get(f"http://127.0.0.1:{port}/", time.monotonic() + 60, proc)
        answer = re.search(r"answers `([^`]+)`", section(README, "Quick start with Docker"))
        assert answer and json.loads(body) == json.loads(answer[1])
    finally:
        stop(proc)


def test_what_to_type_next_answers(project: Path) -> None:
    """Each command of "What to type next" exits 0 and says what the README says it says."""
    said = {}
    for command in commands(under(README, "What to type next", "bash")[0]):
        result = subprocess.run(
            shlex.split(command), cwd=project, env=reader_env(), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
        said[command] = result.stdout
    assert set(said) == {
        "asgi-launcher --help",
        "asgi-launcher config main:app",
        "asgi-launcher check main:app",
        "asgi-launcher backends",
    }
    assert "Environment variables" in said["asgi-launcher --help"]
    assert re.search(r"^app +main:app +\(argument APP\)$", said["asgi-launcher config main:app"], re.M)
    assert re.search(
        r"^workers +\d+ +\(computed \(CPU formula\)\)$", said["asgi-launcher config main:app"], re.M
    )
    assert said["asgi-launcher check main:app"].startswith(f"OK: main:app from {project}")
    assert re.search(r"^gunicorn +asgi-launcher-gunicorn ", said["asgi-launcher backends"], re.M)


def test_the_command_line_examples_parse(project: Path) -> None:
    """The command lines the command-line page shows for Uvicorn's and Gunicorn's users resolve
    (``config`` in place of the default ``run``, so nothing is served)."""
    lines = commands(under(DOCS / "command-line.md", "The command line", "text")[1])
    assert lines and all(line.startswith("asgi-launcher main:app") for line in lines)
    for line in lines:
        argv = shlex.split(line)
        result = subprocess.run(
            ["asgi-launcher", "config", *argv[1:]],
            cwd=project,
            env=reader_env(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{line}: {result.stderr}"


def test_the_shown_sessions_are_what_the_launcher_says(project: Path) -> None:
    """A `$ command` line in a text block of the docs, then its output: run, and compared."""
    shown = 0
    for page in sorted(DOCS.glob("*.md")):
        for block in (b for b in _text_blocks(page) if b.startswith("$ ")):
            command, *output = block.strip().splitlines()
            result = subprocess.run(
                command[2:],
                shell=True,
                cwd=project,
                env=reader_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (result.stdout + result.stderr).strip().splitlines() == output, f"{page.name}: {command}"
            shown += 1
    assert shown, "no `$ command` session in the docs any more"


def _text_blocks(page: Path) -> list[str]:
    from doctext import blocks

    return [b.text for b in blocks(page) if b.lang == "text"]


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "Quick start with Docker" in index  # the README's quick start, included
