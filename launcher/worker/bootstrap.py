"""What every worker does first, under every backend, and how it says it could not boot.

``started`` (called by ``launcher.worker.build_worker_app``) makes a process one of the
launcher's workers: it dies with its master, is the OOM killer's first choice, sets up
``logging`` as every process of the launcher does, gives the signal table its worker meaning,
and, with tracing on, sets up its own OpenTelemetry tracer provider and export thread: after the
fork, where a thread works (``launcher.observability.tracing``). ``cannot_boot`` is the one way
a worker that cannot start its app ends, whatever the server: its traceback, trimmed to the user's frames, and its cause go to the master (which
shows the traceback once and one line per failed boot), and it exits 3 at once, before the
server reports the failure its own way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from launcher import statedir
from launcher.errors import EXIT_WORKERS_FAILING

if TYPE_CHECKING:
    from launcher.config.model import Config

#: How far above the master's ``oom_score_adj`` a worker puts its own (capped at the kernel's
#: maximum, 1000). The OOM killer picks the process with the highest ``memory + adj / 1000 *
#: the memory it may use``: 1000 more than the master is a whole limit's worth, so a worker is
#: chosen before the master whatever their sizes, and among workers the largest.
WORKER_OOM_SCORE_GAP = 1000
OOM_SCORE_ADJ_MAX = 1000


@dataclass(frozen=True)
class WorkerContext:
    """What a worker gets from its master (``Master.worker_context``); picklable, so a spawned
    worker gets a copy."""

    config: Config
    #: The master's state directory (``launcher.statedir``).
    state_dir: str | None
    #: The master's pid; None when the app is served in the master's own process
    #: (single-process mode): then there is no master to die with.
    master_pid: int | None


def _read_oom_score_adj(pid: int | str) -> int | None:
    try:
        with open(f"/proc/{pid}/oom_score_adj") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def raise_oom_score(master_pid: int) -> int | None:
    """Make this process the OOM killer's choice before the master: its ``oom_score_adj`` goes to
    the master's + ``WORKER_OOM_SCORE_GAP``, at most 1000. Raising it needs no privilege; it is
    never lowered. Returns the value now in force (None where there is no ``/proc``)."""
    master = _read_oom_score_adj(master_pid)
    own = _read_oom_score_adj("self")
    if own is None:
        return None
    wanted = min(OOM_SCORE_ADJ_MAX, (own if master is None else master) + WORKER_OOM_SCORE_GAP)
    if wanted <= own:
        return own
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(wanted))
    except OSError:
        return own
    return wanted


def started(context: WorkerContext, loggers: Iterable[str] = ()) -> None:
    """Make this process one of the launcher's workers (see the module docstring).

    The kernel sends the worker SIGKILL when its master dies (``PR_SET_PDEATHSIG``), so a master
    killed with SIGKILL (or by the OOM killer) leaves no worker serving on with the port held.
    ``loggers`` are the server's own, as it has set them up in this process.
    """
    from launcher.observability.logs import configure, launcher_logger, reopen_files
    from launcher.signals import die_with, worker_signals

    configure(context.config, loggers)
    launcher_logger(context.config)  # the launcher's own lines, as the master writes them
    if context.config.tracing.enabled:  # this process's own provider and export thread, after the fork
        from launcher.observability import tracing

        tracing.start(context.config.tracing)
    if context.master_pid is None:
        return
    raise_oom_score(context.master_pid)
    worker_signals(lambda _signum, _frame: reopen_files())
    if not die_with(context.master_pid):  # the master died before this worker could follow it
        os._exit(0)


def _library_paths() -> tuple[str, ...]:
    """Where the standard library and installed packages live: not the user's frames."""
    import sysconfig

    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(os.path.join(path, "") for path in paths)


def _not_users() -> tuple[str, ...]:
    return (*_library_paths(), f"{os.sep}launcher{os.sep}", "<frozen ")


def is_users(filename: str) -> bool:
    """Whether a frame's file is the user's code (not the launcher, Python's or a package's)."""
    return not any(part in filename for part in _not_users())


def user_traceback(text: str) -> str:
    """A printed traceback without the frames of the launcher, Python's own library and
    installed packages (servers, frameworks): what is left is the user's code. The last frame is
    kept if none is the user's, and so is every line that is not a frame (the exception, and
    the "During handling..." of a chained one)."""
    skipped = _not_users()
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    frames: list[list[str]] = []  # the current run of frames
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith('  File "'):
            frame = [line]
            i += 1
            while i < len(lines) and lines[i].startswith("    "):
                frame.append(lines[i])
                i += 1
            frames.append(frame)
            continue
        if frames:
            users = [f for f in frames if not any(part in f[0] for part in skipped)]
            kept += [part for frame in (users or frames[-1:]) for part in frame]
            frames = []
        kept.append(line)
        i += 1
    return "".join(kept)


def last_line(text: str) -> str:
    """The last non-blank line of a traceback: ``Type: message``."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def cannot_boot(context: WorkerContext, trace: str) -> NoReturn:
    """End a worker that cannot start its app (``trace``: the printed traceback, or the app's
    message): the master shows it (``Master.exited``), then this process exits 3 at once, so the
    server never gets to report it again its own way. Without a master (single-process mode)
    this process says it itself."""
    trace = user_traceback(trace).rstrip("\n")
    if context.state_dir is not None and context.master_pid is not None:
        statedir.write(statedir.failed(context.state_dir, os.getpid()), f"{last_line(trace)}\n{trace}")
    else:
        log = logging.getLogger("asgi_launcher")
        log.error("%s", trace)
        log.error("failed to boot: %s; exiting (status %d)", last_line(trace), EXIT_WORKERS_FAILING)
        for handler in log.handlers:
            with contextlib.suppress(Exception):
                handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_WORKERS_FAILING)
