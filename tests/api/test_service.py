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
