"""Pure logic of logs, restart policies, the attach framing and sd_notify:
no root, no container."""

from __future__ import annotations

import json
import os
import re
import socket
import time

import pytest

from overlayctl.container import restart
from overlayctl.errors import InvalidArgumentError
from overlayctl.supervise import logs, sdnotify
from overlayctl.supervise.frames import frame, split_frames

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def test_rfc3339nano_trims_zeros_as_go_does():
    assert logs.rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert logs.rfc3339nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert logs.rfc3339nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
    now = time.time_ns()
    assert logs.parse_time_ns(logs.rfc3339nano(now)) == now


def test_parse_time_with_offsets_and_dates():
    assert logs.parse_time_ns("2023-11-14T23:13:20+01:00") == 1_700_000_000 * 10**9
    assert logs.parse_time_ns("2023-11-14T22:13:20.5Z") == 1_700_000_000_500_000_000
    assert logs.parse_time_ns("2023-11-14") == logs.parse_time_ns("2023-11-14T00:00:00Z")


def test_lines_keeps_newlines_and_cuts_long_lines():
    lines = logs.Lines()
    assert lines.feed(b"a\nb") == [b"a\n"]
    assert lines.feed(b"c\n\nd") == [b"bc\n", b"\n"]
    assert lines.flush() == b"d"
    assert lines.flush() == b""
    long = b"x" * (logs.MAX_LINE * 2 + 10) + b"\n"
    pieces = logs.Lines().feed(long)
    assert [len(p) for p in pieces] == [logs.MAX_LINE, logs.MAX_LINE, 11]
    assert b"".join(pieces) == long


