"""Hypercorn backend: Hypercorn workers under a supervisor that replaces the ones that die.

The env contract maps onto Hypercorn's ``Config`` (see ``settings``); ``HYPERCORN_CONF`` may
add or override any Hypercorn setting. The launcher's own process supervises the workers
(see ``supervisor``), because Hypercorn's multi-worker mode stops, with status 0, as soon as
one worker dies.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import ClassVar

from launcher import Backend, Config, ConfigError, FileSettings

WORKER_CLASSES = ("asyncio", "uvloop", "trio")

#: The module each worker class needs besides Hypercorn itself.
_NEEDS = {"uvloop": "uvloop", "trio": "trio"}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def fastest_worker_class() -> str:
    """uvloop when it is installed, else asyncio: decided without importing either."""
    return "uvloop" if _installed("uvloop") else "asyncio"


class HypercornBackend(Backend):
    config_file_env: ClassVar[str | None] = "HYPERCORN_CONF"
    config_file_name: ClassVar[str | None] = "hypercorn.toml"
    default_worker_class: ClassVar[str] = fastest_worker_class()
    extra_env: ClassVar[Mapping[str, str]] = {
        "HYPERCORN_CONF": "Hypercorn config: a TOML file, file:path.py or python:module (as hypercorn "
        "--config takes); default: the first of $APP_DIR/hypercorn.toml, $APP_DIR/app/hypercorn.toml, "
        "/hypercorn.toml that exists. What it sets wins over the env; an unknown key is an error.",
    }

    def load_config_file(self, config: Config, env: Mapping[str, str]) -> FileSettings:
        from asgi_launcher_hypercorn.settings import load_file_settings

        return load_file_settings(config)

    def validate(self, config: Config) -> None:
        worker_class = config.worker_class
        source = config.sources.get("worker_class", "default")
        origin = (
            f"HYPERCORN_CONF file {source[5:]}: worker_class"
            if source.startswith("file:")
            else "WORKER_CLASS"
        )
        if worker_class not in WORKER_CLASSES:
            raise ConfigError(
                f"{origin}={worker_class!r} is invalid: expected a Hypercorn worker class: "
                + ", ".join(WORKER_CLASSES)
            )
        needed = _NEEDS.get(worker_class)
        if needed and not _installed(needed):
            raise ConfigError(
                f"{origin}={worker_class!r} is invalid: expected an installed worker class; "
                f"{needed} is not installed (pip install {needed}), or use asyncio"
            )

    def preload(self, config: Config) -> None:
        # Hypercorn and the supervisor load while the app check runs (workers are spawned and
        # import their own copies).
        import asgi_launcher_hypercorn.settings
        import asgi_launcher_hypercorn.supervisor  # noqa: F401

    def run(self, config: Config) -> int:
        from asgi_launcher_hypercorn.settings import build, create_sockets
        from asgi_launcher_hypercorn.supervisor import Supervisor, close_sockets
        from launcher.master import Master

        hc = build(config)
        with Master(config) as master:
            try:
                sockets = create_sockets(hc)
            except OSError as exc:
                master.log.error("cannot listen on %s: %s", ", ".join(config.bind), exc.strerror or exc)
                return 1
            if hc.pid_path:
                with open(hc.pid_path, "w") as file:
                    file.write(str(os.getpid()))
            try:
                return Supervisor(master, hc=hc).run(sockets)
            finally:
                close_sockets(sockets)
