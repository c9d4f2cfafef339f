"""asgi-launcher: start an ASGI app in production from the env contract of the reference image.

The plugin surface is split by who uses it, each part declared once, in its package's
``__all__`` (a test holds the built-in plugins to them, and the plugin guide lists them):

* ``launcher`` (here): the contract, what the launcher and every plugin share: ``Backend``,
  ``Config``, ``ConfigError`` ... Importing it imports no server, no master and no worker code,
  so ``asgi-launcher config`` stays cheap;
* ``launcher.master``: what a plugin's master uses (``Master``, ``WorkerSupervisor`` ...);
* ``launcher.worker``: what a plugin's worker uses (``build_worker_app``, ``ServerTraits`` ...).
"""

from launcher.backend import ENTRY_POINT_GROUP, Backend
from launcher.config.model import Config, FileSettings
from launcher.config.settings import parse_setting
from launcher.errors import EXIT_CONFIG, EXIT_WORKERS_FAILING, ConfigError

__version__ = "0.1.0"

__all__ = [
    "ENTRY_POINT_GROUP",
    "EXIT_CONFIG",
    "EXIT_WORKERS_FAILING",
    "Backend",
    "Config",
    "ConfigError",
    "FileSettings",
    "__version__",
    "parse_setting",
]
