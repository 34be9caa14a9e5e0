"""Debian's docker-compose 1.29 brings tests/data/compose/ up and down
through `system service`: a built service, a named volume, a user-defined
network with names, a published port answered from the host, depends_on
with condition: service_healthy, an env file, `ps`, `logs` (-f too),
`exec -T` and `down -v`; each command's output is checked."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.api.conftest import Api
from tests.conftest import REPO
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

COMPOSE = "/usr/bin/docker-compose"
APP = REPO / "tests" / "data" / "compose"
PROJECT = "clients21"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Compose:
    """docker-compose on tests/data/compose, against the api fixture's socket."""

    def __init__(self, api: Api, port: int) -> None:
        if not os.path.exists(COMPOSE):
            pytest.fail(f"{COMPOSE} is missing: apt-get install docker-compose (scripts/setup.sh test installs it)")
        self.api = api
        self.port = port
        self.env = dict(
            api.env,
            COMPOSE_PROJECT_NAME=PROJECT,
            COMPOSE_DOCKER_CLI_BUILD="0",  # compose's own docker-py build, through the API
            CLIENTS_WEB_PORT=str(port),
        )

    def argv(self, *args: str) -> list[str]:
        return [COMPOSE, "--project-directory", str(APP), "-f", str(APP / "docker-compose.yml"), *args]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, timeout=timeout, env=self.env, cwd=APP)

    def ok(self, *args: str, timeout: float = 180) -> tuple[str, str]:
        """(stdout, stderr) of a command that must succeed."""
        result = self(*args, timeout=timeout)
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        return result.stdout.decode(), result.stderr.decode()


@pytest.fixture
def compose(api: Api, bb: str) -> Iterator[Compose]:
    c = Compose(api, _free_port())
    try:
        yield c
    finally:
        # Whatever failed, the project's containers, networks and volumes go.
        c("down", "-v", "--timeout", "1", timeout=120)
        api.cli("network", "prune", "-f")
        api.cli("volume", "prune", "-f")


def _http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def _answers(port: int) -> bytes | None:
    try:
        return _http_get(port)
    except OSError:
        return None


