"""The Engine API under test: `system service` on a private store and a
socket of the test's own, and the real clients that talk to it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.helpers import wait_for

DOCKER = "/usr/bin/docker"  # Debian's docker.io client, not any other on PATH


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Api:
    """A running service and ways to speak to it: raw HTTP and the docker CLI."""

    def __init__(self, cli: CLI, sock: Path, proc: subprocess.Popen, config_dir: Path) -> None:
        self.cli = cli
        self.sock = sock
        self.proc = proc
        self.host = f"unix://{sock}"
        self.env = dict(cli.env, DOCKER_HOST=self.host, DOCKER_CONFIG=str(config_dir))
        self.env.pop("DOCKER_BUILDKIT", None)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; (status, headers, body). A dict or list body is
        sent as JSON."""
        conn = _UnixConnection(str(self.sock), timeout)
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, expect: int | None = None, **kw: Any) -> Any:
        """The decoded JSON answer; with expect, the status is checked."""
        status, _, data = self.request(method, path, body, **kw)
        if expect is not None:
            assert status == expect, (method, path, status, data)
        return json.loads(data) if data.strip() else None

    def docker(
        self, *args: str, input: bytes | None = None, timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess:
        """Debian's docker client against the service."""
        if not os.path.exists(DOCKER):
            pytest.fail(f"{DOCKER} is missing: apt-get install docker.io (scripts/setup.sh test installs it)")
        return subprocess.run([DOCKER, *args], input=input, capture_output=True, timeout=timeout, env=self.env, **kw)

    def docker_ok(self, *args: str, **kw: Any) -> str:
        result = self.docker(*args, **kw)
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        return result.stdout.decode()


def service_log(sock: Path) -> Path:
    """Where start_service writes the service's stderr."""
    return sock.with_name(sock.name + ".stderr")


def start_service(cli: CLI, sock: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`system service --time 0` on sock, once it answers /_ping."""
    # Its stderr goes to a file beside the socket: a pipe nobody reads would
    # stop the service once it filled.
    log = service_log(sock)
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            cli.argv("system", "service", "--time", "0", *extra, f"unix://{sock}"),
            env=env or cli.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the service exited: {log.read_text(errors='replace')}")
        try:
            conn = _UnixConnection(str(sock), 2)
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_for(answers, 30, "the service to answer /_ping")
    return proc


def stop_service(proc: subprocess.Popen) -> None:
    """SIGTERM, and the service must be gone within seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("the service did not exit on SIGTERM") from None


@pytest.fixture
def api(cli: CLI, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    """The Engine API of the cli fixture's store, on tmp_path/docker.sock."""
    if "bb" in request.fixturenames:
        # bb:1 in the store before the service opens it: then bb is a copy
        # of the session's store, not an import into one a service holds.
        request.getfixturevalue("bb")
    sock = tmp_path / "docker.sock"
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    proc = start_service(cli, sock)
    try:
        yield Api(cli, sock, proc, config_dir)
    finally:
        stop_service(proc)