def test_json_file_lines_are_dockers_format(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logs.JsonFileLog(path)
    log.write("stdout", b"hello <world> & \xc3\xa9\n", 1_700_000_000_123_456_789)
    log.write("stderr", b"bad \xff byte", 1_700_000_000_000_000_000)
    log.close()
    raw = open(path, "rb").read().splitlines()
    assert raw[0] == (
        b'{"log":"hello \\u003cworld\\u003e \\u0026 \xc3\xa9\\n","stream":"stdout",'
        b'"time":"2023-11-14T22:13:20.123456789Z"}'
    )
    second = json.loads(raw[1])
    assert second == {"log": "bad \ufffd byte", "stream": "stderr", "time": "2023-11-14T22:13:20Z"}
    entries = logs.read_entries(path)
    assert [(e.stream, e.data) for e in entries] == [
        ("stdout", "hello <world> & é\n".encode()),
        ("stderr", "bad \ufffd byte".encode()),
    ]


def test_rotation_keeps_max_file_files(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logs.JsonFileLog(path, max_size=200, max_file=3)
    for i in range(40):
        log.write("stdout", f"line {i:02d}\n".encode(), time.time_ns())
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    entry = len(open(path, "rb").readline())
    for name in os.listdir(tmp_path):
        assert os.path.getsize(tmp_path / name) <= 200 + entry
    got = [e.data.decode() for e in logs.read_entries(path)]
    # The newest lines, in order, without a gap.
    assert got == [f"line {i:02d}\n" for i in range(40 - len(got), 40)]
    assert len(got) > 3 * (200 // entry) - 3
    assert [e.data for e in logs.read_entries(path, tail=2)] == [b"line 38\n", b"line 39\n"]
    assert logs.read_entries(path, tail=0) == []


def test_max_file_1_truncates(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logs.JsonFileLog(path, max_size=100, max_file=1)
    for i in range(20):
        log.write("stdout", f"{i}\n".encode(), time.time_ns())
    log.close()
    assert os.listdir(tmp_path) == ["c-json.log"]
    assert os.path.getsize(path) <= 200


def test_since_and_until_filter(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logs.JsonFileLog(path)
    base = 1_700_000_000 * 10**9
    for i in range(5):
        log.write("stdout", f"{i}\n".encode(), base + i * 10**9)
    log.close()
    assert [e.data for e in logs.read_entries(path, since=base + 3 * 10**9)] == [b"3\n", b"4\n"]
    assert [e.data for e in logs.read_entries(path, until=base + 10**9)] == [b"0\n", b"1\n"]


@pytest.mark.parametrize(
    "text, expected",
    [("10m", 10 << 20), ("512k", 512 << 10), ("1.5g", int(1.5 * (1 << 30))), ("100", 100), ("2MiB", 2 << 20)],
)
def test_parse_size(text, expected):
    assert logs.parse_max_size(text) == expected


@pytest.mark.parametrize("text", ["", "m", "10x", "1.2.3m", "0"])
def test_parse_size_refuses(text):
    with pytest.raises(InvalidArgumentError):
        logs.parse_max_size(text)


def test_parse_since_forms():
    now = 1_700_000_000 * 10**9
    assert logs.parse_since("10m", now) == now - 600 * 10**9
    assert logs.parse_since("1h30m", now) == now - 5400 * 10**9
    assert logs.parse_since("1.5s", now) == now - 1_500_000_000
    assert logs.parse_since("1699999000", now) == 1_699_999_000 * 10**9
    assert logs.parse_since("1699999000.25", now) == 1_699_999_000_250_000_000
    assert logs.parse_since("2023-11-14T22:13:20Z", now) == now
    with pytest.raises(InvalidArgumentError):
        logs.parse_since("yesterday", now)


def test_log_config_is_checked(monkeypatch, tmp_path):
    assert logs.parse_log_config(None, []).to_json() == {"Type": "json-file", "Config": {}}
    config = logs.parse_log_config("json-file", ["max-size=10m", "max-file=3"]).to_json()
    assert config == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    for driver, opts, message in [
        ("syslog", [], "not supported"),
        ("json-file", ["max-file=3"], "max-size"),
        ("json-file", ["max-size=1x"], 'for "--log-opt max-size" flag'),
        ("json-file", ["max-file=0", "max-size=1m"], "max-file"),
        ("json-file", ["bogus=1"], "unknown log opt"),
        ("json-file", ["novalue"], "KEY=VALUE"),
        ("none", ["max-size=1m"], "unknown log opt"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            logs.parse_log_config(driver, opts)
    monkeypatch.setenv("OVERLAYCTL_JOURNAL_SOCKET", str(tmp_path / "nothing"))
    with pytest.raises(InvalidArgumentError, match="journald"):
        logs.parse_log_config("journald", [])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "journal"))
    monkeypatch.setenv("OVERLAYCTL_JOURNAL_SOCKET", str(tmp_path / "journal"))
    assert logs.parse_log_config("journald", ["tag=web"]).type == "journald"
    sock.close()


def test_journal_native_protocol(tmp_path):
    path = str(tmp_path / "journal")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    writer = logs.JournalLog(path, {"CONTAINER_NAME": "web", "CONTAINER_ID": "abc"})
    writer.write("stderr", b"oops\n", time.time_ns())
    writer.write("stdout", b"two\nlines", time.time_ns())  # (a piece without its newline: partial)
    writer.close()
    first = server.recv(65536)
    assert first.split(b"\n")[:-1] == [b"MESSAGE=oops", b"PRIORITY=3", b"CONTAINER_NAME=web", b"CONTAINER_ID=abc"]
    second = server.recv(65536)
    assert second.startswith(b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\n")
    assert b"PRIORITY=6\n" in second and b"CONTAINER_PARTIAL_MESSAGE=true\n" in second
    server.close()


def test_restart_policies():
    assert restart.parse_policy(None).to_json() == {"Name": "no", "MaximumRetryCount": 0}
    assert restart.parse_policy("on-failure:2").to_json() == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert restart.parse_policy("unless-stopped").name == "unless-stopped"
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(InvalidArgumentError):
            restart.parse_policy(bad)
    on_failure = restart.parse_policy("on-failure:2")
    assert [restart.should_restart(on_failure, 1, False, n) for n in range(3)] == [True, True, False]
    assert not restart.should_restart(on_failure, 0, False, 0)
    assert restart.should_restart(restart.parse_policy("on-failure"), 1, False, 100)
    for name in ("always", "unless-stopped"):
        policy = restart.parse_policy(name)
        assert restart.should_restart(policy, 0, False, 50)
        assert not restart.should_restart(policy, 0, True, 0)  # stopped by hand
        assert not restart.should_restart(policy, None, False, 0)  # nobody saw the end
    assert not restart.should_restart(restart.parse_policy("no"), 1, False, 0)


def test_backoff_doubles_capped_and_resets():
    delays = [restart.next_delay_ms(0, 0.0)]
    for _ in range(12):
        delays.append(restart.next_delay_ms(delays[-1], 0.5))
    assert delays[:4] == [100, 200, 400, 800]
    assert max(delays) == restart.MAX_DELAY_MS == delays[-1]
    assert restart.next_delay_ms(6400, 10.0) == 100


def test_attach_frames_round_trip():
    data = frame(1, b"out") + frame(2, b"") + frame(3, b"137")
    messages, rest = split_frames(data + frame(1, b"partial")[:5])
    assert messages == [(1, b"out"), (2, b""), (3, b"137")]
    assert rest == frame(1, b"partial")[:5]


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify(monkeypatch, tmp_path, abstract):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"overlayctl-test-{os.getpid()}"
        server.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        server.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    assert sdnotify.ready("running", 42)
    assert server.recv(4096) == b"READY=1\nMAINPID=42\nSTATUS=running"
    assert sdnotify.stopping()
    assert server.recv(4096) == b"STOPPING=1"
    server.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sdnotify.notify("READY=1") is False


def test_sd_notify_without_a_listener(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.notify("READY=1") is False


def test_a_follow_goes_on_where_the_read_stopped(tmp_path):
    # logs -f reads what is there, then follows: a line written between the
    # two, or one whose end the writer had not written yet, must come once.
    path = str(tmp_path / "c-json.log")
    log = logs.JsonFileLog(path)
    log.write("stdout", b"one", 1_000)
    position: list = []
    read = logs.read_entries(path, position=position)
    assert [e.data for e in read] == [b"one"]
    log.write("stdout", b"two", 2_000)  # after the read, before the follow
    # Half of a third line, then the rest.
    whole = b'{"log":"three","stream":"stderr","time":"1970-01-01T00:00:00.000003Z"}\n'
    os.write(log.fd, whole[:20])
    followed = logs.follow(path, lambda: False, position=position[0])
    first = next(followed)
    assert first.data == b"two"
    os.write(log.fd, whole[20:])
    rest = list(followed)
    assert [(e.data, e.stream) for e in rest] == [(b"three", "stderr")]
    log.close()


def test_a_read_for_a_follow_that_never_comes_closes_its_file(tmp_path):
    path = str(tmp_path / "c-json.log")
    log = logs.JsonFileLog(path)
    log.write("stdout", b"one", 1_000)
    position: list = []
    logs.read_entries(path, position=position)
    fd = position[0].fd
    logs.close_position(position)
    with pytest.raises(OSError):
        os.fstat(fd)
    log.close()
