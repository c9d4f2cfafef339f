"""Inputs that used to get past the launcher and fail inside a server, under every backend.

Unix socket paths (in use, stale, not a socket, the socket's mode), log targets that cannot be
written, secrets in what `config` prints, and `/start-reload.sh` with a space in `APP_DIR`.
Each case runs the real launcher; a launch that should fail is bounded by a deadline and its
whole process group is killed on the way out.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from harness import DEMO, REPO, base_env, copy_demo, free_port, run_launcher

from launcher.testing.process import Launcher, start_launcher
from launcher.testing.tls import KEY_PASSWORD, Certificates

pytestmark = pytest.mark.slow


def _finish(env: Mapping[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run the launcher until it exits by itself (failing after ``timeout``): status, output."""
    with start_launcher(env) as server:
        status = server.wait(timeout)
    return status, server.output()


def _one_error_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("asgi-launcher: error: "), output
    return lines[0].removeprefix("asgi-launcher: error: ")


# -- unix sockets ----------------------------------------------------------------------------


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory in /tmp: pytest's tmp_path can exceed a socket path's 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="uds-", dir="/tmp") as name:
        yield Path(name)


def _unix_env(backend: str, path: Path) -> dict[str, str]:
    return {"SERVER_BACKEND": backend, "APP_DIR": str(DEMO), "BIND": f"unix:{path}", "WEB_CONCURRENCY": "1"}


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def _answers_on(path: Path) -> bool:
    conn = _UnixHTTP(path)
    try:
        conn.request("GET", "/plaintext", headers={"Connection": "close"})
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _start_with_umask(env: Mapping[str, str], umask: int) -> Launcher:
    """The launcher started under ``umask`` (this process's is restored at once)."""
    old = os.umask(umask)
    try:
        return start_launcher(env)
    finally:
        os.umask(old)


def test_a_unix_socket_in_use_is_refused_and_left_alone(backend: str, sock_dir: Path) -> None:
    path = sock_dir / "app.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        status, output = _finish(_unix_env(backend, path))
        assert status == 2, output
        line = _one_error_line(output)
        assert line.startswith(f"BIND='unix:{path}' cannot be used: address already in use; "), line
        # Still ours: Gunicorn and Hypercorn alone would have removed it and bound their own.
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            listener.settimeout(5)
            listener.accept()[0].close()


@pytest.mark.parametrize("umask", [0o077, 0o027], ids=["umask077", "umask027"])
def test_a_stale_unix_socket_is_replaced_and_the_mode_follows_the_umask(
    backend: str, sock_dir: Path, umask: int
) -> None:
    path = sock_dir / "app.sock"
    with socket.socket(socket.AF_UNIX) as dead:  # what a SIGKILLed master leaves: nobody accepts
        dead.bind(str(path))
    with _start_with_umask(_unix_env(backend, path), umask) as server:
        server.wait_until(lambda: _answers_on(path), 30, f"an HTTP answer on unix:{path}")
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o777 & ~umask, f"{oct(mode)} under umask {oct(umask)}"
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()[-2000:]
    assert "Traceback" not in server.output(), server.output()[-3000:]
    # A listener closed twice at the stop (Gunicorn's workers once logged it each time).
    assert "Bad file descriptor" not in server.output(), server.output()[-3000:]
    assert not path.exists(), "the socket file outlived its server"  # (Gunicorn's once did)


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_what_is_not_a_socket_at_the_path_is_refused_and_kept(
    backend: str, sock_dir: Path, kind: str
) -> None:
    path = sock_dir / "app.sock"
    if kind == "file":
        path.write_text("keep me")
    else:
        path.mkdir()
    status, output = _finish(_unix_env(backend, path))
    assert status == 2, output
    line = _one_error_line(output)
    assert line.startswith(f"BIND='unix:{path}' cannot be used: {path} is a"), line
    assert path.read_text() == "keep me" if kind == "file" else path.is_dir()


