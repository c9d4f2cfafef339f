"""The Gunicorn plugin's settings: its config file and GUNICORN_CMD_ARGS read without starting
Gunicorn, held to the contract's rules, secrets never echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher import Backend, ConfigError
from launcher.config.resolve import resolve

gunicorn_settings_module = pytest.importorskip("asgi_launcher_gunicorn.settings")


@pytest.mark.parametrize(
    ("cmd_args", "named"),
    [
        ("--env DATABASE_URL=postgres://u:secret@h/db --bogus", "unrecognized arguments: --bogus"),
        ("--env DATABASE_URL=postgres://u:secret@h/db --bogus=secret2", "unrecognized arguments: --bogus"),
        ("--env DATABASE_URL=postgres://u:secret@h/db --bind 'x", "no closing quotation"),
    ],
)
def test_a_gunicorn_cmd_args_error_names_the_option_not_the_value(cmd_args: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        gunicorn_settings_module.load_file_settings(None, cmd_args)
    message = str(err.value)
    assert message.startswith("GUNICORN_CMD_ARGS is invalid: ") and named in message, message
    assert "secret" not in message and "DATABASE_URL" not in message, message


def test_a_bad_raw_env_in_a_gunicorn_conf_is_not_echoed(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text("raw_env = ['DATABASE_URL=postgres://u:secret@h/db', 5]\n")
    with pytest.raises(ConfigError) as err:
        gunicorn_settings_module.load_file_settings(str(conf), None)
    assert "secret" not in str(err.value) and "raw_env=" in str(err.value)


def test_gunicorn_gets_the_process_umask_unless_the_config_sets_one(tmp_path: Path) -> None:
    from asgi_launcher_gunicorn import gunicorn_settings

    (tmp_path / "main.py").write_text("app = None\n")
    config = resolve({"APP_DIR": str(tmp_path)}, Backend)
    old = os.umask(0o027)
    try:
        assert gunicorn_settings_module.current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # reading it did not change it
        assert gunicorn_settings(config)["umask"] == 0o027
        chosen = config.with_file_settings({"umask": (0o002, "file:/g.py")})
        assert gunicorn_settings(chosen)["umask"] == 0o002
    finally:
        os.umask(old)
