"""``asgi-launcher``: serve, or show what would be served.

Every subcommand resolves the same configuration; only ``run`` (the default) has effects.
A user's mistake prints one line and exits 2; nothing is started.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any

from launcher import __version__
from launcher.config.model import Config
from launcher.errors import ConfigError

DESCRIPTION = "Serve an ASGI app with a tuned, multi-process server chosen by SERVER_BACKEND."


def _format_config(config: Config, missing_app: str | None = None) -> str:
    data = config.to_dict()
    if missing_app is not None:
        data["app"] = missing_app
    sources = data.pop("sources")
    extra = data.pop("server_settings")
    unsupported = set(data.pop("unsupported"))
    # A group of settings (tracing) is shown one line each, as group.name.
    for group in [k for k, v in data.items() if isinstance(v, dict)]:
        data.update({f"{group}.{name}": value for name, value in data.pop(group).items()})
    width = max(len(k) for k in data)
    lines = []
    for key, value in data.items():
        if value in (None, "", (), [], {}):
            shown = "(none)"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            shown = ", ".join(value) if isinstance(value, list | tuple) else value  # tuples: RELOAD_DIRS
        note = f"  [not used by {config.backend}]" if key in unsupported else ""
        lines.append(f"{key:<{width}}  {shown}  ({sources.get(key, 'default')}){note}")
    for key, value in extra.items():
        lines.append(f"{key:<{width}}  {value}  ({sources.get(key, 'file')}) [server setting]")
    return "\n".join(lines)


def warn(message: str) -> None:
    from launcher.observability.logs import launcher_line

    print(launcher_line(message, "warning"), file=sys.stderr)


def _print_config(config: Config, as_json: bool, looked_for: Sequence[str] | None = None) -> None:
    """The configuration on stdout; with ``looked_for``, the app is shown as missing."""
    if as_json:
        data: dict[str, Any] = config.to_dict()
        if looked_for is not None:
            data["app"] = None
        print(json.dumps(data, indent=2))
    else:
        missing = None if looked_for is None else f"(missing: looked for {' and '.join(looked_for)})"
        print(_format_config(config, missing))
    sys.stdout.flush()


def cmd_config(args: argparse.Namespace) -> int:
    from launcher.config.model import MissingApp
    from launcher.launch.prepare import prepare

    try:
        prepared = prepare(args.environ)
    except MissingApp as exc:
        if exc.config is None:
            raise
        _print_config(exc.config, args.json, exc.looked_for)  # everything else, then the error
        raise
    for warning in prepared.warnings:
        warn(warning)
    _print_config(prepared.config, args.json)
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from launcher.launch import discovery

    found = discovery.installed()
    if args.json:
        print(json.dumps([b.__dict__ for b in found], indent=2))
    else:
        for b in found:
            print(f"{b.name:<12} {b.distribution} {b.version}  ({b.target})")
        if not found:
            print("no backends installed: pip install asgi-launcher-gunicorn", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from launcher.launch.prepare import prepare
    from launcher.worker.importer import import_app

    prepared = prepare(args.environ)
    config = prepared.config
    for warning in prepared.warnings:
        warn(warning)
    if config.log_config:
        from launcher.observability.logs import check_log_config

        check_log_config(config.log_config)
    import_app(config.app, config.app_dir, source=config.sources.get("app", ""))
    print(
        f"OK: {config.app} from {config.app_dir}, {config.backend} on {', '.join(config.bind)}, "
        f"{config.workers} workers"
    )
    return 0


def _probe_timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise ConfigError.bad_value("probe --timeout", raw, "a number of seconds greater than 0, such as 2")
    return value


def _probe_path(raw: str) -> str:
    if not raw.startswith("/") or any(c.isspace() or not c.isprintable() for c in raw):
        raise ConfigError.bad_value("probe --path", raw, "a request path starting with /, such as /health")
    return raw


def cmd_probe(args: argparse.Namespace) -> int:
    from launcher.launch.prepare import prepare
    from launcher.launch.probe import probe, served_bind

    timeout, path = _probe_timeout(args.timeout), _probe_path(args.path)
    config = prepare(args.environ).config
    if args.ready:
        if not config.ops_port:
            raise ConfigError("probe --ready asks the operations listener's /readyz: set OPS_PORT")
        if args.path != "/":
            raise ConfigError("probe --ready asks /readyz: leave out --path")
        ok, message = probe(config.ops_bind, "/readyz", timeout, want_200=True)
    else:
        from launcher.config.tls import probe_context

        # Where `run` serves, if it was started from this environment and its prestart moved it;
        # with TLS when SSL_CERTFILE is set (the operations listener above is plain HTTP).
        tls = probe_context(config) if config.tls else None
        ok, message = probe(served_bind(config.bind), path, timeout, tls=tls)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    from launcher.launch.run import run

    if getattr(args, "reload", False):
        os.environ["RELOAD"] = "true"  # the same as the variable, and what `config` would show
    return run(os.environ)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgi-launcher",
        description=DESCRIPTION,
        epilog="Configuration comes from environment variables; see the README's table. "
        "With no command, 'run' is assumed.",
    )
    parser.add_argument("--version", action="version", version=f"asgi-launcher {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "run", help="serve the app (the default)", description="Run prestart, then serve the app."
    )
    p.add_argument(
        "--reload",
        action="store_true",
        help="development: one worker, restarted when a .py file under APP_DIR changes (RELOAD=true)",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "config",
        help="print the resolved configuration and where each value came from",
        description="Resolve the configuration without starting anything or running prestart.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (stable keys)")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser(
        "backends",
        help="list installed backend plugins",
        description="List installed backends without importing them.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_backends)
    p = sub.add_parser(
        "check",
        help="resolve, load the backend and import the app once",
        description="Resolve the configuration, load the backend and import the app; say OK or what is wrong.",
    )
    p.set_defaults(func=cmd_check)
    p = sub.add_parser(
        "probe",
        help="send one HTTP request to the server (health check)",
        description="Exit 0 if the server on the resolved bind (or where a running launcher's "
        "prestart moved it) answers HTTP at all; over TLS, without verifying the certificate, "
        "when SSL_CERTFILE is set.",
    )
    p.add_argument("--path", default="/", help="request path (default /)")
    p.add_argument("--timeout", default="5", help="seconds to wait, more than 0 (default 5)")
    p.add_argument(
        "--ready",
        action="store_true",
        help="ask the operations listener's /readyz (OPS_PORT) instead; exit 0 only on 200",
    )
    p.set_defaults(func=cmd_probe)
    return parser


def forget_empty_settings(environ: MutableMapping[str, str]) -> None:
    """Unset the contract's variables that are set to an empty value: they mean "unset"
    (``config.effective_env``), and this process's environment is what the server and the app
    inherit, where Gunicorn and Uvicorn read ``int(WEB_CONCURRENCY)`` themselves and would fail
    on an empty one. (``ACCESS_LOG``/``ERROR_LOG``, where empty means "off", stay.)"""
    from launcher.config.resolve import effective_env
    from launcher.config.settings import BY_ENV

    for name in effective_env(environ)[1]:
        if name in BY_ENV:
            del environ[name]


def main(argv: Sequence[str] | None = None) -> int:
    from launcher.launch import command

    args = build_parser().parse_args(argv)
    if args.command is None:
        args.func = cmd_run
    # The commands that only look resolve the environment as the user wrote it (so `config`
    # shows `default (empty env:NAME)`); the process itself, which `run` turns into the server,
    # goes on without the empty settings.
    args.environ = dict(os.environ)
    forget_empty_settings(os.environ)
    return command(lambda: int(args.func(args)))


def entry() -> None:
    sys.exit(main())
