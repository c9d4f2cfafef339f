"""Run Granian's multi-process server in the launcher's process, with the launcher's rules.

Granian's own supervisor respawns a dead worker only if asked, and exits 1 as soon as one
worker dies twice within 5.5 s. Here it follows the launcher's shared rules instead: a worker
that dies is replaced; ``launcher.supervision.CrashLoop`` decides when deaths mean a broken app
(exit 3); SIGTERM/SIGINT drain for GRACEFUL_TIMEOUT; SIGQUIT or a second signal stops at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from functools import partial
from typing import Any

from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.mp import MPServer, WorkerProcess

from asgi_launcher_granian.app import load_app
from asgi_launcher_granian.limits import http1_options
from launcher import EXIT_WORKERS_FAILING, Config
from launcher.master import Master, forking, parse_address


def _log_config(config: Config) -> dict[str, Any]:
    """Route Granian's two loggers where ERROR_LOG and ACCESS_LOG say."""

    def handler(target: str | None, stream: str, formatter: str) -> dict[str, Any]:
        if target is None:  # empty ERROR_LOG or ACCESS_LOG: off
            return {"class": "logging.NullHandler"}
        if target == "-":
            return {"formatter": formatter, "class": "logging.StreamHandler", "stream": stream}
        return {"formatter": formatter, "class": "logging.FileHandler", "filename": target}

    return {
        "handlers": {
            "console": handler(config.error_log, "ext://sys.stderr", "generic"),
            "access": handler(config.access_log, "ext://sys.stdout", "access"),
        },
    }


class _Worker(WorkerProcess):  # type: ignore[misc]
    """Granian's worker handle, minus its "Unexpected exit" line: the launcher's supervision
    says what each exit was (retired, timed out, died). It forks with the signal table blocked
    (``launcher.signals``): the worker unblocks it once its own handlers are in place."""

    def start(self) -> None:
        with forking():
            super().start()

    def _watcher(self) -> None:
        self.inner.join()
        # Once the launcher stops (``draining``), a worker's exit is no failure: one retiring by
        # itself (MAX_REQUESTS, memory) as the stop began was counted, and Granian's shutdown
        # then exited 1 instead of 0.
        if not self.interrupt_by_parent and not getattr(self.parent, "draining", False):
            self.parent.interrupt_children.append(self.idx)
            self.parent.main_loop_interrupt.set()


