"""The effects, in order: resolve, (prestart), check the app and the address, serve.

Each step either hands on or stops with an exit status; nothing is started before the
configuration, including the backend's own config file, has been fully validated.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

from launcher.addresses import check_can_listen
from launcher.backend import Backend
from launcher.config import Config, backend_name, resolve
from launcher.preflight import start_app_check
from launcher.prestart import run_prestart


def prepare(env: Mapping[str, str]) -> tuple[Backend, Config]:
    """Resolve the full configuration the backend will get; raises ``ConfigError``."""
    # Imported here, not at the top: package metadata and stevedore cost ~40 ms to import, and
    # `serve` starts the app's import check before that, so the two overlap.
    from launcher import discovery

    backend = discovery.load(backend_name(env))
    config = resolve(env, backend)
    config = config.with_file_settings(backend.load_config_file(config, env))
    backend.validate(config)
    return backend, config


def say(message: str) -> None:
    print(f"asgi-launcher: {message}", file=sys.stderr, flush=True)


def serve(environ: MutableMapping[str, str]) -> int:
    """Run prestart, check the app can be imported and the address bound, then serve."""
    # Without a prestart script the app cannot change before serving, so its import check can
    # run in a child while this process loads the backend: start-up costs the longer of the
    # two, not their sum. (The bare Backend resolves the server-independent part of the contract.)
    early = resolve(environ, Backend)
    check = start_app_check(early) if early.prestart is None else None
    try:
        backend, config = prepare(environ)
    except BaseException:
        if check:
            check.cancel()
        raise
    if check and (check.app, check.app_dir) != (config.app, config.app_dir):
        check.cancel()  # a backend's config file moved the app: check what will really be served
        check = None
    if config.prestart:
        say(f"running prestart script {config.prestart}")
        status, exported = run_prestart(config.prestart, environ)
        if status != 0:
            say(f"prestart script {config.prestart} failed with exit status {status}; not starting")
            return status
        if exported:
            for name, value in exported.items():
                if value is None:
                    environ.pop(name, None)
                else:
                    environ[name] = value
            # What prestart exports counts as if the user had set it (as in the reference).
            backend, config = prepare(environ)
    if check is None:
        check = start_app_check(config)
    try:
        backend.preload(config)  # overlaps the app's import check
    except BaseException:
        check.cancel()
        raise
    status = check.result()
    if status != 0:
        return status
    check_can_listen(config.bind)
    # Workers (forked or spawned) find the app the same way the preflight did.
    if config.app_dir not in sys.path:
        sys.path.insert(0, config.app_dir)
    pythonpath = environ.get("PYTHONPATH", "")
    if config.app_dir not in pythonpath.split(os.pathsep):
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (config.app_dir, pythonpath) if p)
    say(
        f"serving {config.app} from {config.app_dir} with {config.backend} on "
        f"{', '.join(config.bind)}: {config.workers} workers ({config.cpus} CPUs)"
    )
    return backend.run(config)
