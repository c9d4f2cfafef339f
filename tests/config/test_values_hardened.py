"""Values Python would accept but no user meant, and values that cannot work together: each is one
ConfigError naming the variable, the value and what is expected, before anything starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher import Backend, Config, ConfigError
from launcher.config.addresses import repeated
from launcher.config.resolve import resolve
from launcher.config.settings import MOST_WORKERS


class FakeBackend(Backend):
    def validate(self, config: Config) -> None:
        pass

    def run(self, config: Config) -> int:
        return 0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("app = None\n")
    return tmp_path


def refused(root: Path, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as err:
        resolve(env, FakeBackend, root=root, affinity=2)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEB_CONCURRENCY", "2_0"),  # int() reads 20
        ("WEB_CONCURRENCY", "\uff12"),  # fullwidth 2: int() reads 2
        ("WEB_CONCURRENCY", "\u0663"),  # Arabic-Indic 3
        ("PORT", "\uff18\uff10\uff10\uff10"),  # fullwidth 8000
        ("PORT", "80_00"),
        ("TIMEOUT", "1_0"),
        ("MAX_REQUESTS", "\uff11\uff10"),
        ("WORKERS_PER_CORE", "1_0"),
        ("WORKERS_PER_CORE", "\uff12"),
        ("OPS_PORT", "\uff19\uff10\uff10\uff10"),
        ("BIND", "127.0.0.1:\uff18\uff10\uff10\uff10"),
    ],
)
def test_numbers_are_ascii_digits_only(root: Path, variable: str, value: str) -> None:
    assert f"{variable}={value!r} is invalid" in refused(root, {variable: value})


def test_plain_numbers_still_pass(root: Path) -> None:
    config = resolve(
        {"WEB_CONCURRENCY": " 20 ", "PORT": "8000", "WORKERS_PER_CORE": "0.5", "TIMEOUT": "0"},
        FakeBackend,
        root=root,
        affinity=2,
    )
    assert (config.workers, config.bind, config.timeout) == (20, ("0.0.0.0:8000",), 0)
    assert resolve({"WORKERS_PER_CORE": "1e1"}, FakeBackend, root=root, affinity=2).workers == 20


@pytest.mark.parametrize("value", ["99999999999999999999", str(MOST_WORKERS + 1)])
def test_a_worker_count_no_machine_holds_is_refused(root: Path, value: str) -> None:
    message = refused(root, {"WEB_CONCURRENCY": value})
    assert f"WEB_CONCURRENCY={value!r}" in message and f"from 1 to {MOST_WORKERS}" in message


def test_the_most_workers_pass(root: Path) -> None:
    assert resolve({"WEB_CONCURRENCY": str(MOST_WORKERS)}, FakeBackend, root=root, affinity=2).workers == 1024


def test_a_formula_giving_more_workers_than_any_machine_holds_is_refused(root: Path) -> None:
    message = refused(root, {"WORKERS_PER_CORE": "1000000"})
    assert "WORKERS_PER_CORE='1000000'" in message and "2000000" in message and "MAX_WORKERS" in message
    # MAX_WORKERS bounds it: then the formula's count is fine.
    env = {"WORKERS_PER_CORE": "1000000", "MAX_WORKERS": "8"}
    assert resolve(env, FakeBackend, root=root, affinity=2).workers == 8


@pytest.mark.parametrize(
    ("bind", "named"),
    [
        ("127.0.0.1:8000,127.0.0.1:8000", "127.0.0.1:8000 is repeated"),
        ("127.0.0.1:8000 127.0.0.1:8000", "127.0.0.1:8000 is repeated"),
        ("[::1]:8000,[0:0::1]:8000", "[0:0::1]:8000 takes the same socket as [::1]:8000"),
        ("0.0.0.0:8000,127.0.0.1:8000", "127.0.0.1:8000 takes the same socket as 0.0.0.0:8000"),
        ("unix:/tmp/a.sock,unix:/tmp//a.sock", "unix:/tmp//a.sock takes the same socket as unix:/tmp/a.sock"),
    ],
)
def test_a_repeated_bind_address_is_refused_naming_it(root: Path, bind: str, named: str) -> None:
    message = refused(root, {"BIND": bind})
    assert f"BIND={bind!r} is invalid" in message and named in message, message


def test_different_addresses_on_one_port_pass() -> None:
    assert repeated(["127.0.0.1:8000", "127.0.0.2:8000", "[::1]:8000", "127.0.0.1:8001"]) is None


def test_a_config_files_workers_and_binds_are_held_to_the_same_rules(root: Path) -> None:
    config = resolve({}, FakeBackend, root=root, affinity=2)
    with pytest.raises(ConfigError, match=r"file:/x\.py: workers=5000 is invalid: expected a whole number"):
        config.with_file_settings({"workers": (5000, "file:/x.py")})
    with pytest.raises(ConfigError, match=r"file:/x\.py: bind=.* is invalid: 127\.0\.0\.1:80 is repeated"):
        config.with_file_settings({"bind": (["127.0.0.1:80", "127.0.0.1:80"], "file:/x.py")})
    assert config.with_file_settings({"workers": (3, "file:/x.py")}).workers == 3


@pytest.mark.parametrize("variable", ["ACCESS_LOG", "ERROR_LOG"])
@pytest.mark.parametrize("path", ["/proc/x.log", "/sys/x.log"])
def test_a_log_file_where_nothing_can_be_created_is_refused(root: Path, variable: str, path: str) -> None:
    # /proc and /sys exist, and root passes os.access(W_OK) on them: only creating a file tells.
    message = refused(root, {variable: path})
    assert message.startswith(f"{variable}={path!r} is invalid"), message
    assert f"no file can be created in {os.path.dirname(path)!r} (" in message, message


def test_a_log_file_check_leaves_nothing_behind(root: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    resolve({"ACCESS_LOG": str(logs / "access.log")}, FakeBackend, root=root, affinity=2)
    assert list(logs.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only-by-mode directory")
def test_a_log_file_in_a_directory_this_user_cannot_write_is_refused(root: Path, tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o500)
    message = refused(root, {"ERROR_LOG": str(closed / "e.log")})
    assert "no file can be created in" in message and "Permission denied" in message
