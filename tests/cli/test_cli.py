"""The CLI as a user meets it: real subprocesses, one-line errors, nothing started on bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

import pytest

from launcher.testing import BACKENDS
from launcher.testing.process import free_port, run_launcher

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo"


def cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return run_launcher(env or {}, args, timeout)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    d = tmp_path / "app"
    shutil.copytree(DEMO, d, ignore=shutil.ignore_patterns("__pycache__"))
    marker = tmp_path / "prestart-ran"
    (d / "prestart.sh").write_text(f"touch {marker}\n")
    return d


BAD = [
    ("WORKERS_PER_CORE", "abc"),
    ("WEB_CONCURRENCY", "0"),
    ("PORT", "70000"),
    ("LOG_LEVEL", "verbose"),
    ("BIND", ":::"),
    ("APP_MODULE", "a:b:c"),
    ("GUNICORN_CONF", "/nonexistent/gunicorn_conf.py"),
    ("TIMEOUT", "-1"),
    ("ACCESS_LOG", "/nonexistent/dir/access.log"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("variable", "value"), BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_starts(
    app_dir: Path, backend: str, variable: str, value: str
) -> None:
    if variable == "GUNICORN_CONF" and backend != "gunicorn":
        pytest.skip("GUNICORN_CONF is read only by the gunicorn backend")
    port = free_port()
    result = cli(
        "run", env={"APP_DIR": str(app_dir), "SERVER_BACKEND": backend, "PORT": str(port), variable: value}
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and repr(value) in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (app_dir.parent / "prestart-ran").exists()


def test_unknown_backend_lists_installed_ones(app_dir: Path) -> None:
    result = cli("config", env={"APP_DIR": str(app_dir), "SERVER_BACKEND": "gunicron"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    for name in BACKENDS:
        assert name in result.stderr
    assert result.stderr.strip().endswith("did you mean gunicorn?")
    assert "pip install" not in result.stderr and "asgi-launcher-gunicron" not in result.stderr


def test_server_backend_in_capitals(app_dir: Path) -> None:
    result = cli("config", "--json", env={"APP_DIR": str(app_dir), "SERVER_BACKEND": "GUNICORN"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "gunicorn"


@pytest.mark.parametrize("command", ["run", "check"])
def test_missing_app_is_exit_2_naming_where_it_looked(tmp_path: Path, command: str) -> None:
    result = cli(command, env={"APP_DIR": str(tmp_path), "PORT": str(free_port())})
    assert result.returncode == 2
    assert str(tmp_path / "main.py") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_config_without_an_app_still_shows_the_rest(tmp_path: Path) -> None:
    env = {"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "3"}
    looked = f"{tmp_path / 'app' / 'main.py'} and {tmp_path / 'main.py'}"
    text = cli("config", env=env)
    assert text.returncode == 2
    assert [line.split()[0] for line in text.stdout.splitlines()][:4] == ["backend", "app", "app_dir", "bind"]
    assert f"(missing: looked for {looked})" in text.stdout
    assert text.stderr.strip().splitlines() == [
        f"asgi-launcher: error: no app found: looked for {looked} "
        f"(APP_DIR={str(tmp_path)!r}); name it as MODULE:VARIABLE, such as 'asgi-launcher main:app' "
        "or APP_MODULE=main:app, or set APP_DIR to the directory holding it"
    ]
    shown = cli("config", "--json", env=env)
    assert shown.returncode == 2
    data = json.loads(shown.stdout)
    assert data["app"] is None and data["workers"] == 3 and data["app_dir"] == str(tmp_path)
    assert set(data) == set(json.loads(cli("config", "--json", env={"APP_DIR": str(DEMO)}).stdout))
    assert shown.stderr.strip().splitlines() == text.stderr.strip().splitlines()


def test_empty_variables_mean_their_defaults(app_dir: Path) -> None:
    empty = ["SERVER_BACKEND", "WEB_CONCURRENCY", "MAX_WORKERS", "BIND", "HOST", "PORT", "LOG_LEVEL",
             "MODULE_NAME", "VARIABLE_NAME", "APP_MODULE", "GUNICORN_CONF", "TIMEOUT", "GRACEFUL_TIMEOUT",
             "KEEP_ALIVE", "WORKERS_PER_CORE", "FORWARDED_ALLOW_IPS", "ROOT_PATH", "WORKER_CLASS"]  # fmt: skip
    base = {"APP_DIR": str(app_dir)}
    result = cli("config", "--json", env={**base, **{name: "" for name in empty}, "ERROR_LOG": ""})
    assert result.returncode == 0, result.stderr
    data, default = json.loads(result.stdout), json.loads(cli("config", "--json", env=base).stdout)
    sources = data.pop("sources")
    default.pop("sources")
    assert data == {**default, "error_log": None}
    assert sources["workers"] == "default (empty env:WEB_CONCURRENCY)"
    assert sources["bind"] == "default (empty env:BIND)"
    assert sources["app"] == "default (empty env:APP_MODULE)"
    assert sources["config_file"] == "default (empty env:GUNICORN_CONF)"
    assert sources["backend"] == "default (empty env:SERVER_BACKEND)"
    assert sources["error_log"] == "env:ERROR_LOG"


def test_an_empty_config_file_variable_finds_the_default_file(app_dir: Path) -> None:
    (app_dir / "gunicorn_conf.py").write_text("workers = 5\n")
    result = cli(
        "config", "--json", env={"APP_DIR": str(app_dir), "SERVER_BACKEND": "gunicorn", "GUNICORN_CONF": ""}
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config_file"] == str(app_dir / "gunicorn_conf.py") and data["workers"] == 5


def test_root_path_and_forwarded_allow_ips_in_config(app_dir: Path) -> None:
    env = {"APP_DIR": str(app_dir), "ROOT_PATH": "/api/", "FORWARDED_ALLOW_IPS": "10.0.0.1/8 ::1"}
    data = json.loads(cli("config", "--json", env=env).stdout)
    assert (data["root_path"], data["sources"]["root_path"]) == ("/api", "env:ROOT_PATH")
    assert data["forwarded_allow_ips"] == "10.0.0.0/8,::1"
    bad = cli("config", env={**env, "FORWARDED_ALLOW_IPS": "127.0.0.1,10.0.0.300"})
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "asgi-launcher: error: FORWARDED_ALLOW_IPS='127.0.0.1,10.0.0.300' is invalid: expected IP addresses "
        "or CIDR networks such as 127.0.0.1, ::1 or 10.0.0.0/8, separated by commas, or * for every peer "
        "('10.0.0.300' is not an IP address or network)"
    ]


def test_config_json_stdout_stays_json_when_the_config_file_prints(app_dir: Path) -> None:
    (app_dir / "gunicorn_conf.py").write_text(
        "import json\nworkers = 4\nprint(json.dumps({'workers': workers}))\nprint('loaded my conf')\n"
    )
    result = cli("config", "--json", env={"APP_DIR": str(app_dir), "SERVER_BACKEND": "gunicorn"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workers"] == 4
    assert '{"workers": 4}' in result.stderr and "loaded my conf" in result.stderr


def test_another_backends_variable_warns_in_config_and_run(tmp_path: Path, app_dir: Path) -> None:
    site = tmp_path / "site"
    source = (
        "from launcher import Backend\n"
        "class Echo(Backend):\n"
        "    def validate(self, config): pass\n"
        "    def run(self, config):\n"
        "        print('echo ran', flush=True)\n"
        "        return 0\n"
    )
    _fake_distribution(site, "plugin-echo", "echo_mod:Echo", source)
    (app_dir / "prestart.sh").unlink()
    env = {"APP_DIR": str(app_dir), "SERVER_BACKEND": "echo", "PYTHONPATH": str(site),
           "GUNICORN_CMD_ARGS": "--workers 3", "HYPERCORN_CONF": "", "PORT": str(free_port())}  # fmt: skip
    warning = (
        "asgi-launcher: warning: GUNICORN_CMD_ARGS is set but only the gunicorn backend reads it; "
        "the selected backend, echo, ignores it"
    )
    shown = cli("config", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["backend"] == "echo"
    assert shown.stderr.strip().splitlines() == [warning]
    assert warning in cli("config", env=env).stderr
    ran = cli("run", env=env)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert lines.count(warning) == 1
    assert lines.index(warning) < next(i for i, line in enumerate(lines) if "serving main:app" in line)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--timeout", "0"],
            "probe --timeout='0' is invalid: expected a number of seconds greater than 0, such as 2",
        ),
        (["--timeout", "-1"], "probe --timeout='-1' is invalid: expected a number of seconds greater than 0"),
        (["--timeout", "soon"], "probe --timeout='soon' is invalid"),
        (["--timeout", "nan"], "probe --timeout='nan' is invalid"),
        (["--path", "health"], "probe --path='health' is invalid: expected a request path starting with /"),
        (["--path", "/a b"], "probe --path='/a b' is invalid"),
    ],
)
def test_probe_rejects_bad_arguments_in_one_line(args: list[str], message: str) -> None:
    result = cli("probe", *args, env={"APP_DIR": str(DEMO), "BIND": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"asgi-launcher: error: {message}"), result.stderr


def test_probe_names_the_address_it_connected_to(tmp_path: Path) -> None:
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        ok = cli("probe", "--timeout", "2", env={"APP_DIR": str(DEMO), "BIND": f"0.0.0.0:{port}"})
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith(f"127.0.0.1:{port}: HTTP ")
    finally:
        server.shutdown()
        server.server_close()
    closed = free_port()
    down = cli("probe", env={"APP_DIR": str(DEMO), "PORT": str(closed)})
    assert down.returncode == 1
    assert down.stderr.startswith(f"127.0.0.1:{closed}: no HTTP answer")
    sock = tmp_path / "nobody.sock"
    unix = cli("probe", env={"APP_DIR": str(DEMO), "BIND": f"unix:{sock}"})
    assert unix.returncode == 1
    assert unix.stderr.startswith(f"{sock}: no HTTP answer")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"APP_MODULE": "nomodule:app"}, "cannot import module 'nomodule'"),
        ({"APP_MODULE": "main:api"}, "has no attribute 'api'"),
        ({"VARIABLE_NAME": "api"}, "VARIABLE_NAME"),
        ({"MODULE_NAME": "nomodule"}, "MODULE_NAME"),
    ],
)
def test_missing_module_or_attribute_fails_before_any_worker(
    app_dir: Path, env: dict[str, str], fragment: str
) -> None:
    port = free_port()
    result = cli("run", env={"APP_DIR": str(app_dir), "PORT": str(port), "HOST": "127.0.0.1", **env})
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Booting worker" not in result.stderr
    assert "Traceback" not in result.stderr


def test_config_does_not_run_prestart_and_shows_sources(app_dir: Path) -> None:
    result = cli("config", "--json", env={"APP_DIR": str(app_dir), "WEB_CONCURRENCY": "3", "PORT": "8080"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workers"] == 3 and data["sources"]["workers"] == "env:WEB_CONCURRENCY"
    assert data["bind"] == ["0.0.0.0:8080"] and data["sources"]["bind"] == "computed"
    assert data["prestart"] == str(app_dir / "prestart.sh")
    assert not (app_dir.parent / "prestart-ran").exists()
    text = cli("config", env={"APP_DIR": str(app_dir)})
    assert "workers" in text.stdout and "(computed)" in text.stdout


def test_backends_lists_without_importing(app_dir: Path) -> None:
    code = (
        "import sys, json; from launcher.cli import main; main(['backends', '--json']);"
        "print(json.dumps(sorted(m for m in ('gunicorn', 'uvicorn', 'hypercorn', 'granian') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    listed_json, imported_json = result.stdout.rsplit("\n", 2)[0], result.stdout.strip().splitlines()[-1]
    listed = json.loads(listed_json)
    assert {b["name"] for b in listed} >= set(BACKENDS)
    assert {b["distribution"] for b in listed} >= {"asgi-launcher-gunicorn", "asgi-launcher-hypercorn"}
    assert all(b["version"] for b in listed)
    assert json.loads(imported_json) == []


def test_importing_launcher_imports_no_server() -> None:
    code = (
        "import sys, launcher, launcher.cli, launcher.config.resolve, launcher.testing;"
        "print([m for m in sys.modules if m.split('.')[0] in ('gunicorn','uvicorn','hypercorn','granian','uvicorn_worker')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "[]", result.stderr


def _fake_distribution(site: Path, name: str, target: str, module_source: str | None = None) -> None:
    """A real installed distribution (dist-info with an entry point), on a path we add to PYTHONPATH."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[asgi_launcher.backends]\n{name.split('-')[-1]} = {target}\n")
    if module_source is not None:
        (site / (target.split(":")[0] + ".py")).write_text(module_source)