def test_compose_up_ps_exec_logs_down(compose: Compose, api: Api) -> None:
    # up -d: web is built (compose's warning says so), backend comes first
    # and web is created only once backend is healthy.
    _, err = compose.ok("up", "-d")
    assert f'Creating network "{PROJECT}_appnet"' in err, err
    assert f'Creating volume "{PROJECT}_data"' in err, err
    assert "Building web" in err and "Image for service web was built because it did not already exist" in err, err
    for service in ("backend", "web"):
        assert re.search(rf"Creating {PROJECT}_{service}_1 +\.\.\. done", err), err
    health = api.docker_ok("inspect", "-f", "{{.State.Health.Status}}", f"{PROJECT}_backend_1").strip()
    assert health == "healthy", health

    # ps: both up; web healthy (its Dockerfile's HEALTHCHECK) with its port.
    def both_healthy() -> str | None:
        out = compose.ok("ps")[0]
        return out if out.count("(healthy)") == 2 else None

    table = wait_for(both_healthy, 60, "compose ps to show both services healthy")
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith(PROJECT)}
    assert sorted(rows) == [f"{PROJECT}_backend_1", f"{PROJECT}_web_1"], table
    assert "Up (healthy)" in rows[f"{PROJECT}_web_1"], table
    assert f"127.0.0.1:{compose.port}->8080/tcp" in rows[f"{PROJECT}_web_1"], table
    ids = compose.ok("ps", "-q")[0].split()
    assert sorted(ids) == sorted(api.docker_ok("ps", "-q", "--no-trunc").split()), ids
    assert sorted(compose.ok("ps", "--services")[0].split()) == ["backend", "web"]

    # A second up changes nothing: compose finds its network, volume and
    # containers as it left them (labels, config hash, network options).
    _, err = compose.ok("up", "-d")
    for service in ("backend", "web"):
        assert f"{PROJECT}_{service}_1 is up-to-date" in err, err
    assert "Recreating" not in err and "Creating" not in err, err

    # The published port, answered from the host: the env file's greeting
    # and what backend left in the shared named volume.
    reply = wait_for(lambda: _answers(compose.port), 30, f"web to answer on 127.0.0.1:{compose.port}")
    assert reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0], reply
    assert reply.endswith(b"\r\n\r\nhello-from-env-file from backend-was-here\n"), reply

    # exec -T: the env file reached the container; backend is found by name
    # on the user-defined network.
    assert compose.ok("exec", "-T", "web", "sh", "-c", "echo $GREETING")[0] == "hello-from-env-file\n"
    assert compose.ok("exec", "-T", "web", "cat", "/data/from-backend")[0] == "backend-was-here\n"
    assert compose.ok("exec", "-T", "web", "sh", "-c", "nc backend 7000 </dev/null")[0] == "pong\n"
    lookup = compose.ok("exec", "-T", "web", "nslookup", "backend")[0]
    backend_ip = api.docker_ok(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", f"{PROJECT}_backend_1"
    ).strip()
    assert backend_ip and backend_ip in lookup, (backend_ip, lookup)
    failed = compose("exec", "-T", "web", "sh", "-c", "exit 5")
    assert failed.returncode == 5, failed

    # logs: every service's lines, prefixed by its container.
    out = compose.ok("logs", "--no-color")[0]
    assert out.startswith("Attaching to ") and f"{PROJECT}_backend_1" in out.splitlines()[0], out
    assert any(line.startswith("backend_1 ") and line.endswith("| backend ready") for line in out.splitlines()), out
    assert any(line.startswith("web_1 ") and line.endswith("| web serving") for line in out.splitlines()), out

    # logs -f: follows until stopped; read a few lines, then interrupt it.
    follow = subprocess.Popen(
        compose.argv("logs", "-f", "--no-color"),
        stdout=subprocess.PIPE,
        env=compose.env,
        cwd=APP,
        start_new_session=True,
    )
    try:
        assert follow.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            any("backend ready" in line for line in seen) and any("web serving" in line for line in seen)
        ):
            line = follow.stdout.readline()
            if not line:
                break
            seen.append(line.decode())
        assert any("| backend ready" in line for line in seen), seen
        assert any("| web serving" in line for line in seen), seen
        assert follow.poll() is None, "logs -f ended while the services run"
    finally:
        os.killpg(follow.pid, signal.SIGINT)
        try:
            follow.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(follow.pid, signal.SIGKILL)
            follow.wait()

    # down -v: nothing of the project is left.
    _, err = compose.ok("down", "-v", "--timeout", "1")
    for what in (
        f"Stopping {PROJECT}_web_1",
        f"Removing {PROJECT}_backend_1",
        f"Removing network {PROJECT}_appnet",
        f"Removing volume {PROJECT}_data",
    ):
        assert what in err, (what, err)
    assert api.docker_ok("ps", "-aq") == ""
    networks = api.docker_ok("network", "ls", "--format", "{{.Name}}").split()
    assert not [n for n in networks if n.startswith(PROJECT)], networks
    assert api.docker_ok("volume", "ls", "-q") == ""
    assert _answers(compose.port) is None
    images = api.docker_ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert sorted(images) == ["bb:1", f"{PROJECT}_web:latest"], images


def test_compose_top_restart_run(compose: Compose) -> None:
    _, err = compose.ok("up", "-d")
    assert re.search(rf"Creating {PROJECT}_web_1 +\.\.\. done", err), err
    wait_for(lambda: _answers(compose.port), 30, f"web to answer on 127.0.0.1:{compose.port}")

    # top and restart: web's server is its process, and it serves again
    # after a restart.
    assert "httpd -f -p 8080 -h /www" in compose.ok("top", "web")[0]
    _, err = compose.ok("restart", "-t", "1", "web")
    assert re.search(rf"Restarting {PROJECT}_web_1 +\.\.\. done", err), err
    reply = wait_for(lambda: _answers(compose.port), 30, "web to answer after its restart")
    assert reply.endswith(b"hello-from-env-file from backend-was-here\n"), reply

    # run: a one-off container of a service, attached, removed after; its
    # exit code is compose's.
    out, err = compose.ok("run", "--rm", "-T", "backend", "sh", "-c", "echo one-off; cat /shared/from-backend")
    assert out == "one-off\nbackend-was-here\n", (out, err)
    assert f"Creating {PROJECT}_backend_run" in err, err
    assert compose("run", "--rm", "-T", "backend", "sh", "-c", "exit 4").returncode == 4
    assert len(compose.ok("ps", "-q")[0].split()) == 2  # the one-offs are gone

    _, err = compose.ok("down", "-v", "--timeout", "1")
    assert f"Removing network {PROJECT}_appnet" in err, err
