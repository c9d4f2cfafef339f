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
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

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

    return run(os.environ)


#: Options of other servers' command lines that have no equivalent here, and what to type instead.
FOREIGN_OPTIONS = {
    "--interface": "asgi-launcher serves ASGI apps only: leave --interface out",
    "--factory": "name a module-level app instead, such as app = create_app() in main.py",
    "--uds": "give the socket as --bind unix:/path/to.sock",
    "--fd": "give the address as --bind HOST:PORT or --bind unix:/path",
    "--chdir": "use --app-dir DIR",
    "--loop": "the event loop is the backend's --worker-class (see asgi-launcher run --help)",
    "--config": "the backend's own config file is GUNICORN_CONF or HYPERCORN_CONF",
    "-c": "the backend's own config file is GUNICORN_CONF or HYPERCORN_CONF",
    "--no-proxy-headers": "X-Forwarded-* headers count only from the peers of --forwarded-allow-ips "
    "(default 127.0.0.1): set it to an address no proxy has, such as 127.0.0.2",
    "--env-file": "export the variables in the shell, or pass them with docker run --env-file",
}


def _plain(text: str) -> str:
    """A declaration's Markdown as terminal text (and safe from argparse's %-formatting)."""
    return text.replace("`", "").replace("%", "%%")


class _SetVariable(argparse.Action):
    """A flag sets its setting's variable: the namespace gets ``VARIABLE: (flag as typed, value)``."""

    def __init__(self, *args: Any, repeat: bool = False, **kwargs: Any) -> None:
        self.repeat = repeat
        super().__init__(*args, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        if values is None and self.const is None:
            return  # an optional positional left out
        value = self.const if self.const is not None else str(values)
        before = getattr(namespace, self.dest, None)
        if self.repeat and before is not None:
            value = f"{before[1]},{value}"
        setattr(namespace, self.dest, (option or self.metavar, value))


def add_setting_options(parser: argparse.ArgumentParser) -> None:
    """One option per setting, declared beside it (``Setting.flags``), grouped as the docs group
    them; the value shown after each option is the variable it sets."""
    from launcher.config.settings import GROUPS, SETTINGS

    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="accepted as uvicorn's: X-Forwarded-For/-Proto always count from the peers of "
        "--forwarded-allow-ips",
    )
    for title in GROUPS:
        group = parser.add_argument_group(title)
        for s in (s for s in SETTINGS if s.group == title):
            default = _plain(s.default_doc) or "none"
            doc = f"{_plain(s.doc)} (default: {default})"
            takes = [f for f in s.flags if f.startswith("-") and "=" not in f]
            for flag in (f for f in s.flags if not f.startswith("-")):
                group.add_argument(
                    s.env, metavar=flag, nargs="?", action=_SetVariable, help=f"{doc} [{s.env}]"
                )
            if takes and s.kind == "bool":
                group.add_argument(
                    *takes,
                    dest=s.env,
                    nargs=0,
                    const="true",
                    action=_SetVariable,
                    default=argparse.SUPPRESS,
                    help=f"{doc} [{s.env}=true]",
                )
            elif takes:
                more = "; may be given several times" if s.repeatable else ""
                group.add_argument(
                    *takes,
                    dest=s.env,
                    metavar=s.env,
                    action=_SetVariable,
                    repeat=s.repeatable,
                    default=argparse.SUPPRESS,
                    help=f"{doc}{more}",
                )
            for flag in (f for f in s.flags if "=" in f):
                name, _, value = flag.partition("=")
                group.add_argument(
                    name,
                    dest=s.env,
                    nargs=0,
                    const=value,
                    action=_SetVariable,
                    default=argparse.SUPPRESS,
                    help=f"{s.env}={value!r}",
                )


def environment_help() -> str:
    """The variables, grouped as the docs group them, for ``asgi-launcher --help``."""
    import textwrap

    from launcher.config.settings import GROUPS, SETTINGS

    lines = [
        "Environment variables (each also has an option of run, config and check, which wins "
        "over it; see asgi-launcher run --help):"
    ]
    for title in GROUPS:
        lines.append(f"\n{title}:")
        for s in (s for s in SETTINGS if s.group == title):
            flag = f"{s.flags[0]}; " if s.flags else ""
            text = f"{s.env} ({flag}default: {s.default_doc}): {s.doc}".replace("`", "")
            lines.append(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="      "))
    lines.append(
        "\nWith no command, run is assumed: asgi-launcher main:app --port 8000 --workers 4. "
        "Precedence, lowest first: defaults, environment variables, the backend's config file "
        "(GUNICORN_CONF, HYPERCORN_CONF), GUNICORN_CMD_ARGS, options."
    )
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (``asgi-launcher: error: ...``) and exit 2, with what to
    type instead of another server's option."""

    def error(self, message: str) -> NoReturn:
        hints = [f"{opt}: {hint}" for opt, hint in FOREIGN_OPTIONS.items() if opt in message.split()]
        more = f" ({'; '.join(hints)})" if hints else ""
        self.exit(2, f"asgi-launcher: error: {message}{more}; see {self.prog} --help\n")


