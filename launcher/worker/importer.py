"""Find the user's ASGI app from ``module:attribute``, saying exactly what is missing.

Errors that the user fixes by pointing at the right place become ``ConfigError``; an exception
raised by the app's own code (including a missing dependency *it* imports) propagates with its
traceback, because that is the user's bug to read.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from launcher.errors import ConfigError


def _names(module: object) -> str:
    public = sorted(n for n in vars(module) if not n.startswith("_"))
    return ", ".join(public[:12]) + (", ..." if len(public) > 12 else "") if public else "nothing public"


def import_app(app: str, app_dir: str, *, source: str = "env:APP_MODULE") -> Any:
    """Import ``module:attr[.attr...]`` with ``app_dir`` first on ``sys.path``.

    ``source`` (``env:APP_MODULE`` or ``computed``) decides which variable the message tells
    the user to change.
    """
    module_name, _, attr_path = app.partition(":")
    module_var = "APP_MODULE" if source == "env:APP_MODULE" else "MODULE_NAME"
    attr_var = "APP_MODULE" if source == "env:APP_MODULE" else "VARIABLE_NAME"
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
            raise ConfigError(
                f"{attr_var}: module {walked!r} ({where}) has no attribute {attr!r} for app "
                f"{app!r}; it defines: {_names(obj)}. Set {attr_var} to the variable holding the app"
            ) from None
        walked = f"{walked}.{attr}" if walked != module_name else f"{module_name}:{attr}"
    if not callable(obj):
        raise ConfigError(
            f"{attr_var}: {app!r} is a {type(obj).__name__}, not an ASGI application (a callable)"
        )
    return obj