@pytest.mark.parametrize(
    ("dist", "target", "source", "fragment"),
    [
        ("plugin-broken", "missing_module_xyz:Backend", None, "failed to load: ModuleNotFoundError"),
        (
            "plugin-notabackend",
            "notabackend_mod:Thing",
            "class Thing: pass\n",
            "is not a launcher.Backend subclass",
        ),
        (
            "plugin-abstract",
            "abstract_mod:Half",
            "from launcher import Backend\nclass Half(Backend):\n    pass\n",
            "cannot be used",
        ),
    ],
)
def test_a_bad_plugin_is_one_line_naming_plugin_and_distribution(
    tmp_path: Path, app_dir: Path, dist: str, target: str, source: str | None, fragment: str
) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, dist, target, source)
    name = dist.split("-")[-1]
    result = cli("config", env={"APP_DIR": str(app_dir), "SERVER_BACKEND": name, "PYTHONPATH": str(site)})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert dist in result.stderr and fragment in result.stderr and name in result.stderr


def test_a_third_party_plugin_is_found_like_the_built_in_ones(tmp_path: Path, app_dir: Path) -> None:
    site = tmp_path / "site"
    source = (
        "from launcher import Backend\n"
        "class Echo(Backend):\n"
        "    default_worker_class = 'echo-worker'\n"
        "    def validate(self, config): pass\n"
        "    def run(self, config):\n"
        "        print('echo ran', config.app, config.workers)\n"
        "        return 7\n"
    )
    _fake_distribution(site, "plugin-echo", "echo_mod:Echo", source)
    env = {"APP_DIR": str(app_dir), "SERVER_BACKEND": "echo", "PYTHONPATH": str(site), "WEB_CONCURRENCY": "3"}
    listed = cli("backends", env=env)
    assert "echo" in listed.stdout and "plugin-echo" in listed.stdout
    shown = json.loads(cli("config", "--json", env=env).stdout)
    assert shown["backend"] == "echo" and shown["worker_class"] == "echo-worker"
    ran = cli("run", env={**env, "PORT": str(free_port())})
    assert ran.returncode == 7
    assert "echo ran main:app 3" in ran.stdout


