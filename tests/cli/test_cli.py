"""The CLI as a user meets it: real subprocesses, one-line errors, nothing started on bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from launcher.testing.process import free_port, run_launcher

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo"
BACKENDS = ["gunicorn", "hypercorn", "granian"]


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
    result = cli("config", env={"APP_DIR": str(app_dir), "SERVER_BACKEND": "nope"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    for name in BACKENDS:
        assert name in result.stderr
    assert "pip install" in result.stderr


def test_missing_app_is_exit_2_naming_where_it_looked(tmp_path: Path) -> None:
    result = cli("config", env={"APP_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert str(tmp_path / "main.py") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


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
        "import sys, launcher, launcher.cli, launcher.config, launcher.testing;"
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


def test_help_on_every_command() -> None:
    for args in ([], ["run"], ["config"], ["backends"], ["check"], ["probe"]):
        result = cli(*args, "--help")
        assert result.returncode == 0 and "usage: asgi-launcher" in result.stdout


def test_console_script_and_module_agree(app_dir: Path) -> None:
    script = Path(sys.executable).with_name("asgi-launcher")
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
