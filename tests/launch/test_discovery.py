"""Finding backends by name, and the warning for a variable only another installed backend reads.

These use the real installed plugins (gunicorn, hypercorn, granian), as a user's launcher does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import ConfigError
from launcher.launch import discovery
from launcher.launch.prepare import prepare

DEMO = str(Path(__file__).resolve().parents[2] / "demo")


@pytest.mark.parametrize(
    ("given", "name"), [("gunicorn", "gunicorn"), ("GUNICORN", "gunicorn"), ("HyperCorn", "hypercorn")]
)
def test_server_backend_matches_in_any_case(given: str, name: str) -> None:
    selected, backend = discovery.select(given)
    assert selected == name
    assert type(backend).__name__.lower().startswith(name)
    config = prepare({"APP_DIR": DEMO, "SERVER_BACKEND": given}).config
    assert config.backend == name


def test_an_empty_server_backend_is_the_default() -> None:
    config = prepare({"APP_DIR": DEMO, "SERVER_BACKEND": " "}).config
    assert (config.backend, config.sources["backend"]) == ("gunicorn", "default (empty env:SERVER_BACKEND)")


def test_a_typo_gets_a_suggestion_and_no_made_up_distribution() -> None:
    from launcher.testing import BACKENDS

    with pytest.raises(ConfigError) as err:
        discovery.select("gunicron")
    message = str(err.value)
    assert message.startswith(
        "SERVER_BACKEND='gunicron' is invalid: expected the name of an installed backend: "
    )
    assert message.endswith("; did you mean gunicorn?")
    assert "asgi-launcher-gunicron" not in message and "pip install" not in message
    for name in BACKENDS:
        assert name in message
    assert "\n" not in message


def test_an_unknown_name_far_from_any_gets_no_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        discovery.load("zzz")
    assert "did you mean" not in str(err.value)
    assert "asgi-launcher-zzz" not in str(err.value)


@pytest.mark.parametrize(
    ("backend", "variable", "reader"),
    [
        ("hypercorn", "GUNICORN_CMD_ARGS", "gunicorn"),
        ("hypercorn", "GUNICORN_CONF", "gunicorn"),
        ("granian", "HYPERCORN_CONF", "hypercorn"),
        ("granian", "GUNICORN_CMD_ARGS", "gunicorn"),
    ],
)
def test_another_backends_variable_warns_once(backend: str, variable: str, reader: str) -> None:
    prepared = prepare({"APP_DIR": DEMO, "SERVER_BACKEND": backend, variable: "/x --y"})
    assert prepared.warnings == (
        f"{variable} is set but only the {reader} backend reads it; the selected backend, {backend}, ignores it",
    )


@pytest.mark.parametrize(
    "env",
    [
        {"SERVER_BACKEND": "gunicorn", "GUNICORN_CMD_ARGS": "--workers 3"},  # its own variable
        {"SERVER_BACKEND": "hypercorn", "GUNICORN_CMD_ARGS": ""},  # empty: not set
        {"SERVER_BACKEND": "hypercorn", "GUNICORN_CONF": "  "},
        {"SERVER_BACKEND": "hypercorn", "MY_APP_CONF": "x", "GRANIAN_FOO": "1"},  # nobody declares these
    ],
)
def test_no_warning_for_own_empty_or_unknown_variables(env: dict[str, str]) -> None:
    assert prepare({"APP_DIR": DEMO, **env}).warnings == ()


def test_other_plugins_are_imported_only_when_a_variable_could_be_theirs() -> None:
    code = (
        "import json, sys; from launcher.launch.prepare import prepare as p;"
        f"base = {{'APP_DIR': {DEMO!r}, 'SERVER_BACKEND': 'granian'}};"
        "p(base); before = sorted(m for m in sys.modules if m.startswith('asgi_launcher_'));"
        "w = p({**base, 'GUNICORN_CMD_ARGS': '-w 2'}).warnings;"
        "after = sorted(m for m in sys.modules if m.startswith('asgi_launcher_'));"
        "print(json.dumps([before, after, list(w)]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    before, after, warnings = json.loads(result.stdout)
    assert before == ["asgi_launcher_granian"]
    assert "asgi_launcher_gunicorn" in after
    assert len(warnings) == 1 and warnings[0].startswith("GUNICORN_CMD_ARGS is set")
