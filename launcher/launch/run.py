"""The effects, in order: resolve, (prestart), check the app and the address, serve.

Each step either hands on or stops with an exit status; nothing is started before the
configuration, including the backend's own config file, has been fully validated.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from launcher.backend import Backend
from launcher.config.addresses import check_can_listen
from launcher.config.resolve import (
    Config,
    MissingApp,
    backend_name,
    describe_workers,
    effective_env,
    memory_warning,
    resolve,
)
from launcher.errors import ConfigError
from launcher.launch.preflight import start_app_check
from launcher.launch.prestart import run_prestart


@dataclass(frozen=True)
class Prepared:
    """What ``prepare_with_warnings`` resolved: the backend, its configuration, and warnings to show."""

    backend: Backend
    config: Config
    warnings: tuple[str, ...] = ()
    #: The worker count in words for the start-up line (``launcher.config.describe_workers``).
    workers_line: str = ""


def prepare_with_warnings(env: Mapping[str, str]) -> Prepared:
    """Resolve the full configuration the backend will get; raises ``ConfigError``.

    ``warnings`` are one line each, for variables the selected backend ignores although another
    installed one reads them. A missing app raises ``MissingApp`` carrying everything else
    resolved (including the backend's config file), so ``config`` can still show it.
    """
    # Imported here, not at the top: package metadata and stevedore cost ~40 ms to import, and
    # `serve` starts the app's import check before that, so the two overlap.
    from launcher.launch import discovery

    name, backend = discovery.select(backend_name(env))
    missing: MissingApp | None = None
    try:
        config = resolve(env, backend, selected=name)
    except MissingApp as exc:
        if exc.config is None:
            raise
        missing, config = exc, exc.config
    formula = config  # what the environment alone gives, before the config file's settings
    given, _ = effective_env(env)
    # What a config file prints (some print their settings) goes to stderr, never into the
    # stdout of `config --json`; after a ConfigError the one line is all that is shown.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            file_settings = backend.load_config_file(config, given)
        config = config.with_file_settings(file_settings)
        backend.validate(config)
    except ConfigError:
        raise
    except BaseException:
        _to_stderr(printed.getvalue())
        raise
    if missing is not None:
        raise missing.with_config(config)
    _to_stderr(printed.getvalue())
    warnings = list(discovery.other_backend_variables(given, name, backend))
    memory = memory_warning(config, formula)  # workers asked for that the memory limit cannot hold
    if memory is not None:
        warnings.append(memory)
    from launcher.launch import reload

    reload.check_settings(config, backend)  # what RELOAD cannot honour: refused by config and check too
    warnings.extend(reload.warnings(config))
    return Prepared(backend, config, tuple(warnings), describe_workers(config, formula))


def _to_stderr(text: str) -> None:
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()


def prepare(env: Mapping[str, str]) -> tuple[Backend, Config]:
    """Resolve the full configuration the backend will get; raises ``ConfigError``."""
    prepared = prepare_with_warnings(env)
    return prepared.backend, prepared.config


def say(message: str) -> None:
    """One line of the launcher's own on stderr: ``asgi-launcher: ...``, or with ``LOG_FORMAT=json``
    one JSON object (a leading ``warning: `` is then its level)."""
    from launcher.observability.logs import launcher_line

    level, sep, rest = message.partition(": ")
    line = launcher_line(rest, "warning") if sep and level == "warning" else launcher_line(message)
    print(line, file=sys.stderr, flush=True)


def _check_log_config(config: Config) -> None:
    """A LOG_CONFIG that dictConfig cannot apply is exit 2 now, not workers that cannot boot."""
    if config.log_config:
        from launcher.observability.logs import check_log_config

        check_log_config(config.log_config)


def serve(environ: MutableMapping[str, str]) -> int:
    """Run prestart, check the app can be imported and the address bound, then serve."""
    # Without a prestart script the app cannot change before serving, so its import check can
    # run in a child while this process loads the backend: start-up costs the longer of the
    # two, not their sum. (The bare Backend resolves the server-independent part of the contract.)
    early = resolve(environ, Backend)
    # Under RELOAD each server the reloader starts checks the app itself (launcher.launch.reload).
    check = start_app_check(early) if early.prestart is None and not early.reload else None
    try:
        prepared = prepare_with_warnings(environ)
    except BaseException:
        if check:
            check.cancel()
        raise
    config = prepared.config
    try:
        if config.reload:
            from launcher.launch.reload import require_watchfiles

            require_watchfiles()  # exit 2 before prestart, not after
        _check_log_config(config)
    except BaseException:
        if check:
            check.cancel()
        raise
    if check and (check.app, check.app_dir) != (config.app, config.app_dir):
        check.cancel()  # a backend's config file moved the app: check what will really be served
        check = None
    bind_before_prestart = config.bind
    if config.prestart:
        say(f"running prestart script {config.prestart}")
        ran = run_prestart(config.prestart, environ, json_lines=config.log_format == "json")
        if ran.stopped_by is not None:
            say(f"{ran.stopped_by.name} during prestart: script exit status {ran.status}; not starting")
            return ran.status
        if ran.status != 0:
            say(f"prestart script {config.prestart} failed with exit status {ran.status}; not starting")
            return ran.status
        if not ran.handed_back:
            say(
                f"warning: prestart script {config.prestart} replaced its shell (exec?), so what it "
                "exported is unknown; going on with the environment as it was before it"
            )
        exported = ran.changes
        if exported:
            for name, value in exported.items():
                if value is None:
                    environ.pop(name, None)
                else:
                    environ[name] = value
            # What prestart exports counts as if the user had set it (as in the reference).
            prepared = prepare_with_warnings(environ)
            if prepared.config.log_config != config.log_config:
                _check_log_config(prepared.config)
    backend, config = prepared.backend, prepared.config
    if config.reload:
        from launcher.launch.reload import require_watchfiles

        require_watchfiles()  # prestart may have exported RELOAD=true
    for warning in prepared.warnings:
        say(f"warning: {warning}")
    if config.reload:
        # Each server the reloader starts checks the app first (launcher.reload.serve_child): a
        # broken app, at start too, shows its error once and the launcher waits for the fix.
        if check:
            check.cancel()
    else:
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
    if config.ops_port:
        check_can_listen((config.ops_bind,), "OPS_PORT")
    # Workers (forked or spawned) find the app the same way the preflight did.
    if config.app_dir not in sys.path:
        sys.path.insert(0, config.app_dir)
    pythonpath = environ.get("PYTHONPATH", "")
    if config.app_dir not in pythonpath.split(os.pathsep):
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (config.app_dir, pythonpath) if p)
    if config.reload:
        from launcher.launch.reload import workers_line

        workers = workers_line(config)
    else:
        workers = prepared.workers_line or describe_workers(config)
    say(
        f"serving {config.app} from {config.app_dir} with {config.backend} on {', '.join(config.bind)}: {workers}"
    )
    # `probe` (the health check) does not get what prestart exported: tell it where we serve.
    # (Imported only here: `config`, `check` and `probe` never write it.)
    from launcher.launch.probe import serving_state

    with serving_state(config.bind, bind_before_prestart, say):
        if config.reload:  # one worker in a child, restarted on changes, under every backend
            from launcher.launch.reload import serve_reloading

            return serve_reloading(config, environ, say)
        return backend.run(config)
