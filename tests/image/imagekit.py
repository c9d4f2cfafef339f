"""Drive a real Docker engine: build images, run containers, talk HTTP to them.

The engine comes from ../shared/tools/image-sandbox (it installs and starts a private dockerd and
makes a stand-in Debian base, since no registry can be reached here). Without Docker the image
tests are skipped with the reason, except under CI=true, where they fail instead.

One test run (``RUN``, from ``$ASGI_LAUNCHER_TEST_RUN``, which the root conftest sets for every
pytest process of the run, xdist workers included) builds the image once: ``prepare()`` takes
this run's lock, starts the engine and builds ``TAG``; whoever comes next finds both done.
``.ci/run`` calls it (through ``python3 tests/image/pyversions.py prepare``, standard library only) in the
background at its start, so the engine and the build overlap the install and the other tests.
Every image and container of the run carries the label ``LABEL=RUN`` and every image name this
run's tag, so ``clean()`` at the end removes what this run made and nothing of anyone else's
(another run, by CI or a developer, on the same engine).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parents[2]
# CI clones the repository with shared/ beside it; IMAGE_SANDBOX points elsewhere if needed.
SANDBOX = Path(os.environ.get("IMAGE_SANDBOX", REPO.parent / "shared" / "tools" / "image-sandbox"))
#: The variable naming this test run; the root conftest sets it when it is not set.
RUN_VARIABLE = "ASGI_LAUNCHER_TEST_RUN"
RUN = os.environ.get(RUN_VARIABLE) or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
#: The label on every image and container of the run (its value: ``RUN``).
LABEL = "asgi-launcher-test-run"
#: The run's image of this repository's Dockerfile.
TAG = f"asgi-launcher:test-{RUN}"


def run_dir(run: str) -> Path:
    """Where run ``run`` keeps its lock and what ``prepare`` found (the engine's address, the base
    image), and what ``clean`` removes last."""
    return Path(tempfile.gettempdir()) / f"asgi-launcher-test-{run}"


RUN_DIR = run_dir(RUN)
#: Deadlines of the two setup steps: starting the sandbox's engine, and building an image.
UP_TIMEOUT = 1200
BUILD_TIMEOUT = 900
#: A process that waits for the run's lock waits at most for one whole setup.
SETUP_DEADLINE = UP_TIMEOUT + BUILD_TIMEOUT


class Unavailable(Exception):
    """No Docker engine for the image tests, and why."""


def _unavailable(reason: str) -> NoReturn:
    import pytest  # (not at the top: `imagekit.py prepare` runs with the standard library only)

    if os.environ.get("CI") == "true":
        pytest.fail(f"image tests cannot run under CI: {reason}")
    pytest.skip(reason)


def image_name(name: str) -> str:
    """``name`` with this run's tag unless it has one: ``user/reload`` is ``user/reload:RUN``."""
    return name if ":" in name.rpartition("/")[2] else f"{name}:{RUN}"


@dataclass
class Docker:
    env: dict[str, str]
    base: str
    containers: list[str] = field(default_factory=list)

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result

    def build(self, context: Path, tag: str, *extra: str) -> str:
        """Build ``context`` as ``image_name(tag)``, labelled as this run's; returns the name."""
        name = image_name(tag)
        built = self(
            "build", "--network", "host", "--force-rm", "--label", f"{LABEL}={RUN}", *extra, "-t", name,
            str(context), timeout=BUILD_TIMEOUT,
        )  # fmt: skip
        # The legacy builder shows " ---> Running in CONTAINER" then " ---> IMAGE" for a layer it
        # made by running a step (never for the base, nor for a layer found in its cache). A
        # multi-stage build leaves its earlier stages' last layers as untagged images without the
        # label, not below the image it tags: ``clean`` removes them by id.
        made, running = [], False
        for line in built.stdout.splitlines():
            text = line.strip()
            if text.startswith("---> Running in "):
                running = True
            elif text.startswith("---> ") and " " not in text[5:] and running:
                made.append(text[5:])
                running = False
            elif text.startswith("Step "):
                running = False
        with (RUN_DIR / "layers").open("a") as record:
            record.write("".join(f"{image}\n" for image in made))
        return name

    def has_image(self, name: str) -> bool:
        return self("image", "inspect", name, check=False).returncode == 0

    def run(
        self, image: str = TAG, *args: str, env: dict[str, str] | None = None, port: int = 80
    ) -> Container:
        host_port = free_port()
        name = f"asgi-launcher-test-{uuid.uuid4().hex[:10]}"
        flags = [f"-e{k}={v}" for k, v in (env or {}).items()]
        self.containers.append(name)  # before it exists: removed even if `docker run` times out
        self(
            "run", "-d", "--name", name, "--label", f"{LABEL}={RUN}", "-p", f"127.0.0.1:{host_port}:{port}",
            *flags, *args, image_name(image),
        )  # fmt: skip
        return Container(self, name, host_port)

    def remove(self, names: list[str]) -> None:
        """Remove containers (running or not) with their anonymous volumes; gone ones are fine."""
        if names:
            self("rm", "-f", "-v", *names, check=False, timeout=120)


