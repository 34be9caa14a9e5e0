"""GET /containers/{id}/logs: Docker's multiplexed frames (or raw bytes with
a TTY), follow, tail, since/until and timestamps, through Debian's docker
client and raw HTTP, on containers that `overlayctl run -d` made."""

from __future__ import annotations

import os
import re
import socket
import struct
import time

import pytest

from tests.api.conftest import Api
from tests.helpers import wait_for

# Pauses between the streams: the supervisor reads stdout and stderr from
# two pipes, so only time orders lines of different streams (as in Docker).
SCRIPT = "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2"
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """The (stream, payload) frames of a multiplexed body; any bytes that do
    not parse as frames fail the test."""
    out = []
    while body:
        assert len(body) >= 8, body
        kind, size = struct.unpack(">BxxxI", body[:8])
        assert kind in (1, 2), body[:8]
        out.append((kind, body[8 : 8 + size]))
        assert len(body) >= 8 + size, "truncated frame"
        body = body[8 + size :]
    return out


def finished(api: Api, name: str, script: str, *run_args: str) -> None:
    """A container `name` that ran `sh -c script` and has exited."""
    api.cli.ok("run", "-d", "--name", name, *run_args, "bb:1", "sh", "-c", script)
    api.cli.ok("wait", name)


def needs_inspect(api: Api) -> None:
    """`docker logs` inspects the container first (for its TTY); that is the
    containers area's GET /containers/{id}/json."""
    status, _, body = api.request("GET", "/containers/none-such/json")
    if b"page not found" in body:
        pytest.skip("docker logs needs GET /containers/{id}/json, which the containers area serves")


