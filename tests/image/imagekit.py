"""Drive a real Docker engine: build images, run containers, talk HTTP to them.

The engine comes from ../shared/tools/image-sandbox (it installs and starts a private dockerd and
makes a stand-in Debian base, since no registry can be reached here). Without Docker the image
tests are skipped with the reason, except under CI=true, where they fail instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# CI clones the repository with shared/ beside it; IMAGE_SANDBOX points elsewhere if needed.
SANDBOX = Path(os.environ.get("IMAGE_SANDBOX", REPO.parent / "shared" / "tools" / "image-sandbox"))
TAG = "asgi-launcher:test"
#: Deadlines of the two setup steps: starting the sandbox's engine, and building an image.
UP_TIMEOUT = 1200
BUILD_TIMEOUT = 900


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"image tests cannot run under CI: {reason}")
    pytest.skip(reason)


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

    def build(self, context: Path, tag: str, *extra: str) -> None:
        self("build", "--network", "host", *extra, "-t", tag, str(context), timeout=BUILD_TIMEOUT)

    def run(
        self, image: str = TAG, *args: str, env: dict[str, str] | None = None, port: int = 80
    ) -> Container:
        host_port = free_port()
        name = f"asgi-launcher-test-{uuid.uuid4().hex[:10]}"
        flags = [f"-e{k}={v}" for k, v in (env or {}).items()]
        self("run", "-d", "--name", name, "-p", f"127.0.0.1:{host_port}:{port}", *flags, *args, image)
        self.containers.append(name)
        return Container(self, name, host_port)


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
