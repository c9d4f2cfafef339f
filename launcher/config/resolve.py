"""Environment in, one frozen ``Config`` out: pure, so every rule is testable without processes.

``resolve`` reads only the mapping it is given, plus the filesystem and cgroup files below
``root`` (a seam for tests). Nothing here starts a process, imports the app or runs prestart.

A variable set to an empty (or blank) value counts as not set, except where the empty value
means something of its own (the log targets: off); ``effective_env`` is the one place that
decides it, and also where the command line's options are laid over the environment.

Precedence, lowest first: the defaults, the environment, the backend's config file (it wins
over the environment, as in the reference image), ``GUNICORN_CMD_ARGS``, the command line's
options. An option wins over every variable of the same field (``--port`` over ``BIND``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from launcher.config.addresses import ops_host_for
from launcher.config.log_config import load_log_config
from launcher.config.model import Config, MissingApp
from launcher.config.resources import cpu_budget, memory_cap, memory_limit
from launcher.config.settings import BY_ENV, MOST_WORKERS, SETTINGS, WINNER, flag_source
from launcher.config.tracing import resolve_tracing
from launcher.errors import ConfigError

DEFAULT_BACKEND = BY_ENV["SERVER_BACKEND"].default

#: The fields that need more than their one variable's value (a lookup, a computation, several
#: variables); every other field is fed by exactly one setting, as it was given.
COMPUTED_FIELDS = frozenset(
    {"backend", "app", "app_dir", "bind", "workers", "worker_memory", "worker_class", "log_config"}
    | {"config_file", "prestart", "ops_host", "reload_dirs", "tracing"}
    | {"ssl_certfile", "ssl_keyfile", "ssl_ca_certs"}
)
PLAIN_FIELDS = frozenset(s.feeds for s in SETTINGS) - COMPUTED_FIELDS


class ServerDefaults(Protocol):
    """What resolving needs to know of the selected server (``launcher.Backend`` declares it)."""

    @property
    def config_file_env(self) -> str | None: ...
    @property
    def config_file_name(self) -> str | None: ...
    @property
    def default_worker_class(self) -> str: ...
    @property
    def unsupported(self) -> frozenset[str]: ...


#: Where each shown tracing setting comes from (``Tracing.shown``).
TRACING_SOURCES = {
    "exporters": "OTEL_TRACES_EXPORTER",
    "protocol": "OTEL_EXPORTER_OTLP_PROTOCOL",
    "endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "headers": "OTEL_EXPORTER_OTLP_HEADERS",
    "sampler": "OTEL_TRACES_SAMPLER",
    "sampler_arg": "OTEL_TRACES_SAMPLER_ARG",
    "propagators": "OTEL_PROPAGATORS",
    "service_name": "OTEL_SERVICE_NAME",
    "resource_attributes": "OTEL_RESOURCE_ATTRIBUTES",
}
#: The command line's options, as JSON ``{VARIABLE: [FLAG, VALUE]}``: ``launcher.cli`` sets it,
#: so that every process of the launcher that resolves the environment (the reload mode's
#: servers, a config file such as the image's /gunicorn_conf.py) sees the same options.
FLAGS_ENV = "ASGI_LAUNCHER_FLAGS"


def command_line(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """The options given on the command line: variable -> (the flag, its value)."""
    try:
        given = json.loads(env.get(FLAGS_ENV) or "{}")
    except ValueError:
        return {}
    if not isinstance(given, dict):
        return {}
    return {
        name: (pair[0], pair[1])
        for name, pair in given.items()
        if name in BY_ENV
        and isinstance(pair, list)
        and len(pair) == 2
        and all(isinstance(p, str) for p in pair)
    }


def raw_value(env: Mapping[str, str], name: str) -> str:
    """``name``'s value as given, the command line's option first, unparsed ("" if neither): for
    what must be read before the configuration is resolved (LOG_FORMAT for the first lines)."""
    given = command_line(env).get(name)
    return given[1] if given is not None else env.get(name, "")


def effective_env(env: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The variables that count as set, and the names of those left out for being empty.

    This is the one rule for empty values: a variable whose value is empty or only whitespace
    counts as not set (its default applies, exactly as if it were absent), except a setting
    whose kind gives the empty value a meaning (``ACCESS_LOG``/``ERROR_LOG``: logging off).

    The command line's options (``command_line``) are laid over the environment: each sets its
    variable, and an environment variable that would win over it (``BIND`` over ``--port``) no
    longer counts.
    """
    kept: dict[str, str] = {}
    blank: list[str] = []
    for name, value in env.items():
        setting = BY_ENV.get(name)
        if value.strip() or (setting is not None and setting.empty_is_value):
            kept[name] = value
        else:
            blank.append(name)
    given = command_line(env)
    for name, (_, value) in given.items():
        kept[name] = value
        winner = WINNER[BY_ENV[name].feeds].env
        if winner not in given:
            kept.pop(winner, None)
    return kept, tuple(n for n in blank if n not in given)


