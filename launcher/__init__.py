"""asgi-launcher: start an ASGI app in production from the env contract of the reference image.

The public API for plugin authors is ``Backend``, ``Config`` and ``ConfigError``; importing
this package imports no server.
"""

from launcher.backend import ENTRY_POINT_GROUP, Backend, FileSettings
from launcher.config import Config
from launcher.errors import ConfigError

__version__ = "0.1.0"
__all__ = ["ENTRY_POINT_GROUP", "Backend", "Config", "ConfigError", "FileSettings", "__version__"]
