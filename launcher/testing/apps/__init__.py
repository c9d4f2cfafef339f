"""Small plain-ASGI apps the conformance kit serves, shipped as files for tests to copy.

Each module here is an app file, not part of the kit's code: ``install`` copies one into a
temporary ``APP_DIR`` under the name the test needs (``main.py``, ``app/main.py``, ...), so
the launcher imports it exactly as it imports a user's app. (``raises_on_import`` raises when
imported; nothing in the kit imports these modules.)
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The apps available to ``install``, by name.
NAMES = ("hello", "api", "asgi2", "raises_on_import", "startup_raises", "ops", "traced")


def source(name: str) -> str:
    """The source text of the kit app ``name`` (one of ``NAMES``)."""
    if name not in NAMES:
        raise ValueError(f"no kit app named {name!r}; there are {', '.join(NAMES)}")
    return (HERE / f"{name}.py").read_text()


def write(app_dir: Path, relative: str, text: str) -> Path:
    """Write ``text`` as ``app_dir/relative``, creating packages' ``__init__.py`` on the way."""
    path = app_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(app_dir).parents:
        if parent != Path("."):
            (app_dir / parent / "__init__.py").touch()
    path.write_text(text)
    return path


def install(name: str, app_dir: Path, as_: str = "main.py") -> Path:
    """Copy the kit app ``name`` to ``app_dir/as_`` (e.g. ``app/main.py`` for the package layout)."""
    return write(app_dir, as_, source(name))


# The first version of the kit handed out source strings; kept for tests written against it.
HELLO = source("hello")
RAISES_ON_IMPORT = source("raises_on_import")
STARTUP_FAILS = source("startup_raises")
