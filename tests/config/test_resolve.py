"""The env contract, resolved purely: every variable, default and precedence rule, and every
malformed value a ConfigError whose message names the variable, the value and what is expected.
(``test_resolve_property.py`` holds the same over generated environments.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import Backend, Config, ConfigError
from launcher.config.model import MissingApp
from launcher.config.resolve import backend_name, resolve, worker_bound
from launcher.config.settings import SETTINGS, Setting


class FakeBackend(Backend):
    """A backend declaring a config file, so the lookup rules can be exercised without a server."""

    config_file_env = "FAKE_CONF"
    config_file_name = "fake_conf.py"
    default_worker_class = "fake.Worker"
    unsupported = frozenset({"timeout"})

    def validate(self, config: Config) -> None:
        pass

    def run(self, config: Config) -> int:
        return 0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake filesystem root with /app/main.py and no cgroup limit."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("app = None\n")
    return tmp_path


def res(env: dict[str, str], root: Path, affinity: int = 2, cwd: Path | None = None) -> Config:
    return resolve(env, FakeBackend, root=root, affinity=affinity, cwd=cwd)


def test_defaults_match_the_reference(root: Path) -> None:
    c = res({}, root)
    assert c.app == "main:app"
    assert c.app_dir == str(root / "app")
    assert c.bind == ("0.0.0.0:80",)
    assert c.workers == 2
    assert c.log_level == "info"
    assert (c.timeout, c.graceful_timeout, c.keep_alive) == (120, 120, 5)
    assert (c.access_log, c.error_log) == ("-", "-")
    assert c.worker_class == "fake.Worker"
    assert c.backend == "gunicorn"
    assert c.forwarded_allow_ips == "127.0.0.1"
    assert c.prestart is None
    assert c.unsupported == ("timeout",)
    assert c.sources["bind"] == "default"
    assert c.sources["workers"] == "computed (CPU formula)"
    assert (c.memory_limit, c.worker_memory, c.max_worker_memory) == (None, 128, None)
    assert c.sources["log_level"] == "default"


def test_app_main_package_wins_over_main_module(root: Path) -> None:
    (root / "app" / "app").mkdir()
    (root / "app" / "app" / "main.py").write_text("app = None\n")
    assert res({}, root).app == "app.main:app"


def test_app_dir_falls_back_to_cwd_when_there_is_no_slash_app(tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "main.py").write_text("")
    c = res({}, tmp_path, cwd=cwd)
    assert c.app_dir == str(cwd)
    assert c.app == "main:app"


def test_no_app_found_names_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        res({}, tmp_path, cwd=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "app" / "main.py") in message
    assert str(tmp_path / "main.py") in message
    assert "APP_MODULE" in message


def test_module_and_variable_name(root: Path) -> None:
    c = res({"MODULE_NAME": "custom_app.custom_main", "VARIABLE_NAME": "api"}, root)
    assert c.app == "custom_app.custom_main:api"
    assert c.sources["app"] == "computed"


def test_app_module_wins_over_module_and_variable(root: Path) -> None:
    c = res({"MODULE_NAME": "x", "VARIABLE_NAME": "y", "APP_MODULE": "custom_app.custom_main:api"}, root)
    assert c.app == "custom_app.custom_main:api"
    assert c.sources["app"] == "env:APP_MODULE"


@pytest.mark.parametrize(
    ("cpus", "per_core", "max_workers", "web_concurrency", "expected"),
    [
        (2, 3.0, None, None, 6),  # the reference: 2 cores x 3
        (8, 0.5, None, None, 4),  # the reference: 8 cores x 0.5
        (1, 1.0, None, None, 2),  # the reference: 1 core still gets 2
        (2, 1.0, None, None, 2),
        (64, 1.0, 8, None, 8),  # MAX_WORKERS caps the formula
        (4, 1.0, 1, None, 1),  # ... even below the floor of 2
        (4, 1.0, 1, 6, 6),  # WEB_CONCURRENCY wins and ignores MAX_WORKERS
        (1, 0.1, None, None, 2),
        (3, 1.5, None, None, 4),  # int() truncates 4.5
    ],
)
def test_worker_formula(
    cpus: int, per_core: float, max_workers: int | None, web_concurrency: int | None, expected: int
) -> None:
    assert worker_bound(cpus, per_core, max_workers, web_concurrency)[0] == expected


def test_workers_through_the_environment(root: Path) -> None:
    assert res({"WORKERS_PER_CORE": "3"}, root, affinity=2).workers == 6
    assert res({"WORKERS_PER_CORE": "0.5"}, root, affinity=8).workers == 4
    assert res({}, root, affinity=1).workers == 2
    assert res({"MAX_WORKERS": "1"}, root, affinity=8).workers == 1
    c = res({"WEB_CONCURRENCY": "5", "MAX_WORKERS": "1"}, root, affinity=8)
    assert (c.workers, c.sources["workers"]) == (5, "env:WEB_CONCURRENCY")


def test_cgroup_quota_lowers_the_worker_count(root: Path) -> None:
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "self" / "cgroup").write_text("0::/\n")
    (root / "sys" / "fs" / "cgroup").mkdir(parents=True)
    (root / "sys" / "fs" / "cgroup" / "cpu.max").write_text("100000 100000\n")
    c = res({"WORKERS_PER_CORE": "3"}, root, affinity=64)
    assert (c.cpus, c.workers) == (1, 3)


@pytest.mark.parametrize(
    ("env", "bind", "source"),
    [
        ({"PORT": "8080"}, "0.0.0.0:8080", "computed"),
        ({"HOST": "127.0.0.1", "PORT": "9000"}, "127.0.0.1:9000", "computed"),
        ({"HOST": "::"}, "[::]:80", "computed"),
        ({"HOST": "1.2.3.4", "BIND": "0.0.0.0:8080"}, "0.0.0.0:8080", "env:BIND"),
        ({"BIND": "[::]:80"}, "[::]:80", "env:BIND"),
        ({"BIND": "unix:/tmp/app.sock"}, "unix:/tmp/app.sock", "env:BIND"),
    ],
)
def test_bind_precedence(root: Path, env: dict[str, str], bind: str, source: str) -> None:
    c = res(env, root)
    assert c.bind == (bind,)
    assert c.sources["bind"] == source


def test_several_binds(root: Path) -> None:
    assert res({"BIND": "127.0.0.1:8000, [::1]:8000"}, root).bind == ("127.0.0.1:8000", "[::1]:8000")


@pytest.mark.parametrize("level", ["DEBUG", "Info", "warning", "ERROR", "critical"])
def test_log_level_any_case(root: Path, level: str) -> None:
    assert res({"LOG_LEVEL": level}, root).log_level == level.lower()


def test_timeouts_and_logs(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    c = res(
        {
            "TIMEOUT": "30",
            "GRACEFUL_TIMEOUT": "7",
            "KEEP_ALIVE": "2",
            "ACCESS_LOG": str(log),
            "ERROR_LOG": "-",
        },
        root,
    )
    assert (c.timeout, c.graceful_timeout, c.keep_alive, c.access_log) == (30, 7, 2, str(log))
    assert c.sources["graceful_timeout"] == "env:GRACEFUL_TIMEOUT"


def test_empty_access_log_turns_it_off(root: Path) -> None:
    c = res({"ACCESS_LOG": ""}, root)
    assert c.access_log is None
    assert c.sources["access_log"] == "env:ACCESS_LOG"


def test_prestart_default_and_explicit(root: Path) -> None:
    assert res({}, root).prestart is None
    (root / "app" / "prestart.sh").write_text("true\n")
    assert res({}, root).prestart == str(root / "app" / "prestart.sh")
    other = root / "other.sh"
    other.write_text("true\n")
    c = res({"PRE_START_PATH": str(other)}, root)
    assert (c.prestart, c.sources["prestart"]) == (str(other), "env:PRE_START_PATH")


def test_config_file_lookup_order(root: Path) -> None:
    assert res({}, root).config_file is None
    (root / "fake_conf.py").write_text("")
    assert res({}, root).config_file == str(root / "fake_conf.py")
    (root / "app" / "app").mkdir()
    (root / "app" / "app" / "fake_conf.py").write_text("")
    assert res({}, root).config_file == str(root / "app" / "app" / "fake_conf.py")
    (root / "app" / "fake_conf.py").write_text("")
    c = res({}, root)
    assert (c.config_file, c.sources["config_file"]) == (str(root / "app" / "fake_conf.py"), "computed")
    explicit = root / "elsewhere.py"
    explicit.write_text("")
    c = res({"FAKE_CONF": str(explicit)}, root)
    assert (c.config_file, c.sources["config_file"]) == (str(explicit), "env:FAKE_CONF")


def test_worker_class_from_env(root: Path) -> None:
    c = res({"WORKER_CLASS": "my.Worker"}, root)
    assert (c.worker_class, c.sources["worker_class"]) == ("my.Worker", "env:WORKER_CLASS")


def test_file_settings_win_and_record_their_source(root: Path) -> None:
    c = res({"WEB_CONCURRENCY": "2"}, root)
    c2 = c.with_file_settings(
        {
            "workers": (5, "file:/app/conf.py"),
            "bind": (["0.0.0.0:1"], "cmdline"),
            "preload_app": (True, "file:/x"),
        }
    )
    assert (c2.workers, c2.sources["workers"]) == (5, "file:/app/conf.py")
    assert (c2.bind, c2.sources["bind"]) == (("0.0.0.0:1",), "cmdline")
    assert c2.server_settings == {"preload_app": True}
    assert c2.to_dict()["server_settings"] == {"preload_app": True}
    assert c.workers == 2  # frozen: the original is untouched


def test_json_view_has_the_documented_keys(root: Path) -> None:
    keys = set(res({}, root).to_dict())
    documented = {
        "backend", "app", "app_dir", "bind", "workers", "cpus", "worker_class", "log_level", "timeout",
        "graceful_timeout", "keep_alive", "access_log", "error_log", "forwarded_allow_ips", "root_path",
        "config_file", "prestart", "sources",
    }  # fmt: skip
    assert documented <= keys
    c = res({}, root)
    assert set(c.sources) >= documented - {"sources"}


def test_backend_name() -> None:
    assert backend_name({}) == "gunicorn"
    assert backend_name({"SERVER_BACKEND": " hypercorn "}) == "hypercorn"
    assert backend_name({"SERVER_BACKEND": ""}) == "gunicorn"
    assert backend_name({"SERVER_BACKEND": " \t"}) == "gunicorn"


def _without_sources(config: Config) -> dict[str, object]:
    data = config.to_dict()
    data.pop("sources")
    return data


EMPTY_MEANS_UNSET = [s for s in SETTINGS if s.env not in ("ACCESS_LOG", "ERROR_LOG")]


@pytest.mark.parametrize("setting", EMPTY_MEANS_UNSET, ids=lambda s: s.env)
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_variable_means_its_default(root: Path, setting: Setting, value: str) -> None:
    (root / "app" / "prestart.sh").write_text("true\n")  # so PRE_START_PATH's default is a file
    c = res({setting.env: value}, root)
    assert _without_sources(c) == _without_sources(res({}, root))
    assert c.sources[setting.feeds] == f"default (empty env:{setting.env})"


def test_an_empty_config_file_variable_looks_up_the_default_file(root: Path) -> None:
    (root / "fake_conf.py").write_text("")
    c = res({"FAKE_CONF": " "}, root)
    assert c.config_file == str(root / "fake_conf.py")
    assert c.sources["config_file"] == "default (empty env:FAKE_CONF)"


@pytest.mark.parametrize(
    ("env", "key", "value", "source"),
    [
        ({"HOST": "", "PORT": "", "BIND": ""}, "bind", ("0.0.0.0:80",), "default (empty env:BIND)"),
        ({"HOST": "", "PORT": ""}, "bind", ("0.0.0.0:80",), "default (empty env:PORT)"),
        ({"HOST": "127.0.0.1", "PORT": ""}, "bind", ("127.0.0.1:80",), "computed"),
        ({"BIND": "", "PORT": "8080"}, "bind", ("0.0.0.0:8080",), "computed"),
        (
            {"WORKERS_PER_CORE": "", "WEB_CONCURRENCY": ""},
            "workers",
            2,
            "default (empty env:WEB_CONCURRENCY)",
        ),
        ({"WORKERS_PER_CORE": "3", "WEB_CONCURRENCY": ""}, "workers", 6, "computed (CPU formula)"),
        ({"MODULE_NAME": "", "APP_MODULE": ""}, "app", "main:app", "default (empty env:APP_MODULE)"),
        ({"MODULE_NAME": "pkg.mod", "APP_MODULE": " "}, "app", "pkg.mod:app", "computed"),
    ],
)
def test_the_most_specific_empty_variable_is_named(
    root: Path, env: dict[str, str], key: str, value: object, source: str
) -> None:
    c = res(env, root)
    assert (getattr(c, key), c.sources[key]) == (value, source)


def test_empty_error_log_turns_it_off(root: Path) -> None:
    c = res({"ERROR_LOG": ""}, root)
    assert c.error_log is None
    assert c.sources["error_log"] == "env:ERROR_LOG"
    assert res({"ERROR_LOG": "  "}, root).error_log is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("/api", "/api"), ("/api/", "/api"), (" /a/b ", "/a/b"), ("/", ""), ("/v1.2/x-y_z", "/v1.2/x-y_z")],
)
def test_root_path(root: Path, raw: str, expected: str) -> None:
    c = res({"ROOT_PATH": raw}, root)
    assert (c.root_path, c.sources["root_path"]) == (expected, "env:ROOT_PATH")
    assert c.to_dict()["root_path"] == expected


def test_root_path_defaults_to_none(root: Path) -> None:
    c = res({}, root)
    assert (c.root_path, c.sources["root_path"]) == ("", "default")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1, 10.0.0.0/8", "127.0.0.1,10.0.0.0/8"),
        ("127.0.0.1 10.1.2.3/8\t::1", "127.0.0.1,10.0.0.0/8,::1"),  # host bits are ignored
        ("0:0::1,fd00::/8,", "::1,fd00::/8"),
        ("10.0.0.1,10.0.0.1", "10.0.0.1"),
        ("*", "*"),
        (" 127.0.0.1, * ", "*"),
    ],
)
def test_forwarded_allow_ips_is_parsed_and_normalized(root: Path, raw: str, expected: str) -> None:
    assert res({"FORWARDED_ALLOW_IPS": raw}, root).forwarded_allow_ips == expected


def test_selected_backend_name_is_recorded(root: Path) -> None:
    c = resolve({"SERVER_BACKEND": "GUNICORN"}, FakeBackend, root=root, affinity=2, selected="gunicorn")
    assert (c.backend, c.sources["backend"]) == ("gunicorn", "env:SERVER_BACKEND")


def test_no_app_found_carries_the_rest_of_the_configuration(tmp_path: Path) -> None:
    with pytest.raises(MissingApp) as err:
        res({"PORT": "8080"}, tmp_path, cwd=tmp_path)
    assert err.value.looked_for == (str(tmp_path / "app" / "main.py"), str(tmp_path / "main.py"))
    assert err.value.config is not None
    assert (err.value.config.app, err.value.config.bind) == ("", ("0.0.0.0:8080",))


# -- malformed values ------------------------------------------------------------------------

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
