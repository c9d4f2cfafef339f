"""Gunicorn's documented in-process entry point, fed from the resolved config."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from launcher import Config
from launcher.importer import import_app


class LauncherApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config) -> None:
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        from asgi_launcher_gunicorn import gunicorn_settings

        for name, value in gunicorn_settings(self.config).items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        return import_app(self.config.app, self.config.app_dir, source=self.config.sources.get("app", ""))
