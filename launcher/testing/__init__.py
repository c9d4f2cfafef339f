"""Conformance kit for backend plugins (see docs/plugins.md)."""

#: The backends this repository ships (``SERVER_BACKEND`` names): every test matrix that runs
#: something under each backend takes its list from here.
BACKENDS: tuple[str, ...] = ("gunicorn", "hypercorn", "granian", "uvicorn")

#: The backend an unset ``SERVER_BACKEND`` selects (``tests/core`` checks that it still is): what
#: does not depend on the server is checked once, under it.
DEFAULT_BACKEND = "gunicorn"

__all__ = ["BACKENDS", "DEFAULT_BACKEND"]
