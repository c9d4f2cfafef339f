"""Granian backend: a third-party-style plugin built only on the launcher's public API.

It uses nothing but ``launcher.Backend``/``Config``/``ConfigError``, the shared helpers
``launcher.importer``, ``launcher.proxy_headers`` and ``launcher.supervision``, and the
``asgi_launcher.backends`` entry point declared in this distribution's own pyproject.toml:
exactly what an outside author has. It is the worked example of the README's plugin guide.
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar

from launcher import Backend, Config, ConfigError

#: WORKER_CLASS under Granian names its event loop. "auto" lets Granian pick (uvloop or rloop if present).
LOOPS = ("auto", "asyncio", "uvloop", "rloop")


class GranianBackend(Backend):
    default_worker_class: ClassVar[str] = "auto"

    def validate(self, config: Config) -> None:
        if len(config.bind) != 1:
            raise ConfigError.bad_value(
                "BIND",
                ",".join(config.bind),
                "one address under the granian backend (it listens on one socket)",
            )
        if config.worker_class not in LOOPS:
            raise ConfigError.bad_value(
                "WORKER_CLASS", config.worker_class, "one of " + ", ".join(LOOPS) + " (Granian's event loop)"
            )
        if (
            config.worker_class in ("uvloop", "rloop")
            and importlib.util.find_spec(config.worker_class) is None
        ):
            raise ConfigError.bad_value(
                "WORKER_CLASS", config.worker_class, f"an installed loop; pip install {config.worker_class}"
            )

    def preload(self, config: Config) -> None:
        import asgi_launcher_granian.server  # noqa: F401  (Granian's own import, while the app check runs)

    def run(self, config: Config) -> int:
        from asgi_launcher_granian.server import serve

        return serve(config)
