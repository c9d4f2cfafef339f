"""RELOAD's rules without processes: what it refuses, warns about, watches and acts on."""

from __future__ import annotations

import importlib.util
import py_compile
from pathlib import Path

import pytest

from launcher import Backend, Config, ConfigError
from launcher.config.resolve import resolve
from launcher.launch import reload as rl
from launcher.launch import reload_child


def conf(tmp_path: Path, **env: str) -> Config:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "main.py").write_text("app = None\n")
    return resolve({"APP_DIR": str(app), **env}, Backend, affinity=4)


@pytest.mark.parametrize(
    ("path", "globs", "expected"),
    [
        ("/app/main.py", ("*.py",), True),
        ("/app/pkg/deep/mod.py", ("*.py",), True),
        ("/app/main.pyc", ("*.py",), False),
        ("/app/data.json", ("*.py",), False),
        ("/app/templates/page.html", ("*.py", "*.html"), True),
        ("/app/templates/page.html", ("templates/*.html",), True),
        ("/app/static/page.html", ("templates/*.html",), False),
    ],
)
def test_which_files_restart_the_server(path: str, globs: tuple[str, ...], expected: bool) -> None:
    assert rl.matches(path, globs) is expected


def test_shutdown_delay_is_refused_naming_both_variables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        rl.check_settings(conf(tmp_path, RELOAD="true", SHUTDOWN_DELAY="5"))
    message = str(caught.value)
    assert "RELOAD=true" in message and "SHUTDOWN_DELAY=5" in message
    rl.check_settings(conf(tmp_path, SHUTDOWN_DELAY="5"))  # without RELOAD: fine
    rl.check_settings(conf(tmp_path, RELOAD="true"))


class OneWorkerIsSpecial(Backend):
    """A backend that serves one worker in a way that cannot honour MAX_REQUESTS."""

    def validate(self, config: Config) -> None:
        if config.workers == 1 and config.max_requests:
            raise ConfigError("MAX_REQUESTS='5' is invalid: expected 0 with one worker")

    def run(self, config: Config) -> int:
        return 0


def test_the_backend_validates_the_one_worker_it_will_serve(tmp_path: Path) -> None:
    config = conf(tmp_path, RELOAD="true", WEB_CONCURRENCY="3", MAX_REQUESTS="5")
    OneWorkerIsSpecial().validate(config)  # three workers: fine
    with pytest.raises(ConfigError, match="MAX_REQUESTS"):
        rl.check_settings(config, OneWorkerIsSpecial())
    assert rl.served(config).workers == 1


def test_an_explicit_worker_count_is_a_warning_not_an_error(tmp_path: Path) -> None:
    assert rl.warnings(conf(tmp_path, RELOAD="true", WEB_CONCURRENCY="4")) == [
        "RELOAD serves with one worker, not the 4 that WEB_CONCURRENCY=4 asks for"
    ]
    assert rl.warnings(conf(tmp_path, RELOAD="true")) == []  # the CPU formula's count: no warning
    assert rl.warnings(conf(tmp_path, RELOAD="true", WEB_CONCURRENCY="1")) == []


def test_reload_settings_without_reload_are_a_warning(tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    config = conf(tmp_path, RELOAD_DIRS=str(tmp_path / "extra"), RELOAD_INCLUDE="*.html")
    assert rl.warnings(config) == [
        "RELOAD_DIRS and RELOAD_INCLUDE are set but RELOAD is not true: nothing is watched"
    ]


def test_watched_dirs_and_patterns(tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    config = conf(
        tmp_path, RELOAD="true", RELOAD_DIRS=f"{tmp_path / 'extra'},.", RELOAD_INCLUDE="*.html,*.py"
    )
    assert rl.watched_dirs(config) == (str(tmp_path / "app"), str(tmp_path / "extra"))  # "." is APP_DIR
    assert rl.patterns(config) == ("*.py", "*.html")
    assert rl.workers_line(config) == "1 worker, restarted on a change to *.py, *.html (RELOAD)"


def test_changed_sources_lose_their_bytecode(tmp_path: Path) -> None:
    """A .pyc is valid for its source's mtime in whole seconds: a second edit within that second,
    of the same size, would be imported from it."""
    source = tmp_path / "mod.py"
    source.write_text("x = 1\n")
    cached = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(cached))
    other = tmp_path / "page.html"
    other.write_text("keep")
    rl.forget_bytecode([str(source), str(other), str(tmp_path / "gone.py")])
    assert not cached.exists()
    assert source.exists() and other.exists()


def test_the_child_serves_nothing_unless_started_by_a_live_reloader() -> None:
    assert reload_child.child_main([]) == 0
    assert reload_child.child_main(["not-a-pid", "3"]) == 0
