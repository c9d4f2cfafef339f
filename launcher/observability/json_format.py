"""``LOG_FORMAT=json`` for ``logging`` records: python-json-logger, with the access lines' keys.

Imported only when a JSON formatter is first needed (python-json-logger costs ~35 ms to import,
which ``LOG_FORMAT=text`` never pays). ``JsonFormatter`` is usable in a ``LOG_CONFIG`` file too::

    {"formatters": {"json": {"()": "launcher.json_format.JsonFormatter"}}}
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _PythonJsonFormatter

from launcher.observability.ecs import error_fields, iso_time

#: Record attributes that are not the caller's ``extra`` fields: the standard ones, Python 3.12's
#: ``taskName``, and Uvicorn's ``color_message`` (the same message with ANSI colours).
SKIPPED = (*RESERVED_ATTRS, "taskName", "color_message")


_TRACEBACK = "\nTraceback (most recent call last):\n"


def _parsed_error(trace: str) -> dict[str, str]:
    """``error.*`` from a printed traceback: its last line is ``Type: message``."""
    last = next((line for line in reversed(trace.splitlines()) if line.strip()), "")
    kind, _, message = last.partition(": ")
    return {"error.type": kind.strip(), "error.message": message, "error.stack_trace": trace.rstrip("\n")}


def _compact(data: Any, **kwargs: Any) -> str:
    return json.dumps(data, separators=(",", ":"), **kwargs)


class JsonFormatter(_PythonJsonFormatter):
    """One JSON object a record, keyed by Elastic Common Schema names as the access lines are:
    ``@timestamp``, ``log.level``, ``log.logger``, ``message``, ``process.pid``, then the
    record's ``extra`` fields as given; an exception is ``error.type``, ``error.message`` and
    ``error.stack_trace`` (the whole traceback, in that one field)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("reserved_attrs", SKIPPED)
        kwargs.setdefault("json_serializer", _compact)  # as the access lines are written
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        ours: dict[str, Any] = {
            "@timestamp": iso_time(record.created),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.message.rstrip("\n"),  # Uvicorn ends some with a newline
            "process.pid": record.process,
        }
        stack = message_dict.pop("exc_info", None)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            trace = stack if isinstance(stack, str) and stack else "".join(traceback.format_exception(exc))
            ours.update(error_fields(exc, trace))
        elif stack:
            ours["error.stack_trace"] = stack
        elif _TRACEBACK in ours["message"]:
            # A server that puts the traceback in the message (Granian's Rust side): still one
            # object, the traceback in its field.
            text, _, trace = ours["message"].partition(_TRACEBACK)
            ours["message"] = text.rstrip("\n") or "exception"
            ours.update(_parsed_error(_TRACEBACK.lstrip("\n") + trace))
        log_data.update(ours)  # first, in this order
        super().add_fields(log_data, record, message_dict)  # fields of a format string, extra fields
        log_data.update(ours)  # and ours win over a format string's
