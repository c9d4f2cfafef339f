"""OPS_HOST follows the app's own address unless set: the operations listener (/metrics, the
probes) is no more public than the app."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import Backend, Config
from launcher.config.resolve import resolve


class FakeBackend(Backend):
    def validate(self, config: Config) -> None:
        pass

    def run(self, config: Config) -> int:
        return 0


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text("app = None\n")
    return tmp_path


@pytest.mark.parametrize(
    ("env", "host", "source"),
    [
        ({}, "0.0.0.0", "default"),  # the image: the kubelet probes the pod's address
        ({"HOST": "127.0.0.1"}, "127.0.0.1", "computed"),
        ({"BIND": "127.0.0.1:8000"}, "127.0.0.1", "computed"),  # was 0.0.0.0: every interface
        ({"BIND": "[::1]:8000"}, "::1", "computed"),
        ({"BIND": "unix:/tmp/app.sock"}, "127.0.0.1", "computed"),
        ({"BIND": "unix:/tmp/app.sock,10.1.2.3:8000"}, "10.1.2.3", "computed"),
        ({"BIND": "0.0.0.0:8000"}, "0.0.0.0", "computed"),
        ({"BIND": "127.0.0.1:8000", "OPS_HOST": "0.0.0.0"}, "0.0.0.0", "env:OPS_HOST"),
    ],
)
def test_ops_host_follows_the_apps_bind(app_dir: Path, env: dict[str, str], host: str, source: str) -> None:
    config = resolve({"APP_DIR": str(app_dir), **env}, FakeBackend)
    assert (config.ops_host, config.sources["ops_host"]) == (host, source)


def test_a_config_files_bind_moves_the_default_ops_host(app_dir: Path) -> None:
    config = resolve({"APP_DIR": str(app_dir)}, FakeBackend)
    moved = config.with_file_settings({"bind": (["127.0.0.1:8000"], "file:/g.py")})
    assert moved.ops_host == "127.0.0.1"
    kept = resolve({"APP_DIR": str(app_dir), "OPS_HOST": "0.0.0.0"}, FakeBackend)
    assert kept.with_file_settings({"bind": (["127.0.0.1:8000"], "file:/g.py")}).ops_host == "0.0.0.0"