def by_stream(pairs: list[tuple[int, bytes]]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {1: [], 2: []}
    for kind, payload in pairs:
        out[kind].append(payload)
    return out


def test_raw_logs_are_docker_frames_split_by_stream(api: Api, bb: str) -> None:
    finished(api, "lg", SCRIPT)
    status, headers, body = api.request("GET", "/v1.41/containers/lg/logs?stdout=1&stderr=1")
    assert status == 200
    assert by_stream(frames(body)) == {1: [b"out1\n", b"out2\n"], 2: [b"err1\n"]}
    _, _, body = api.request("GET", "/containers/lg/logs?stdout=1")
    assert frames(body) == [(1, b"out1\n"), (1, b"out2\n")]
    _, _, body = api.request("GET", "/containers/lg/logs?stderr=true")
    assert frames(body) == [(2, b"err1\n")]
    _, _, body = api.request("GET", "/containers/lg/logs?stdout=1&timestamps=1")
    lines = [payload for _, payload in frames(body)]
    assert len(lines) == 2 and all(STAMP.match(line) for line in lines), lines
    assert [line[31:] for line in lines] == [b"out1\n", b"out2\n"]


def test_raw_logs_tail(api: Api, bb: str) -> None:
    finished(api, "tl", "echo a; echo b; echo c")
    _, _, body = api.request("GET", "/containers/tl/logs?stdout=1&stderr=1&tail=2")
    assert frames(body) == [(1, b"b\n"), (1, b"c\n")]
    _, _, body = api.request("GET", "/containers/tl/logs?stdout=1&stderr=1&tail=0")
    assert body == b""
    # dockerd reads a tail that is not a number as all of it.
    _, _, body = api.request("GET", "/containers/tl/logs?stdout=1&tail=everything")
    assert len(frames(body)) == 3


def test_raw_logs_errors_are_dockerds(api: Api, bb: str) -> None:
    finished(api, "lg", "echo hi")
    status, _, body = api.request("GET", "/containers/lg/logs")
    assert status == 400 and b"you must choose at least one stream" in body
    status, _, body = api.request("GET", "/containers/nothere/logs?stdout=1")
    assert status == 404 and body.startswith(b'{"message":')
    status, _, body = api.request("GET", "/containers/lg/logs?stdout=1&since=yesterday")
    assert status == 400 and b"since" in body
    finished(api, "quiet", "echo unseen", "--log-driver", "none")
    status, _, body = api.request("GET", "/containers/quiet/logs?stdout=1")
    assert status == 501 and b"does not support reading" in body


def test_a_tty_container_logs_raw_bytes(api: Api, bb: str) -> None:
    finished(api, "tt", "echo one; echo two >&2", "-t")
    status, _, body = api.request("GET", "/containers/tt/logs?stdout=1&stderr=1")
    assert status == 200
    # One stream, no frame headers: the terminal's own line ends.
    assert body.replace(b"\r\n", b"\n") == b"one\ntwo\n"


def _between(api: Api, name: str) -> str:
    """Unix seconds between the two lines of `name`'s log."""
    _, _, body = api.request("GET", f"/containers/{name}/logs?stdout=1&timestamps=1")
    (_, early), (_, late) = frames(body)
    at = time.mktime(time.strptime(early[:19].decode(), "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return f"{at + int(early[20:29]) / 1e9 + 0.7:.9f}"


def test_since_and_until_take_unix_seconds(api: Api, bb: str) -> None:
    finished(api, "tm", "echo early; sleep 1.5; echo late")
    between = _between(api, "tm")
    _, _, body = api.request("GET", f"/containers/tm/logs?stdout=1&since={between}")
    assert frames(body) == [(1, b"late\n")]
    _, _, body = api.request("GET", f"/containers/tm/logs?stdout=1&until={between}")
    assert frames(body) == [(1, b"early\n")]
    _, _, body = api.request("GET", "/containers/tm/logs?stdout=1&since=0")
    assert len(frames(body)) == 2


def test_docker_logs_since_and_until(api: Api, bb: str) -> None:
    needs_inspect(api)
    finished(api, "tm", "echo early; sleep 1.5; echo late")
    between = _between(api, "tm")
    assert api.docker_ok("logs", "--since", between, "tm") == "late\n"
    assert api.docker_ok("logs", "--until", between, "tm") == "early\n"


def test_docker_logs_splits_stdout_and_stderr(api: Api, bb: str) -> None:
    needs_inspect(api)
    finished(api, "lg", SCRIPT)
    result = api.docker("logs", "lg")
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == (b"out1\nout2\n", b"err1\n")
    finished(api, "tl", "echo a; echo b; echo c")
    assert api.docker_ok("logs", "--tail", "2", "tl") == "b\nc\n"
    stamped = api.docker_ok("logs", "-t", "lg").encode().splitlines(keepends=True)
    assert [line[31:] for line in stamped] == [b"out1\n", b"out2\n"]
    assert all(STAMP.match(line) for line in stamped), stamped
    # --since in the future (Docker's client turns a date into Unix seconds).
    assert api.docker_ok("logs", "--since", "2099-01-01T00:00:00Z", "lg") == ""
    assert api.docker_ok("logs", "--until", "2000-01-01T00:00:00Z", "lg") == ""


@pytest.mark.slow
def test_docker_logs_follow_streams_until_the_container_ends(api: Api, bb: str) -> None:
    needs_inspect(api)
    api.cli.ok("run", "-d", "--name", "fl", "bb:1", "sh", "-c", "for i in 1 2 3 4; do echo tick $i; sleep 0.5; done")
    started = time.monotonic()
    result = api.docker("logs", "-f", "fl", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"tick 1\ntick 2\ntick 3\ntick 4\n"
    # It followed: it returned only once the container was done.
    assert time.monotonic() - started > 1.0
    assert api.cli.ok("inspect", "-f", "{{.State.Status}}", "fl").strip() == "exited"


def _service_holds(api: Api, path: str) -> bool:
    for fd in os.listdir(f"/proc/{api.proc.pid}/fd"):
        try:
            if os.readlink(f"/proc/{api.proc.pid}/fd/{fd}") == path:
                return True
        except OSError:
            continue
    return False


@pytest.mark.slow
def test_a_follower_that_goes_away_costs_nothing(api: Api, bb: str) -> None:
    cid = api.cli.ok("run", "-d", "--name", "quiet", "bb:1", "sh", "-c", "echo hello; sleep 600").strip()
    log = api.cli.ok("inspect", "-f", "{{.LogPath}}", "quiet").strip()
    assert log.endswith(".log"), log
    wait_for(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 10, "the first line")
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(api.sock))
    sock.sendall(f"GET /v1.41/containers/{cid}/logs?stdout=1&follow=1 HTTP/1.1\r\nHost: docker\r\n\r\n".encode())
    received = b""
    while b"hello" not in received:
        chunk = sock.recv(4096)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    # What was written is sent first; then it follows the file.
    wait_for(lambda: _service_holds(api, log), 10, "the service to follow the log")
    sock.close()
    # Its thread notices within a poll, closes the log and ends.
    wait_for(lambda: not _service_holds(api, log), 10, "the service to let go of the log")
    # And the service still answers.
    status, _, _ = api.request("GET", "/_ping")
    assert status == 200
