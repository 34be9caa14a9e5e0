"""The service itself: versions, errors, the socket's mode, idle exit."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

from tests.api.conftest import Api, start_service, stop_service
from tests.conftest import CLI


def test_ping_and_version_answer_as_dockerd(api: Api) -> None:
    status, headers, body = api.request("GET", "/_ping")
    assert (status, body) == (200, b"OK")
    assert headers["api-version"] == "1.41"
    assert headers["ostype"] == "linux"
    version = api.json("GET", "/v1.41/version", expect=200)
    assert version["ApiVersion"] == "1.41" and version["Os"] == "linux"


def test_a_newer_client_is_told_the_highest_version(api: Api) -> None:
    status, _, body = api.request("GET", "/v1.99/version")
    assert status == 400
    assert b"Maximum supported API version is 1.41" in body


def test_unknown_paths_are_docker_json_404s(api: Api) -> None:
    status, headers, body = api.request("GET", "/v1.41/no/such/thing")
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert b'"page not found"' in body


def test_the_socket_is_0660_root(api: Api) -> None:
    st = os.stat(api.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_the_docker_cli_negotiates_the_version(api: Api) -> None:
    out = api.docker_ok("version", "--format", "{{.Server.APIVersion}}")
    assert out.strip() == "1.41"


def test_it_exits_when_idle_and_removes_its_socket(cli: CLI, tmp_path: Path) -> None:
    sock = tmp_path / "idle.sock"
    proc = subprocess.Popen(cli.argv("system", "service", "--time", "1", f"unix://{sock}"), env=cli.env)
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists()
        assert proc.wait(timeout=15) == 0
        assert not sock.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_second_service_on_the_same_socket_is_refused(api: Api, cli: CLI) -> None:
    result = cli("system", "service", "--time", "1", api.host)
    assert result.returncode != 0
    assert b"another service already answers" in result.stderr


def test_a_stale_socket_is_replaced(cli: CLI, tmp_path: Path) -> None:
    import socket

    sock = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()  # a socket file nobody answers on, as a killed service leaves
    proc = start_service(cli, sock)
    stop_service(proc)


def test_start_up_loads_no_click_no_http_client_and_no_engine_verbs(cli: CLI, tmp_path: Path) -> None:
    """What the cold start pays for: a service that answered /_ping and
    /version imported neither click, nor aiohttp's client (which loads the
    CA certificates), nor the engine's container verbs."""
    sock = tmp_path / "light.sock"
    argv = cli.argv("system", "service", "--time", "1", f"unix://{sock}")
    argv[1:1] = ["-X", "importtime"]  # after the interpreter
    proc = subprocess.Popen(argv, env=cli.env, stderr=subprocess.PIPE)
    try:
        import socket

        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for path in ("/_ping", "/version"):
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(str(sock))
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
                assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    modules = {line.rsplit("|", 1)[1].strip() for line in err.decode().splitlines() if line.startswith("import time:")}
    assert "aiohttp.web" in modules and "overlayctl.api.app" in modules  # the measure saw the service
    for heavy in ("click", "overlayctl.cli.app", "aiohttp.client", "aiohttp.connector", "overlayctl.engine.containers"):
        assert heavy not in modules, heavy


def test_an_idle_keep_alive_connection_does_not_keep_it(cli: CLI, tmp_path: Path) -> None:
    """docker-py keeps its connections open between requests: one with no
    request in flight must not keep the service from its idle exit."""
    import socket

    sock = tmp_path / "keep.sock"
    proc = subprocess.Popen(cli.argv("system", "service", "--time", "1", f"unix://{sock}"), env=cli.env)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(30)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")  # keep-alive, HTTP/1.1's default
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
            began = time.monotonic()
            assert proc.wait(timeout=20) == 0
            assert time.monotonic() - began < 10
            assert conn.recv(65536) == b""  # closed by the service on its way out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
