"""One server of the reload mode: ``python -m launcher.launch.reload_child RELOADER_PID GO_FD``.

The reloader (``launcher.launch.reload``) starts one per change, in a fresh interpreter with the
environment prestart left; it is ``launch`` with one worker, released to bind only once the
server it replaces is gone, and it dies with the reloader (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import MutableMapping, Sequence

from launcher.launch import command
from launcher.launch.prepare import prepare
from launcher.launch.reload import served
from launcher.launch.run import launch
from launcher.signals import die_with


def _released(go: int) -> bool:
    """Wait for the reloader's go (True), or for it to give up on this child (False)."""
    try:
        return os.read(go, 1) == b"g"
    finally:
        os.close(go)


def serve_child(environ: MutableMapping[str, str], go: int) -> int:
    """One server of the reload mode: ``launch`` with one worker, without prestart (the reloader
    ran it; ``environ`` has what it exported) and without the start-up lines. It binds only once
    released through ``go``: the server it replaces may still be draining."""
    prepared = prepare(environ)
    one = dataclasses.replace(prepared, config=served(prepared.config))
    return launch(one, environ, released=lambda: _released(go))


def child_main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or not all(a.isdigit() for a in argv) or not die_with(int(argv[0])):
        return 0  # not started by a reloader, or it is gone: nothing to serve for
    return command(lambda: serve_child(os.environ, int(argv[1])))


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