class _Wakeup(threading.Event):
    """Granian's main-loop event (``main_loop_interrupt``), on a reentrant lock.

    Granian's SIGINT, SIGTERM and SIGHUP handlers set it, and a handler runs in the main thread
    between any two of its bytecodes: also while that thread holds the event's lock, inside the
    loop's own ``wait()`` or ``clear()``. On ``Event``'s plain lock, ``set()`` then waits for ever
    for a lock its own thread holds: the master hung and the stop was never acted on (1 in
    1,000 stops sent just after a TIMEOUT kill). A reentrant lock lets the handler through; the
    loop reads the handler's flags after its ``clear()``, so no stop is missed either way.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition(threading.RLock())


class LauncherGranian(MPServer):  # type: ignore[misc]
    exit_status = 0
    draining = False
    master: Master

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.main_loop_interrupt = _Wakeup()
        self._noted: set[int] = set()  # workers the master has been told about

    def _init_shared_socket(self) -> None:
        """One listening socket, made by the master and inherited by every worker.

        On Linux Granian has each worker bind its own SO_REUSEPORT socket for TCP. Then a moment
        with no worker alive (two workers retiring at once after MAX_REQUESTS, a crash) refuses
        connections instead of queueing them for the replacement. Granian's own shared-socket
        path (what it uses for unix sockets and off Linux) keeps the backlog in the master.
        """
        if self.bind_uds:
            super()._init_shared_socket()
            return
        from granian._granian import ListenerSpec  # what granian.net calls SocketSpec

        self._ssp = None
        holder: Any = ListenerSpec(self.bind_addr, self.bind_port, self.backlog).build()
        self._shd = holder
        self._sfd = holder.get_fd()
        self._sso = socket.socket(fileno=self._sfd)
        self._sso.set_inheritable(True)
        # Granian sets SO_REUSEPORT, which would let any process of the same user bind the port
        # beside the server and take a share of its connections; one socket needs none.
        self._sso.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 0)

    def _spawn_worker(self, idx: Any, target: Any, callback_loader: Any, *args: Any) -> Any:
        worker = super()._spawn_worker(idx, target, callback_loader, *args)
        worker.__class__ = _Worker  # before start(), which starts the watcher thread
        # Forked on every Python version, as under the other backends: Granian starts workers
        # by multiprocessing's default method, and spawns them where that is forkserver (Linux
        # from Python 3.14 on), each worker then importing the launcher and the server again.
        worker.inner.__class__ = multiprocessing.get_context("fork").Process
        return worker

    def _note_spawned(self) -> None:
        for worker in self.wrks:
            if worker.inner.pid is not None and worker.inner.pid not in self._noted:
                self._noted.add(worker.inner.pid)
                self.master.spawned(worker.inner.pid)

    def _serve_loop(self, spawn_target: Any, target_loader: Any) -> None:
        master = self.master
        due: list[tuple[float, int]] = []  # (when, worker index): replacements after a pause
        while True:
            waits = [w - time.monotonic() for w, _ in due] + (
                [master.check_every] if master.check_every else []
            )
            self.main_loop_interrupt.wait(max(0.0, min(waits)) if waits else None)
            # Clear before reading the state: a worker that dies from here on sets the event
            # again. (Clearing after handling, as Granian's own loop does, can swallow a death
            # that happens meanwhile, and the master then waits for ever.)
            self.main_loop_interrupt.clear()
            if self.interrupt_signal:
                break
            master.check([w.inner.pid for w in self.wrks if w.inner.pid is not None], self._stop_gracefully)
            dead = self.interrupt_children[:]
            del self.interrupt_children[: len(dead)]  # a watcher thread may append meanwhile
            for idx in dead:
                worker = self.wrks[idx]
                decision = master.exited(worker.inner.pid, worker.inner.exitcode)
                if decision.give_up:
                    self.exit_status = EXIT_WORKERS_FAILING
                    return
                if decision.replace:
                    due.append((time.monotonic() + decision.after, idx))
            now = time.monotonic()
            ready = sorted(idx for when, idx in due if when <= now)
            if ready:
                due = [(when, idx) for when, idx in due if when > now]
                self._respawn_workers(ready, spawn_target, target_loader)
                self._note_spawned()
            if self.reload_signal:
                self._reload(spawn_target, target_loader)
                self._note_spawned()

    def _stop_gracefully(self, pid: int) -> None:
        """Stop one worker gracefully (MAX_WORKER_MEMORY): SIGTERM, Granian's own graceful stop,
        the one MAX_REQUESTS' retire starts. It goes to the process (``inner.terminate()``), not
        through the handle's ``terminate()``: that marks the worker as stopped by its parent, so
        its watcher would not report the exit and the loop above would never replace it. This
        way the exit arrives like a retirement: ``exited`` (no crash: the master stopped it),
        then ``_respawn_workers``."""
        for worker in self.wrks:
            if worker.inner.pid == pid:
                worker.inner.terminate()

    def _spawn_workers(self, spawn_target: Any, target_loader: Any) -> None:
        # The first spawn, in ``startup``, right after Granian has installed its SIGINT/SIGTERM
        # and SIGHUP handlers: the rest of the table, then the launcher's wrapping of them
        # (SHUTDOWN_DELAY, the operations listener), before any worker exists.
        signal.signal(signal.SIGQUIT, self._stop_now)
        signal.signal(signal.SIGUSR1, self._reopen_logs)
        for signum in (signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
            signal.signal(signum, self._ignore)
        self.master.serving()
        super()._spawn_workers(spawn_target, target_loader)

    def _serve(self, spawn_target: Any, target_loader: Any) -> None:
        self.startup(spawn_target, target_loader)
        self._note_spawned()
        self._serve_loop(spawn_target, target_loader)
        self.draining = True
        self.interrupt_children.clear()  # workers stopped from here on are not failures
        self.shutdown(self.exit_status)

    def _reopen_logs(self, *args: Any) -> None:
        self.master.reopening_logs()
        for worker in list(self.wrks):
            if worker.inner.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.inner.pid, signal.SIGUSR1)

    def _ignore(self, signum: int, *args: Any) -> None:
        self.master.ignored(signum)

    def _reload(self, spawn_target: Any, target_loader: Any) -> None:
        self.master.log.info("got SIGHUP: starting new workers, then stopping the old ones gracefully")
        # Granian waits respawn_interval (3.5 s) between a new worker and stopping the old one;
        # ours boot in well under a second.
        self.respawn_interval = 1.0
        super()._reload(spawn_target, target_loader)

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        if self.draining:
            self._stop_now()
            return
        super().signal_handler_interrupt(*args, **kwargs)

    def _stop_now(self, *args: Any) -> None:
        self.draining = True
        for worker in list(self.wrks):
            worker.kill()
        self.interrupt_signal = True
        self.main_loop_interrupt.set()


def tls_options(config: Config) -> dict[str, Any]:
    """``SSL_*`` as Granian's arguments. Each worker loads the files when it starts (in Rust), so a
    worker started by SIGHUP reads replaced ones; the launcher has checked them already."""
    if not config.tls:
        return {}
    from pathlib import Path

    assert config.ssl_certfile is not None
    return {
        "ssl_cert": Path(config.ssl_certfile),
        "ssl_key": Path(
            config.ssl_keyfile or config.ssl_certfile
        ),  # Granian needs both: one PEM may hold both
        "ssl_key_password": config.ssl_keyfile_password,
        "ssl_protocol_min": SSLProtocols(config.ssl_min_version.lower().replace("v", "")),
        "ssl_ca": Path(config.ssl_ca_certs) if config.ssl_ca_certs else None,
        "ssl_client_verify": config.ssl_cert_reqs == "required",
    }


def serve(config: Config) -> int:
    address = parse_address(config.bind[0])
    kwargs: dict[str, Any] = {}
    if address.family.name == "AF_UNIX":
        from pathlib import Path

        kwargs["uds"] = Path(address.host)
    else:
        kwargs.update(address=address.host, port=address.port)
    server = LauncherGranian(
        config.app,
        interface=Interfaces.ASGI,
        workers=config.workers,
        loop=Loops(config.worker_class),
        # HTTP/2 only if asked: h2c (HTTP2_CLEARTEXT), or over TLS, offered through ALPN (HTTP2).
        http=HTTPModes.auto if config.http2_cleartext or config.http2 else HTTPModes.http1,
        log_level=LogLevels(config.log_level),
        log_access=False,  # the launcher's pipeline writes ACCESS_LOG, the same under every backend
        log_dictconfig=_log_config(config),
        http1_settings=HTTP1Settings(**http1_options(config)),  # LIMIT_REQUEST_*, head deadline
        respawn_failed_workers=True,
        workers_kill_timeout=config.graceful_timeout or None,
        working_dir=None,
        **kwargs,
        **tls_options(config),
    )
    # Granian has set up its loggers (_log_config): LOG_FORMAT, LOG_LEVEL and LOG_CONFIG as under
    # every backend. Each worker sets them up again, then the pipeline does this there.
    with Master(config, loggers=("_granian",)) as master:
        server.master = master
        try:
            server.serve(target_loader=partial(load_app, context=master.worker_context()))
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through asgi-launcher with SERVER_BACKEND=granian")
