"""Run the user's prestart script the way the reference image's successors do.

The script is *sourced* by bash with ``set -e`` (so it needs no run bit, and a failing command
stops it), its output streams straight through, and the variables it exports reach the app:
bash hands back its environment on a private pipe once the script has finished.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

# Variables bash maintains itself; a change to them is not something the script exported.
_SHELL_NOISE = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "BASH_EXECUTION_STRING"})

# The pipe's fd ($3) is closed for the script itself (so background jobs it starts cannot hold
# the pipe open) and receives `env -0` only after the script succeeded. CRLF scripts are
# sourced through `tr` rather than rewritten: the user's file is never touched.
_WRAPPER = r"""
set -e
__launcher_fd=$3
if [ "$2" = crlf ]; then { . <(tr -d '\r' < "$1"); } {__launcher_fd}>&-
else { . "$1"; } {__launcher_fd}>&-; fi
unset __launcher_fd
env -0 >&"$3"
"""


def run_prestart(path: str, env: Mapping[str, str]) -> tuple[int, dict[str, str | None]]:
    """Source ``path``; return its exit status and the variables it set (None = unset)."""
    with open(path, "rb") as script:
        crlf = b"\r\n" in script.read()
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(
            ["bash", "-c", _WRAPPER, "prestart", path, "crlf" if crlf else "lf", str(write_fd)],
            env=dict(env),
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        dumped = pipe.read()
    status = proc.wait()
    if status != 0:
        return (status if status > 0 else 128 - status), {}
    after: dict[str, str] = {}
    for entry in dumped.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep:
            after[os.fsdecode(name)] = os.fsdecode(value)
    changes: dict[str, str | None] = {
        k: v for k, v in after.items() if env.get(k) != v and k not in _SHELL_NOISE
    }
    changes.update({k: None for k in env if k not in after and k not in _SHELL_NOISE})
    return 0, changes
