"""The default backend: Gunicorn as the master, managing ``uvicorn_worker.UvicornWorker`` workers.

This is the reference image's setup. Gunicorn runs in the launcher's own process through its
documented ``BaseApplication``, so the container's signals reach the Gunicorn master directly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
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
        worker_class: object = config.worker_class
        known = (
            worker_class in UVICORN_WORKER_NAMES and importlib.util.find_spec("uvicorn_worker") is not None
        )
        # Uvicorn's own classes, installed, are ASGI: importing them (~60 ms, on every `config`)
        # would tell nothing more. Any other class is loaded and looked at.
        if known:
            loaded: object = None
        elif isinstance(worker_class, str):
            loaded = _load_worker_class(worker_class, config.app_dir)
        else:
            loaded = worker_class
        if not known and not (isinstance(loaded, type) and is_uvicorn_worker(loaded)):
            raise ConfigError.bad_value(
                "WORKER_CLASS",
                config.worker_class,
                "an ASGI worker class: uvicorn_worker.UvicornWorker, uvicorn_worker.UvicornH11Worker "
                "or a subclass of them (Gunicorn's own classes such as sync serve WSGI only)",
            )
        for variable, on in (("HTTP2", config.http2), ("HTTP2_CLEARTEXT", config.http2_cleartext)):
            if on:
                raise ConfigError.bad_value(
                    variable,
                    "true",
                    "false under the gunicorn backend: Uvicorn serves HTTP/1.1 only "
                    "(SERVER_BACKEND=hypercorn or granian serve HTTP/2)",
                )

    def preload(self, config: Config) -> None:
        # Gunicorn's arbiter and our worker load while the app check runs (validate has already
        # imported the worker class).
        import asgi_launcher_gunicorn.application  # noqa: F401

    def run(self, config: Config) -> int:
        from asgi_launcher_gunicorn.application import LauncherApplication
        from launcher.master import Master

        with Master(config) as master:
            try:
                LauncherApplication(config, master).run()
            except SystemExit as exc:  # the arbiter halts with sys.exit(status)
                code = exc.code
                return code if isinstance(code, int) else (0 if code is None else 1)
        return 0


def _load_worker_class(name: str, app_dir: str) -> object:
    """The class ``name`` designates, as Gunicorn resolves it, with APP_DIR on the path (as for the app)."""

    from gunicorn.util import load_class

    added = app_dir not in sys.path
    if added:
        sys.path.insert(0, app_dir)
    try:
        return load_class(name)
    except (RuntimeError, ImportError, AttributeError, ValueError) as exc:
        # Gunicorn's message ends with the import's traceback: its last line says what failed.
        lines = [line.strip("[] ") for line in str(exc).splitlines()]
        reason = next((line for line in reversed(lines) if line), type(exc).__name__)
        raise ConfigError.bad_value(
            "WORKER_CLASS", name, f"an importable Gunicorn worker class ({reason})"
        ) from None
    finally:
        if added:
            sys.path.remove(app_dir)


#: SSL_CERT_REQS as Gunicorn's ``cert_reqs`` (the ``ssl`` module's values).
CERT_REQS = {"none": 0, "optional": 1, "required": 2}
CERT_REQS_NAMES = {value: name for name, value in CERT_REQS.items()}

#: The Uvicorn worker classes by name, and as (module, class) where they are defined.
UVICORN_WORKER_NAMES = frozenset({"uvicorn_worker.UvicornWorker", "uvicorn_worker.UvicornH11Worker"})
_UVICORN_WORKERS = {("uvicorn_worker._workers", "UvicornWorker"), ("uvicorn.workers", "UvicornWorker")}


def is_uvicorn_worker(cls: type) -> bool:
    """Whether ``cls`` is (a subclass of) Uvicorn's Gunicorn worker, the ASGI one."""
    return any((c.__module__, c.__name__) in _UVICORN_WORKERS for c in cls.__mro__)


def gunicorn_settings(config: Config) -> dict[str, Any]:
    """The Gunicorn settings for a resolved config (contract first, then the file's extras)."""
    from asgi_launcher_gunicorn.settings import current_umask

    settings: dict[str, Any] = {
        "bind": list(config.bind),
        "workers": config.workers,
        "worker_class": config.worker_class,
        "loglevel": config.log_level,
        "timeout": config.timeout,
        "graceful_timeout": config.graceful_timeout,
        "keepalive": config.keep_alive,
        "accesslog": None,  # the launcher's pipeline writes ACCESS_LOG, the same under every backend
        "errorlog": config.error_log or "/dev/null",  # empty ERROR_LOG: off
        "forwarded_allow_ips": config.forwarded_allow_ips,
        "max_requests": config.max_requests,
        "max_requests_jitter": config.max_requests_jitter,
        # gunicorn >= 25 opens a control socket under $HOME by default: a write outside /tmp
        # that breaks read-only containers and that nothing here uses.
        "control_socket_disable": True,
        "proc_name": f"asgi-launcher {config.app}",
        # Gunicorn's own default (0) makes a unix socket 0777 whatever the umask; with the
        # process's umask it gets 0o777 & ~umask, as under the other backends. A umask the
        # config file or GUNICORN_CMD_ARGS sets still wins (server_settings, below).
        "umask": current_umask(),
    }
    if config.tls:  # what uvicorn_worker reads; the worker adds what Gunicorn has no setting for
        settings.update(
            certfile=config.ssl_certfile,
            keyfile=config.ssl_keyfile,
            ca_certs=config.ssl_ca_certs,
            cert_reqs=CERT_REQS[config.ssl_cert_reqs],
        )
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        settings["worker_tmp_dir"] = "/dev/shm"  # heartbeat files on tmpfs, not a slow overlay disk
    settings.update(config.server_settings)
    settings["accesslog"] = None  # a config file's accesslog is ACCESS_LOG, which the pipeline writes
    return settings
