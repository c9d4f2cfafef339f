"""The default backend: Gunicorn as the master, managing ``uvicorn_worker.UvicornWorker`` workers.

This is the reference image's setup. Gunicorn runs in the launcher's own process through its
documented ``BaseApplication``, so the container's signals reach the Gunicorn master directly.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Mapping
from typing import Any, ClassVar

from launcher import Backend, Config, ConfigError, FileSettings


class GunicornBackend(Backend):
    config_file_env: ClassVar[str | None] = "GUNICORN_CONF"
    config_file_name: ClassVar[str | None] = "gunicorn_conf.py"
    default_worker_class: ClassVar[str] = "uvicorn_worker.UvicornWorker"
    extra_env: ClassVar[Mapping[str, str]] = {
        "GUNICORN_CONF": "Gunicorn config file; default: the first of $APP_DIR/gunicorn_conf.py, "
        "$APP_DIR/app/gunicorn_conf.py, /gunicorn_conf.py that exists. What it sets wins over the env.",
        "GUNICORN_CMD_ARGS": "Gunicorn command-line options; they win over everything else.",
    }

    def load_config_file(self, config: Config, env: Mapping[str, str]) -> FileSettings:
        cmd_args = env.get("GUNICORN_CMD_ARGS")
        if not config.config_file and not cmd_args:
            return {}
        # Imported only when there is something to read: gunicorn's config module costs ~15 ms,
        # which `asgi-launcher config` and start-up otherwise spare.
        from asgi_launcher_gunicorn.settings import load_file_settings

        return load_file_settings(config.config_file, cmd_args)

    def validate(self, config: Config) -> None:
        worker_class = config.worker_class
        module = _worker_module(worker_class)
        if module is not None:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found and worker_class not in _GUNICORN_SHORT_NAMES:
                raise ConfigError.bad_value(
                    "WORKER_CLASS",
                    worker_class,
                    "an importable Gunicorn worker class such as uvicorn_worker.UvicornWorker",
                )

    def preload(self, config: Config) -> None:
        # Gunicorn's master imports the worker class anyway (before forking workers), so doing
        # it now, while the app check runs, moves the cost off the start-up path.
        import asgi_launcher_gunicorn.application  # noqa: F401

        module = _worker_module(config.worker_class)
        if module is not None and module != config.worker_class:  # a dotted path, not a short name
            with contextlib.suppress(Exception):  # a broken worker module is reported by run()
                importlib.import_module(module)

    def run(self, config: Config) -> int:
        from asgi_launcher_gunicorn.application import LauncherApplication

        try:
            LauncherApplication(config).run()
        except SystemExit as exc:  # the arbiter halts with sys.exit(status)
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
        return 0


def _worker_module(worker_class: object) -> str | None:
    """The module a WORKER_CLASS names (``pkg.mod.Class`` -> ``pkg.mod``; a short name such as
    ``sync`` is its own); None for ``egg:`` URIs and for classes a config file set directly."""
    if not isinstance(worker_class, str) or worker_class.startswith("egg:"):
        return None
    return worker_class.rpartition(".")[0] or worker_class


_GUNICORN_SHORT_NAMES = frozenset({"sync", "eventlet", "gevent", "tornado", "gthread"})


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """The Gunicorn settings for a resolved config (contract first, then the file's extras)."""
    settings: dict[str, Any] = {
        "bind": list(config.bind),
        "workers": config.workers,
        "worker_class": config.worker_class,
        "loglevel": config.log_level,
        "timeout": config.timeout,
        "graceful_timeout": config.graceful_timeout,
        "keepalive": config.keep_alive,
        "accesslog": config.access_log,
        "errorlog": config.error_log,
        "forwarded_allow_ips": config.forwarded_allow_ips,
        "max_requests": config.max_requests,
        "max_requests_jitter": config.max_requests_jitter,
        # gunicorn >= 25 opens a control socket under $HOME by default: a write outside /tmp
        # that breaks read-only containers and that nothing here uses.
        "control_socket_disable": True,
        "proc_name": f"asgi-launcher {config.app}",
    }
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        settings["worker_tmp_dir"] = "/dev/shm"  # heartbeat files on tmpfs, not a slow overlay disk
    settings.update(config.server_settings)
    return settings