def test_check_says_ok_or_what_is_wrong(app_dir: Path) -> None:
    ok = cli("check", env={"APP_DIR": str(app_dir)})
    assert ok.returncode == 0 and ok.stdout.startswith("OK")
    bad = cli("check", env={"APP_DIR": str(app_dir), "VARIABLE_NAME": "api"})
    assert bad.returncode == 2 and "no attribute 'api'" in bad.stderr


def test_app_raising_on_import_shows_its_traceback_once(app_dir: Path) -> None:
    (app_dir / "main.py").write_text("raise RuntimeError('boom at import')\n")
    result = cli("run", env={"APP_DIR": str(app_dir), "PORT": str(free_port())}, timeout=20)
    assert result.returncode not in (0, 2)
    assert result.stderr.count("RuntimeError: boom at import") == 1
    assert result.stderr.count("Traceback") == 1


@pytest.mark.parametrize(
    ("source", "shown", "why"),
    [
        ("import helper\n", ['helper.py", line 2', "import fastapi_not_here"], "ModuleNotFoundError"),
        ("x = (\n", ['main.py", line 1', "x = ("], "SyntaxError"),
        ("import helper2\n", ['helper2.py", line 2, in f', "raise ValueError"], "ValueError"),
    ],
)
def test_an_app_failing_at_import_shows_only_its_own_frames_then_one_line(
    app_dir: Path, source: str, shown: list[str], why: str
) -> None:
    """A missing dependency, a syntax error, an exception: the user's frames only (no launcher,
    importlib or frozen frames before them), then one line naming the module, exit status 1."""
    (app_dir / "prestart.sh").unlink()
    (app_dir / "helper.py").write_text("import os\nimport fastapi_not_here\n")
    (app_dir / "helper2.py").write_text("def f():\n    raise ValueError('bad setting')\nf()\n")
    (app_dir / "main.py").write_text(source)
    result = cli("main:app", "--app-dir", str(app_dir), "--port", str(free_port()), timeout=20)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):", result.stderr
    frames = [line for line in lines if line.startswith('  File "')]
    assert all(str(app_dir) in frame for frame in frames), result.stderr
    for part in shown:
        assert part in result.stderr
    assert lines[-1].startswith("asgi-launcher: error: the app's module 'main' failed to import"), lines[-1]
    assert lines[-2].startswith(f"{why}: "), lines[-2]  # the exception: the traceback's, once
    assert sum(line.startswith(f"{why}: ") for line in lines) == 1, result.stderr
    ends = {
        "ModuleNotFoundError": f" at {app_dir / 'helper.py'}:2; install the package that provides 'fastapi_not_here'",
        "ValueError": f" at {app_dir / 'helper2.py'}:2",
        "SyntaxError": "failed to import",  # a SyntaxError names its place itself
    }
    assert lines[-1].endswith(ends[why]), lines[-1]


