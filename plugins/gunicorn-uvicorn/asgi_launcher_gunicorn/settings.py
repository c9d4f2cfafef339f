"""Read a Gunicorn config file and ``GUNICORN_CMD_ARGS`` without starting Gunicorn.

Values are validated by Gunicorn's own ``Config`` (so we accept exactly what Gunicorn accepts)
and settings that the env contract also covers are reported under the contract's names, with
``file:PATH`` or ``cmdline`` as their source.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
from typing import Any, NoReturn

from gunicorn.config import Config as GunicornConfig
from gunicorn.config import ForwardedAllowIPS

from launcher import Config, ConfigError, parse_setting

# Gunicorn takes this setting's default from FORWARDED_ALLOW_IPS when gunicorn.config is imported
# and checks it by its own rules (commas only, no host bits) whenever a Config is made, before
# anything is set: a value the launcher takes ("10.0.0.1/8 ::1") stopped Gunicorn with its
# traceback. The launcher resolves the variable for every backend and sets the setting from that
# (``gunicorn_settings``), so Gunicorn keeps its built-in default. Imported before any Config is
# made (``asgi_launcher_gunicorn.application`` imports this module).
ForwardedAllowIPS.default = "127.0.0.1,::1"

# Gunicorn setting -> Config field, for the settings the env contract covers.
CONTRACT = {
    "bind": "bind",
    "workers": "workers",
    "worker_class": "worker_class",
    "loglevel": "log_level",
    "timeout": "timeout",
    "graceful_timeout": "graceful_timeout",
    "keepalive": "keep_alive",
    "limit_request_line": "limit_request_line",
    "limit_request_fields": "limit_request_fields",
    "limit_request_field_size": "limit_request_field_size",
    "accesslog": "access_log",
    "errorlog": "error_log",
    "forwarded_allow_ips": "forwarded_allow_ips",
    "max_requests": "max_requests",
    "max_requests_jitter": "max_requests_jitter",
    "access_log_format": "access_log_format",
    "certfile": "ssl_certfile",
    "keyfile": "ssl_keyfile",
    "ca_certs": "ssl_ca_certs",
    "cert_reqs": "ssl_cert_reqs",
}


def _execute(path: str) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("__gunicorn_config__", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"GUNICORN_CONF={path!r} cannot be loaded: expected a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except SyntaxError as exc:
        raise ConfigError(
            f"GUNICORN_CONF={path!r} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except Exception as exc:
        tb = exc.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == path:
                line = tb.tb_lineno
            tb = tb.tb_next
        where = f" at line {line}" if line else ""
        raise ConfigError(f"GUNICORN_CONF={path!r} raised{where}: {type(exc).__name__}: {exc}") from None
    return vars(module)


def _neutral(name: str, value: Any, origin: str) -> Any:
    """Gunicorn's validated value, in the shape the launcher's Config uses."""
    if name == "worker_class" and isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if name == "loglevel":
        return parse_setting("LOG_LEVEL", str(value)) if origin == "cmdline" else _level(value, origin)
    if name == "forwarded_allow_ips" and isinstance(value, list | tuple):
        return ",".join(value)
    if name == "bind":
        return tuple(value)
    if name == "access_log_format":  # the launcher writes the line: held to the same atoms
        return parse_setting("ACCESS_LOG_FORMAT", str(value))
    if name in ("certfile", "keyfile", "ca_certs") and isinstance(value, str):
        return os.path.abspath(value)  # checked with the env's SSL_* by launcher.config.tls
    if name == "cert_reqs":
        from asgi_launcher_gunicorn import CERT_REQS_NAMES

        if value not in CERT_REQS_NAMES:
            raise ConfigError(
                f"{origin}: cert_reqs={value!r} is invalid: expected 0 (none), 1 (optional) or 2 (required)"
            )
        return CERT_REQS_NAMES[value]
    return value


def _level(value: Any, origin: str) -> str:
    try:
        return str(parse_setting("LOG_LEVEL", str(value)))
    except ConfigError:
        raise ConfigError(
            f"{origin}: loglevel={value!r} is invalid: expected debug, info, warning, error or critical"
        ) from None


def _set(cfg: GunicornConfig, name: str, value: Any, origin: str) -> Any:
    try:
        cfg.set(name, value)
    except (ValueError, TypeError) as exc:
        # Gunicorn's reason quotes the value too; for a secret (raw_env) neither is shown.
        masked = Config.masked(name, value)
        reason = exc if masked == value else "expected a list of NAME=VALUE strings"
        raise ConfigError(f"{origin}: {name}={masked!r} is invalid: {reason}") from None
    return cfg.settings[name].get()


def _names_only(message: str) -> str:
    """argparse's message with ``--option=VALUE`` cut to ``--option``: only the option is named.

    ``unrecognized arguments: --bogus=...`` would otherwise echo what followed the option, and
    the variable may hold secrets (``--env DATABASE_URL=...``).
    """
    head, sep, rest = message.partition("unrecognized arguments: ")
    if not sep:
        return message
    return head + sep + " ".join(word.partition("=")[0] for word in rest.split())


class _ArgsParser(argparse.ArgumentParser):
    """Gunicorn's own option parser, made to report instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"GUNICORN_CMD_ARGS is invalid: {_names_only(message)}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # --help and --version would print and exit mid-configuration.
        raise ConfigError("GUNICORN_CMD_ARGS is invalid: expected Gunicorn settings, not --help or --version")

    def print_help(self, file: object = None) -> None:
        pass

    def print_version(self, file: object = None) -> None:  # pragma: no cover - argparse >= 3.11 uses exit
        pass


def load_file_settings(path: str | None, cmd_args: str | None) -> dict[str, tuple[Any, str]]:
    cfg = GunicornConfig()
    found: dict[str, tuple[Any, str]] = {}
    if path:
        origin = f"file:{path}"
        namespace = _execute(path)
        for name, value in namespace.items():
            if name in cfg.settings:
                checked = _set(cfg, name, value, f"GUNICORN_CONF={path!r}")
                # Callables (hooks) and other raw values are passed to Gunicorn as written.
                raw = value if callable(value) else checked
                found[CONTRACT.get(name, name)] = (_neutral(name, raw, origin), origin)
    if cmd_args:
        parser = cfg.parser()
        parser.__class__ = _ArgsParser
        try:
            argv = shlex.split(cmd_args)
        except ValueError as exc:
            # Not the value itself: it may hold secrets (--env DATABASE_URL=...).
            raise ConfigError(
                f"GUNICORN_CMD_ARGS is invalid: {str(exc).lower()}; expected options quoted as in a shell"
            ) from None
        args = parser.parse_args(argv)
        for name, value in vars(args).items():
            if value is None or name not in cfg.settings or name == "config":
                continue
            checked = _set(cfg, name, value, "GUNICORN_CMD_ARGS")
            found[CONTRACT.get(name, name)] = (_neutral(name, checked, "cmdline"), "cmdline")
    return found


def current_umask() -> int:
    """This process's umask, read without changing it where Linux says it (``/proc/self/status``).

    Gunicorn binds unix sockets under its own ``umask`` setting, whose default 0 makes every
    socket 0777 whatever the user's umask: passing the process's one gives the mode the other
    backends give (``0o777 & ~umask``).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # the only portable way to read it is to set it: put it back at once
    os.umask(mask)
    return mask
