"""Hypercorn's own config (``HYPERCORN_CONF``) read strictly, and the contract mapped onto Hypercorn.

Hypercorn's ``Config.from_mapping`` silently drops keys it does not know, so a typo such as
``keep_alive = 10`` would change nothing without a word. Here every key is checked against the
settings Hypercorn's ``Config`` really has (read from the installed class, so the list follows
Hypercorn's version), values of the settings the env contract also covers are checked like the
env's own, and they are reported under the contract's names so ``asgi-launcher config`` shows
the file winning over the env.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
import os
import ssl
import sys
import tomllib
import types
from typing import Any

from hypercorn.config import Config as HypercornConfig

from launcher import Config, ConfigError, parse_setting

#: Hypercorn setting -> launcher Config field, for what the env contract also covers.
CONTRACT = {
    "bind": "bind",
    "workers": "workers",
    "worker_class": "worker_class",
    "loglevel": "log_level",
    "accesslog": "access_log",
    "errorlog": "error_log",
    "keep_alive_timeout": "keep_alive",
    "graceful_timeout": "graceful_timeout",
    "max_requests": "max_requests",
    "max_requests_jitter": "max_requests_jitter",
    "access_log_format": "access_log_format",
    "root_path": "root_path",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
    "keyfile_password": "ssl_keyfile_password",
    "ca_certs": "ssl_ca_certs",
    "verify_mode": "ssl_cert_reqs",
}

#: ``verify_mode`` (``ssl.VerifyMode``, or its value) as ``SSL_CERT_REQS``.
_CERT_REQS = {0: "none", 1: "optional", 2: "required"}

#: Settings the launcher decides itself; a file setting them would fight the supervisor.
_REFUSED = {
    "use_reloader": "the launcher supervises the workers itself and has no reloader",
    "application_path": "set APP_MODULE (or MODULE_NAME and VARIABLE_NAME) instead",
}


def hypercorn_settings() -> frozenset[str]:
    """The names Hypercorn's ``Config`` accepts: plain attributes and writable properties."""
    names = set()
    for name in dir(HypercornConfig):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(HypercornConfig, name)
        if isinstance(attr, property):
            if attr.fset is not None:
                names.add(name)
        elif not isinstance(attr, classmethod | staticmethod | types.FunctionType):
            names.add(name)
    return frozenset(names)


SETTINGS = hypercorn_settings()


