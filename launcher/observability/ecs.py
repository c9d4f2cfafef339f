"""Elastic Common Schema values both JSON writers share: the access lines and ``logging``'s."""

from __future__ import annotations

import time


def iso_time(wall: float) -> str:
    """``2026-12-01T20:16:45.123Z``, as the access lines write ``@timestamp``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"


def error_fields(exc: BaseException, stack_trace: str) -> dict[str, str]:
    """The ECS fields of an exception: its type, its message and the whole traceback."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {"error.type": name, "error.message": str(exc), "error.stack_trace": stack_trace.rstrip("\n")}
