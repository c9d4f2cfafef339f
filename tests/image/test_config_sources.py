"""`asgi-launcher config` in the image names what really decided the worker count: the
environment, the CPU or memory bound, an option, and a config file only where a user's file
changed the value. The image's /gunicorn_conf.py spells the env contract again, and is never the
source of a value the environment gave."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from imagekit import TAG, Docker

pytestmark = pytest.mark.image


def workers_line(docker: Docker, *args: str, image: str = TAG, command: tuple[str, ...] = ()) -> str:
    result = docker("run", "--rm", *args, image, "asgi-launcher", "config", *command)
    assert re.search(r"^config_file +/gunicorn_conf.py|^config_file +/app/", result.stdout, re.M), (
        result.stdout
    )
    [line] = [x for x in result.stdout.splitlines() if x.startswith("workers ")]
    return " ".join(line.split())


def test_the_source_of_workers_is_what_decided_it(docker: Docker) -> None:
    assert workers_line(docker, "-e", "WEB_CONCURRENCY=3") == "workers 3 (env:WEB_CONCURRENCY)"
    assert workers_line(docker, "--memory=300m") == "workers 1 (computed (memory limit))"
    assert workers_line(docker, "--cpus=1") == "workers 2 (computed (CPU formula))"
    assert workers_line(docker, "-e", "MAX_WORKERS=1") == "workers 1 (computed (MAX_WORKERS))"
    assert (
        workers_line(docker, "-e", "WEB_CONCURRENCY=3", command=("--workers", "4"))
        == "workers 4 (flag --workers)"
    )


def test_a_users_config_file_is_named_only_where_it_changed_the_value(docker: Docker, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {TAG}\nCOPY gunicorn_conf.py /app/gunicorn_conf.py\n")
    (tmp_path / "gunicorn_conf.py").write_text(
        "import os\nworkers = int(os.environ.get('MY_WORKERS', os.environ.get('WEB_CONCURRENCY', '2')))\n"
    )
    image = docker.build(tmp_path, "user/conf-sources")
    try:
        assert (
            workers_line(docker, "-e", "WEB_CONCURRENCY=3", image=image) == "workers 3 (env:WEB_CONCURRENCY)"
        )
        assert (
            workers_line(docker, "-e", "MY_WORKERS=5", image=image)
            == "workers 5 (file:/app/gunicorn_conf.py)"
        )
        assert (
            workers_line(docker, "-e", "MY_WORKERS=5", image=image, command=("-w", "4"))
            == "workers 4 (flag -w)"
        )
    finally:
        docker("rmi", "-f", image, check=False)
