"""Inputs that used to reach a server and fail there: unix socket paths, log targets, secrets.

The same rules run under every backend (tests/reliability/test_hardening_inputs.py launches
each one); here each rule is checked on its own, without starting anything.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import Backend, Config, ConfigError
from launcher.cli import _format_config
from launcher.config.addresses import check_can_listen, remove_socket_files, socket_files
from launcher.config.resolve import _log_file, resolve


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory in /tmp (for sockets, pytest's tmp_path can exceed the 107-byte limit)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="uds-", dir="/tmp") as name:
        yield Path(name)


def _stale_socket(path: Path) -> None:
    """A socket file nobody listens on: what a SIGKILLed master leaves behind."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


# -- unix sockets ----------------------------------------------------------------------------


def test_a_unix_socket_someone_listens_on_is_in_use(sock_dir: Path) -> None:
    path = sock_dir / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        with pytest.raises(ConfigError) as err:
            check_can_listen((f"unix:{path}",))
        assert str(err.value).startswith(f"BIND='unix:{path}' cannot be used: address already in use; ")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)  # left alone


def test_a_stale_unix_socket_is_removed(sock_dir: Path) -> None:
    path = sock_dir / "s.sock"
    _stale_socket(path)
    check_can_listen((f"unix:{path}",))
    assert not path.exists()


def test_a_master_removes_only_the_socket_files_it_served_on(sock_dir: Path) -> None:
    """At its exit a master removes its unix socket files, and only those: a file bound at the
    path by someone else since, or one that is not a socket, stays."""
    ours, taken, plain = sock_dir / "ours.sock", sock_dir / "taken.sock", sock_dir / "plain"
    _stale_socket(ours)
    _stale_socket(taken)
    plain.write_text("keep me")
    files = socket_files([f"unix:{ours}", f"unix:{taken}", f"unix:{plain}", "127.0.0.1:8000"])
    assert set(files) == {str(ours), str(taken)}
    taken.unlink()
    _stale_socket(taken)  # another process's socket at the same path
    remove_socket_files(files)
    assert not ours.exists() and stat.S_ISSOCK(os.lstat(taken).st_mode) and plain.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_what_is_not_a_socket_is_refused_and_kept(sock_dir: Path, kind: str) -> None:
    path = sock_dir / "s.sock"
    if kind == "file":
        path.write_text("keep")
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(sock_dir / "elsewhere")
    with pytest.raises(ConfigError) as err:
        check_can_listen((f"unix:{path}",))
    assert f"BIND='unix:{path}' cannot be used: {path} is a" in str(err.value)
    assert os.path.lexists(path)
    if kind == "file":
        assert path.read_text() == "keep"


def test_a_socket_in_a_missing_directory_or_too_long_a_path_is_refused(sock_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"its directory .* does not exist"):
        check_can_listen((f"unix:{sock_dir}/nope/s.sock",))
    long = f"unix:{sock_dir}/{'x' * 120}.sock"
    with pytest.raises(ConfigError, match="at most 107 bytes"):
        check_can_listen((long,))
    check_can_listen((f"unix:{sock_dir}/fresh.sock",))  # a free path is fine, and not created
    assert not (sock_dir / "fresh.sock").exists()


