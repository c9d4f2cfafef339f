"""From the environment to a running master: ``run`` prepares and runs prestart, ``launch``
hands over.

``run`` is what ``asgi-launcher run`` does: prepare (``launcher.launch.prepare``: the one
resolution), run the prestart script, prepare once more only if the script exported something
(it counts as the user's own setting), then ``launch``. ``launch`` is the last step, the same for
``run`` and for each server the reloader starts: the app's import check (in a throwaway child,
overlapping the backend's own imports), the address check, then the one ``Config`` handed to the
backend, whose master the launcher's process becomes. Each step either hands on or stops with an
exit status; nothing starts before the configuration, the backend's own file included, is valid.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, MutableMapping

from launcher.config.addresses import check_can_listen
from launcher.config.model import MissingApp
from launcher.config.resolve import FLAGS_ENV, effective_env, locate_app
from launcher.config.settings import from_command_line
from launcher.errors import ConfigError
from launcher.launch.preflight import AppCheck, start_app_check
from launcher.launch.prepare import Prepared, describe_workers, prepare
from launcher.launch.prestart import run_prestart


def say(message: str) -> None:
    """One line of the launcher's own on stderr: ``asgi-launcher: ...``, or with ``LOG_FORMAT=json``
    one JSON object (a leading ``warning: `` is then its level)."""
    from launcher.observability.logs import launcher_line

    level, sep, rest = message.partition(": ")
    line = launcher_line(rest, "warning") if sep and level == "warning" else launcher_line(message)
    print(line, file=sys.stderr, flush=True)


def run(environ: MutableMapping[str, str]) -> int:
    """Prepare, run prestart, then launch; the exit status."""
    check = _early_check(environ)
    try:
        prepared = _prepare_to_serve(environ)
    except BaseException:
        if check is not None:
            check.cancel()
        raise
    bind_before_prestart = _probe_key(prepared, environ)
    if prepared.config.prestart:
        status, prepared = _prestart(prepared, environ)
        if status is not None:
            return status
    for warning in prepared.warnings:
        say(f"warning: {warning}")
    config = prepared.config
    if check is not None and (check.app, check.app_dir) != (config.app, config.app_dir):
        check.cancel()  # a backend's config file moved the app: check what will really be served
        check = None
    return launch(prepared, environ, check=check, announce=True, bind_before_prestart=bind_before_prestart)


def _probe_key(prepared: Prepared, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The address ``asgi-launcher probe`` resolves for this server (the key of the state file,
    ``launcher.launch.probe``): what the environment alone gives, since the health check gets
    none of the command line's options (``CMD asgi-launcher main:app --port 8080``)."""
    if FLAGS_ENV not in environ:
        return prepared.config.bind
    try:
        return prepare({k: v for k, v in environ.items() if k != FLAGS_ENV}).config.bind
    except MissingApp as exc:  # the app was named by the argument only: the rest still resolves
        return exc.config.bind if exc.config is not None else prepared.config.bind
    except ConfigError:
        return prepared.config.bind


def _early_check(environ: Mapping[str, str]) -> AppCheck | None:
    """The app's import check, started before the backend is even loaded, so start-up costs the
    longer of the two, not their sum. Not with a prestart script (it may change the app) nor
    under RELOAD (each server the reloader starts checks it), nor when the variables that
    name the app are wrong (``prepare`` then says so)."""
    given = effective_env(environ)[0]  # the options included, read leniently
    lenient = {k: v.strip().lower() for k, v in given.items() if k in ("RELOAD", "LOG_FORMAT")}
    if lenient.get("RELOAD") in ("true", "1", "yes", "on"):
        return None
    try:
        app, app_dir, source = locate_app(environ)
    except ConfigError:
        return None
    if os.path.isfile(os.path.join(given.get("PRE_START_PATH", "") or os.path.join(app_dir, "prestart.sh"))):
        return None
    return start_app_check(app, app_dir, source, as_json=lenient.get("LOG_FORMAT") == "json")


def _prepare_to_serve(environ: Mapping[str, str]) -> Prepared:
    """``prepare``, plus what only serving needs: the reloader's watcher installed, and a
    LOG_CONFIG that dictConfig can apply (tried in a child: exit 2 now, not workers that cannot
    boot)."""
    prepared = prepare(environ)
    config = prepared.config
    if config.reload:
        from launcher.launch.reload import require_watchfiles

        require_watchfiles()
    if config.log_config:
        from launcher.observability.logs import check_log_config

        check_log_config(config.log_config)
    return prepared