@dataclass(frozen=True)
class _Command:
    """One command of the command line, as its parser declares it."""

    run: Callable[[argparse.Namespace], int]
    help: str
    description: str
    usage: str | None = None  # None: "asgi-launcher NAME"
    settings: bool = False  # takes the settings' options ([APP] [OPTIONS])
    json: str | None = None  # the help of its --json, if it has one


_COMMANDS = {
    "run": _Command(
        cmd_run,
        "serve the app (the default)",
        "Run prestart, then serve the app. Each option sets the environment variable shown with it "
        "(the same value, the same checks), and wins over the environment and over the backend's "
        "config file.",
        usage="asgi-launcher [run] [APP] [OPTIONS]",
        settings=True,
    ),
    "config": _Command(
        cmd_config,
        "print the resolved configuration and where each value came from",
        "Resolve the configuration without starting anything or running prestart.",
        usage="asgi-launcher config [APP] [OPTIONS] [--json]",
        settings=True,
        json="print one JSON object (stable keys)",
    ),
    "backends": _Command(
        cmd_backends,
        "list installed backend plugins",
        "List installed backends without importing them.",
        json="print a JSON list",
    ),
    "check": _Command(
        cmd_check,
        "resolve, load the backend and import the app once",
        "Resolve the configuration, load the backend and import the app; say OK or what is wrong.",
        usage="asgi-launcher check [APP] [OPTIONS]",
        settings=True,
    ),
    "probe": _Command(
        cmd_probe,
        "send one HTTP request to the server (health check)",
        "Exit 0 if the server on the resolved bind (or where a running launcher's prestart moved "
        "it) answers HTTP at all; over TLS, without verifying the certificate, when SSL_CERTFILE "
        "is set.",
    ),
}
COMMANDS = tuple(_COMMANDS)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command gets its options (the settings' options
    cost tens of milliseconds to declare, on every start, health checks included), and only the
    top-level help gets the list of variables."""
    parser = _Parser(
        prog="asgi-launcher",
        usage="asgi-launcher [COMMAND] [APP] [OPTIONS]",
        description=DESCRIPTION,
        epilog=environment_help() if command is None else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"asgi-launcher {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, spec in _COMMANDS.items():
        p = sub.add_parser(
            name, prog=f"asgi-launcher {name}", help=spec.help, usage=spec.usage, description=spec.description
        )
        if spec.json:
            p.add_argument("--json", action="store_true", help=spec.json)
        if spec.settings and command in (None, name):
            add_setting_options(p)
        p.set_defaults(func=spec.run)
    probe = sub.choices["probe"]
    probe.add_argument("--path", default="/", help="request path (default /)")
    probe.add_argument("--timeout", default="5", help="seconds to wait, more than 0 (default 5)")
    probe.add_argument(
        "--ready",
        action="store_true",
        help="ask the operations listener's /readyz (OPS_PORT) instead; exit 0 only on 200",
    )
    return parser


def given_options(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """The settings the command line set: variable -> (the flag as typed, its value)."""
    from launcher.config.settings import SETTINGS

    return {s.env: getattr(args, s.env) for s in SETTINGS if getattr(args, s.env, None) is not None}


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
    from launcher.config.resolve import FLAGS_ENV, command_line
    from launcher.launch import command

    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] not in (*COMMANDS, "-h", "--help", "--version"):
        words.insert(0, "run")  # `asgi-launcher main:app --port 8000` is `run main:app --port 8000`
    args = build_parser(None if words[0] in ("-h", "--help") else words[0]).parse_args(words)
    given = given_options(args)
    if given:
        # Every process of the launcher that resolves the environment sees them (the reload
        # mode's servers, a config file that resolves it itself): launcher.config.resolve.
        os.environ[FLAGS_ENV] = json.dumps({**command_line(os.environ), **given})
    # The commands that only look resolve the environment as the user wrote it (so `config`
    # shows `default (empty env:NAME)`); the process itself, which `run` turns into the server,
    # goes on without the empty settings.
    args.environ = dict(os.environ)
    forget_empty_settings(os.environ)
    return command(lambda: int(args.func(args)))


def entry() -> None:
    try:
        sys.exit(main())
    except BrokenPipeError:  # `asgi-launcher config | head`: the reader left, as a shell tool it ends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
