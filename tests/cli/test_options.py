"""The command line people already type: an APP argument and options, each the same setting as
its variable, with its source shown, winning over the environment and a backend's config file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher import Backend
from launcher.cli import build_parser, given_options
from launcher.config.resolve import FLAGS_ENV, resolve
from launcher.config.settings import ENV_ONLY, ENV_ONLY_GROUPS, GROUPS, SETTINGS, flag_source
from launcher.testing.process import Launcher, base_env, free_port, request, run_launcher, start_launcher

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    shutil.copytree(DEMO, d, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "pkg").mkdir()
    (d / "pkg" / "__init__.py").write_text("")
    (d / "pkg" / "web.py").write_text("async def api(scope, receive, send): pass\n")
    (d / "sub").mkdir()
    (d / "pre.sh").write_text("true\n")
    (d / "log.json").write_text('{"version": 1}')
    return d


def samples(app_dir: Path) -> dict[str, str]:
    """A valid value, other than the default, for every setting."""
    return {
        "SERVER_BACKEND": "hypercorn",
        "APP_DIR": str(app_dir),
        "MODULE_NAME": "pkg.web",
        "VARIABLE_NAME": "api",
        "APP_MODULE": "pkg.web:api",
        "WORKERS_PER_CORE": "3",
        "MAX_WORKERS": "1",
        "WEB_CONCURRENCY": "5",
        "WORKER_MEMORY": "64",
        "HOST": "127.0.0.1",
        "PORT": "8123",
        "BIND": "127.0.0.1:9000",
        "LOG_LEVEL": "warning",
        "TIMEOUT": "30",
        "GRACEFUL_TIMEOUT": "7",
        "KEEP_ALIVE": "9",
        "LIMIT_REQUEST_LINE": "100",
        "LIMIT_REQUEST_FIELDS": "10",
        "LIMIT_REQUEST_FIELD_SIZE": "60",
        "HTTP2_CLEARTEXT": "true",
        "ACCESS_LOG": str(app_dir / "access.log"),
        "ERROR_LOG": str(app_dir / "error.log"),
        "ACCESS_LOG_FORMAT": "%(h)s %(r)s",
        "LOG_FORMAT": "json",
        "LOG_CONFIG": str(app_dir / "log.json"),
        "FORWARDED_ALLOW_IPS": "10.0.0.0/8",
        "ROOT_PATH": "/api",
        "MAX_REQUESTS": "50",
        "MAX_REQUESTS_JITTER": "5",
        "MAX_WORKER_MEMORY": "300",
        "OPS_PORT": "9100",
        "OPS_HOST": "127.0.0.1",
        "SHUTDOWN_DELAY": "3",
        "PRE_START_PATH": str(app_dir / "pre.sh"),
        "RELOAD": "true",
        "RELOAD_DIRS": "sub",
        "RELOAD_INCLUDE": "*.html",
        "WORKER_CLASS": "asyncio",
        "SSL_CERTFILE": str(app_dir / "cert.pem"),
        "SSL_KEYFILE": str(app_dir / "key.pem"),
        "SSL_KEYFILE_PASSWORD": "secret",
        "SSL_CA_CERTS": str(app_dir / "ca.pem"),
        "SSL_CERT_REQS": "optional",
        "SSL_MIN_VERSION": "TLSv1.3",
        "HTTP2": "true",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=b",
        "OTEL_SERVICE_NAME": "shop",
        "OTEL_RESOURCE_ATTRIBUTES": "team=web",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_TRACES_SAMPLER_ARG": "0.5",
        "OTEL_PROPAGATORS": "tracecontext",
        "OTEL_SDK_DISABLED": "true",
    }


def parse(*argv: str) -> dict[str, tuple[str, str]]:
    return given_options(build_parser().parse_args(["config", *argv]))


def test_every_setting_has_an_option_and_a_group(app_dir: Path) -> None:
    assert set(samples(app_dir)) == {s.env for s in SETTINGS}, "give the new setting a sample value"
    for setting in SETTINGS:
        env_only = setting.env in ENV_ONLY or setting.group in ENV_ONLY_GROUPS
        assert bool(setting.flags) != env_only, f"{setting.env}: an option, unless it is env-only"
        assert setting.group in GROUPS, f"{setting.env}: group {setting.group!r} is not in GROUPS"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_each_option_sets_the_same_value_as_its_variable(app_dir: Path, setting: object) -> None:
    """Every spelling of every setting's option, parsed by the real parser and resolved, gives
    the Config what the variable gives, and the source names the option."""
    from launcher.config.settings import Setting

    assert isinstance(setting, Setting)
    value = samples(app_dir)[setting.env]
    base = {"APP_DIR": str(app_dir)}
    by_env = resolve({**base, setting.env: value}, Backend, affinity=2)
    for flag in setting.flags:
        name, sep, const = flag.partition("=")
        if sep:  # a spelling that sets its own value (--no-access-log)
            argv, expected = [name], resolve({**base, setting.env: const}, Backend, affinity=2)
        elif setting.kind == "bool":
            argv, expected = [flag], by_env
        elif not flag.startswith("-"):  # the positional APP
            argv, expected = [value], by_env
        else:
            argv, expected = [flag, value], by_env
        given = parse(*argv)
        assert given == {setting.env: (name, const if sep else value)}
        by_flag = resolve({**base, FLAGS_ENV: json.dumps(given)}, Backend, affinity=2)
        assert getattr(by_flag, setting.feeds) == getattr(expected, setting.feeds), flag
        if expected.sources[setting.feeds] == f"env:{setting.env}":
            assert by_flag.sources[setting.feeds] == flag_source(name), flag


def test_list_options_may_be_given_several_times() -> None:
    given = parse("-b", "127.0.0.1:9000", "--bind", "[::1]:9001", "--reload-dir", "a", "--reload-dir", "b")
    assert given == {"BIND": ("--bind", "127.0.0.1:9000,[::1]:9001"), "RELOAD_DIRS": ("--reload-dir", "a,b")}


def test_options_win_over_the_environment_and_a_config_file(app_dir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text("bind = ['0.0.0.0:7000']\nworkers = 7\ntimeout = 33\n")
    env = {"APP_DIR": str(app_dir), "GUNICORN_CONF": str(conf), "BIND": "0.0.0.0:9000", "PORT": "9001"}
    plain = run_launcher(env, ("config", "--json"))
    assert plain.returncode == 0, plain.stderr
    data = json.loads(plain.stdout)
    assert (data["bind"], data["workers"]) == (["0.0.0.0:7000"], 7)  # the file wins over the env
    assert data["sources"]["bind"] == f"file:{conf}"
    flagged = run_launcher(env, ("config", "--json", "--port", "8123", "-w", "3"))
    assert flagged.returncode == 0, flagged.stderr
    data = json.loads(flagged.stdout)
    assert (data["bind"], data["workers"], data["timeout"]) == (["0.0.0.0:8123"], 3, 33)
    assert data["sources"]["bind"] == "flag --port"  # over BIND and PORT, and over the file
    assert data["sources"]["workers"] == "flag -w"
    assert data["sources"]["timeout"] == f"file:{conf}"  # what no option set: the file, as before
    text = run_launcher(env, ("config", "--port", "8123"))
    assert "0.0.0.0:8123  (flag --port)" in text.stdout


def first_answer(server: Launcher, port: int, timeout: float = 30) -> int | None:
    """The status of the first answer on ``port`` (None: none before the deadline or the exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            return request(port, "/")[0]
        except OSError:
            time.sleep(0.1)
    return None


def test_app_and_options_without_a_command_serve(app_dir: Path) -> None:
    """`asgi-launcher main:app --port P`, uvicorn's way: run is the command; the options win over
    the BIND the environment has (start_launcher sets one)."""
    port = free_port()
    args = ("main:app", "--app-dir", str(app_dir), "--host", "127.0.0.1", "--port", str(port), "-w", "1")
    with start_launcher({}, args=args) as server:
        assert first_answer(server, port) == 200, server.output()
        assert f"with gunicorn on 127.0.0.1:{port}: 1 worker: -w" in server.output()


def test_the_reload_mode_servers_get_the_options_too(app_dir: Path) -> None:
    """The reload mode's server is another process: the options reach it (``FLAGS_ENV``)."""
    port = free_port()
    args = ("--reload", "--app-dir", str(app_dir), "--port", str(port), "--host", "127.0.0.1")
    with start_launcher({}, args=args) as server:
        assert first_answer(server, port) == 200, server.output()


def test_help_lists_every_variable_grouped_as_the_docs() -> None:
    top = run_launcher({}, ("--help",))
    assert top.returncode == 0
    positions = [top.stdout.index(f"\n{title}:\n") for title in GROUPS]
    assert positions == sorted(positions)
    for setting in SETTINGS:
        at = top.stdout.index(f"\n  {setting.env} (")
        group = max(i for i, p in enumerate(positions) if p < at)
        assert GROUPS[group] == setting.group, setting.env
    run = run_launcher({}, ("run", "--help"))
    assert run.returncode == 0
    for setting in SETTINGS:
        assert (setting.env in run.stdout) == bool(setting.flags), setting.env  # its options'
    for title in {s.group for s in SETTINGS if s.flags}:
        assert f"\n{title}:\n" in run.stdout


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (("main:app", "--interface", "asgi"), "--interface: asgi-launcher serves ASGI apps only"),
        (("main:app", "--uds", "/tmp/x.sock"), "--bind unix:/path/to.sock"),
        (("main:app", "--factory"), "module-level app"),
    ],
)
def test_another_servers_option_is_one_line_saying_what_to_type(argv: tuple[str, ...], hint: str) -> None:
    result = run_launcher({}, argv)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("asgi-launcher: error: unrecognized arguments:") and hint in line, line


