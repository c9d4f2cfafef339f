"""The interface a server plugin implements.

The core resolves one backend-neutral ``Config`` and knows nothing about any server. A plugin
is a subclass of ``Backend`` registered under the ``asgi_launcher.backends`` entry-point group;
the launcher imports only the one ``SERVER_BACKEND`` names. Built-in plugins register exactly
as a third-party package would.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

from launcher.config.model import Config, FileSettings

ENTRY_POINT_GROUP = "asgi_launcher.backends"


class Backend(abc.ABC):
    """A server that can serve an ASGI app from a resolved ``Config``.

    Subclasses declare a few class attributes so the core can resolve settings that depend on
    the server (its config file, its default worker class) without naming it, then implement
    ``validate`` and ``run`` (and, optionally, ``load_config_file`` and ``preload``). Instances
    are created with no arguments.
    """

    #: Variable naming this server's own config file, e.g. ``"GUNICORN_CONF"``; None if it has none.
    config_file_env: ClassVar[str | None] = None
    #: File looked up, when that variable is unset, in ``$APP_DIR``, ``$APP_DIR/app``, then ``/``.
    config_file_name: ClassVar[str | None] = None
    #: ``WORKER_CLASS`` when the user sets none. Its meaning is the server's own.
    default_worker_class: ClassVar[str] = ""
    #: Config keys this server has no equivalent for. They are shown as unused, never dropped silently.
    unsupported: ClassVar[frozenset[str]] = frozenset()
    #: Further variables only this backend reads: name -> one-line meaning (for docs and `config`).
    extra_env: ClassVar[Mapping[str, str]] = {}

    @abc.abstractmethod
    def validate(self, config: Config) -> None:
        """Reject settings this server cannot honour by raising ``launcher.ConfigError``.

        Called after ``load_config_file`` results are merged, before anything starts.
        """

    def load_config_file(self, config: Config, env: Mapping[str, str]) -> FileSettings:
        """Read ``config.config_file`` (and any server-specific command-line variable).

        Must not start anything. The default reads nothing.
        """
        return {}

    def preload(self, config: Config) -> None:
        """Import what ``run`` will need; start nothing, bind nothing.

        Called while the app's import check runs in a child process, so start-up costs the
        longer of the two instead of their sum: a server's imports are easily 50 ms. The
        default does nothing.
        """
        return None

    @abc.abstractmethod
    def run(self, config: Config) -> int:
        """Serve until shut down; return the process exit status.

        Runs in the launcher's own process, which should become the server's supervisor (no
        wrapper process between the container runtime's signals and the server). SIGTERM must
        drain in-flight requests within ``config.graceful_timeout`` and return 0.
        """