def parse_given(name: str, env: Mapping[str, str], given: Mapping[str, tuple[str, str]]) -> Any:
    """The value of setting ``name`` in ``env`` (an ``effective_env``), its error naming the
    flag if it came from the command line (``given``)."""
    return BY_ENV[name].parse(env[name], given[name][0] if name in given else None)


def backend_name(env: Mapping[str, str]) -> str:
    """``SERVER_BACKEND``, parsed on its own because it decides which plugin resolves the rest."""
    kept = effective_env(env)[0]
    if "SERVER_BACKEND" not in kept:
        return str(DEFAULT_BACKEND)
    return str(parse_given("SERVER_BACKEND", kept, command_line(env)))


def _is_dir(path: Path) -> bool:
    """Like Path.is_dir, but a directory we may not look into counts as absent, not a traceback."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _existing_file(variable: str, raw: str, what: str) -> str:
    path = Path(raw)
    if _is_dir(path):
        raise ConfigError.bad_value(variable, raw, f"{what}, but it is a directory")
    if not _is_file(path):
        raise ConfigError.bad_value(variable, raw, f"{what}, but there is no such file (or no access to it)")
    if not os.access(path, os.R_OK):
        raise ConfigError.bad_value(variable, raw, f"{what}, but it is not readable")
    return raw


def _log_file(variable: str, value: str | None) -> None:
    """Refuse a log target the server could not open for writing, before anything starts.

    Otherwise each server finds out its own way (a traceback in the master, or workers that
    cannot boot). Nothing the user can see is created, truncated or written.
    """
    if value is None or value == "-":
        return
    path = Path(value)
    if _is_dir(path):
        raise ConfigError.bad_value(variable, value, "- or a file path, but it is a directory")
    if not _is_dir(path.parent):
        raise ConfigError.bad_value(
            variable, value, f"- or a file path, but {str(path.parent)!r} does not exist"
        )
    problem = _unwritable(path)
    if problem:
        raise ConfigError.bad_value(variable, value, f"- or a file path this user can write, but {problem}")


def _unwritable(path: Path) -> str | None:
    """Why the server could not append to ``path`` (None: it can), decided without creating it.

    A file that does not exist yet needs a directory where one can really be created
    (``_cannot_create_in``). An existing regular file must pass ``os.access`` and then be opened
    for append, without ``O_CREAT``, and take a zero-byte write: root passes ``os.access`` for
    every file, even ``/proc/version``, which can be opened but accepts no write at all (a
    zero-byte write changes nothing in a real file). Other existing files (``/dev/stdout``, a
    FIFO) are only asked ``os.access``: opening a FIFO with no reader would block.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        why = _cannot_create_in(path.parent)
        return f"no file can be created in {str(path.parent)!r} ({why})" if why else None
    except OSError as exc:
        return f"it cannot be looked at ({exc.strerror})"
    if not os.access(path, os.W_OK):
        return "it is not writable"
    if not stat.S_ISREG(mode):
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            os.write(fd, b"")
        finally:
            os.close(fd)
    except OSError as exc:
        reason = "it accepts no writes" if exc.errno == errno.EINVAL else exc.strerror
        return f"it cannot be written ({reason})"
    return None


def _cannot_create_in(directory: Path) -> str | None:
    """Why no file can be created in ``directory`` (None: one can), found by creating one nobody
    sees: an unnamed ``O_TMPFILE`` file, or, on filesystems without those (procfs, sysfs, some
    overlays), a uniquely named one removed at once.

    ``os.access`` is not enough: root passes it for ``/proc`` and ``/sys``, where nothing can be
    created, and a directory may be writable by mode on a filesystem that is full or refuses.
    """
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return exc.strerror or str(exc)
    else:
        os.close(fd)
        return None
    probe = directory / f".asgi-launcher-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


#: ``sources["workers"]`` for each bound ``worker_bound`` can name: what decided the count.
WORKER_BOUNDS = {
    "cpus": "computed (CPU formula)",
    "memory": "computed (memory limit)",
    "max_workers": "computed (MAX_WORKERS)",
    "web_concurrency": "env:WEB_CONCURRENCY",
}