def test_help_on_every_command() -> None:
    for args in ([], ["run"], ["config"], ["backends"], ["check"], ["probe"]):
        result = cli(*args, "--help")
        assert result.returncode == 0 and "usage: asgi-launcher" in result.stdout


def test_console_script_and_module_agree(app_dir: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / "asgi-launcher"  # a venv's bin/, or /usr/local/bin
    env = {"APP_DIR": str(app_dir), "PATH": os.environ["PATH"]}
    via_script = subprocess.run(
        [str(script), "config", "--json"], env=env, capture_output=True, text=True, timeout=30
    )
    assert via_script.returncode == 0
    assert json.loads(via_script.stdout) == json.loads(cli("config", "--json", env=env).stdout)


def test_unreadable_prestart_as_an_unprivileged_user(tmp_path: Path, app_dir: Path) -> None:
    if not shutil.which("setpriv") or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to become an unprivileged user")
    # pytest's tmp root is private to root, so build the case in a directory anyone may enter.
    import tempfile

    shared = Path(tempfile.mkdtemp(dir="/tmp"))
    shared.chmod(0o755)
    public_app = shared / "app"
    shutil.copytree(app_dir, public_app)
    for path in (public_app, *public_app.iterdir()):
        path.chmod(0o755)
    script = shared / "secret.sh"
    script.write_text("true\n")
    script.chmod(0o600)
    app_dir = public_app
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "launcher",
            "config",
        ],
        env={
            "PATH": os.environ["PATH"],
            "APP_DIR": str(app_dir),
            "PRE_START_PATH": str(script),
            "HOME": "/tmp",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    if "Permission denied" in result.stderr and "launcher" not in result.stderr:
        pytest.skip("the venv is not readable by an unprivileged user here")
    shutil.rmtree(shared)
    assert result.returncode == 2, result.stderr
    assert "PRE_START_PATH" in result.stderr and "not readable" in result.stderr


def test_a_broken_app_and_a_bad_variable_still_print_one_line(app_dir: Path) -> None:
    """The app's import check may run while the config is validated; its output waits for it."""
    (app_dir / "prestart.sh").unlink()  # without prestart the check starts early
    (app_dir / "main.py").write_text("print('imported!')\nraise RuntimeError('boom at import')\n")
    result = cli("run", env={"APP_DIR": str(app_dir), "PORT": str(free_port()), "LOG_LEVEL": "loud"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "asgi-launcher: error: LOG_LEVEL='loud' is invalid: expected one of debug, info, warning, error, critical"
    ]
    assert "imported!" not in result.stdout + result.stderr


@pytest.mark.parametrize("with_prestart", [False, True])
def test_backend_preload_runs_while_the_app_import_check_runs(tmp_path: Path, with_prestart: bool) -> None:
    """Start-up costs the longer of the server's imports and the app check, not their sum.

    The app waits, during its import, for the plugin's ``preload`` to have run, and ``preload``
    waits for the app's import to have begun: each gives up after 10 s. Both only finish if the
    launcher runs them at the same time.
    """
    markers = tmp_path / "markers"
    markers.mkdir()
    app = tmp_path / "app"
    app.mkdir()
    wait_for = (
        "import os, time\n"
        "def wait_for(path):\n"
        "    deadline = time.monotonic() + 10\n"
        "    while not os.path.exists(path):\n"
        "        if time.monotonic() > deadline:\n"
        "            raise RuntimeError(f'{path} never appeared')\n"
        "        time.sleep(0.01)\n"
    )
    (app / "main.py").write_text(
        wait_for + f"open({str(markers / 'check-began')!r}, 'w').close()\n"
        f"wait_for({str(markers / 'preloaded')!r})\n"
        "async def app(scope, receive, send): pass\n"
    )
    if with_prestart:
        (app / "prestart.sh").write_text("export FROM_PRESTART=1\n")
    source = (
        "from launcher import Backend\n" + wait_for + "class Overlap(Backend):\n"
        "    def validate(self, config): pass\n"
        "    def preload(self, config):\n"
        f"        wait_for({str(markers / 'check-began')!r})\n"
        f"        open({str(markers / 'preloaded')!r}, 'w').close()\n"
        "    def run(self, config):\n"
        "        print('served after preload')\n"
        "        return 0\n"
    )
    site = tmp_path / "site"
    _fake_distribution(site, "plugin-overlap", "overlap_mod:Overlap", source)
    env = {
        "APP_DIR": str(app),
        "SERVER_BACKEND": "overlap",
        "PYTHONPATH": str(site),
        "PORT": str(free_port()),
    }
    result = cli("run", env=env)
    assert result.returncode == 0, result.stderr
    assert "served after preload" in result.stdout
    assert ("running prestart script" in result.stderr) == with_prestart
