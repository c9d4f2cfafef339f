"""Uvicorn backend: Uvicorn worker processes under the launcher's own supervisor, or one process.

A third-party-style plugin built only on the public plugin API (``launcher`` and its
``__all__``), like the Granian one. Two modes, chosen by the worker count:

* **Supervised** (the default; any computed worker count, or ``WEB_CONCURRENCY`` above 1): the
  launcher's process binds the sockets once and supervises forked Uvicorn workers with the
  launcher's rules (``asgi_launcher_uvicorn.supervisor``, whose docstring says where Uvicorn's
  own ``uvicorn.supervisors.Multiprocess`` falls short of them and why it is not used).
* **Single-process** (``WEB_CONCURRENCY=1`` set explicitly, by the environment or prestart): the
  app is served in the launcher's own process, for one-process-per-pod deployments where the
  orchestrator is the supervisor (``asgi_launcher_uvicorn.single``: what TIMEOUT, MAX_REQUESTS
  and MAX_WORKER_MEMORY do there). A count of 1 that the formula computed (``MAX_WORKERS=1``, a
  small memory limit) keeps the supervisor with one worker, which is replaced when it dies: only
  the explicit setting hands supervision to the orchestrator.

Every process serves the launcher's worker pipeline with Uvicorn's access log, proxy headers,
root path and request limit off (the pipeline does them), uvloop and httptools by default
(``WORKER_CLASS=uvloop``; ``asyncio`` is asyncio + h11), and the launcher's request limits in
Uvicorn's HTTP/1.1 protocols (``asgi_launcher_uvicorn.limits``).
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar

from launcher import Backend, Config, ConfigError

#: WORKER_CLASS values (see ``asgi_launcher_uvicorn.server.WORKER_CLASSES``), without importing
#: Uvicorn: ``asgi-launcher config`` imports this module.
WORKER_CLASSES = ("uvloop", "asyncio")
_NEEDS = {"uvloop": ("uvloop", "httptools"), "asyncio": ("h11",)}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def single_process(config: Config) -> bool:
    """Whether this run serves in the launcher's own process: WEB_CONCURRENCY=1, set explicitly."""
    return config.workers == 1 and config.sources.get("workers", "").startswith("env:WEB_CONCURRENCY")


class UvicornBackend(Backend):
    default_worker_class: ClassVar[str] = "uvloop"

    def validate(self, config: Config) -> None:
        if config.worker_class not in WORKER_CLASSES:
            raise ConfigError.bad_value(
                "WORKER_CLASS",
                config.worker_class,
                "uvloop (uvloop + httptools) or asyncio (asyncio + h11) under the uvicorn backend",
            )
        missing = [m for m in _NEEDS[config.worker_class] if not _installed(m)]
        if missing:
            raise ConfigError.bad_value(
                "WORKER_CLASS",
                config.worker_class,
                f"an installed worker class; {' and '.join(missing)} not installed "
                f"(pip install {' '.join(missing)}), or use asyncio",
            )
        for variable, on in (("HTTP2", config.http2), ("HTTP2_CLEARTEXT", config.http2_cleartext)):
            if on:
                raise ConfigError.bad_value(
                    variable,
                    "true",
                    "false under the uvicorn backend: Uvicorn serves HTTP/1.1 only "
                    "(SERVER_BACKEND=hypercorn or granian serve HTTP/2)",
                )

    def preload(self, config: Config) -> None:
        # Uvicorn, its protocols and the loop load while the launcher's app check runs.
        import asgi_launcher_uvicorn.server
        import asgi_launcher_uvicorn.single
        import asgi_launcher_uvicorn.supervisor  # noqa: F401

    def run(self, config: Config) -> int:
        from asgi_launcher_uvicorn.server import close_sockets, create_sockets
        from launcher.master import Master

        with Master(config) as master:
            try:
                sockets = create_sockets(config.bind)
            except OSError as exc:
                master.log.error("cannot listen on %s: %s", ", ".join(config.bind), exc.strerror or exc)
                return 1
            try:
                if single_process(config):
                    from asgi_launcher_uvicorn.single import serve

                    return serve(master, sockets)
                from asgi_launcher_uvicorn.supervisor import Supervisor

                return Supervisor(master).run(sockets)
            finally:
                close_sockets(sockets)