def worker_bound(
    cpus: int,
    workers_per_core: float,
    max_workers: int | None,
    web_concurrency: int | None,
    memory_limit: int | None = None,
    worker_memory: int = 0,
) -> tuple[int, str]:
    """The worker count and the bound that decided it (a key of ``WORKER_BOUNDS``).

    WEB_CONCURRENCY, else ``min(max(int(per_core * cpus), 2), memory cap)`` capped by
    MAX_WORKERS, where the memory cap is ``max(1, (memory_limit - reserve) // worker_memory)``
    (``launcher.memory.memory_cap``). Without a memory limit, or with ``worker_memory`` 0, that
    is exactly the reference's formula.
    """
    if web_concurrency is not None:
        return web_concurrency, "web_concurrency"
    workers, bound = max(int(workers_per_core * cpus), 2), "cpus"
    cap = memory_cap(memory_limit, worker_memory)
    if cap is not None and cap < workers:
        workers, bound = cap, "memory"
    if max_workers is not None and max_workers < workers:
        workers, bound = max_workers, "max_workers"
    return workers, bound


def _lookup_config_file(app_dir: Path, name: str, root: Path) -> str | None:
    for candidate in (app_dir / name, app_dir / "app" / name, root / name):
        if _is_file(candidate):
            return str(candidate)
    return None


def _empty_sources(blank: Iterable[str], env: Mapping[str, str], feeds: Mapping[str, str]) -> dict[str, str]:
    """``default (empty env:NAME)`` for each field whose variables were all empty or absent.

    ``feeds`` maps variables to the field they decide, the most specific variable of a field
    last (``BIND`` after ``HOST`` and ``PORT``), so that is the one named. A field that another
    of its variables did set keeps its usual source (``computed`` for example).
    """
    empty = set(blank)
    found: dict[str, str] = {}
    for variable, key in feeds.items():
        if variable in empty and not any(feeds[v] == key for v in env if v in feeds):
            found[key] = f"default (empty env:{variable})"
    return found


def _locate_app(
    env: Mapping[str, str], values: Mapping[str, Any], sources: dict[str, str], root: Path, cwd: Path | None
) -> tuple[str, Path, MissingApp | None]:
    """APP_DIR (the reference's /app, or the current directory) and the app in it (APP_MODULE
    wins over MODULE_NAME + VARIABLE_NAME); ``sources`` gets theirs."""
    if "APP_DIR" in env:
        app_dir = Path(values["APP_DIR"])
        named = sources.get("APP_DIR", "APP_DIR").rpartition(" ")[2].removeprefix("env:")  # or its flag
        if not _is_dir(app_dir):
            raise ConfigError.bad_value(named, env["APP_DIR"], "an existing directory")
        if not os.access(app_dir, os.R_OK | os.X_OK):
            raise ConfigError.bad_value(named, env["APP_DIR"], "a directory this user can read")
        sources["app_dir"] = sources.get("APP_DIR", "env:APP_DIR")
    else:
        app_dir = root / "app" if _is_dir(root / "app") else (cwd or Path.cwd())
        sources["app_dir"] = "computed"
    app_dir = app_dir.absolute()
    missing: MissingApp | None = None
    if "APP_MODULE" in env:
        sources["app"] = sources.get("APP_MODULE", "env:APP_MODULE")
        return values["APP_MODULE"], app_dir, None
    module = values["MODULE_NAME"]
    looked_for = (app_dir / "app" / "main.py", app_dir / "main.py")
    if module is None:
        if _is_file(looked_for[0]):
            module = "app.main"
        elif _is_file(looked_for[1]):
            module = "main"
        else:
            missing = MissingApp(
                f"no app found: looked for {looked_for[0]} and {looked_for[1]} "
                f"(APP_DIR={str(app_dir)!r}); name it as MODULE:VARIABLE, such as "
                "'asgi-launcher main:app' or APP_MODULE=main:app, or set APP_DIR to the directory "
                "holding it",
                tuple(map(str, looked_for)),
            )
    sources["app"] = "computed"
    return (f"{module}:{values['VARIABLE_NAME']}" if module else ""), app_dir, missing


