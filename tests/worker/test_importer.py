"""Finding the app: messages that say exactly which part is missing and what to set."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import ConfigError
from launcher.worker.importer import import_app


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "web.py").write_text(
        "async def api(scope, receive, send): pass\nclass Holder:\n    inner = api\nnot_callable = 3\n"
    )
    (tmp_path / "needs_dep.py").write_text("import a_dependency_that_is_not_installed\n")
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


def test_imports_module_attribute_and_nested_attribute(app_dir: Path) -> None:
    api = import_app("pkg.web:api", str(app_dir))
    assert api.__name__ == "api"
    assert import_app("pkg.web:Holder.inner", str(app_dir)) is api


def test_missing_module_names_it_and_where_it_looked(app_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        import_app("pkg.nothere:app", str(app_dir))
    assert "'pkg.nothere'" in str(err.value) and str(app_dir) in str(err.value)
    assert str(err.value).startswith("APP_MODULE")


def test_missing_module_from_defaults_points_at_module_name(app_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^MODULE_NAME"):
        import_app("nothere:app", str(app_dir), source="computed")


def test_missing_attribute_lists_what_the_module_defines(app_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        import_app("pkg.web:app", str(app_dir), source="computed")
    message = str(err.value)
    assert message.startswith("VARIABLE_NAME")
    assert "no attribute 'app'" in message and "api" in message and "web.py" in message


def test_not_callable(app_dir: Path) -> None:
    with pytest.raises(ConfigError, match="not an ASGI application"):
        import_app("pkg.web:not_callable", str(app_dir))


def test_the_apps_own_missing_dependency_keeps_its_traceback(app_dir: Path) -> None:
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
        import_app("needs_dep:app", str(app_dir))


def test_a_misspelt_variable_suggests_the_closest_asgi_app_first(tmp_path: Path, app_dir: Path) -> None:
    """Twelve imports sort before `app` alphabetically: the ASGI-looking names come first, the
    closest to what was asked for first of all, and the message says which one was meant."""
    imports = "\n".join(f"import {m}" for m in ("abc", "argparse", "array", "ast", "asyncio", "base64"))
    (app_dir / "webapp.py").write_text(
        f"{imports}\nfrom collections import Counter, OrderedDict, defaultdict, deque\n"
        "from starlette.applications import Starlette\nfrom starlette.responses import JSONResponse\n"
        "async def homepage(request): return JSONResponse({})\n"
        "admin = Starlette()\napp = Starlette()\n"
    )
    with pytest.raises(ConfigError) as err:
        import_app("webapp:ap", str(app_dir), source="computed")
    message = str(err.value)
    assert message.startswith("VARIABLE_NAME: module 'webapp'")
    assert "Did you mean 'app'?" in message
    defined = message.split("It defines: ", 1)[1]
    assert defined.startswith("app (ASGI app?), admin (ASGI app?), Counter"), defined
    assert "homepage (ASGI app?)" not in defined and "Starlette (ASGI app?)" not in defined


def test_the_app_argument_is_what_the_message_names(app_dir: Path) -> None:
    with pytest.raises(ConfigError) as err:
        import_app("pkg.web:ap", str(app_dir), source="argument APP")
    assert str(err.value).startswith("APP: module 'pkg.web'")
    assert "Did you mean 'api'?" in str(err.value)