# -- log targets -----------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["ACCESS_LOG", "ERROR_LOG"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("/proc/version", "cannot be written"),  # root may open it, but it takes no write
        ("/proc/self/status", "cannot be written"),
        ("/proc/nonexistent/x.log", "'/proc/nonexistent' does not exist"),
        ("/proc", "it is a directory"),
    ],
)
def test_a_log_target_that_cannot_be_written_is_refused(variable: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        _log_file(variable, value)
    message = str(err.value)
    assert message.startswith(f"{variable}={value!r} is invalid: expected - or a file path"), message
    assert reason in message
    assert "\n" not in message


def test_checking_a_log_target_changes_nothing(tmp_path: Path) -> None:
    existing = tmp_path / "existing.log"
    existing.write_text("old lines\n")
    os.utime(existing, ns=(1_000_000_000, 1_000_000_000))
    before = existing.stat()
    _log_file("ACCESS_LOG", str(existing))
    after = existing.stat()
    assert existing.read_text() == "old lines\n"
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    _log_file("ERROR_LOG", str(tmp_path / "new.log"))
    assert not (tmp_path / "new.log").exists()  # judged by its directory, not created
    for fine in ("/dev/stdout", "/dev/null", "-", None):
        _log_file("ACCESS_LOG", fine)


def _as_nobody(values: list[str]) -> list[str]:
    """What ``_log_file`` says of each value in a forked child running as ``nobody`` (65534)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            lines = []
            for value in values:
                try:
                    _log_file("ERROR_LOG", value)
                    lines.append(f"accepted {value}")
                except ConfigError as exc:
                    lines.append(str(exc))
            os.write(write, "\n".join(lines).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        out = pipe.read()
    os.waitpid(pid, 0)
    return out.splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_a_directory_or_file_the_user_cannot_write_is_refused(sock_dir: Path) -> None:
    """As root every directory is writable, so the check runs as ``nobody``."""
    sock_dir.chmod(0o755)  # in /tmp, which nobody may traverse (pytest's tmp_path is 0700)
    locked = sock_dir / "locked"
    locked.mkdir()
    locked.chmod(0o755)
    (locked / "ro.log").write_text("")
    (locked / "ro.log").chmod(0o644)
    new, ro = str(locked / "new.log"), str(locked / "ro.log")
    expected = "is invalid: expected - or a file path this user can write, but"
    assert _as_nobody([new, ro]) == [
        f"ERROR_LOG={new!r} {expected} no file can be created in {str(locked)!r} (Permission denied)",
        f"ERROR_LOG={ro!r} {expected} it is not writable",
    ]


def test_resolve_checks_both_log_targets(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("app = None\n")
    for variable in ("ACCESS_LOG", "ERROR_LOG"):
        with pytest.raises(ConfigError, match=f"^{variable}='/proc/version' is invalid"):
            resolve({"APP_DIR": str(tmp_path), variable: "/proc/version"}, Backend)


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("raw_env", ["DATABASE_URL=postgres://u:secret@h/db", "DEBUG=1"], ["DATABASE_URL=***", "DEBUG=***"]),
        ("raw_env", "TOKEN=abc", ["TOKEN=***"]),
        ("raw_env", ["no-equals-sign"], ["***"]),
        ("keyfile_password", "hunter2", "***"),
        ("statsd_secret", "x", "***"),
        ("api_token", 1234, "***"),
        ("keyfile_password", None, None),
        ("keyfile", "/certs/key.pem", "/certs/key.pem"),
        ("certfile", "/certs/cert.pem", "/certs/cert.pem"),
        ("h11_pass_raw_headers", True, True),
        ("backlog", 100, 100),
    ],
)
def test_what_counts_as_a_secret(name: str, value: object, shown: object) -> None:
    assert Config.masked(name, value) == shown


def test_to_dict_masks_server_settings(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("app = None\n")
    config = resolve({"APP_DIR": str(tmp_path)}, Backend).with_file_settings(
        {
            "raw_env": (["DATABASE_URL=postgres://u:secret@h/db"], "cmdline"),
            "keyfile_password": ("hunter2", "file:/x.toml"),
            "certfile": ("/c.pem", "file:/x.toml"),
        }
    )
    data = config.to_dict()
    assert data["server_settings"] == {
        "raw_env": "['DATABASE_URL=***']",
        "keyfile_password": "***",
        "certfile": "/c.pem",
    }
    assert config.server_settings["keyfile_password"] == "hunter2"  # the server still gets it
    text = _format_config(config)
    assert "secret" not in text and "hunter2" not in text
    assert "DATABASE_URL=***" in text