def locate_app(env: Mapping[str, str], *, root: Path = Path("/")) -> tuple[str, str, str]:
    """The app (``module:variable``), its directory and the app's source, as ``resolve`` finds
    them, from only the variables that name them: what can be imported while the rest is
    resolved. Raises ``ConfigError`` as ``resolve`` would."""
    given = command_line(env)
    env = effective_env(env)[0]
    names = ("APP_DIR", "APP_MODULE", "MODULE_NAME", "VARIABLE_NAME")
    values = {n: parse_given(n, env, given) if n in env else BY_ENV[n].default for n in names}
    sources = {n: flag_source(given[n][0]) for n in names if n in given}
    app, app_dir, missing = _locate_app(env, values, sources, root, None)
    if missing is not None:
        raise missing
    return app, str(app_dir), sources["app"]


def resolve(
    env: Mapping[str, str],
    backend: ServerDefaults,
    *,
    root: Path = Path("/"),
    cwd: Path | None = None,
    affinity: int | None = None,
    selected: str | None = None,
) -> Config:
    """Resolve the env contract into a ``Config`` (before the backend's own config file).

    Raises ``ConfigError`` for the first malformed value, and ``MissingApp`` (carrying the rest
    of the configuration) when there is no app where the defaults look. ``root`` prefixes the
    fixed paths (``/app``, ``/gunicorn_conf.py``, cgroup files) and ``affinity`` stands in for
    the host's CPU count, so tests can describe any machine. ``selected`` is the entry-point
    name ``SERVER_BACKEND`` matched (it matches case-insensitively); by default, the value as
    given.
    """
    given = command_line(env)
    env, blank = effective_env(env)
    sources: dict[str, str] = {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env in env:
            values[setting.env] = parse_given(setting.env, env, given)
            sources[setting.env] = (
                flag_source(given[setting.env][0]) if setting.env in given else f"env:{setting.env}"
            )
        else:
            values[setting.env] = setting.default
            sources[setting.env] = "default"

    def named(variable: str) -> str:
        """The variable, or the option it was given with: what an error message names."""
        return given[variable][0] if variable in given else variable

    def direct(key: str, variable: str) -> Any:
        sources[key] = sources[variable]
        return values[variable]

    backend_ = direct("backend", "SERVER_BACKEND")
    if selected:
        backend_ = selected  # the installed entry-point name SERVER_BACKEND matched

    app, app_dir, missing = _locate_app(env, values, sources, root, cwd)

    # Workers from the CPU budget and the memory limit this process really has.
    cpus = cpu_budget(root, affinity)
    sources["cpus"] = "computed"
    limit = memory_limit(root)
    sources["memory_limit"] = "computed"
    worker_memory = direct("worker_memory", "WORKER_MEMORY")
    workers, bound = worker_bound(
        cpus,
        values["WORKERS_PER_CORE"],
        values["MAX_WORKERS"],
        values["WEB_CONCURRENCY"],
        limit,
        worker_memory,
    )
    sources["workers"] = sources["WEB_CONCURRENCY"] if bound == "web_concurrency" else WORKER_BOUNDS[bound]
    if workers > MOST_WORKERS:  # (WEB_CONCURRENCY's own kind holds it to the same bound)
        raise ConfigError.bad_value(
            "WORKERS_PER_CORE",
            env.get("WORKERS_PER_CORE", "1"),
            f"a number that gives at most {MOST_WORKERS} workers on {cpus} CPUs (it gives {workers}); "
            "lower it, or set MAX_WORKERS",
        )

    # BIND wins over HOST + PORT.
    if "BIND" in env:
        bind = direct("bind", "BIND")
    else:
        host = values["HOST"]
        host = f"[{host}]" if ":" in host else host
        bind = (f"{host}:{values['PORT']}",)
        flags = [given[n][0] for n in ("HOST", "PORT") if n in given]
        if flags:
            sources["bind"] = f"flag {' '.join(flags)}"
        else:
            sources["bind"] = "computed" if ("HOST" in env or "PORT" in env) else "default"

    _log_file(named("ACCESS_LOG"), values["ACCESS_LOG"])
    _log_file(named("ERROR_LOG"), values["ERROR_LOG"])

    # LOG_CONFIG: read and checked now (`launcher.logs.check_log_config` tries it before serving).
    log_config: str | None = None
    if "LOG_CONFIG" in env:
        log_config = str(
            Path(
                _existing_file(named("LOG_CONFIG"), values["LOG_CONFIG"], "a logging config file")
            ).absolute()
        )
        load_log_config(log_config)
    sources["log_config"] = sources["LOG_CONFIG"]

    # The prestart script is optional where it is looked for by default, required where named.
    if "PRE_START_PATH" in env:
        prestart: str | None = _existing_file(
            named("PRE_START_PATH"), values["PRE_START_PATH"], "a prestart script"
        )
        sources["prestart"] = sources["PRE_START_PATH"]
    else:
        default_prestart = app_dir / "prestart.sh"
        prestart = str(default_prestart) if _is_file(default_prestart) else None
        sources["prestart"] = "default"

    config_file: str | None = None
    sources["config_file"] = "default"
    file_var, file_name = backend.config_file_env, backend.config_file_name
    if file_var and file_var in env:
        raw = env[file_var].strip()
        # Servers may accept non-path forms (e.g. Hypercorn's python:module); the backend checks those.
        is_scheme = raw.split(":", 1)[0] in ("python", "file") and ":" in raw
        config_file = raw if is_scheme else _existing_file(file_var, raw, "a config file")
        sources["config_file"] = f"env:{file_var}"
    elif file_name:
        config_file = _lookup_config_file(app_dir, file_name, root)
        if config_file:
            sources["config_file"] = "computed"

    # OPS_HOST: from the app's own address when unset (launcher.config.addresses.ops_host_for).
    if "OPS_HOST" in env:
        ops_host = direct("ops_host", "OPS_HOST")
    else:
        ops_host = ops_host_for(bind)
        sources["ops_host"] = "default" if sources["bind"] == "default" else "computed"

    if values["OPS_PORT"] is not None:
        clash = [
            b for b in bind if not b.startswith("unix:") and b.rpartition(":")[2] == str(values["OPS_PORT"])
        ]
        if clash:
            raise ConfigError.bad_value(
                named("OPS_PORT"), str(values["OPS_PORT"]), f"a port other than the app's ({clash[0]})"
            )

    reload_dirs = tuple(str((app_dir / d).absolute()) for d in values["RELOAD_DIRS"])
    sources["reload_dirs"] = sources["RELOAD_DIRS"]
    for raw_dir, absolute in zip(values["RELOAD_DIRS"], reload_dirs, strict=True):
        if not _is_dir(Path(absolute)):
            raise ConfigError.bad_value(
                named("RELOAD_DIRS"), env["RELOAD_DIRS"], f"existing directories ({raw_dir!r} is not one)"
            )

    def tls_file(key: str, variable: str) -> str | None:
        sources[key] = sources[variable]
        value = values[variable]
        return None if value is None else str(Path(value).absolute())  # checked by launcher.config.tls

    worker_class = values["WORKER_CLASS"] or backend.default_worker_class
    sources["worker_class"] = sources["WORKER_CLASS"]

    # Every field that one variable alone decides, as it was given (or its default).
    plain = {s.feeds: direct(s.feeds, s.env) for s in SETTINGS if s.feeds in PLAIN_FIELDS}
    tracing = resolve_tracing(values, env)
    for key, variable in TRACING_SOURCES.items():
        sources[f"tracing.{key}"] = sources[variable]
    turned = [
        v for v in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT") if v in env
    ]
    sources["tracing.enabled"] = sources["tracing.why"] = ", ".join(f"env:{v}" for v in turned) or "default"
    if "OTEL_SERVICE_NAME" not in env and "service.name" in dict(values["OTEL_RESOURCE_ATTRIBUTES"]):
        sources["tracing.service_name"] = "env:OTEL_RESOURCE_ATTRIBUTES"

    config = Config(
        **plain,
        backend=backend_,
        app=app,
        app_dir=str(app_dir),
        bind=tuple(bind),
        workers=workers,
        cpus=cpus,
        memory_limit=limit,
        worker_memory=worker_memory,
        worker_class=worker_class,
        log_config=log_config,
        config_file=config_file,
        prestart=prestart,
        ops_host=ops_host,
        reload_dirs=reload_dirs,
        tracing=tracing,
        ssl_certfile=tls_file("ssl_certfile", "SSL_CERTFILE"),
        ssl_keyfile=tls_file("ssl_keyfile", "SSL_KEYFILE"),
        ssl_ca_certs=tls_file("ssl_ca_certs", "SSL_CA_CERTS"),
        unsupported=tuple(sorted(backend.unsupported)),
    )
    feeds = {s.env: s.feeds for s in SETTINGS}
    if file_var:
        feeds[file_var] = "config_file"
    sources.update(_empty_sources(blank, env, feeds))
    keys = {f.name for f in dataclasses.fields(Config)}
    sources = {k: v for k, v in sources.items() if k in keys or k.startswith("tracing.")}
    config = dataclasses.replace(config, sources=sources)
    if missing is not None:
        raise missing.with_config(config)
    return config
