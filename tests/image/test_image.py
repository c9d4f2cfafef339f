"""The image, built and run for real: every promise of the reference image, plus ours."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from imagekit import TAG, Docker

from launcher.testing import BACKENDS, DEFAULT_BACKEND

pytestmark = pytest.mark.image

#: The backends the image serves with besides its default one.
OTHER_BACKENDS = [backend for backend in BACKENDS if backend != DEFAULT_BACKEND]

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def homepage(request):
    return JSONResponse({"message": "Hello World!"})


{name} = Starlette(routes=[Route("/", homepage)])
"""


def user_image(docker: Docker, tmp_path: Path, files: dict[str, str], tag: str) -> str:
    """A user's project: a two-line Dockerfile FROM our image plus their files under ./app."""
    (tmp_path / "Dockerfile").write_text(f"FROM {TAG}\n\nCOPY ./app /app\n")
    for rel, text in files.items():
        path = tmp_path / "app" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    docker.build(tmp_path, tag)
    return tag


def test_quick_start(docker: Docker, tmp_path: Path) -> None:
    image = user_image(
        docker, tmp_path, {"main.py": STARLETTE_APP.replace("{name}", "app")}, "user/quickstart"
    )
    c = docker.run(image)
    c.wait_ready()
    assert c.json("/") == {"message": "Hello World!"}


def test_app_package_layout_and_module_variable_names(docker: Docker, tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/main.py": STARLETTE_APP.replace("{name}", "app"),
        "custom_app/__init__.py": "",
        "custom_app/custom_main.py": STARLETTE_APP.replace("{name}", "api"),
    }
    image = user_image(docker, tmp_path, files, "user/layouts")
    default = docker.run(image)  # /app/app/main.py is found first
    by_names = docker.run(image, env={"MODULE_NAME": "custom_app.custom_main", "VARIABLE_NAME": "api"})
    by_app_module = docker.run(image, env={"APP_MODULE": "custom_app.custom_main:api"})
    for c in (default, by_names, by_app_module):
        c.wait_ready()
        assert c.json("/") == {"message": "Hello World!"}
    bad = docker.run(image, env={"VARIABLE_NAME": "nope"})
    assert bad.wait_exit() == 2
    assert "no attribute 'nope'" in bad.logs()


def test_port_bind_and_worker_count(docker: Docker) -> None:
    by_port = docker.run(TAG, env={"PORT": "8080", "WEB_CONCURRENCY": "3"}, port=8080)
    by_bind = docker.run(TAG, env={"BIND": "0.0.0.0:9090"}, port=9090)
    by_port.wait_ready()
    by_bind.wait_ready()
    assert by_port.get("/")[0] == 200 and by_bind.get("/")[0] == 200
    assert by_port.workers() == 3


def test_cpu_quota_sets_the_worker_count(docker: Docker) -> None:
    one_cpu = docker.run(TAG, "--cpus=1", env={"WORKERS_PER_CORE": "3"})
    one_cpu.wait_ready()
    assert one_cpu.workers() == 3  # 1 CPU x 3; the 2 CPUs of this host would give 6
    shown = docker("exec", one_cpu.name, "asgi-launcher", "config", "--json").stdout
    assert '"cpus": 1' in shown and '"workers": 3' in shown


def test_user_gunicorn_conf_and_prestart(docker: Docker, tmp_path: Path) -> None:
    files = {
        "main.py": Path(__file__).resolve().parents[2].joinpath("demo", "main.py").read_text(),
        "gunicorn_conf.py": "workers = 3\nbind = '0.0.0.0:7000'\n",
        "prestart.sh": "echo migrating\nexport DEMO_FROM_PRESTART=ready\n",
    }
    image = user_image(docker, tmp_path, files, "user/conf")
    c = docker.run(image, env={"WEB_CONCURRENCY": "1"}, port=7000)
    c.wait_ready()
    info = c.json("/info")
    assert isinstance(info, dict) and info["env"] == {"DEMO_FROM_PRESTART": "ready"}
    assert c.workers() == 3  # the user's file wins over WEB_CONCURRENCY, as with the reference
    assert "migrating" in c.logs()


def test_failing_prestart_is_the_container_exit_code(docker: Docker, tmp_path: Path) -> None:
    image = user_image(
        docker,
        tmp_path,
        {"main.py": STARLETTE_APP.replace("{name}", "app"), "prestart.sh": "exit 7\n"},
        "user/failing",
    )
    c = docker.run(image)
    assert c.wait_exit() == 7


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_other_backends_on_the_same_image(docker: Docker, backend: str) -> None:
    c = docker.run(TAG, env={"SERVER_BACKEND": backend, "WEB_CONCURRENCY": "2"})
    c.wait_ready()
    assert c.json("/") == {"message": "Hello World!"}
    assert f"with {backend}" in c.logs()
    assert c.workers() == 2


@pytest.mark.timeout(300)  # four containers, one after the other
def test_non_root_read_only(docker: Docker) -> None:
    c = docker.run(TAG, "--user", "10001", "--read-only", "--tmpfs", "/tmp", env={"PORT": "8080"}, port=8080)
    c.wait_ready()
    assert c.json("/") == {"message": "Hello World!"}
    for backend in OTHER_BACKENDS:
        other = docker.run(
            TAG,
            "--user",
            "10001",
            "--read-only",
            "--tmpfs",
            "/tmp",
            env={"PORT": "8080", "SERVER_BACKEND": backend},
            port=8080,
        )
        other.wait_ready()
        assert other.get("/")[0] == 200


def test_docker_stop_drains_and_exits_0(docker: Docker) -> None:
    # The kit's hello app (in the image): it says when /slow has begun, so the stop comes while
    # the request is in flight however slow the machine, instead of 0.5 s after it was sent.
    c = docker.run(TAG, env={"APP_MODULE": "launcher.testing.apps.hello:app"})
    c.wait_ready()
    result: dict[str, object] = {}

    def slow() -> None:
        try:
            result["response"] = c.get("/slow?seconds=3", timeout=60)
        except OSError as exc:
            result["response"] = exc

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 30
    while "slow request started" not in c.logs():
        assert time.monotonic() < deadline, c.logs()[-3000:]
        time.sleep(0.1)
    started = time.monotonic()
    docker("stop", "-t", "60", c.name, timeout=90)
    took = time.monotonic() - started
    t.join(60)
    assert result["response"] == (200, b"slow done")
    assert int(c.state()["ExitCode"]) == 0  # type: ignore[call-overload]
    assert took < 30  # the drain ended with the request, long before GRACEFUL_TIMEOUT (120 s)


def test_health_check_reaches_healthy(docker: Docker) -> None:
    # The image's own check, every second; a loaded machine may take longer than the image's 5 s
    # to start the probe's interpreter, which is not what this checks.
    c = docker.run(TAG, "--health-interval=1s", "--health-start-period=1s", "--health-timeout=30s")
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline:
        status = str(c.state().get("Health", {}).get("Status"))  # type: ignore[union-attr]
        if status == "healthy":
            break
        time.sleep(0.5)
    assert status == "healthy", c.state()


def test_start_scripts_use_the_same_contract(docker: Docker) -> None:
    c = docker.run(TAG, "--entrypoint", "/start.sh", env={"PORT": "8081"}, port=8081)
    c.wait_ready()
    assert c.get("/")[0] == 200
    dev = docker.run(TAG, "--entrypoint", "/start-reload.sh", env={"PORT": "8082"}, port=8082)
    dev.wait_ready()
    assert dev.get("/")[0] == 200
    assert "reload: watching /app for changes to *.py" in dev.logs()  # the launcher's reload mode


def test_the_image_traces_with_the_otel_variables(docker: Docker) -> None:
    # The image has the otel extra: OTEL_TRACES_EXPORTER turns tracing on (the console exporter
    # here, no collector needed), and docker stop flushes the request's server span.
    c = docker.run(TAG, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "image-test"})
    c.wait_ready()
    assert c.get("/json")[0] == 200
    docker("stop", c.name, timeout=30)
    logs = c.logs()
    assert '"kind": "SpanKind.SERVER"' in logs and '"service.name": "image-test"' in logs, logs[-3000:]
    assert int(c.state()["ExitCode"]) == 0  # type: ignore[call-overload]
