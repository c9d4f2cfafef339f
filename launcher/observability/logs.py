"""Log files, as every process of the launcher handles them.

``SIGUSR1`` means "reopen your log files" under every backend (what logrotate's ``postrotate``
sends): each master and each worker reopens every ``logging.FileHandler`` it has, whichever
server's logger it belongs to (Gunicorn's, Hypercorn's, Granian's or the launcher's own), so the
next line goes to a new file at the configured path.

It is also where every process of the launcher sets up ``logging`` (``configure``: each master
once its server has set up its own loggers, and each worker at its start, from the worker
pipeline), so ``LOG_FORMAT``, ``LOG_LEVEL`` and ``LOG_CONFIG`` mean the same under every
backend:

* the root logger (the app's ``logging.getLogger(__name__)`` records, and any library's) goes
  where ``ERROR_LOG`` says, at ``LOG_LEVEL``, unless something else (a server's own log config,
  the app) has already given it handlers;
* the server's own loggers (``ServerTraits.loggers``) keep their handlers, which do not also pass
  records on to the root logger, and with ``LOG_FORMAT=json`` format as JSON;
* ``LOG_CONFIG`` (a ``logging.config.dictConfig`` file) is applied last: what it configures wins.

With ``LOG_FORMAT=json`` every line is one JSON object with Elastic Common Schema names, the
access lines' keys: ``@timestamp``, ``log.level``, ``log.logger``, ``message``, ``process.pid``,
the record's ``extra`` fields, and for an exception ``error.type``, ``error.message`` and
``error.stack_trace``. The launcher's own console lines (``launcher_line``) follow it too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from launcher.config.log_config import bad_log_config, load_log_config
from launcher.errors import ConfigError
from launcher.observability.ecs import error_fields, iso_time

if TYPE_CHECKING:
    from launcher.config.model import Config

#: What else reopens its files on SIGUSR1 (the access log's writer).
_REOPEN_HOOKS: list[Callable[[], None]] = []


def on_reopen(hook: Callable[[], None]) -> None:
    """Call ``hook`` whenever log files are reopened in this process."""
    _REOPEN_HOOKS.append(hook)


def _file_handlers() -> list[logging.FileHandler]:
    found: dict[int, logging.FileHandler] = {}
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                found[id(handler)] = handler
    return list(found.values())


def reopen_files() -> int:
    """Reopen every file handler's stream at its path; return how many were reopened."""
    handlers = _file_handlers()
    for handler in handlers:
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.close()
            handler.stream = handler._open()
        finally:
            handler.release()
    for hook in _REOPEN_HOOKS:
        hook()
    return len(handlers) + len(_REOPEN_HOOKS)


# -- formats -------------------------------------------------------------------------------

#: The logger name of the launcher's own lines (``asgi-launcher: ...``).
LAUNCHER_LOGGER = "asgi_launcher"
#: ``LOG_LEVEL`` names as ``logging`` levels.
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
#: The root logger's line with ``LOG_FORMAT=text`` (Gunicorn's layout, plus the logger's name).
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


def event(
    message: str,
    *,
    level: str = "info",
    logger: str = LAUNCHER_LOGGER,
    pid: int | None = None,
    exc: BaseException | None = None,
) -> str:
    """One JSON line with the keys of a ``logging`` record under ``LOG_FORMAT=json``, for what is
    printed outside ``logging`` (the launcher's console lines, prestart's output)."""
    data: dict[str, Any] = {
        "@timestamp": iso_time(time.time()),
        "log.level": level,
        "log.logger": logger,
        "message": message,
        "process.pid": os.getpid() if pid is None else pid,
    }
    if exc is not None:
        data.update(error_fields(exc, "".join(traceback.format_exception(exc))))
    return json.dumps(data, default=str, separators=(",", ":"))


