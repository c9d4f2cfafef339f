"""Import the app once, in a throwaway forked child, before any worker starts.

A missing module or attribute then fails as one line with exit 2, and an app that raises on
import shows its traceback once and stops the launcher, instead of every worker failing in a
loop. The import happens in a child so the server's master keeps none of the app's modules
(workers import it themselves, after fork or spawn, as they would without us).
"""

from __future__ import annotations

import os
import sys
import traceback

from launcher.config import Config
from launcher.errors import EXIT_CONFIG, ConfigError
from launcher.importer import import_app


def check_app_in_child(config: Config) -> int:
    """Return 0 if the app imports, 2 for a user error (message printed), 1 if the app raised."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported through the exit status
        status = 1
        try:
            import_app(config.app, config.app_dir, source=config.sources.get("app", ""))
            status = 0
        except ConfigError as exc:
            print(f"asgi-launcher: error: {exc}", file=sys.stderr)
            status = EXIT_CONFIG
        except BaseException:
            print(f"asgi-launcher: the app {config.app!r} raised while being imported:", file=sys.stderr)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    return code if code >= 0 else 1
