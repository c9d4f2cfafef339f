"""Find backend plugins through the ``asgi_launcher.backends`` entry-point group.

Listing reads package metadata only; loading goes through stevedore and imports only the
plugin that was asked for, so a broken or heavy plugin costs nothing unless it is selected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from stevedore import DriverManager
from stevedore.exception import NoMatches

from launcher.backend import ENTRY_POINT_GROUP, Backend
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


def _describe(name: str) -> str:
    """``TARGET from DIST VERSION`` for an installed backend, for error messages only."""
    info = next((i for i in installed() if i.name == name), None)
    return f"{info.target} from {info.distribution} {info.version}" if info else repr(name)


def load(name: str) -> Backend:
    """Import and instantiate the named backend, or raise a one-line ``ConfigError``.

    The happy path reads entry points once, through stevedore's cache; the slower listing of
    distributions and versions is only done to word an error.
    """

    def missing() -> ConfigError:
        available = installed()
        listing = ", ".join(f"{i.name} ({i.distribution})" for i in available) or "none"
        hint = f" (for example pip install asgi-launcher-{name})" if re.fullmatch(r"[\w.-]+", name) else ""
        return ConfigError(
            f"SERVER_BACKEND={name!r} is invalid: expected an installed backend; installed: "
            f"{listing}. Install the plugin that provides {name!r}{hint}"
        )

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
        raise missing() from None
    plugin = manager.driver
    if not (isinstance(plugin, type) and issubclass(plugin, Backend)):
        raise ConfigError(f"SERVER_BACKEND={name!r}: {_describe(name)} is not a launcher.Backend subclass")
    try:
        return plugin()
    except TypeError as exc:  # abstract methods left unimplemented
        raise ConfigError(f"SERVER_BACKEND={name!r}: {_describe(name)} cannot be used: {exc}") from exc
