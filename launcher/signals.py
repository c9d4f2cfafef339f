"""The signal table, and the one rule that keeps it true at every instant: no process runs
handlers that are not its own.

A signal is handled by whatever handler the receiving process has at that instant. A worker is
forked (or spawned: the mask survives ``exec``) by a master whose handlers only note a signal
for the master's loop; in the worker's copy that note is lost, and a SIGTERM that lands there,
before the worker has installed its own handlers, is never acted on: the master then waits the
whole GRACEFUL_TIMEOUT for a worker that never began to stop. A SIGUSR1 there kills a booting
worker by the default action. So:

* the master forks and spawns inside ``forking()``: the table's signals are blocked, and the
  child starts with them blocked; a signal sent to it meanwhile stays pending;
* the worker's bootstrap (``worker_signals``) gives every signal its worker meaning and
  unblocks all but SIGTERM and SIGINT; the plugin calls ``accept_stop_signals()`` once its
  server's own stop handlers are in place, and a SIGTERM that waited is handled then.

The launcher's own process follows the same rule before it becomes a master (``launch``): from
its first instruction, every signal of the table has a meaning (``early_handlers``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

#: SIGTERM and SIGINT drain; SIGQUIT stops at once.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
#: The master's own signals: SIGHUP restarts the workers, SIGUSR1 reopens log files, the others
#: are ignored with a line.
OTHER_SIGNALS = (
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGWINCH,
)
#: Every signal the launcher gives a meaning to.
TABLE = (*STOP_SIGNALS, *OTHER_SIGNALS)

#: The signals a worker leaves to its master (sent to a whole process group, their default
#: actions would stop it: SIGHUP terminates, SIGTTIN suspends).
MASTERS_ONLY = (signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


@contextlib.contextmanager
def forking() -> Iterator[None]:
    """Block the table's signals around a fork or spawn (see the module docstring).

    The master's own signals wait until the block ends, which is a moment; the child's wait until
    its bootstrap unblocks them, also when the child itself leaves the block (an ``os.fork()``
    inside it returns twice).
    """
    master = os.getpid()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, TABLE)
    try:
        yield
    finally:
        if os.getpid() == master:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_signals(reopen: signal.Handlers | signal._HANDLER) -> None:
    """A worker's meaning for the table, minus the stop signals: SIGUSR1 reopens its log files
    (``reopen``), SIGQUIT ends it at once, the master's own signals are ignored. Then all of
    these are unblocked; SIGTERM and SIGINT wait for ``accept_stop_signals``."""
    signal.signal(signal.SIGUSR1, reopen)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    for signum in MASTERS_ONLY:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGQUIT, *OTHER_SIGNALS))


def accept_stop_signals() -> None:
    """Unblock SIGTERM and SIGINT in a worker whose server has installed its stop handlers."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT))


class Stopped(BaseException):
    """A stop signal reached the launcher before its process became a master: nothing serves yet,
    so there is nothing to drain. Raised where the launcher is (resolving, checking the app,
    loading the backend); the command line catches it and exits 0, as for any asked-for stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: The stop signal this process raised as ``Stopped`` (its pid, the signal), if any.
_raised: tuple[int, int] | None = None


def before_serving(note: Callable[[str], None]) -> None:
    """The table's meanings in a launcher that does not serve yet (until its master installs
    its own handlers): a stop signal raises ``Stopped``; SIGHUP, SIGUSR1 and the rest change
    nothing (there is no worker to restart, no log file open yet) and ``note`` says so in one
    line. ``note`` runs inside the handler: it must write with one system call.

    A handler's exception is raised wherever the main thread happens to be, and Python prints
    and drops one raised inside a finalizer (``__del__``, a weakref callback: the garbage
    collector runs them at any allocation); the launcher would then go on to serve as if the
    signal had never come. So the stop is also noted, and ``own_handlers_installed`` delivers
    it again to the handlers that replace these."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        global _raised
        _raised = (os.getpid(), signum)
        raise Stopped(signum)

    def other(signum: int, _frame: FrameType | None) -> None:
        note(f"got {signal.Signals(signum).name} before serving: nothing to do yet")

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    for signum in OTHER_SIGNALS:
        signal.signal(signum, other)


def own_handlers_installed() -> None:
    """Call once this process has replaced ``before_serving``'s handlers with its own (a master,
    the reloader): a stop signal that raised ``Stopped`` here and did not end the process (it was
    dropped, see ``before_serving``) reaches them now, so it keeps its meaning."""
    global _raised
    if _raised is not None and _raised[0] == os.getpid():
        signum = _raised[1]
        _raised = None
        signal.raise_signal(signum)


_PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> bool:
    """Have the kernel SIGKILL this process when ``parent`` dies (``PR_SET_PDEATHSIG``), so a
    parent killed with SIGKILL (or by the OOM killer) leaves nothing running unsupervised; False
    if ``parent`` is already gone (nothing to run for)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent
