"""asgi-launcher: start an ASGI app in production from the env contract of the reference image.

``__all__`` is the plugin surface: everything a backend plugin imports from the core, and
nothing else (a test holds the three built-in plugins to it, and the README's plugin guide
lists it). Importing this package imports no server, and the worker pipeline and supervision
modules only when a plugin first asks for one of their names, so ``asgi-launcher config`` stays
cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from launcher.backend import ENTRY_POINT_GROUP, Backend, FileSettings
from launcher.config.resolve import Config
from launcher.errors import EXIT_CONFIG, ConfigError

if TYPE_CHECKING:
    from launcher.config.addresses import parse as parse_address
    from launcher.config.settings import parse_bind_address, parse_setting
    from launcher.master.policy import EXIT_WORKERS_FAILING, Supervision, describe_exit, exit_code, master_log
    from launcher.master.supervisor import WorkerProcess, WorkerSupervisor
    from launcher.observability.logs import configure as configure_logging
    from launcher.observability.logs import launcher_line
    from launcher.procfs import memory_over
    from launcher.signals import accept_stop_signals, forking
    from launcher.worker.importer import import_app
    from launcher.worker.pipeline import ServerTraits, WorkerApp
    from launcher.worker.pipeline import build as build_worker_app
    from launcher.worker.request_head import HeadLimits, origin_form

__version__ = "0.1.0"

#: Name -> (module, attribute) for what is imported on first use.
_LAZY = {
    "build_worker_app": ("launcher.worker.pipeline", "build"),
    "ServerTraits": ("launcher.worker.pipeline", "ServerTraits"),
    "WorkerApp": ("launcher.worker.pipeline", "WorkerApp"),
    "Supervision": ("launcher.master.policy", "Supervision"),
    "master_log": ("launcher.master.policy", "master_log"),
    "describe_exit": ("launcher.master.policy", "describe_exit"),
    "exit_code": ("launcher.master.policy", "exit_code"),
    "EXIT_WORKERS_FAILING": ("launcher.master.policy", "EXIT_WORKERS_FAILING"),
    "WorkerProcess": ("launcher.master.supervisor", "WorkerProcess"),
    "WorkerSupervisor": ("launcher.master.supervisor", "WorkerSupervisor"),
    "accept_stop_signals": ("launcher.signals", "accept_stop_signals"),
    "forking": ("launcher.signals", "forking"),
    "import_app": ("launcher.worker.importer", "import_app"),
    "configure_logging": ("launcher.observability.logs", "configure"),
    "launcher_line": ("launcher.observability.logs", "launcher_line"),
    "memory_over": ("launcher.procfs", "memory_over"),
    "parse_address": ("launcher.config.addresses", "parse"),
    "parse_bind_address": ("launcher.config.settings", "parse_bind_address"),
    "parse_setting": ("launcher.config.settings", "parse_setting"),
    "HeadLimits": ("launcher.worker.request_head", "HeadLimits"),
    "origin_form": ("launcher.worker.request_head", "origin_form"),
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "EXIT_CONFIG",
    "EXIT_WORKERS_FAILING",
    "Backend",
    "Config",
    "ConfigError",
    "FileSettings",
    "HeadLimits",
    "ServerTraits",
    "Supervision",
    "WorkerApp",
    "WorkerProcess",
    "WorkerSupervisor",
    "__version__",
    "accept_stop_signals",
    "build_worker_app",
    "configure_logging",
    "describe_exit",
    "exit_code",
    "forking",
    "import_app",
    "launcher_line",
    "master_log",
    "memory_over",
    "origin_form",
    "parse_address",
    "parse_bind_address",
    "parse_setting",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'launcher' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
