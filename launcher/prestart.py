"""Run the user's prestart script the way the reference image's successors do.

The script is *sourced* by bash with ``set -e`` (so it needs no run bit, and a failing command
stops it), its output streams straight through, and the variables it exports reach the app:
bash hands back its environment on a private pipe however the script ends (at its end, or at
an ``exit``). It runs in its own process group, and a stop signal the launcher gets meanwhile
goes to that whole group, so stopping the launcher stops the script and what it started.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType

# Variables bash maintains itself; a change to them is not something the script exported.
_SHELL_NOISE = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "BASH_EXECUTION_STRING"})

#: The signals that stop the launcher; while prestart runs they go to the script's process group.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)

# After a stop signal, how long what the script left running gets between SIGTERM and SIGKILL
# (and how long bash, which ignores SIGQUIT, gets after one before SIGKILL).
_LEFTOVER_GRACE = 1.0

# Ends a complete dump. An entry without "=" is never a variable, so it cannot be mistaken for
# one; a dump without it (the script `exec`ed another program) means "nothing known changed".
_END = b"ASGI_LAUNCHER_ENV_END"

# Bash passes variables whose names are not identifiers through to its children untouched, but
# a script can neither set nor unset them, and the dump (of bash's own variables) omits them.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The exported variables go to the pipe ($3) at the script's end, or from the EXIT trap when it
# calls `exit` (or `set -e` stops it); `|| :` keeps a failed dump from changing the exit status,
# and if the script replaces the trap, the dump at its end still runs. Only builtins write it:
# no `env` to be missing from a PATH the script changed. The pipe stays open for the script
# (bash cannot hide an fd from its children), so the launcher reads until bash exits, not until
# end of file. CRLF scripts are sourced through `tr`: the user's file is never touched.
_WRAPPER = r"""
set -e
__launcher_fd=$3
__launcher_dump() {
  [ -z "${__launcher_dumped-}" ] || return 0
  __launcher_dumped=1
  {
    while IFS= read -r __launcher_name; do
      [ -z "${!__launcher_name+set}" ] || printf '%s=%s\0' "$__launcher_name" "${!__launcher_name}"
    done < <(compgen -e)
    printf '%s\0' ASGI_LAUNCHER_ENV_END
  } >&"$__launcher_fd"
}
trap '__launcher_dump 2>/dev/null || :' EXIT
if [ "$2" = crlf ]; then . <(tr -d '\r' < "$1"); else . "$1"; fi
__launcher_dump 2>/dev/null || :
"""


@dataclass(frozen=True)
class PrestartResult:
    """How the script ended: its exit status (128+N when killed by signal N) and what it changed.

    ``changes`` maps each variable it set to its value, or to None when it unset it; it is empty
    unless the script succeeded. ``handed_back`` is False when bash never dumped its environment
    (the script ``exec``ed another program). ``stopped_by`` is the stop signal the launcher got
    (and passed on) while the script ran: the launcher must then not serve, whatever the status.
    """

    status: int
    changes: dict[str, str | None] = field(default_factory=dict)
    handed_back: bool = True
    stopped_by: signal.Signals | None = None


class _Forwarder:
    """Passes the stop signals the launcher gets to the script's process group.

    SIGQUIT means "stop at once", but bash ignores it (only the command running in the
    foreground dies of it), so if the script is still there after a grace it gets SIGKILL.
    """

    def __init__(self) -> None:
        self.pgid: int | None = None
        self.received: list[signal.Signals] = []
        self.kill_at: float | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum))
        if signum == signal.SIGQUIT and self.kill_at is None:
            self.kill_at = time.monotonic() + _LEFTOVER_GRACE
        if self.pgid is not None:
            _signal_group(self.pgid, signum)

    def escalate(self) -> None:
        """SIGKILL the group once the grace after a SIGQUIT is over."""
        if self.pgid is not None and self.kill_at is not None and time.monotonic() >= self.kill_at:
            _signal_group(self.pgid, signal.SIGKILL)

    def attach(self, pgid: int) -> None:
        """From now on signals go to ``pgid``; one that came while it was starting goes now."""
        self.pgid = pgid
        for sig in self.received:
            _signal_group(pgid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextmanager
def _forwarding(forwarder: _Forwarder) -> Iterator[None]:
    """Install the forwarding handlers for the block and restore the previous ones after.

    Only the main thread may set handlers; elsewhere (an embedding program) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, forwarder.handle) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _drain(fd: int, chunks: list[bytes]) -> bool:
    """Append what ``fd`` holds right now to ``chunks``; True at end of file."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        chunks.append(chunk)


def _collect(proc: subprocess.Popen[bytes], read_fd: int, forwarder: _Forwarder) -> bytes:
    """Everything bash wrote on the pipe, read while it runs and drained once it has exited.

    Not "until end of file": background jobs, or a program the script ``exec``s, inherit the
    pipe's write end and may hold it for as long as they run. Reading as it comes keeps a dump
    larger than the pipe's buffer from blocking bash.
    """
    chunks: list[bytes] = []
    eof = False
    os.set_blocking(read_fd, False)
    try:
        while True:
            exited = proc.poll() is not None
            eof = eof or _drain(read_fd, chunks)
            if exited:
                break
            forwarder.escalate()
            if eof:
                time.sleep(0.05)
            else:
                select.select([read_fd], [], [], 0.05)
    finally:
        os.close(read_fd)
    return b"".join(chunks)


def _stop_leftovers(pgid: int) -> None:
    """After a stop signal, end what the script left running in its group.

    The launcher is about to exit, and a non-interactive bash starts background jobs with
    SIGINT and SIGQUIT ignored, so the forwarded signal alone may not have stopped them.
    """
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + _LEFTOVER_GRACE
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


def _parse_dump(dumped: bytes) -> dict[str, str] | None:
    """The environment in a complete ``env -0`` dump, or None if there is none (or half of one)."""
    entries = dumped.split(b"\0")
    if entries[-2:] != [_END, b""]:
        return None
    after: dict[str, str] = {}
    for entry in entries[:-2]:
        name, sep, value = entry.partition(b"=")
        if sep:
            after[os.fsdecode(name)] = os.fsdecode(value)
    return after


def _changes(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str | None]:
    """What the script exported (name -> value) or unset (name -> None), shell bookkeeping aside."""
    changes: dict[str, str | None] = {
        k: v for k, v in after.items() if before.get(k) != v and k not in _SHELL_NOISE
    }
    changes.update(
        {k: None for k in before if k not in after and k not in _SHELL_NOISE and _IDENTIFIER.fullmatch(k)}
    )
    return changes


def run_prestart(path: str, env: Mapping[str, str]) -> PrestartResult:
    """Source ``path`` in its own process group; return how it ended and what it changed."""
    with open(path, "rb") as script:
        crlf = b"\r\n" in script.read()
    forwarder = _Forwarder()
    with _forwarding(forwarder):
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                ["bash", "-c", _WRAPPER, "prestart", path, "crlf" if crlf else "lf", str(write_fd)],
                env=dict(env),
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                process_group=0,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        forwarder.attach(proc.pid)
        dumped = _collect(proc, read_fd, forwarder)
        code = proc.wait()
        if forwarder.received:
            _stop_leftovers(proc.pid)
    status = code if code >= 0 else 128 - code
    stopped_by = forwarder.received[0] if forwarder.received else None
    after = _parse_dump(dumped)
    if status != 0 or stopped_by is not None:
        return PrestartResult(status, {}, after is not None, stopped_by)
    if after is None:
        return PrestartResult(0, {}, handed_back=False)
    return PrestartResult(0, _changes(env, after))
