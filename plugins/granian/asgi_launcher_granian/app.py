"""What each Granian worker loads: the user's app, behind the proxy-headers middleware.

A module-level function so that Granian's spawned workers can unpickle it.
"""

from __future__ import annotations

from typing import Any

from launcher.importer import import_app
from launcher.proxy_headers import ProxyHeadersMiddleware


def load_app(target: str, app_dir: str, source: str, trusted: str) -> Any:
    # Granian has no trusted-proxy option: apply FORWARDED_ALLOW_IPS the way Uvicorn does.
    return ProxyHeadersMiddleware(import_app(target, app_dir, source=source), trusted)
