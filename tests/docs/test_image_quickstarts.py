"""The README's Docker quick starts, run in real containers from the README's own text: its
Dockerfiles, its apps, its `docker build` and `docker run` commands.

What differs from a reader's machine is changed, and only that: the base image is this test
session's (``FROM asgi-launcher`` names the image the README tells the reader to build), the
container's name and port are free ones (``-p 80:80`` becomes a free port of 127.0.0.1), the
image's tag is unique, and `docker build` uses the host's network (this engine has no bridge).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctext import README, commands, section, under
from imagekit import TAG, Container, Docker, free_port

#: Each test builds an image (the FastAPI one installs from PyPI) on an engine other jobs share.
pytestmark = [pytest.mark.image, pytest.mark.timeout(900)]

FASTAPI = "FastAPI, Litestar or any other framework"


@pytest.fixture
def tag(docker: Docker) -> Iterator[str]:
    name = f"asgi-launcher-docs/{uuid.uuid4().hex[:10]}"
    yield name
    docker("rmi", "-f", name, check=False)


def project(tmp_path: Path, dockerfile: str, main: str, requirements: str | None = None) -> Path:
    assert dockerfile.startswith("FROM asgi-launcher\n"), dockerfile
    (tmp_path / "Dockerfile").write_text(dockerfile.replace("FROM asgi-launcher\n", f"FROM {TAG}\n", 1))
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text(main)
    if requirements is not None:
        (tmp_path / "requirements.txt").write_text(requirements)
    return tmp_path


def build_and_run(docker: Docker, where: Path, tag: str) -> Container:
    """The README's two commands, run by bash in the project directory."""
    build, run = commands(under(README, "Quick start with Docker", "bash")[0])
    assert build == "docker build -t myimage ."
    assert run == "docker run -d --name mycontainer -p 80:80 myimage"
    name, port = f"asgi-launcher-docs-{uuid.uuid4().hex[:10]}", free_port()
    build = build.replace("myimage", tag).replace("docker build", "docker build --network host", 1)
    run = (
        run.replace("mycontainer", name)
        .replace("-p 80:80", f"-p 127.0.0.1:{port}:80")
        .replace("myimage", tag)
    )
    docker.containers.append(name)
    for command in (build, run):
        done = subprocess.run(
            ["bash", "-c", command], cwd=where, env=docker.env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
    return Container(docker, name, port)


def documented_answer() -> object:
    answer = re.search(r"answers `([^`]+)`", section(README, "Quick start with Docker"))
    assert answer, "the quick start no longer says what / answers"
    return json.loads(answer[1])


def test_the_docker_quick_start(docker: Docker, tmp_path: Path, tag: str) -> None:
    [dockerfile] = under(README, "Quick start with Docker", "dockerfile")
    [main] = under(README, "Quick start with Docker", "python")
    container = build_and_run(docker, project(tmp_path, dockerfile, main), tag)
    container.wait_ready()
    assert container.json("/") == documented_answer()


def test_the_fastapi_quick_start(docker: Docker, tmp_path: Path, tag: str) -> None:
    """FastAPI is not in the image: the quick start installs it from requirements.txt."""
    [requirements] = under(README, FASTAPI, "text")
    [dockerfile] = under(README, FASTAPI, "dockerfile")
    [main] = under(README, FASTAPI, "python")
    assert "fastapi" in requirements.split() and "from fastapi import FastAPI" in main
    container = build_and_run(docker, project(tmp_path, dockerfile, main, requirements), tag)
    container.wait_ready()
    assert container.json("/") == documented_answer()


def test_fastapi_with_the_two_line_dockerfile_fails_as_the_readme_says(
    docker: Docker, tmp_path: Path, tag: str
) -> None:
    """Without the install step: exit 1 at once, and the last line is the one the README quotes."""
    [two_lines] = under(README, "Quick start with Docker", "dockerfile")
    [main] = under(README, FASTAPI, "python")
    container = build_and_run(docker, project(tmp_path, two_lines, main), tag)
    assert container.wait_exit(60) == 1
    quoted = re.search(r"log ends with `([^`]+)` and `([^`]+)`", " ".join(section(README, FASTAPI).split()))
    assert quoted, "the README no longer quotes the error"
    *_, exception, last = container.logs().strip().splitlines()
    assert exception == quoted[1]
    for part in quoted[2].split("..."):
        assert part.strip(" ,") in last, (part, last)
    assert "Traceback" in container.logs() and "importlib" not in container.logs()


def test_what_to_type_next_in_the_image(docker: Docker) -> None:
    """The README's first commands answer in the image too (its /app holds a main.py)."""
    for command in commands(under(README, "What to type next", "bash")[0]):
        result = docker("run", "--rm", TAG, *command.split(), check=False)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        if command.startswith("asgi-launcher config"):
            assert re.search(r"^app +main:app +\(argument APP\)$", result.stdout, re.M), result.stdout
