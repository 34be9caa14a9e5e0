"""GET /events: Debian's docker client's `events` (a window, filters,
formats, and following live) against what `overlayctl events` prints from
the same record, and clients that go away mid-stream."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import time
from urllib.parse import quote

import pytest

from tests.api.conftest import DOCKER, start_service, stop_service
from tests.helpers import wait_for

NONE = ("--network", "none")


def _filters(data: dict) -> str:
    return "filters=" + quote(json.dumps(data))


def _made(api) -> tuple[str, ...]:
    """A container's life and a volume made through the CLI; the window
    (--since, --until) that holds their events."""
    since = f"{time.time() - 0.001:.9f}"
    api.cli.ok("run", "--name", "ev1", *NONE, "--label", "team=a", "bb:1", "true")
    api.cli.ok("volume", "create", "--label", "team=b", "evvol")
    api.cli.ok("rm", "ev1")
    time.sleep(0.01)
    return ("--since", since, "--until", f"{time.time():.9f}")


def test_a_window_of_events_as_the_cli_shows_it(api, bb):
    window = _made(api)
    docker = api.docker_ok("events", *window).splitlines()
    assert docker == api.cli.ok("events", *window).splitlines()
    actions = [line.split()[1:3] for line in docker]
    assert ["container", "create"] in actions and ["container", "start"] in actions
    assert ["container", "die"] in actions and ["container", "destroy"] in actions
    assert ["volume", "create"] in actions
    assert any("image=bb:1" in line and "name=ev1" in line and "team=a" in line for line in docker)

    def shown(*args: str) -> list[str]:
        return api.docker_ok("events", *window, *args).splitlines()

    fmt = ("--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    assert shown("--filter", "type=volume", *fmt) == ["volume create <no value>"]
    assert shown("--filter", "volume=evvol", "--format", "{{.Actor.ID}}") == ["evvol"]
    assert shown("--filter", "container=ev1", "--filter", "event=start", *fmt) == ["container start ev1"]
    assert shown("--filter", "event=destroy", *fmt) == ["container destroy ev1"]
    assert shown("--filter", "label=team=b", *fmt) == ["volume create <no value>"]
    assert shown("--filter", "image=bb:1", "--filter", "event=die", *fmt) == ["container die ev1"]
    assert shown("--filter", "image=bb", "--filter", "event=die", *fmt) == ["container die ev1"]
    assert shown("--filter", "network=nosuch") == []
    # {{json .}}: Docker's message, field for field.
    ours = [json.loads(line) for line in api.cli.ok("events", *window, "--format", "json").splitlines()]
    theirs = [json.loads(line) for line in shown("--format", "{{json .}}")]
    assert theirs == ours
    start = next(e for e in theirs if e["Action"] == "start")
    assert start["status"] == "start" and start["from"] == "bb:1" and start["id"] == start["Actor"]["ID"]
    assert start["scope"] == "local" and start["time"] == start["timeNano"] // 1_000_000_000
    # The raw stream ends when `until` has passed, one JSON document a line.
    since, until = window[1], window[3]
    status, headers, body = api.request("GET", f"/events?since={since}&until={until}&" + _filters({"type": ["volume"]}))
    assert status == 200 and headers["content-type"] == "application/json"
    assert [json.loads(line)["Actor"]["ID"] for line in body.splitlines()] == ["evvol"]


def _lines(proc: subprocess.Popen, want: str, timeout: float = 30) -> list[str]:
    """Lines the process writes, until one equal to `want`."""
    got: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    while want not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"no {want!r} within {timeout}s: {got}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, f"the stream ended before {want!r}: {got} {proc.stderr.read() if proc.stderr else ''}"
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        got += [line.decode() for line in complete]
    return got


def test_a_live_stream_while_a_container_starts(api, bb):
    # --since now: what happens between the client's start and its request
    # comes from the record, the rest live; nothing falls between.
    since = f"{time.time():.9f}"
    argv = [
        DOCKER,
        "events",
        "--since",
        since,
        "--filter",
        "container=live",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]
    proc = subprocess.Popen(argv, env=api.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # usually connected by now: the events then arrive live
        api.cli.ok("run", "-d", "--name", "live", *NONE, "bb:1", "sleep", "30")
        assert _lines(proc, "start live")[:2] == ["create live", "start live"]
        api.cli.ok("kill", "live")
        assert "die live" in _lines(proc, "die live")
        assert proc.poll() is None  # still following
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def _open_stream(sock_path: str) -> socket.socket:
    """A raw GET /events, its answer's headers read: the stream is live."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    s.sendall(b"GET /v1.41/events HTTP/1.1\r\nHost: docker\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def _fds(pid: int) -> int:
    """The service's sockets and open event records (worker threads' own
    catalog connections come and go with the threads, and are not counted)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        count += target.startswith("socket:") or "/events/" in target
    return count


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


@pytest.mark.slow
def test_clients_that_go_away_cost_the_service_nothing(api, tmp_path):
    pid = api.proc.pid
    for s in [_open_stream(str(api.sock)) for _ in range(3)]:
        s.close()  # the worker threads exist now; what follows must not add to them
    wait_for(lambda: api.request("GET", "/_ping")[0] == 200, 10, "ping")
    time.sleep(0.5)
    fds, threads = _fds(pid), _threads(pid)
    streams = [_open_stream(str(api.sock)) for _ in range(20)]
    # Twenty live streams hold a socket and the record open each, no thread.
    assert _fds(pid) >= fds + 20
    assert _threads(pid) <= max(threads, 8)
    assert api.request("GET", "/_ping", timeout=5)[0] == 200
    for s in streams:
        s.close()
    wait_for(lambda: _fds(pid) <= fds, 10, "the streams' descriptors to close")
    assert _threads(pid) <= max(threads, 8)

    # A service with an idle time stays while a stream is open, and exits
    # once its client has gone.
    sock = tmp_path / "idle.sock"
    idle = start_service(api.cli, sock, "--time", "1")
    try:
        stream = _open_stream(str(sock))
        time.sleep(2.5)
        assert idle.poll() is None, "the service left a live stream"
        stream.close()
        wait_for(lambda: idle.poll() is not None, 10, "the idle service to exit")
        assert idle.returncode == 0
    finally:
        stop_service(idle)


def test_bad_event_requests_are_400s(api):
    for query in (
        _filters({"colour": ["blue"]}),
        "since=yesterday",
        "since=2000000000&until=1000000000",
        "until=sometime",
    ):
        status, _, body = api.request("GET", "/events?" + query)
        assert status == 400 and json.loads(body)["message"], (query, status, body)
    # A window that has ended: an answer at once, empty.
    started = time.monotonic()
    status, _, body = api.request("GET", "/events?since=1000000000&until=1000000001")
    assert status == 200 and body == b"" and time.monotonic() - started < 5
