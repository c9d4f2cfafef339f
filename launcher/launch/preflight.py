"""Import the app once, in a throwaway forked child, before any worker starts.

A missing module or attribute then fails as one line with exit 2, and an app that raises on
import shows its traceback once, trimmed to the user's own frames, then one line naming the
module that failed, and stops the launcher with exit 1, instead of every worker failing in a
loop. The import happens in a child so the server's master keeps none of the app's modules
(workers import it themselves, after fork or spawn, as they would without us).

The check can run while the launcher is still loading the backend (``start_app_check`` now,
``result`` later): the child's output is held in a pipe and shown only when the result is
asked for, so a configuration error found meanwhile is still the only line printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from dataclasses import dataclass

from launcher.errors import EXIT_CONFIG, ConfigError
from launcher.signals import OTHER_SIGNALS, STOP_SIGNALS
from launcher.worker.importer import import_app


@dataclass
class AppCheck:
    """A running import check: the child's pid and the read end of its output."""

    pid: int
    output: int
    app: str
    app_dir: str

    def result(self) -> int:
        """0 if the app imports, 2 for a user error, 1 if the app raised; the child's output is shown."""
        chunks = []
        while chunk := os.read(self.output, 65536):
            chunks.append(chunk)
        os.close(self.output)
        if chunks:
            sys.stderr.buffer.write(b"".join(chunks))
            sys.stderr.flush()
        _, wait_status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(wait_status)
        return code if code >= 0 else 1

    def cancel(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.output)


def failed_import(app: str, exc: BaseException) -> str:
    """The one line after an app's traceback: which module failed, where, and what to install
    when a package is missing (the launcher then exits 1; the reload mode waits for a change)."""
    from launcher.worker.bootstrap import is_users

    module = app.partition(":")[0]
    line = f"the app's module {module!r} failed to import"  # why: the traceback's last line, above
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if is_users(f.filename)]
    if frames and not isinstance(exc, SyntaxError):  # a SyntaxError names its place itself
        line += f" at {frames[-1].filename}:{frames[-1].lineno}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        line += f"; install the package that provides {exc.name.partition('.')[0]!r}"
    return line


def start_app_check(app: str, app_dir: str, source: str, *, as_json: bool = False) -> AppCheck:
    """Fork a child that imports ``app`` from ``app_dir`` and reports through its exit status
    (``source``: where the app's name came from, for the error message)."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported through the exit status
        status = 1
        try:
            # A throwaway: a stop signal (the launcher's too, to its group) ends it; the
            # launcher stops it itself when it stops.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            for signum in OTHER_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            os.close(read_fd)
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            if as_json:
                from launcher.observability.logs import use_json_console

                use_json_console()  # what the app logs while it is imported: JSON too
            import_app(app, app_dir, source=source)
            status = 0
        except ConfigError as exc:
            from launcher.observability.logs import launcher_line

            print(launcher_line(str(exc), "error", as_json=as_json), file=sys.stderr)
            status = EXIT_CONFIG
        except BaseException as exc:
            message = failed_import(app, exc)
            if as_json:  # the traceback in the object's error.stack_trace: one line
                from launcher.observability.logs import event

                print(event(message, level="error", exc=exc), file=sys.stderr)
            else:
                from launcher.observability.logs import launcher_line
                from launcher.worker.bootstrap import user_traceback

                sys.stderr.write(user_traceback(traceback.format_exc()))
                print(launcher_line(message, "error"), file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(write_fd)
    return AppCheck(pid, read_fd, app, app_dir)
