"""LOG_FORMAT, LOG_LEVEL and LOG_CONFIG in one process: the JSON formatter, the launcher's console
lines, the set-up every master and worker runs, and the checks of a LOG_CONFIG file."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import Backend
from launcher.config.log_config import load_log_config
from launcher.config.model import Config
from launcher.config.resolve import resolve
from launcher.errors import ConfigError
from launcher.observability.logs import (
    _MARK,
    adopt,
    check_log_config,
    configure,
    event,
    json_formatter,
    launcher_line,
)

KEYS = ["@timestamp", "log.level", "log.logger", "message", "process.pid"]


def record(
    name: str = "app.main", msg: str = "hello %s", args: tuple[object, ...] = ("you",), **extra: object
) -> logging.LogRecord:
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_record_is_one_object_with_the_access_lines_keys_then_its_extra_fields() -> None:
    line = json_formatter().format(record(user_id=7, when=dataclasses))
    data = json.loads(line)
    assert list(data)[:5] == KEYS
    assert (data["log.level"], data["log.logger"], data["message"], data["user_id"]) == (
        "info",
        "app.main",
        "hello you",
        7,
    )
    assert data["@timestamp"].endswith("Z") and "T" in data["@timestamp"]
    assert isinstance(data["when"], str)  # not JSON by itself: its str, never a failure
    assert "\n" not in line


def test_an_exception_is_one_object_with_error_fields() -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        import sys

        rec = logging.LogRecord(
            "uvicorn.error",
            logging.ERROR,
            __file__,
            1,
            "Exception in ASGI application\n",
            None,
            sys.exc_info(),
        )
    data = json.loads(json_formatter().format(rec))
    assert data["message"] == "Exception in ASGI application"
    assert (data["error.type"], data["error.message"]) == ("ValueError", "bad thing")
    assert data["error.stack_trace"].startswith("Traceback (most recent call last)")
    assert "exc_info" not in data


def test_a_traceback_inside_the_message_goes_to_the_error_fields() -> None:
    # Granian's Rust side logs the traceback as part of the message.
    message = 'Application callable raised an exception\nTraceback (most recent call last):\n  File "x", line 1\nRuntimeError: boom'
    data = json.loads(json_formatter().format(record("_granian.utils", message, ())))
    assert data["message"] == "Application callable raised an exception"
    assert (data["error.type"], data["error.message"]) == ("RuntimeError", "boom")
    assert data["error.stack_trace"].endswith("RuntimeError: boom")


def test_uvicorns_colour_copy_of_the_message_is_left_out() -> None:
    data = json.loads(json_formatter().format(record(color_message="\x1b[1mhello\x1b[0m")))
    assert "color_message" not in data


def test_launcher_lines_in_text_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert launcher_line("serving") == "asgi-launcher: serving"
    assert (
        launcher_line("LOG_LEVEL='x' is invalid", "error") == "asgi-launcher: error: LOG_LEVEL='x' is invalid"
    )
    monkeypatch.setenv("LOG_FORMAT", " JSON ")
    data = json.loads(launcher_line("careful", "warning"))
    assert list(data) == KEYS
    assert (data["log.level"], data["log.logger"], data["message"]) == ("warning", "asgi_launcher", "careful")


def test_event_carries_an_exception_in_one_line() -> None:
    try:
        raise RuntimeError("at import")
    except RuntimeError as exc:
        line = event("the app raised", level="error", exc=exc)
    data = json.loads(line)
    assert (
        "\n" not in line and data["error.type"] == "RuntimeError" and "at import" in data["error.stack_trace"]
    )


# -- configure -------------------------------------------------------------------------------


@pytest.fixture
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.lastResort)
    server = logging.getLogger("kit.server")
    yield
    root.handlers, root.level = saved[0], saved[1]
    logging.lastResort = saved[2]
    server.handlers, server.propagate = [], True
    logging.captureWarnings(False)
    import sys
    import threading

    sys.excepthook = sys.__excepthook__
    threading.excepthook = threading.__excepthook__


def config(tmp_path: Path, **env: str) -> Config:
    (tmp_path / "main.py").write_text("app = None\n")
    return resolve({"APP_DIR": str(tmp_path), **env}, Backend, affinity=2)


def test_configure_gives_the_root_logger_a_handler_at_log_level(tmp_path: Path, clean_logging: None) -> None:
    root = logging.getLogger()
    root.handlers = []
    configure(config(tmp_path, LOG_LEVEL="warning", ERROR_LOG=str(tmp_path / "error.log")))
    assert root.level == logging.WARNING
    assert len(root.handlers) == 1 and hasattr(root.handlers[0], _MARK)
    logging.getLogger("app").info("hidden")
    logging.getLogger("app").warning("shown")
    root.handlers[0].flush()
    text = (tmp_path / "error.log").read_text()
    assert "shown" in text and "hidden" not in text and "[WARNING] app: shown" in text
    handler = root.handlers[0]
    configure(config(tmp_path, LOG_LEVEL="warning", ERROR_LOG=str(tmp_path / "error.log")))
    assert root.handlers == [handler]  # the same target: the same handler (a worker after fork)


def test_configure_leaves_a_root_logger_someone_else_set_up(tmp_path: Path, clean_logging: None) -> None:
    root = logging.getLogger()
    theirs = logging.StreamHandler()
    root.handlers = [theirs]
    configure(config(tmp_path))
    assert root.handlers == [theirs]


def test_empty_error_log_silences_the_root_logger(tmp_path: Path, clean_logging: None) -> None:
    logging.getLogger().handlers = []
    configure(config(tmp_path, ERROR_LOG=""))
    assert [type(h) for h in logging.getLogger().handlers] == [logging.NullHandler]


def test_a_servers_logger_keeps_its_handlers_and_turns_json(tmp_path: Path, clean_logging: None) -> None:
    server = logging.getLogger("kit.server")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    server.handlers = [handler]
    adopt(server, config(tmp_path))
    assert server.propagate is False and type(handler.formatter) is logging.Formatter
    adopt(server, config(tmp_path, LOG_FORMAT="json"))
    assert type(handler.formatter).__name__ == "JsonFormatter"


def test_log_config_is_applied_last_and_wins(tmp_path: Path, clean_logging: None) -> None:
    path = tmp_path / "logging.toml"
    path.write_text(
        'version = 1\n[formatters.mark]\nformat = "MARK %(message)s"\n'
        '[handlers.file]\nclass = "logging.FileHandler"\nformatter = "mark"\n'
        f'filename = "{tmp_path / "marked.log"}"\n[root]\nlevel = "DEBUG"\nhandlers = ["file"]\n'
    )
    server = logging.getLogger("kit.server")
    server.handlers = [logging.NullHandler()]
    configure(config(tmp_path, LOG_FORMAT="json", LOG_CONFIG=str(path)))
    logging.getLogger("app").debug("configured")
    logging.getLogger().handlers[0].flush()
    assert (tmp_path / "marked.log").read_text() == "MARK configured\n"
    assert server.handlers and not server.disabled  # disable_existing_loggers: false by default


# -- LOG_CONFIG checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("log.json", "{not json", "Expecting"),
        ("log.toml", "version = ", "Invalid value"),
        ("log.yaml", "version: 1", "must end in .json or .toml"),
        ("log.json", "[1]", "not a mapping"),
        ("log.json", '{"version": 2}', "version must be 1"),
        ("log.json", '{"version": 1, "handler": {}}', "unknown key 'handler'"),
        ("log.json", '{"version": 1, "loggers": []}', "loggers must be a mapping"),
    ],
)
def test_a_bad_log_config_is_one_line_naming_the_file(
    tmp_path: Path, name: str, text: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_log_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"LOG_CONFIG={str(path)!r} is invalid") and says in message, message
    assert "\n" not in message


def test_resolve_refuses_a_missing_or_bad_log_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LOG_CONFIG"):
        config(tmp_path, LOG_CONFIG=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"version": 1, "root": 3}')
    with pytest.raises(ConfigError, match="root must be a mapping"):
        config(tmp_path, LOG_CONFIG=str(tmp_path / "bad.json"))
    (tmp_path / "ok.json").write_text('{"version": 1}')
    resolved = config(tmp_path, LOG_CONFIG=str(tmp_path / "ok.json"))
    assert resolved.log_config == str(tmp_path / "ok.json")
    assert (resolved.sources["log_config"], resolved.sources["log_format"]) == ("env:LOG_CONFIG", "default")


def test_check_log_config_tries_it_in_a_child_and_leaves_this_process_alone(
    tmp_path: Path, clean_logging: None
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"version": 1, "handlers": {"h": {"class": "nowhere.Handler"}}, "root": {"handlers": ["h"]}}
        )
    )
    with pytest.raises(ConfigError) as caught:
        check_log_config(str(bad))
    assert "Unable to configure handler 'h'" in str(caught.value) and str(bad) in str(caught.value)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"version": 1, "root": {"level": "CRITICAL", "handlers": []}}))
    before = (logging.getLogger().level, logging.getLogger().handlers[:])
    check_log_config(str(good))
    assert (logging.getLogger().level, logging.getLogger().handlers) == before


def test_a_log_config_broken_since_start_up_is_one_line_and_the_process_goes_on(
    tmp_path: Path, clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logging.json"
    path.write_text('{"version": 1}')
    resolved = config(tmp_path, LOG_CONFIG=str(path))
    path.write_text('{"version": 1, "root": {"handlers": ["missing"]}}')  # edited while serving
    logging.getLogger().handlers = []
    configure(resolved)
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and err.startswith("asgi-launcher: error: LOG_CONFIG=") and "not applied" in err
    )
    assert hasattr(logging.getLogger().handlers[0], _MARK)  # the launcher's own set-up stays
