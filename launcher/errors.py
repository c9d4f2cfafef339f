"""The one exception type a user's mistake becomes.

Every problem the user can fix by changing the environment, a config file or their app's
location is a ``ConfigError``: the CLI prints its message as one line and exits with status 2.
Anything else is a bug (ours or the app's) and keeps its traceback.
"""

from __future__ import annotations

EXIT_CONFIG = 2
#: The exit status when workers cannot boot or keep dying (Gunicorn's "worker failed to boot").
EXIT_WORKERS_FAILING = 3


class ConfigError(Exception):
    """A value the user supplied (or left out) that cannot work.

    The message is complete on its own: it names the variable or file, the value, and what is
    expected, so the CLI can print it as the only line of output.
    """

    def __init__(self, message: str) -> None:
        # One line, whatever a value quoted in it holds (a CR from the environment would
        # otherwise start a second line, or rewrite the first on a terminal).
        if not message.isprintable():
            message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        super().__init__(message)

    @classmethod
    def bad_value(cls, variable: str, value: object, expected: str) -> ConfigError:
        return cls(f"{variable}={str(value)!r} is invalid: expected {expected}")


class BadPart(ValueError):
    """Raised by a setting's converter to say which part of its value is wrong (the message
    finishes the ``ConfigError`` line)."""
