"""Every malformed value is a ConfigError whose message names the variable, the value and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import Backend, Config, ConfigError
from launcher.config.resolve import resolve


class FakeBackend(Backend):
    config_file_env = "FAKE_CONF"
    config_file_name = "fake_conf.py"

    def validate(self, config: Config) -> None:
        pass

    def run(self, config: Config) -> int:
        return 0


# (variable, value, a fragment of what is expected)
BAD_VALUES = [
    ("WORKERS_PER_CORE", "abc", "number greater than 0"),
    ("WORKERS_PER_CORE", "0", "number greater than 0"),
    ("WORKERS_PER_CORE", "-1", "number greater than 0"),
    ("WORKERS_PER_CORE", "nan", "number greater than 0"),
    ("WORKERS_PER_CORE", "inf", "number greater than 0"),
    ("WEB_CONCURRENCY", "0", "from 1 to 1024"),
    ("WEB_CONCURRENCY", "-3", "from 1 to 1024"),
    ("WEB_CONCURRENCY", "2.5", "from 1 to 1024"),
    ("MAX_WORKERS", "0", "1 or more"),
    ("MAX_WORKERS", "many", "1 or more"),
    ("PORT", "70000", "1 to 65535"),
    ("PORT", "0", "1 to 65535"),
    ("PORT", "http", "1 to 65535"),
    ("HOST", "a b", "IP address or host name"),
    ("HOST", "::g", "IP address or host name"),
    ("BIND", ":::", "HOST:PORT"),
    ("BIND", "0.0.0.0", "HOST:PORT"),
    ("BIND", "0.0.0.0:99999", "HOST:PORT"),
    ("BIND", "[::1:80", "HOST:PORT"),
    ("BIND", "unix:relative.sock", "unix:/path"),
    ("LOG_LEVEL", "verbose", "one of debug, info"),
    ("TIMEOUT", "-1", "seconds"),
    ("TIMEOUT", "1m", "seconds"),
    ("GRACEFUL_TIMEOUT", "soon", "seconds"),
    ("KEEP_ALIVE", "-5", "seconds"),
    ("MAX_REQUESTS", "-1", "0 or more"),
    ("MAX_REQUESTS_JITTER", "x", "0 or more"),
    ("APP_MODULE", "a:b:c", "MODULE:VARIABLE"),
    ("APP_MODULE", "main", "MODULE:VARIABLE"),
    ("APP_MODULE", ":app", "MODULE:VARIABLE"),
    ("APP_MODULE", "main:", "MODULE:VARIABLE"),
    ("APP_MODULE", "my-app:app", "MODULE:VARIABLE"),
    ("MODULE_NAME", "app/main.py", "dotted Python module"),
    ("VARIABLE_NAME", "my app", "attribute name"),
    ("FORWARDED_ALLOW_IPS", "10.0.0.300", "'10.0.0.300' is not an IP address or network"),
    ("FORWARDED_ALLOW_IPS", "127.0.0.1/33", "IP addresses or CIDR networks"),
    ("FORWARDED_ALLOW_IPS", "127.0.0.1, proxy.example.com", "'proxy.example.com' is not an IP address"),
    ("FORWARDED_ALLOW_IPS", "10.0.0.0/8;127.0.0.1", "separated by commas"),
    ("ROOT_PATH", "api", "starting with /"),
    ("ROOT_PATH", "/my app", "without spaces"),
    ("ROOT_PATH", "/api?x=1", "starting with /"),
    ("ROOT_PATH", "//", "starting with /"),
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("app = None\n")
    return tmp_path


@pytest.mark.parametrize(("variable", "value", "expected"), BAD_VALUES)
def test_bad_value_is_named(root: Path, variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve({variable: value}, FakeBackend, root=root, affinity=2)
    message = str(err.value)
    assert f"{variable}={value!r}" in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("variable", ["PRE_START_PATH", "FAKE_CONF", "APP_DIR", "ACCESS_LOG", "ERROR_LOG"])
def test_paths_that_do_not_exist(root: Path, variable: str) -> None:
    value = str(root / "missing" / "thing")
    with pytest.raises(ConfigError, match=f"{variable}=") as err:
        resolve({variable: value}, FakeBackend, root=root, affinity=2)
    assert value in str(err.value)


@pytest.mark.parametrize("variable", ["PRE_START_PATH", "FAKE_CONF", "ACCESS_LOG", "ERROR_LOG"])
def test_paths_that_are_directories(root: Path, variable: str) -> None:
    with pytest.raises(ConfigError, match="directory"):
        resolve({variable: str(root)}, FakeBackend, root=root, affinity=2)


def test_app_dir_that_is_a_file(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"APP_DIR=.*an existing directory"):
        resolve({"APP_DIR": str(root / "app" / "main.py")}, FakeBackend, root=root, affinity=2)
