"""Log files, as every process of the launcher handles them.

``SIGUSR1`` means "reopen your log files" under every backend (what logrotate's ``postrotate``
sends): each master and each worker reopens every ``logging.FileHandler`` it has, whichever
server's logger it belongs to (Gunicorn's, Hypercorn's, Granian's or the launcher's own), so the
next line goes to a new file at the configured path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
