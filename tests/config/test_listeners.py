"""Stopping to accept on a shared listening socket without resetting what its queue holds."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from launcher.config.addresses import can_refuse_new_connections, detach_listeners, refuse_new_connections
from launcher.procfs import listening_fds, served_connections


def listener() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, sock.getsockname()[1]


def test_refused_new_connections_leave_the_queued_ones_to_be_accepted() -> None:
    if not can_refuse_new_connections():
        pytest.skip("this process may not attach a socket filter (no CAP_NET_ADMIN)")
    sock, port = listener()
    with sock:
        queued = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert refuse_new_connections([f"127.0.0.1:{port}"]) == 1
        late = socket.socket()
        late.settimeout(1.5)
        try:
            late.connect(("127.0.0.1", port))
            connected = True
        except OSError:
            connected = False
        finally:
            late.close()
        assert not connected, "a connection was made after the socket refused new ones"
        accepted, _ = sock.accept()  # the one that was waiting in the queue
        with accepted, queued:
            queued.sendall(b"request")
            assert accepted.recv(16) == b"request"
            accepted.sendall(b"answer")
            assert queued.recv(16) == b"answer"


def test_served_connections_and_listening_fds_see_only_this_process_and_these_addresses() -> None:
    sock, port = listener()
    other, other_port = listener()
    with sock, other:
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = sock.accept()
        elsewhere = socket.create_connection(("127.0.0.1", other_port))
        with client, served, elsewhere:
            assert served_connections(frozenset({port})) == 1  # the client's end is no served one
            assert listening_fds(frozenset({port})) == [sock.fileno()]


def test_a_detached_listener_stops_accepting_while_another_process_holding_it_accepts() -> None:
    # A worker detaches its copy of the shared socket: the other holder still accepts what comes.
    sock, port = listener()
    child = textwrap.dedent(
        f"""
        import socket, sys
        sock = socket.socket(fileno={sock.fileno()})
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        conn, _ = sock.accept()
        conn.sendall(b"from the other holder")
        """
    )
    with sock:
        other = subprocess.Popen(
            [sys.executable, "-c", child], pass_fds=(sock.fileno(),), stdout=subprocess.PIPE, text=True
        )
        try:
            assert other.stdout is not None and other.stdout.readline() == "ready\n"
            assert detach_listeners([f"127.0.0.1:{port}"]) == 1
            sock.setblocking(False)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                client.settimeout(10)
                assert client.recv(64) == b"from the other holder"
            try:
                sock.accept()
                raise AssertionError("the detached descriptor still accepts")
            except BlockingIOError:
                pass
            assert other.wait(10) == 0
        finally:
            other.kill()
            other.wait()


def test_refusing_new_connections_is_best_effort_without_the_privilege_it_may_need() -> None:
    # Some kernels let only CAP_NET_ADMIN attach a socket filter, which a container lacks by
    # default: the master's stop must go on (it raised from its signal handler: exit 255).
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a process without capabilities")
    code = textwrap.dedent(
        """
        import socket
        from launcher.config.addresses import refuse_new_connections
        sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen()
        print(refuse_new_connections([f"127.0.0.1:{sock.getsockname()[1]}"]))
        """
    )
    unprivileged = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", "-all"]
    result = subprocess.run(
        [*unprivileged, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("0", "1"), result.stdout
