"""Find backend plugins through the ``asgi_launcher.backends`` entry-point group.

Listing reads package metadata only; loading goes through stevedore and imports only the
plugin that was asked for, so a broken or heavy plugin costs nothing unless it is selected.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from stevedore import DriverManager, NamedExtensionManager
from stevedore.exception import NoMatches

from launcher.backend import ENTRY_POINT_GROUP, Backend
from launcher.config.settings import BY_ENV
from launcher.errors import ConfigError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    distribution: str
    version: str
    target: str


def _info(ep: EntryPoint) -> BackendInfo:
    dist = ep.dist
    return BackendInfo(
        name=ep.name,
        distribution=dist.name if dist else "?",
        version=dist.version if dist else "?",
        target=ep.value,
    )


def installed() -> list[BackendInfo]:
    """Installed backends, by name, without importing any of them."""
    found = {ep.name: _info(ep) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return [found[name] for name in sorted(found)]


def names() -> list[str]:
    """Entry-point names of the installed backends, importing none of them.

    Read through stevedore's cache, which ``load`` has filled already: this costs nothing then.
    """
    manager: NamedExtensionManager[Backend] = NamedExtensionManager(
        ENTRY_POINT_GROUP, names=[], on_missing_entrypoints_callback=None
    )
    return sorted(set(manager.entry_points_names()))


def _describe(name: str) -> str:
    """``TARGET from DIST VERSION`` for an installed backend, for error messages only."""
    info = next((i for i in installed() if i.name == name), None)
    return f"{info.target} from {info.distribution} {info.version}" if info else repr(name)


def _unknown(name: str) -> ConfigError:
    """The one line for a name no installed backend has, with the closest one if any."""
    available = installed()
    if not available:
        return ConfigError(
            f"SERVER_BACKEND={name!r} is invalid: no backend is installed "
            "(the default one is: pip install asgi-launcher-gunicorn)"
        )
    listing = ", ".join(f"{i.name} ({i.distribution})" for i in available)
    by_lower = {i.name.lower(): i.name for i in available}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    hint = f"; did you mean {by_lower[close[0]]}?" if close else ""
    return ConfigError(
        f"SERVER_BACKEND={name!r} is invalid: expected the name of an installed backend: {listing}{hint}"
    )


def select(name: str) -> tuple[str, Backend]:
    """The installed entry-point name ``name`` matches, case-insensitively, and its backend.

    An exact name costs one look-up; only a name that does not match exactly is compared with
    the other installed names (and worded as an error if none matches).
    """
    backend = _load(name)
    if backend is not None:
        return name, backend
    matches = [n for n in names() if n.lower() == name.lower()]
    if len(matches) == 1 and (backend := _load(matches[0])) is not None:
        return matches[0], backend
    raise _unknown(name)


def load(name: str) -> Backend:
    """Import and instantiate the backend named exactly ``name``, or raise a one-line ``ConfigError``."""
    backend = _load(name)
    if backend is None:
        raise _unknown(name)
    return backend


def _load(name: str) -> Backend | None:
    """The backend named exactly ``name``; None if no such entry point is installed.

    The happy path reads entry points once, through stevedore's cache; the slower listing of
    distributions and versions is only done to word an error.
    """

    def failed(_manager: object, _ep: object, exc: BaseException) -> None:
        raise ConfigError(
            f"SERVER_BACKEND={name!r}: plugin {_describe(name)} failed to load: {type(exc).__name__}: {exc}"
        ) from exc

    try:
        manager: DriverManager[Backend] = DriverManager(
            ENTRY_POINT_GROUP,
            name,
            invoke_on_load=False,
            on_load_failure_callback=failed,
            on_missing_entrypoints_callback=lambda _names: None,
        )
    except NoMatches:
        return None
    plugin = manager.driver
    if not (isinstance(plugin, type) and issubclass(plugin, Backend)):
        raise ConfigError(f"SERVER_BACKEND={name!r}: {_describe(name)} is not a launcher.Backend subclass")
    try:
        return plugin()
    except TypeError as exc:  # abstract methods left unimplemented
        raise ConfigError(f"SERVER_BACKEND={name!r}: {_describe(name)} cannot be used: {exc}") from exc


def _declared(backend: Backend | type[Backend]) -> set[str]:
    """The variables a backend reads besides the core's: its ``extra_env`` and config-file variable."""
    return {*backend.extra_env, *([backend.config_file_env] if backend.config_file_env else [])}


def _backend_class(name: str) -> type[Backend] | None:
    """The named plugin's class, or None if it cannot be loaded (then it cannot warn either)."""
    try:
        manager: DriverManager[Backend] = DriverManager(
            ENTRY_POINT_GROUP,
            name,
            invoke_on_load=False,
            on_load_failure_callback=lambda _manager, _ep, _exc: None,
            on_missing_entrypoints_callback=lambda _names: None,
        )
        plugin = manager.driver
    except Exception:  # a broken plugin that is not selected must not stop this one
        return None
    return plugin if isinstance(plugin, type) and issubclass(plugin, Backend) else None


def other_backend_variables(env: Mapping[str, str], selected: str, backend: Backend) -> list[str]:
    """One warning per variable in ``env`` that only other installed backends read.

    "Another backend's variable" is a name in another plugin's ``extra_env`` or its
    ``config_file_env`` that the selected backend does not declare itself. Only variables
    with a non-empty value count. Other plugins are imported only when some variable could be
    one: a name ending in ``_CONF`` or ``_CMD_ARGS``, or starting with another backend's name
    in capitals (``HYPERCORN_...``), which entry-point names tell without importing anything.
    """
    others = [n for n in names() if n != selected]
    prefixes = tuple(n.upper().replace("-", "_").replace(".", "_") + "_" for n in others)
    own = _declared(backend)
    candidates = sorted(
        name
        for name, value in env.items()
        if value.strip()
        and name not in own
        and name not in BY_ENV
        and (name.endswith(("_CONF", "_CMD_ARGS")) or name.startswith(prefixes))
    )
    if not candidates:
        return []
    readers: dict[str, list[str]] = {}
    for other in others:
        plugin = _backend_class(other)
        for variable in _declared(plugin) if plugin else ():
            readers.setdefault(variable, []).append(other)
    warnings = []
    for name in candidates:
        if name in readers:
            who = readers[name]
            if len(who) == 1:
                backends, verb = f"the {who[0]} backend", "reads"
            else:
                backends, verb = f"the {', '.join(who[:-1])} and {who[-1]} backends", "read"
            warnings.append(
                f"{name} is set but only {backends} {verb} it; the selected backend, {selected}, ignores it"
            )
    return warnings