def _bad(origin: str, key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{origin}: {key}={value!r} is invalid: expected {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _contract_value(origin: str, key: str, value: Any) -> Any:
    """A contract setting's value from the file, in the shape the launcher's Config uses."""
    if key == "bind":
        binds = [value] if isinstance(value, str) else value
        expected = "HOST:PORT, [IPv6]:PORT or unix:/path, or a list of them"
        if not isinstance(binds, list | tuple) or not binds or not all(isinstance(b, str) for b in binds):
            raise _bad(origin, key, value, expected)
        try:
            parsed = [parse_setting("BIND", b) for b in binds]  # one address each
        except ConfigError:
            raise _bad(origin, key, value, expected) from None
        if any(len(one) != 1 for one in parsed):
            raise _bad(origin, key, value, expected)
        return tuple(one[0] for one in parsed)
    if key == "workers":
        if not _is_int(value) or value < 1:
            raise _bad(origin, key, value, "a whole number, 1 or more")
        return value
    if key == "worker_class":
        if not isinstance(value, str):
            raise _bad(origin, key, value, "asyncio, uvloop or trio")
        return value.strip().lower()
    if key == "loglevel":
        try:
            return (
                parse_setting("LOG_LEVEL", value)
                if isinstance(value, str)
                else parse_setting("LOG_LEVEL", "")
            )
        except ConfigError:
            raise _bad(origin, key, value, "one of debug, info, warning, error, critical") from None
    if key in ("accesslog", "errorlog"):
        if value is None or isinstance(value, logging.Logger):
            return value
        if not isinstance(value, str):
            raise _bad(origin, key, value, "- (the console), a file path, or empty to turn it off")
        return value.strip() or None
    if key in ("keep_alive_timeout", "graceful_timeout"):
        if not _is_number(value) or value < 0:
            raise _bad(origin, key, value, "a number of seconds, 0 or more")
        return value
    if key == "access_log_format":  # the launcher writes the line: held to the same atoms
        if not isinstance(value, str):
            raise _bad(origin, key, value, "a string of Gunicorn-style %(atom)s fields")
        return parse_setting("ACCESS_LOG_FORMAT", value)
    if key == "root_path":
        try:
            return parse_setting("ROOT_PATH", value) if isinstance(value, str) else None
        except ConfigError:
            raise _bad(origin, key, value, "a URL path starting with /, such as /api") from None
    if key in ("certfile", "keyfile", "ca_certs", "keyfile_password"):
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise _bad(
                origin,
                key,
                Config.masked(key, value),
                "a file path" if key != "keyfile_password" else "a string",
            )
        # Paths are checked with the env's SSL_* by launcher.config.tls.
        return value if key == "keyfile_password" else os.path.abspath(value)
    if key == "verify_mode":
        if value is None:
            return "none"
        if isinstance(value, bool) or not isinstance(value, int) or value not in _CERT_REQS:
            raise _bad(origin, key, value, "ssl.CERT_NONE, ssl.CERT_OPTIONAL or ssl.CERT_REQUIRED")
        return _CERT_REQS[int(value)]
    # max_requests, max_requests_jitter: the contract's 0 means off, as Hypercorn's None does.
    if value is None and key == "max_requests":
        return 0
    if not _is_int(value) or value < 0:
        raise _bad(origin, key, value, "a whole number, 0 or more")
    return value


def _check_type(origin: str, key: str, value: Any) -> None:
    """Catch ``backlog = "100"``: a value whose type differs from Hypercorn's plain default."""
    default = inspect.getattr_static(HypercornConfig, key, None)
    if isinstance(default, property) or default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int | float):
        ok = _is_number(value) and (isinstance(default, float) or _is_int(value))
    elif isinstance(default, str | list):
        ok = isinstance(value, type(default))
    else:
        return
    if not ok:
        raise _bad(origin, key, value, f"a {type(default).__name__} like the default {default!r}")


def _read_toml(path: str, origin: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot be read: {exc.strerror}") from None


def _public(namespace: dict[str, Any]) -> dict[str, Any]:
    """A Python config's settings: public names that are data, or that Hypercorn knows.

    Imported modules, functions and classes are helpers unless they carry a setting's name
    (``logger_class``); other names starting with ``_`` are the documented way to keep a helper.
    """
    found = {}
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        if name not in SETTINGS and (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        found[name] = value
    return found


def _run_python(path: str, origin: str) -> dict[str, Any]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("__hypercorn_config__", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{origin}: cannot be loaded: expected a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise ConfigError(f"{origin}: no such file") from None
    except SyntaxError as exc:
        raise ConfigError(f"{origin}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        raise ConfigError(f"{origin}: raised {type(exc).__name__}: {exc}") from None
    return vars(module)


def _import_object(target: str, origin: str, app_dir: str) -> dict[str, Any]:
    """``python:module`` or ``python:module.object``, as Hypercorn's ``Config.from_object`` reads it."""
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        try:
            obj: Any = importlib.import_module(target)
        except ImportError:
            module_name, _, attr = target.rpartition(".")
            if not module_name:
                raise
            obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{origin}: cannot import {target!r}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"{origin}: importing {target!r} raised {type(exc).__name__}: {exc}") from None
    if isinstance(obj, types.ModuleType):
        return vars(obj)
    return {name: getattr(obj, name) for name in dir(obj) if not name.startswith("__")}


def read_file(value: str, app_dir: str) -> tuple[dict[str, Any], str, bool]:
    """The raw settings in ``value`` (a TOML path, ``file:path.py`` or ``python:module``).

    Also returns how to name the file in messages and whether it is Python.
    """
    origin = f"HYPERCORN_CONF={value!r}"
    if value.startswith("python:"):
        return _public(_import_object(value[len("python:") :], origin, app_dir)), value, True
    if value.startswith("file:"):
        path = os.path.abspath(value[len("file:") :])
        return _public(_run_python(path, origin)), path, True
    return _read_toml(value, origin), os.path.abspath(value), False


def load_file_settings(config: Config) -> dict[str, tuple[Any, str]]:
    """What the Hypercorn config file sets: contract keys under the contract's names."""
    if not config.config_file:
        return {}
    raw, label, is_python = read_file(config.config_file, config.app_dir)
    where = f"HYPERCORN_CONF file {label}"
    source = f"file:{label}"
    found: dict[str, tuple[Any, str]] = {}
    for key, value in raw.items():
        if key not in SETTINGS:
            if key in _REFUSED:
                raise ConfigError(f"{where}: {key} is not supported: {_REFUSED[key]}")
            raise ConfigError(
                f"{where}: unknown Hypercorn setting {key!r}; see "
                "https://hypercorn.readthedocs.io/en/latest/how_to_guides/configuring.html"
                + (" (in a Python config, prefix helper names with _)" if is_python else "")
            )
        if key in _REFUSED:
            if value:
                raise ConfigError(f"{where}: {key} is not supported: {_REFUSED[key]}")
            continue
        if key in CONTRACT:
            found[CONTRACT[key]] = (_contract_value(where, key, value), source)
        else:
            _check_type(where, key, value)
            found[key] = (value, source)
    return found


class LauncherHypercornConfig(HypercornConfig):
    """Hypercorn's config, serving TLS with the launcher's context (``SSL_*``, ``HTTP2``'s ALPN).

    Each worker builds it when it starts serving, so a worker started by SIGHUP reads replaced
    certificate files."""

    launcher: Config

    def create_ssl_context(self) -> ssl.SSLContext | None:
        if not self.launcher.tls:
            return None
        from launcher.worker import server_context  # the worker side: not for `config`

        return server_context(self.launcher)


def build(config: Config) -> HypercornConfig:
    """The Hypercorn ``Config`` for a resolved launcher config (contract first, then the file's extras)."""
    hc = LauncherHypercornConfig()
    hc.launcher = config
    hc.bind = list(config.bind)
    hc.workers = config.workers
    hc.worker_class = config.worker_class
    hc.loglevel = config.log_level.upper()
    hc.accesslog = config.access_log
    hc.errorlog = config.error_log
    hc.keep_alive_timeout = float(config.keep_alive)
    hc.graceful_timeout = float(config.graceful_timeout)
    hc.application_path = config.app
    if config.tls:  # what makes Hypercorn's sockets secure; the context is the launcher's
        hc.certfile = config.ssl_certfile
        hc.keyfile = config.ssl_keyfile or config.ssl_certfile
    for key, value in config.server_settings.items():
        if key in SETTINGS:
            setattr(hc, key, value)
    # The worker pipeline does these for every backend (MAX_REQUESTS, ROOT_PATH): Hypercorn's own
    # would do them twice, and by other rules (its max_requests counts one more).
    hc.max_requests = None
    hc.max_requests_jitter = 0
    hc.root_path = ""
    hc.accesslog = None  # ACCESS_LOG (also a file's accesslog) is written by the pipeline
    from asgi_launcher_hypercorn.limits import apply  # (imports Hypercorn's protocols: only to run)

    apply(hc, config)  # LIMIT_REQUEST_*, and KEEP_ALIVE as the request-head deadline
    return hc


def create_sockets(hc: HypercornConfig) -> Any:
    """Listening sockets, made once by the supervisor and shared by every worker.

    Hypercorn sets SO_REUSEPORT when it has several workers; the sockets are inherited, not
    rebound, so that option would only let another process bind our port unnoticed.
    """
    single = copy.copy(hc)
    single.workers = 1
    return single.create_sockets()
