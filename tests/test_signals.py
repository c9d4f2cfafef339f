"""The signal table holds at every instant: a worker forked inside ``forking()`` keeps a stop
signal pending until its own handlers are in place, and the launcher gives every signal a
meaning before it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

import pytest

from launcher.signals import TABLE, accept_stop_signals, forking


def _fork_worker(guarded: bool, boot: float) -> str:
    """Fork a child as a master would, SIGTERM it at once, and return what the child reports.

    The parent's handler only notes the signal (as every master's does); the child installs its
    own handler after ``boot`` seconds, then accepts stop signals.
    """
    noted: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: noted.append(signum))
    read_fd, write_fd = os.pipe()
    try:
        if guarded:
            with forking():
                pid = os.fork()
        else:
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_fd)
            time.sleep(boot)

            def own(_signum: int, _frame: FrameType | None) -> None:
                os.write(write_fd, b"stopped by its own handler")
                os._exit(0)

            signal.signal(signal.SIGTERM, own)
            accept_stop_signals()
            time.sleep(boot)
            os.write(write_fd, b"never stopped")
            os._exit(0)
        os.close(write_fd)
        os.kill(pid, signal.SIGTERM)  # while the child still runs the master's handler
        _, status = os.waitpid(pid, 0)
        report = os.read(read_fd, 100).decode()
        os.close(read_fd)
        assert os.waitstatus_to_exitcode(status) == 0
        return report
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_stop_signal_sent_to_a_worker_before_its_handlers_waits_for_them() -> None:
    assert _fork_worker(guarded=True, boot=0.2) == "stopped by its own handler"


def test_without_the_guard_the_masters_handler_copy_swallows_it() -> None:
    # What the guard prevents: the signal lands in the child's copy of the master's handler.
    assert _fork_worker(guarded=False, boot=0.2) == "never stopped"


def test_forking_restores_the_masters_mask() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    with forking():
        assert set(TABLE) <= signal.pthread_sigmask(signal.SIG_BLOCK, ())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, ()) == before


def test_worker_signals_unblock_all_but_the_stop_signals() -> None:
    code = (
        "import signal\n"
        "from launcher.signals import TABLE, forking, worker_signals\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, TABLE)\n"
        "worker_signals(signal.SIG_IGN)\n"
        "blocked = signal.pthread_sigmask(signal.SIG_BLOCK, ())\n"
        "print(sorted(s.name for s in blocked))\n"
        "print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, signal.getsignal(signal.SIGQUIT) is signal.SIG_DFL)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["['SIGINT', 'SIGTERM']", "True True"]


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGWINCH])
def test_before_serving_the_masters_signals_change_nothing(signum: int) -> None:
    """``asgi-launcher`` given SIGUSR1 (logrotate) or SIGHUP while it resolves: one line, no death."""
    code = (
        "import os, signal, sys\n"
        "from launcher.launch import note as _note\n"
        "from launcher.signals import before_serving\n"
        "before_serving(_note)\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "print('still here', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "still here\n")
    assert (
        done.stderr == f"asgi-launcher: got {signal.Signals(signum).name} before serving: nothing to do yet\n"
    )


def test_before_serving_a_stop_signal_raises_stopped() -> None:
    from launcher.signals import Stopped, before_serving

    previous = {s: signal.getsignal(s) for s in TABLE}
    try:
        before_serving(lambda _line: None)
        with pytest.raises(Stopped) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler
        assert stopped.value.signum == signal.SIGTERM
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_worker_signals_give_sigusr1_its_handler() -> None:
    code = (
        "import os, signal\n"
        "from launcher.signals import TABLE, worker_signals\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, TABLE)\n"
        "os.kill(os.getpid(), signal.SIGUSR1)  # pending: a logrotate while the worker boots\n"
        "worker_signals(lambda *_: print('reopened', flush=True))\n"
        "print('alive', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "reopened\nalive\n")


def test_a_stop_signal_dropped_in_a_finalizer_reaches_the_handlers_that_serve() -> None:
    """A ``Stopped`` raised inside ``__del__`` is printed and dropped by Python; the process
    would go on to serve as if the signal had never come (seen: a reload server SIGTERMed as it
    booted served until killed). The handlers installed to serve get it."""
    code = (
        "import os, signal\n"
        "from launcher.launch import note\n"
        "from launcher.signals import before_serving, own_handlers_installed\n"
        "before_serving(note)\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        sum(range(1000))  # the handler runs here, inside the finalizer\n"
        "Finalized()\n"
        "print('went on', flush=True)\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('stopped by its own handler', flush=True))\n"
        "own_handlers_installed()\n"
        "own_handlers_installed()  # delivered once\n"
        "print('end', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "Exception ignored in" in done.stderr and "Stopped: 15" in done.stderr, done.stderr
    assert (done.returncode, done.stdout) == (0, "went on\nstopped by its own handler\nend\n"), done.stderr


def test_a_stop_signal_not_raised_here_is_not_delivered() -> None:
    """Nothing is delivered without a dropped stop, nor in a child forked after one."""
    code = (
        "import os, signal\n"
        "from launcher.launch import note\n"
        "from launcher.signals import before_serving, own_handlers_installed\n"
        "before_serving(note)\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('delivered', flush=True))\n"
        "own_handlers_installed()\n"
        "print('nothing', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "nothing\n"), done.stderr