@contextlib.contextmanager
def run_lock(deadline: float = SETUP_DEADLINE, name: str = "lock") -> Iterator[None]:
    """This run's lock ``name`` (shared by its pytest processes and ``.ci/run``), waited for at
    most ``deadline`` s. "lock" guards the engine and the image; others, setups of their own."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with (RUN_DIR / name).open("w") as lock:
        end = time.monotonic() + deadline
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise Unavailable(
                        f"the image setup of run {RUN} still held its lock after {deadline}s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _engine() -> Docker:
    """The engine ``prepare`` recorded for this run, or a new one from ``image-sandbox up``."""
    state = RUN_DIR / "engine.json"
    if not state.exists():
        if not SANDBOX.exists():
            raise Unavailable(f"{SANDBOX} not found")
        if shutil.which("bash") is None:
            raise Unavailable("bash is needed to run image-sandbox")
        try:
            up = subprocess.run([str(SANDBOX), "up"], capture_output=True, text=True, timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"image-sandbox up did not finish within {UP_TIMEOUT}s") from None
        if up.returncode != 0:
            raise Unavailable(f"image-sandbox could not start Docker: {up.stderr.strip()[-500:]}")
        exported = {}
        for line in up.stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[len("export ") :].partition("=")
                exported[key] = value
        base = subprocess.run(
            [str(SANDBOX), "base-tag"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        state.write_text(json.dumps({"env": exported, "base": base}))
    recorded = json.loads(state.read_text())
    return Docker({**os.environ, **recorded["env"]}, recorded["base"])


def prepare() -> Docker:
    """The engine, with this run's image built: done once per run, whoever asks first (a build
    that failed is not tried again by every process of the run: they all report its error)."""
    failed = RUN_DIR / "build-failed"
    with run_lock():
        docker = _engine()
        if failed.exists():
            raise AssertionError(f"this run's image build failed: {failed.read_text()}")
        if not docker.has_image(TAG):
            try:
                docker.build(REPO, TAG, "--build-arg", f"BASE_IMAGE={docker.base}")
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                failed.write_text(str(exc))
                raise
    return docker


def clean() -> None:
    """Remove every container and image of this run (by its label), then the run's directory."""
    state = RUN_DIR / "engine.json"
    if state.exists():
        docker = Docker({**os.environ, **json.loads(state.read_text())["env"]}, "")
        mine = ("--filter", f"label={LABEL}={RUN}")
        docker.remove(docker("ps", "-aq", *mine, check=False).stdout.split())
        # Newest first (users' images before the image they are FROM): a parent is refused while
        # a child is there, so a second round takes what the first could not.
        for _ in range(3):
            images = list(dict.fromkeys(docker("images", "-q", *mine, check=False).stdout.split()))
            if not images:
                break
            docker("rmi", "-f", *images, check=False, timeout=300)
        layers = RUN_DIR / "layers"
        made = list(dict.fromkeys(layers.read_text().split())) if layers.exists() else []
        if made:  # not forced: a layer another image still stands on stays
            docker("rmi", *reversed(made), check=False, timeout=300)
    shutil.rmtree(RUN_DIR, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``prepare`` (engine and image, for ``.ci/run`` to start early) or ``clean``."""
    if argv == ["prepare"]:
        try:
            docker = prepare()
        except (Unavailable, AssertionError, subprocess.TimeoutExpired) as exc:
            print(f"imagekit: prepare failed (the image tests will try again and say why): {exc}")
            return 1
        print(f"imagekit: {TAG} built on {docker.env.get('DOCKER_HOST', 'the default engine')}")
        return 0
    if argv == ["clean"]:
        clean()
        return 0
    print("usage: imagekit.py prepare|clean  (run with $ASGI_LAUNCHER_TEST_RUN set)", file=sys.stderr)
    return 2


@dataclass
class Container:
    docker: Docker
    name: str
    port: int

    def get(self, path: str = "/", timeout: float = 5) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path: str = "/") -> object:
        status, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def wait_ready(self, path: str = "/", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get(path, timeout=2)
                return
            except OSError:
                pass
            if self.state()["Status"] == "exited":
                break
            time.sleep(0.2)
        raise AssertionError(f"container not answering: {self.state()}\n{self.logs()[-3000:]}")

    def state(self) -> dict[str, object]:
        out = self.docker("inspect", "-f", "{{json .State}}", self.name).stdout
        return dict(json.loads(out))

    def wait_exit(self, timeout: float = 60) -> int:
        result = self.docker("wait", self.name, timeout=timeout)
        return int(result.stdout.strip())

    def logs(self) -> str:
        r = self.docker("logs", self.name, check=False)
        return r.stdout + r.stderr

    def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``predicate`` until true; how long it took, or fail with the container's logs."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{what}: not within {timeout}s\n{self.logs()[-3000:]}")

    def write(self, path: str, text: str) -> None:
        """Write ``text`` to ``path`` inside the container, as root (the app may run as any user)."""
        script = f"cat > {path} <<'END_OF_FILE'\n{text}END_OF_FILE\n"
        self.docker("exec", "-u", "0", self.name, "sh", "-c", script)

    def processes(self) -> list[str]:
        """Command lines of the processes in the container (from its /proc)."""
        script = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"
        out = self.docker("exec", self.name, "sh", "-c", script).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def workers(self, settle: float = 1.0, timeout: float = 15.0) -> int:
        """Server processes below the launcher, once their number has held for ``settle`` s.

        A server answers as soon as its first worker has booted, while the others may still be
        forking (Gunicorn spaces them by up to 0.1 s each): a count taken at once can be short.
        """
        deadline = time.monotonic() + timeout
        count, since = self._count_workers(), time.monotonic()
        while time.monotonic() - since < settle:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker count still changing after {timeout}s (now {count})")
            time.sleep(0.2)
            now = self._count_workers()
            if now != count:
                count, since = now, time.monotonic()
        return count

    def _count_workers(self) -> int:
        """Server processes below the launcher (all run `asgi-launcher run`, or Python's spawn)."""
        lines = self.processes()
        launcher = [p for p in lines if "asgi-launcher run" in p and not p.startswith("dumb-init")]
        spawned = [p for p in lines if "multiprocessing.spawn" in p and "resource_tracker" not in p]
        return len(launcher) + len(spawned) - 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
