"""Property: for any environment at all, `asgi-launcher config` ends with 0 or 2, never a traceback."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launcher.cli import main
from launcher.config.settings import SETTINGS

DEMO = str(Path(__file__).resolve().parents[2] / "demo")
NAMES = [s.env for s in SETTINGS] + ["GUNICORN_CONF", "GUNICORN_CMD_ARGS", "HYPERCORN_CONF"]

# Values a user might plausibly type, mixed with anything at all.
plausible = st.sampled_from(
    ["", " ", "0", "1", "-1", "2.5", "nan", "1e400", "70000", "::", "[::]:80", "unix:/tmp/x.sock", "a:b:c",
     "main:app", "app.main", "DEBUG", "/", "/etc/passwd", "/nonexistent", DEMO, "gunicorn", "hypercorn",
     "granian", "--workers 3", "--help", "--version", "-w x", "'unclosed", "*", "-"]
)  # fmt: skip
values = st.one_of(
    plausible,
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=20),
)
environments = st.dictionaries(st.sampled_from(NAMES), values, max_size=6)
# The default backend's own variables, with the default backend, are where a server's parser can bite.
gunicorn_environments = st.fixed_dictionaries(
    {},
    optional={
        "GUNICORN_CMD_ARGS": values,
        "GUNICORN_CONF": values,
        "WORKER_CLASS": values,
        "LOG_LEVEL": values,
    },
)


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({"PATH": saved.get("PATH", ""), "HOME": saved.get("HOME", "/tmp"), "APP_DIR": DEMO})
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(environments)
def test_config_exits_0_or_2_whatever_the_environment(env: dict[str, str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["config", "--json"])
    assert status in (0, 2), err.getvalue()
    if status == 2:
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("asgi-launcher: error: "), err.getvalue()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(gunicorn_environments)
def test_gunicorn_variables_exit_0_or_2(env: dict[str, str]) -> None:
    test_config_exits_0_or_2_whatever_the_environment.hypothesis.inner_test(env)  # type: ignore[attr-defined]
