"""Socket activation as systemd does it: the service on a socket it is
handed (LISTEN_FDS), READY=1 on NOTIFY_SOCKET once it serves, an exit when
idle that leaves the socket to its owner, and a new service on the same
socket answering what waited in its queue. tests/integration/test_systemd.py
does the same under a real systemd."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.helpers import wait_for

PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


def _ask(conn: socket.socket, request: bytes = PING) -> bytes:
    conn.sendall(request)
    out = b""
    while chunk := conn.recv(65536):
        out += chunk
    return out


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    return sock


@pytest.mark.slow
def test_systemd_socket_activate_starts_it_on_the_first_connection(cli: CLI, tmp_path: Path) -> None:
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.fail("systemd-socket-activate is missing: apt-get install systemd (scripts/setup.sh installs it)")
    sock = tmp_path / "activated.sock"
    notify = _notify_socket(tmp_path / "notify")
    env = dict(cli.env, NOTIFY_SOCKET=str(tmp_path / "notify"))
    # It gives the service a fresh environment: what it needs is passed by name.
    passed = [f"--setenv={name}" for name in ("NOTIFY_SOCKET", "PYTHONPATH", "OVERLAYCTL_BRIDGE_NAME", "PATH")]
    argv = [activate, "-l", str(sock), "--fdname=docker", *passed, *cli.argv("system", "service", "--time", "1")]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(sock.exists, 30, "systemd-socket-activate to listen")
        time.sleep(0.2)
        assert proc.poll() is None
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(60)
            conn.connect(str(sock))  # the service is started by this connection
            answer = _ask(conn)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nOK"), answer
        message = notify.recv(4096).decode()
        assert "READY=1" in message.split("\n"), message
        assert "STATUS=serving the Engine API" in message, message
        # On the socket it was handed: it bound none of its own.
        assert not (cli.runroot / "docker.sock").exists()
        # Idle for a second, it exits 0 and leaves the socket to its owner.
        assert proc.wait(timeout=30) == 0, proc.stderr.read().decode() if proc.stderr else ""
        assert sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        notify.close()


# systemd's side of LISTEN_FDS, before the exec: the socket as fd 3, and
# LISTEN_PID the pid that the exec keeps.
LAUNCH = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[2], sys.argv[2:])
"""


def _activate(cli: CLI, listener: socket.socket, *args: str) -> subprocess.Popen:
    """Start the service on `listener` as systemd does."""
    fd = listener.fileno()
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(fd), *cli.argv("system", "service", *args)],
        env=cli.env,
        pass_fds=(fd,),
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_the_next_connection_after_an_idle_exit_starts_it_again(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "held.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    procs = []
    try:
        procs.append(_activate(cli, listener, "--time", "1"))
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(60)
            conn.connect(str(path))
            assert _ask(conn).endswith(b"\r\n\r\nOK")
        assert procs[0].wait(timeout=30) == 0
        # What systemd sees next: a connection waiting on the socket it holds.
        waiting = socket.socket(socket.AF_UNIX)
        waiting.settimeout(60)
        waiting.connect(str(path))
        waiting.sendall(b"GET /v1.41/version HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        procs.append(_activate(cli, listener, "--time", "1"))
        with waiting:
            answer = _ask(waiting, b"")
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"ApiVersion":"1.41"' in answer, answer
        assert procs[1].wait(timeout=30) == 0
        assert path.exists()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
        listener.close()


def test_outside_systemd_nothing_is_notified_and_fds_are_not_taken(cli: CLI, tmp_path: Path) -> None:
    # LISTEN_PID of another process: the fds are not ours, the service binds its own socket.
    sock = tmp_path / "own.sock"
    env = dict(cli.env, LISTEN_PID="1", LISTEN_FDS="1")
    proc = subprocess.Popen(cli.argv("system", "service", "--time", "1", f"unix://{sock}"), env=env)
    try:
        wait_for(sock.exists, 30, "the service's own socket")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