def _prestart(prepared: Prepared, environ: MutableMapping[str, str]) -> tuple[int | None, Prepared]:
    """Run the prestart script; (an exit status to stop with, or None, and what to serve)."""
    script = prepared.config.prestart
    assert script is not None
    say(f"running prestart script {script}")
    ran = run_prestart(script, environ, json_lines=prepared.config.log_format == "json")
    if ran.stopped_by is not None:
        say(f"{ran.stopped_by.name} during prestart: script exit status {ran.status}; not starting")
        return ran.status, prepared
    if ran.status != 0:
        say(f"prestart script {script} failed with exit status {ran.status}; not starting")
        return ran.status, prepared
    if not ran.handed_back:
        say(
            f"warning: prestart script {script} replaced its shell (exec?), so what it "
            "exported is unknown; going on with the environment as it was before it"
        )
    if not ran.changes:
        return None, prepared
    for name, value in ran.changes.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    # What prestart exports counts as if the user had set it (as in the reference).
    return None, _prepare_to_serve(environ)


def launch(
    prepared: Prepared,
    environ: MutableMapping[str, str],
    *,
    check: AppCheck | None = None,
    announce: bool = False,
    bind_before_prestart: tuple[str, ...] = (),
    released: Callable[[], bool] = lambda: True,
) -> int:
    """Check the app (``check``, or a new one) while the backend loads, check the addresses,
    then hand the configuration to the backend (or, under RELOAD, to the reloader).

    ``announce``: print the start-up line and record where this server listens for
    ``asgi-launcher probe``. ``released``: wait until the server may bind (a reload child waits
    for the one it replaces to be gone); False: it never will, exit 0.
    """
    config, backend = prepared.config, prepared.backend
    if config.reload and announce:  # the reloader: each server it starts checks the app itself
        if check is not None:
            check.cancel()
        from launcher.launch import reload

        return _hand_over(prepared, environ, reload.workers_line(config), bind_before_prestart)
    if check is None:
        check = start_app_check(
            config.app, config.app_dir, config.sources.get("app", ""), as_json=config.log_format == "json"
        )
    try:
        backend.preload(config)  # overlaps the app's import check
        go = released()
    except BaseException:
        check.cancel()
        raise
    if not go:
        check.cancel()
        return 0
    status = check.result()
    if status != 0:
        return status
    if not announce:
        _ready_to_serve(prepared, environ)
        return backend.run(config)
    return _hand_over(prepared, environ, describe_workers(config), bind_before_prestart)


def _bind_origin(source: str) -> str | None:
    """What decided the address, for its error (None: the variable BIND)."""
    if source == "env:BIND":
        return None
    if from_command_line(source):
        return source.partition(" ")[2]
    return {"default": "the default", "computed": "HOST and PORT"}.get(source, source)


def _ready_to_serve(prepared: Prepared, environ: MutableMapping[str, str]) -> None:
    config = prepared.config
    check_can_listen(config.bind, origin=_bind_origin(config.sources.get("bind", "")))
    if config.ops_port:
        check_can_listen((config.ops_bind,), "OPS_PORT")
    # Workers (forked or spawned) find the app the same way the import check did.
    if config.app_dir not in sys.path:
        sys.path.insert(0, config.app_dir)
    pythonpath = environ.get("PYTHONPATH", "")
    if config.app_dir not in pythonpath.split(os.pathsep):
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (config.app_dir, pythonpath) if p)


def _hand_over(
    prepared: Prepared, environ: MutableMapping[str, str], workers: str, bind_before_prestart: tuple[str, ...]
) -> int:
    """The start-up line, then the backend (or the reloader) runs in this process until it stops.

    ``probe`` (the health check) does not get what prestart exported: the state file tells it
    where this server listens."""
    from launcher.launch.probe import serving_state

    config = prepared.config
    _ready_to_serve(prepared, environ)
    say(
        f"serving {config.app} from {config.app_dir} with {config.backend} on {', '.join(config.bind)}: {workers}"
    )
    with serving_state(config.bind, bind_before_prestart or config.bind, say):
        if config.reload:
            from launcher.launch.reload import serve_reloading

            return serve_reloading(config, environ, say)
        return prepared.backend.run(config)