def json_console(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``LOG_FORMAT`` (or ``--log-format``) asks for JSON lines (read leniently: even
    before it is validated)."""
    from launcher.config.resolve import raw_value

    return raw_value(os.environ if environ is None else environ, "LOG_FORMAT").strip().lower() == "json"


def launcher_line(message: str, level: str = "info", *, as_json: bool | None = None) -> str:
    """A line of the launcher's own for the console: ``asgi-launcher: [LEVEL: ]message``, or one
    JSON object with ``LOG_FORMAT=json`` (``as_json`` decides instead of the environment)."""
    if json_console() if as_json is None else as_json:
        return event(message, level=level)
    return f"asgi-launcher: {message}" if level == "info" else f"asgi-launcher: {level}: {message}"


_JSON_FORMATTER: logging.Formatter | None = None


def json_formatter() -> logging.Formatter:
    """The shared ``launcher.json_format.JsonFormatter`` (python-json-logger, imported now)."""
    global _JSON_FORMATTER
    if _JSON_FORMATTER is None:
        from launcher.observability.json_format import JsonFormatter

        _JSON_FORMATTER = JsonFormatter()
    return _JSON_FORMATTER


def is_json_formatter(formatter: logging.Formatter | None) -> bool:
    return formatter is not None and type(formatter).__module__ == "launcher.observability.json_format"


def formatter(
    config: Config, text: str = TEXT_FORMAT, datefmt: str | None = TEXT_DATE_FORMAT
) -> logging.Formatter:
    """What ``LOG_FORMAT`` asks for: JSON, or ``text`` laid out as given."""
    if config.log_format == "json":
        return json_formatter()
    return logging.Formatter(text, datefmt)


# -- set-up --------------------------------------------------------------------------------


def launcher_logger(config: Config, name: str = LAUNCHER_LOGGER) -> logging.Logger:
    """The launcher's own lines in a master: ``asgi-launcher: ...`` (with ``LOG_FORMAT=json``,
    one JSON object each) where ERROR_LOG says, at LOG_LEVEL."""
    logger = logging.getLogger(name)
    handler = _target_handler(config.error_log)
    handler.setFormatter(formatter(config, "asgi-launcher: %(message)s", None))
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(LEVELS.get(config.log_level, logging.INFO))
    return logger


def _uncaught(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    sys.stderr.write(event(f"uncaught {kind.__name__}", level="critical", exc=exc) + "\n")
    sys.stderr.flush()


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    sys.stderr.write(
        event(f"uncaught exception in thread {name}", level="critical", exc=args.exc_value) + "\n"
    )
    sys.stderr.flush()


class _LazyJson(logging.Formatter):
    """The JSON formatter, imported on the first record (most processes never need it here)."""

    def format(self, record: logging.LogRecord) -> str:
        return json_formatter().format(record)


def use_json_console() -> None:
    """``LOG_FORMAT=json`` in this process before (and besides) ``configure``: records that find
    no handler (``logging.lastResort``), warnings and uncaught exceptions are JSON lines on
    stderr, a traceback in one object."""
    if isinstance(getattr(logging.lastResort, "formatter", None), _LazyJson):
        return  # done already in this process
    last = logging.StreamHandler(sys.stderr)
    last.setLevel(logging.WARNING)
    last.setFormatter(_LazyJson())
    logging.lastResort = last
    logging.captureWarnings(True)
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread


#: Marks the root handler ``configure`` installed, with the target it writes to.
_MARK = "asgi_launcher_target"


def _target_handler(target: str | None) -> logging.Handler:
    if target is None:
        return logging.NullHandler()  # ERROR_LOG="": off (and no logging.lastResort either)
    if target == "-":
        return logging.StreamHandler(sys.stderr)
    return logging.FileHandler(target)


def _configure_root(config: Config) -> None:
    root = logging.getLogger()
    if any(not hasattr(handler, _MARK) for handler in root.handlers):
        return  # a server's own log config, or the app, set it up: theirs to keep
    key = config.error_log or ""
    current = root.handlers[0] if root.handlers else None
    if current is None or getattr(current, _MARK) != key:
        current = _target_handler(config.error_log)
        setattr(current, _MARK, key)
        root.handlers = [current]
    current.setFormatter(formatter(config))
    root.setLevel(LEVELS.get(config.log_level, logging.INFO))


def adopt(logger: logging.Logger, config: Config) -> None:
    """A server's own logger as the server set it up: its lines stay its own (not passed on to
    the root logger's handler too) and, with ``LOG_FORMAT=json``, are JSON objects."""
    if not logger.handlers:
        return  # not set up (that log is off): its records go where the root logger's go
    logger.propagate = False
    if config.log_format == "json":
        for handler in logger.handlers:
            if not is_json_formatter(handler.formatter):
                handler.setFormatter(json_formatter())


def configure(config: Config, loggers: Iterable[str] = ()) -> None:
    """Set up ``logging`` in this process (a master or a worker) from ``LOG_FORMAT``,
    ``LOG_LEVEL``, ``ERROR_LOG`` and ``LOG_CONFIG``; ``loggers`` are the server's own.

    Call it in a master once the server has set up its own loggers (again if it sets them up
    anew); each worker calls it at its start (``launcher.pipeline.build``).
    """
    if config.log_format == "json":
        use_json_console()
    for name in loggers:
        adopt(logging.getLogger(name), config)
    _configure_root(config)
    if config.log_config:
        try:
            apply_log_config(config.log_config)
        except Exception as exc:
            # Checked before anything started: the file has changed since (read afresh by every
            # process that starts, a SIGHUP's new workers too). One line, and this process
            # keeps the set-up above rather than failing to serve.
            problem = exc if isinstance(exc, ConfigError) else bad_log_config(config.log_config, _why(exc))
            sys.stderr.write(
                launcher_line(f"{problem}; not applied in process {os.getpid()}", "error") + "\n"
            )
            sys.stderr.flush()
            _configure_root(config)  # what dictConfig undid before it failed


# -- LOG_CONFIG ----------------------------------------------------------------------------


def apply_log_config(path: str) -> None:
    """``logging.config.dictConfig`` of ``path``. ``disable_existing_loggers`` defaults to false
    here: dictConfig's own default would silence the servers' loggers, created before it."""
    import logging.config

    data = load_log_config(path)
    data.setdefault("disable_existing_loggers", False)
    logging.config.dictConfig(data)


def _why(exc: BaseException) -> str:
    message = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) not in message:
        message += f": {type(cause).__name__}: {cause}"
    return message


def check_log_config(path: str) -> None:
    """Apply ``path`` once in a throwaway child process (this one's logging is untouched), so a
    handler or formatter dictConfig cannot build is one line (``ConfigError``) before anything
    starts, not a worker that cannot boot."""
    load_log_config(path)
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
        status = 0
        try:
            os.close(read_fd)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            apply_log_config(path)
        except BaseException as exc:
            status = 2
            os.write(write_fd, _why(exc).encode("utf-8", "replace"))
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, wait_status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(wait_status) != 0:
        problem = b"".join(chunks).decode("utf-8", "replace") or "dictConfig failed"
        raise bad_log_config(path, problem)