# -- log targets -----------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["ACCESS_LOG", "ERROR_LOG"])
@pytest.mark.parametrize("value", ["/proc/version", "/proc/nonexistent/x.log"])
def test_a_log_target_that_cannot_be_written_starts_nothing(
    backend: str, tmp_path: Path, variable: str, value: str
) -> None:
    app_dir = copy_demo(tmp_path / "app")
    marker = tmp_path / "prestart-ran"
    (app_dir / "prestart.sh").write_text(f"touch {marker}\n")
    port = free_port()
    env = {"SERVER_BACKEND": backend, "APP_DIR": str(app_dir), "BIND": f"127.0.0.1:{port}", variable: value}
    status, output = _finish(env)
    assert status == 2, output
    line = _one_error_line(output)
    assert line.startswith(f"{variable}={value!r} is invalid: expected - or a file path"), line
    assert not marker.exists()
    with socket.socket() as s:  # nothing is listening: the port is still free
        s.bind(("127.0.0.1", port))


# -- secrets ---------------------------------------------------------------------------------


def test_config_shows_the_names_of_secrets_not_their_values(backend: str, tmp_path: Path) -> None:
    app_dir = copy_demo(tmp_path / "app")
    (app_dir / "gunicorn_conf.py").write_text("raw_env = ['API_TOKEN=tok-s3cret']\n")
    certs = Certificates.make(tmp_path / "certs")
    (app_dir / "hypercorn.toml").write_text(
        f"certfile = {str(certs.cert)!r}\nkeyfile = {str(certs.encrypted_key)!r}\n"
        f"keyfile_password = {KEY_PASSWORD!r}\n"
    )
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(app_dir),
        "GUNICORN_CMD_ARGS": "--env DATABASE_URL=postgres://u:db-s3cret@h/db --workers 2",
    }
    text = run_launcher(env, ("config",))
    as_json = run_launcher(env, ("config", "--json"))
    for result in (text, as_json):
        assert result.returncode == 0, result.stderr
        for secret in ("s3cret", KEY_PASSWORD):
            assert secret not in result.stdout + result.stderr, result.stdout + result.stderr
    data = json.loads(as_json.stdout)
    settings = data["server_settings"]
    if backend == "gunicorn":
        assert settings["raw_env"] == "['DATABASE_URL=***']"
        assert "DATABASE_URL=***" in text.stdout
    if backend == "hypercorn":
        # hypercorn.toml's TLS keys are the launcher's TLS settings, masked where they are secret.
        assert data["ssl_keyfile_password"] == "***" and data["ssl_certfile"] == str(certs.cert)
        assert "ssl_keyfile_password" in text.stdout


def test_an_error_in_gunicorn_cmd_args_names_the_option_only(backend: str) -> None:
    env = {
        "SERVER_BACKEND": backend,
        "APP_DIR": str(DEMO),
        "GUNICORN_CMD_ARGS": "--env DATABASE_URL=postgres://u:db-s3cret@h/db --bogus=x",
    }
    result = run_launcher(env, ("config",))
    assert "s3cret" not in result.stdout + result.stderr
    if backend == "gunicorn":  # the only backend that reads it; the others warn, naming it
        assert result.returncode == 2
        assert (
            _one_error_line(result.stderr) == "GUNICORN_CMD_ARGS is invalid: unrecognized arguments: --bogus"
        )


# -- /start-reload.sh ------------------------------------------------------------------------


def test_start_reload_with_a_space_in_app_dir(backend: str, tmp_path: Path) -> None:
    """The script is the launcher's reload mode: prestart (in "my app") sourced once, its export
    served, an edit under the spaced path served, SIGTERM exit 0."""
    app_dir = copy_demo(tmp_path / "my app")
    (app_dir / "prestart.sh").write_text("export DEMO_FROM_PRESTART=yes\n")
    port = free_port()
    env = {
        **base_env(),
        # This interpreter's asgi-launcher first.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "SERVER_BACKEND": backend,
        "APP_DIR": str(app_dir),
        "BIND": f"127.0.0.1:{port}",
    }
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(REPO / "conf" / "start-reload.sh")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Launcher(proc, "127.0.0.1", port, log)
    with server:
        server.wait_until(lambda: server.ok("/info"), 30, "/info served")
        info = json.loads(server.get("/info")[2])
        assert info["env"] == {"DEMO_FROM_PRESTART": "yes"}, server.output()
        main = app_dir / "main.py"
        main.write_text(main.read_text().replace("Hello World!", "Hello edit!"))

        def edited() -> bool:
            try:
                return b"Hello edit!" in server.get("/", timeout=2)[2]
            except (OSError, http.client.HTTPException):
                return False  # between two servers

        server.wait_until(edited, 30, "the edit served")  # (a deadline: how fast is test_reload's figure)
        assert server.output().count(f"running prestart script {app_dir / 'prestart.sh'}") == 1
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.output()
