"""Run the user's prestart script the way the reference image's successors do.

The script is *sourced* by bash with ``set -e`` (so it needs no run bit, and a failing command
stops it), its output streams straight through (with ``LOG_FORMAT=json``, through a pipe that
turns each line into one JSON object, line by line as it comes), and the variables it exports
reach the app:
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

from launcher.procfs import exited, live_group_members

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


#: A line longer than this, without its end yet, is passed on as it is (a JSON object of its own).
_LONGEST_LINE = 1 << 16


class _JsonLines:
    """The script's stdout or stderr, each line passed on to the same stream as one JSON object
    (``log.logger`` ``prestart``, the script's pid), as soon as the line is complete.

    Written with ``os.write``, never through ``sys.stdout``: after bash exits a daemon thread may
    go on forwarding what its background jobs print, and a lock of Python's held by that thread
    when a server forks its workers would stay locked in them.
    """

    def __init__(self, fd: int, target: int, pid: int) -> None:
        from launcher.observability.logs import (
            event,  # here, in the main thread: the forwarding thread imports nothing
        )

        self.event = event
        self.fd = fd
        self.target = target
        self.pid = pid
        self.pending = b""
        self.eof = False
        os.set_blocking(fd, False)

    def pump(self) -> None:
        """Pass on what the pipe holds right now; at its end, the last unfinished line too."""
        if self.eof:
            return
        chunks: list[bytes] = []
        self.eof = _drain(self.fd, chunks)
        data = self.pending + b"".join(chunks)
        *lines, self.pending = data.split(b"\n")
        if self.eof or len(self.pending) > _LONGEST_LINE:
            if self.pending:
                lines.append(self.pending)
            self.pending = b""
        if lines:
            self._write(lines)
        if self.eof:
            os.close(self.fd)

    def _write(self, lines: list[bytes]) -> None:
        data = b"".join(
            self.event(line.decode("utf-8", "replace").rstrip("\r"), logger="prestart", pid=self.pid).encode()
            + b"\n"
            for line in lines
        )
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.target, view) :]
            except InterruptedError:
                continue
            except OSError:
                return  # nobody reads our output any more


def _forward_rest(outputs: list[_JsonLines]) -> None:
    """Bash has exited but something it started still holds its stdout or stderr: go on passing
    lines on, from a daemon thread, until it closes them (as if they were the launcher's own)."""
    left = [o for o in outputs if not o.eof]
    if not left:
        return

    def run() -> None:
        while left:
            select.select([o.fd for o in left], [], [])
            for output in list(left):
                output.pump()
                if output.eof:
                    left.remove(output)

    threading.Thread(target=run, name="prestart-output", daemon=True).start()


def _collect(
    proc: subprocess.Popen[bytes],
    read_fd: int,
    forwarder: _Forwarder,
    outputs: list[_JsonLines] | None = None,
) -> bytes:
    """Everything bash wrote on the pipe, read while it runs and drained once it has exited.

    Not "until end of file": background jobs, or a program the script ``exec``s, inherit the
    pipe's write end and may hold it for as long as they run. Reading as it comes keeps a dump
    larger than the pipe's buffer from blocking bash. ``outputs`` (JSON lines) are passed on
    meanwhile, and after bash has exited for as long as someone still writes to them.
    """
    outputs = outputs or []
    chunks: list[bytes] = []
    eof = False
    os.set_blocking(read_fd, False)
    try:
        while True:
            gone = exited(proc.pid)
            eof = eof or _drain(read_fd, chunks)
            for output in outputs:
                output.pump()
            if gone:
                break
            forwarder.escalate()
            waiting = [o.fd for o in outputs if not o.eof] + ([] if eof else [read_fd])
            if waiting:
                select.select(waiting, [], [], 0.05)
            else:
                time.sleep(0.05)
    finally:
        os.close(read_fd)
    _forward_rest(outputs)
    return b"".join(chunks)


def _stop_leftovers(pgid: int) -> None:
    """After a stop signal, end what the script left running in its group (bash, its leader,
    exited and not yet reaped: the group's id stays its own).

    The launcher is about to exit, and a non-interactive bash starts background jobs with
    SIGINT and SIGQUIT ignored, so the forwarded signal alone may not have stopped them.
    """
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + _LEFTOVER_GRACE
    while time.monotonic() < deadline:
        if not live_group_members(pgid):
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


def run_prestart(path: str, env: Mapping[str, str], *, json_lines: bool = False) -> PrestartResult:
    """Source ``path`` in its own process group; return how it ended and what it changed.

    ``json_lines`` (``LOG_FORMAT=json``): each line the script prints on stdout or stderr is
    passed on to the launcher's own as one JSON object, rather than streaming straight through.
    """
    with open(path, "rb") as script:
        crlf = b"\r\n" in script.read()
    forwarder = _Forwarder()
    with _forwarding(forwarder):
        read_fd, write_fd = os.pipe()
        streams = [os.pipe(), os.pipe()] if json_lines else []  # (read, write) for stdout, stderr
        try:
            proc = subprocess.Popen(
                ["bash", "-c", _WRAPPER, "prestart", path, "crlf" if crlf else "lf", str(write_fd)],
                env=dict(env),
                pass_fds=(write_fd,),
                stdin=subprocess.DEVNULL,
                stdout=streams[0][1] if streams else None,
                stderr=streams[1][1] if streams else None,
                process_group=0,
            )
        except BaseException:
            os.close(read_fd)
            for reader, _ in streams:
                os.close(reader)
            raise
        finally:
            os.close(write_fd)
            for _, writer in streams:
                os.close(writer)
        forwarder.attach(proc.pid)
        outputs = [
            _JsonLines(reader, target, proc.pid) for (reader, _), target in zip(streams, (1, 2), strict=False)
        ]
        dumped = _collect(proc, read_fd, forwarder, outputs)
        if forwarder.received:
            _stop_leftovers(proc.pid)
        code = proc.wait()
    status = code if code >= 0 else 128 - code
    stopped_by = forwarder.received[0] if forwarder.received else None
    after = _parse_dump(dumped)
    if status != 0 or stopped_by is not None:
        return PrestartResult(status, {}, after is not None, stopped_by)
    if after is None:
        return PrestartResult(0, {}, handed_back=False)
    return PrestartResult(0, _changes(env, after))
