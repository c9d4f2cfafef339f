"""Hostile configuration under every backend: exit 2, one line, no traceback, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from harness import DEMO, backend_skip_reason, base_env, copy_demo, free_port

from launcher import ConfigError
from launcher.launch.prepare import prepare
from launcher.procfs import live_group_members

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "config"))
from test_resolve import BAD_VALUES

pytestmark = pytest.mark.slow


def test_every_malformed_value_is_refused_by_every_backend(backend: str) -> None:
    for variable, value, expected in BAD_VALUES:
        if variable == "SERVER_BACKEND":
            continue  # that one picks the backend
        env = {"APP_DIR": str(DEMO), "SERVER_BACKEND": backend, variable: value}
        with pytest.raises(ConfigError) as err:
            prepare(env)
        assert f"{variable}={value!r}" in str(err.value), (variable, value, str(err.value))
        assert expected in str(err.value)


# (backend, variable, file name, content, fragment of the message)
BAD_FILES = [
    ("gunicorn", "GUNICORN_CONF", "gunicorn_conf.py", "workers = (\n", "syntax error"),
    ("gunicorn", "GUNICORN_CONF", "gunicorn_conf.py", "workers = 'many'\n", "workers="),
    (
        "gunicorn",
        "GUNICORN_CONF",
        "gunicorn_conf.py",
        "import nonexistent_module_xyz\n",
        "ModuleNotFoundError",
    ),
    ("hypercorn", "HYPERCORN_CONF", "hypercorn.toml", "workers = [\n", "HYPERCORN_CONF"),
    ("hypercorn", "HYPERCORN_CONF", "hypercorn.toml", "keep_alive = 10\n", "keep_alive"),
]


@pytest.mark.parametrize(("name", "variable", "filename", "content", "fragment"), BAD_FILES)
def test_a_broken_server_config_file_starts_nothing(
    tmp_path: Path, name: str, variable: str, filename: str, content: str, fragment: str
) -> None:
    if reason := backend_skip_reason(name):
        pytest.skip(reason)
    backend = name
    app_dir = copy_demo(tmp_path / "app")
    conf = tmp_path / filename
    conf.write_text(content)
    marker = tmp_path / "prestart-ran"
    (app_dir / "prestart.sh").write_text(f"touch {marker}\n")
    port = free_port()
    env = {**base_env(), "SERVER_BACKEND": backend, "APP_DIR": str(app_dir), "BIND": f"127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher"],
        env={**env, variable: str(conf)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and str(conf) in lines[0] and fragment in lines[0], stderr
    assert "Traceback" not in stderr
    assert not marker.exists()
    # Nothing was started: no process of its own is left (a free port would not prove it: another
    # test may take the same one meanwhile).
    assert not live_group_members(proc.pid)


def test_prestart_through_the_real_launcher(tmp_path: Path) -> None:
    """No run bit, CRLF endings and an export reaching the app; a failing middle command stops all."""
    from harness import launcher, request

    app_dir = copy_demo(tmp_path / "app")
    script = app_dir / "prestart.sh"
    script.write_bytes(b"echo preparing\r\nexport DEMO_FROM_PRESTART=migrated\r\n")
    script.chmod(0o644)
    with launcher({"APP_DIR": str(app_dir), "WEB_CONCURRENCY": "1"}) as server:
        status, body = request(server.port, "/info")
        assert status == 200 and b'"DEMO_FROM_PRESTART":"migrated"' in body
        assert "preparing" in server.output()

    script.write_text(f"false\ntouch {tmp_path / 'after'}\n")
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "launcher"],
        env={**base_env(), "APP_DIR": str(app_dir), "BIND": f"127.0.0.1:{port}"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert not (tmp_path / "after").exists()
    assert "prestart script" in result.stderr and "failed with exit status 1" in result.stderr
    assert "Listening" not in result.stderr + result.stdout
