"""Find the user's ASGI app from ``module:attribute``, saying exactly what is missing.

Errors that the user fixes by pointing at the right place become ``ConfigError``; an exception
raised by the app's own code (including a missing dependency *it* imports) propagates with its
traceback, because that is the user's bug to read.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
from typing import Any

from launcher.errors import ConfigError


def _looks_asgi(value: object) -> bool:
    """Whether ``value`` could be an ASGI app: an instance with ``__call__`` (Starlette, FastAPI,
    Django's handler) or a coroutine function of three parameters; not a class, module or view."""
    if inspect.isclass(value) or inspect.ismodule(value):
        return False
    if inspect.isroutine(value):
        if not inspect.iscoroutinefunction(value):
            return False
        try:
            return len(inspect.signature(value).parameters) == 3
        except (TypeError, ValueError):
            return False
    return callable(value)


def _names(obj: object, wanted: str) -> tuple[str | None, str]:
    """The ASGI-looking name closest to ``wanted`` (None: none looks like one), and what ``obj``
    defines: its ASGI-looking names first, closest first, then the rest alphabetically."""
    public = sorted(n for n in vars(obj) if not n.startswith("_"))
    asgi = [n for n in public if _looks_asgi(getattr(obj, n, None))]
    asgi.sort(key=lambda n: -difflib.SequenceMatcher(None, wanted.lower(), n.lower()).ratio())
    rest = [n for n in public if n not in asgi]
    shown = [f"{n} (ASGI app?)" for n in asgi] + rest
    text = ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "") if shown else "nothing public"
    return (asgi[0] if asgi else None), text


def _variables(source: str) -> tuple[str, str]:
    """What the user set to name the module and the variable, for the message to name it."""
    if source == "env:APP_MODULE":
        return "APP_MODULE", "APP_MODULE"
    if source.startswith(("argument ", "flag ")):
        given = source.partition(" ")[2]
        return given, given
    return "MODULE_NAME", "VARIABLE_NAME"


def import_app(app: str, app_dir: str, *, source: str = "env:APP_MODULE") -> Any:
    """Import ``module:attr[.attr...]`` with ``app_dir`` first on ``sys.path``.

    ``source`` (``env:APP_MODULE``, ``argument APP`` or ``computed``) decides which variable or
    argument the message tells the user to change.
    """
    module_name, _, attr_path = app.partition(":")
    module_var, attr_var = _variables(source)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise  # the app itself imports something that is not installed: its traceback helps
        raise ConfigError(
            f"{module_var}: cannot import module {missing!r} for app {app!r}: looked in "
            f"{app_dir} (APP_DIR) and on sys.path; set APP_DIR or {module_var} to where the app is"
        ) from None
    obj: Any = module
    walked = module_name
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            where = getattr(module, "__file__", None) or module_name
            closest, names = _names(obj, attr)
            guess = f" Did you mean {closest!r}?" if closest else ""
            raise ConfigError(
                f"{attr_var}: module {walked!r} ({where}) has no attribute {attr!r} for app "
                f"{app!r}.{guess} It defines: {names}. Set {attr_var} to the variable holding the app"
            ) from None
        walked = f"{walked}.{attr}" if walked != module_name else f"{module_name}:{attr}"
    if not callable(obj):
        raise ConfigError(
            f"{attr_var}: {app!r} is a {type(obj).__name__}, not an ASGI application (a callable)"
        )
    return obj