def test_a_bad_option_value_names_the_option(app_dir: Path) -> None:
    result = run_launcher({"APP_DIR": str(app_dir)}, ("--port", "eighty"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "asgi-launcher: error: --port='eighty' is invalid: expected a port number from 1 to 65535"
    )


@pytest.mark.parametrize(
    ("env", "args", "start"),
    [
        ({}, (), "0.0.0.0:80 (the default) cannot be used: permission denied: ports below 1024 need root"),
        ({"PORT": "81"}, (), "0.0.0.0:81 (HOST and PORT) cannot be used: permission denied"),
        ({}, ("--port", "82"), "0.0.0.0:82 (--port) cannot be used: permission denied"),
    ],
)
def test_a_low_port_without_the_privilege_says_what_to_type(
    app_dir: Path, env: dict[str, str], args: tuple[str, ...], start: str
) -> None:
    """Outside a container, as a user who may not bind below 1024 (here: root without
    CAP_NET_BIND_SERVICE, which is what that takes), the default port 80 is refused in one line
    that says what to type instead."""
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop CAP_NET_BIND_SERVICE")
    result = subprocess.run(
        ["setpriv", "--bounding-set=-net_bind_service", sys.executable, "-m", "launcher", "main:app", *args],
        env={**base_env(), "APP_DIR": str(app_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if "setpriv:" in result.stderr:
        pytest.skip(f"setpriv cannot drop the capability here: {result.stderr.strip()}")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"asgi-launcher: error: {start}"), line
    assert line.endswith("choose a port from 1024 up: PORT=8000 or --port 8000"), line


def test_the_health_check_finds_a_server_started_with_options(app_dir: Path, tmp_path: Path) -> None:
    """The image's HEALTHCHECK runs `asgi-launcher probe` with the environment only: it finds the
    server a `CMD asgi-launcher main:app --port P` started, not the default port."""
    port = free_port()
    # PORT as the image has it; TMPDIR: the state file is this test's own.
    env = {"APP_DIR": str(app_dir), "TMPDIR": str(tmp_path), "PORT": "80"}
    with start_launcher(env, args=("main:app", "--host", "127.0.0.1", "--port", str(port))) as server:
        assert first_answer(server, port) == 200, server.output()
        probe = run_launcher(env, ("probe",))
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.startswith(f"127.0.0.1:{port}: HTTP 200"), probe.stdout


def test_a_reader_that_stops_early_gets_no_traceback(app_dir: Path) -> None:
    """`asgi-launcher config | head`: the launcher ends as shell tools do (141), silently. (`true`
    reads nothing and is gone long before the launcher writes.)"""
    result = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m launcher config | true; echo ${{PIPESTATUS[0]}}"],
        env={**base_env(), "APP_DIR": str(app_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "141", result.stderr
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr


def test_log_format_as_an_option_makes_the_first_lines_json_too(app_dir: Path) -> None:
    """The launcher's own lines are written before the configuration is resolved: `--log-format
    json` reaches them as LOG_FORMAT=json does."""
    bad = run_launcher({"APP_DIR": str(app_dir)}, ("--log-format", "json", "--port", "eighty"))
    assert bad.returncode == 2
    [line] = bad.stderr.strip().splitlines()
    assert json.loads(line)["message"] == "--port='eighty' is invalid: expected a port number from 1 to 65535"
    port = free_port()
    args = (
        "main:app",
        "--app-dir",
        str(app_dir),
        "--log-format",
        "json",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    with start_launcher({}, args=args) as server:
        assert first_answer(server, port) == 200, server.output()
        lines = [line for line in server.output().splitlines() if line.strip()]
    serving = [json.loads(line) for line in lines if '"serving ' in line]
    assert serving and serving[0]["log.logger"] == "asgi_launcher", lines
