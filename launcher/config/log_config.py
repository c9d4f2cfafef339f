"""``LOG_CONFIG``: a ``logging.config.dictConfig`` file, read and checked before anything starts
(``launcher.observability.logs`` applies it in every process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from launcher.errors import ConfigError

#: What a dictConfig document may hold at its top level (dictConfig ignores anything else,
#: so a typo such as "handler" would silently configure nothing).
_TOP_LEVEL = (
    "version",
    "formatters",
    "filters",
    "handlers",
    "loggers",
    "root",
    "incremental",
    "disable_existing_loggers",
)
_EXPECTED = "a logging.config.dictConfig file (.json or .toml)"


def bad_log_config(path: str, problem: str) -> ConfigError:
    return ConfigError.bad_value("LOG_CONFIG", path, f"{_EXPECTED}: {' '.join(problem.split())}")


def load_log_config(path: str) -> dict[str, Any]:
    """The dictConfig document in ``path`` (JSON, or TOML by its ``.toml`` suffix), checked for
    what dictConfig would ignore or refuse before configuring anything; raises ``ConfigError``."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".toml"):
        raise bad_log_config(path, f"its name must end in .json or .toml, not {suffix or 'nothing'!r}")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise bad_log_config(path, f"it cannot be read ({exc.strerror})") from None
    try:
        if suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise bad_log_config(path, str(exc)) from None
    if not isinstance(data, dict):
        raise bad_log_config(path, f"it holds a {type(data).__name__}, not a mapping")
    unknown = sorted(set(data) - set(_TOP_LEVEL))
    if unknown:
        raise bad_log_config(
            path, f"unknown key {', '.join(map(repr, unknown))} (keys: {', '.join(_TOP_LEVEL)})"
        )
    if data.get("version") != 1:
        raise bad_log_config(path, f"version must be 1, not {data.get('version')!r}")
    for section in ("formatters", "filters", "handlers", "loggers", "root"):
        if section in data and not isinstance(data[section], dict):
            raise bad_log_config(path, f"{section} must be a mapping")
    return data
