"""Container logs on the real kernel: the json-file format, rotation,
`logs` and its options, the none and journald drivers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

NONE = ("--network", "none")
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def log_file(cli, name: str) -> str:
    return json.loads(cli.ok("inspect", name))[0]["LogPath"]


def test_attached_run_logs_in_dockers_format(cli, bb):
    script = "echo out; echo err >&2; printf 'a <b> & \\303\\251\\n'; printf partial"
    result = cli("run", "--name", "fmt", *NONE, "bb:1", "sh", "-c", script)
    assert result.returncode == 0
    assert result.stdout == "out\na <b> & é\npartial".encode() and result.stderr == b"err\n"
    path = log_file(cli, "fmt")
    assert os.path.basename(path) == json.loads(cli.ok("inspect", "fmt"))[0]["Id"] + "-json.log"
    entries = [json.loads(line) for line in open(path, "rb")]
    for entry in entries:
        assert list(entry) == ["log", "stream", "time"] and RFC3339NANO.match(entry["time"])
    by_stream = {s: [e["log"] for e in entries if e["stream"] == s] for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": ["out\n", "a <b> & é\n", "partial"], "stderr": ["err\n"]}
    assert b"\\u003cb\\u003e \\u0026" in open(path, "rb").read()  # Go's HTML escapes, as Docker writes
    # `logs`: stdout to stdout, stderr to stderr.
    shown = cli("logs", "fmt")
    assert shown.stdout == result.stdout and shown.stderr == b"err\n"


def test_run_rm_keeps_no_log_and_none_driver_none(cli, bb):
    # --rm: the container writes to the terminal directly (nothing to keep).
    assert cli.ok("run", "--rm", *NONE, "bb:1", "echo", "direct") == "direct\n"
    assert cli.ok("run", "--name", "quiet", "--log-driver", "none", *NONE, "bb:1", "echo", "x") == "x\n"
    assert json.loads(cli.ok("inspect", "quiet"))[0]["HostConfig"]["LogConfig"] == {"Type": "none", "Config": {}}
    cid = json.loads(cli.ok("inspect", "quiet"))[0]["Id"]
    assert os.listdir(cli.root / "containers" / cid) == ["upper", "work"]
    result = cli("logs", "quiet")
    assert result.returncode == 125 and b"nothing to read" in result.stderr


def test_logs_tail_timestamps_since(cli, bb):
    cli.ok("run", "--name", "many", *NONE, "bb:1", "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done")
    assert cli.ok("logs", "--tail", "2", "many") == "line4\nline5\n"
    assert cli.ok("logs", "-n", "0", "many") == ""
    stamped = cli.ok("logs", "-t", "--tail", "1", "many")
    stamp, text = stamped.split(" ", 1)
    assert RFC3339NANO.match(stamp) and text == "line5\n"
    assert cli.ok("logs", "--since", "1h", "many").count("\n") == 5
    assert cli.ok("logs", "--since", str(int(time.time()) + 60), "many") == ""
    assert cli.ok("logs", "--until", "2000-01-01T00:00:00Z", "many") == ""
    assert cli.ok("logs", "--since", stamp, "many") == "line5\n"
    assert cli("logs", "--since", "someday", "many").returncode == 125


def test_logs_follow_ends_with_the_container(cli, bb):
    cli.ok("run", "-d", "--name", "fol", *NONE, "bb:1", "sh", "-c", "for i in 1 2 3; do echo n$i; sleep 0.3; done")
    start = time.monotonic()
    result = cli("logs", "-f", "fol", timeout=30)
    assert result.returncode == 0 and result.stdout == b"n1\nn2\nn3\n"
    assert time.monotonic() - start > 0.3


def test_rotation_by_size_and_count(cli, bb):
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"
    opts = ("--log-opt", "max-size=1k", "--log-opt", "max-file=3")
    cli.ok("run", "-d", "--name", "rot", *NONE, *opts, "bb:1", "sh", "-c", script)
    assert cli.ok("wait", "rot") == "0\n"
    path = log_file(cli, "rot")
    directory = os.path.dirname(path)
    names = sorted(n for n in os.listdir(directory) if "json.log" in n)
    base = os.path.basename(path)
    assert names == [base, base + ".1", base + ".2"]
    for name in names:
        assert os.path.getsize(os.path.join(directory, name)) < 1024 + 200
    shown = cli.ok("logs", "rot").splitlines()
    # The last lines survive, in order, with no gap.
    assert shown == [f"line-{i}" for i in range(300 - len(shown), 300)] and 20 < len(shown) < 60
    info = json.loads(cli.ok("inspect", "rot"))[0]
    assert info["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "3"}}


def test_tty_output_is_logged(cli, bb):
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        argv = cli.argv("run", "-t", "--name", "tt", *NONE, "bb:1", "sh", "-c", "echo on-a-tty")
        os.execve(argv[0], argv, cli.env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    assert b"on-a-tty" in out
    assert cli.ok("logs", "tt") == "on-a-tty\r\n"


def test_bad_log_options_are_refused_at_create(cli, bb):
    for args, message in [
        (["--log-driver", "syslog"], b"not supported"),
        (["--log-opt", "max-size=lots"], b'"--log-opt max-size" flag'),
        (["--log-opt", "max-file=2"], b"max-size"),
        (["--log-driver", "journald"], b"journald"),  # no journal here (or a private path with none)
    ]:
        env = dict(cli.env, OVERLAYCTL_JOURNAL_SOCKET=str(cli.root) + "-no-journal")
        result = subprocess.run(cli.argv("create", *args, *NONE, "bb:1", "true"), capture_output=True, env=env)
        assert result.returncode == 125 and message in result.stderr, (args, result.stderr)
    assert cli.ok("ps", "-aq") == ""


def test_journald_driver_speaks_the_native_protocol(cli, bb, tmp_path):
    path = str(tmp_path / "journal.socket")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(path)
    journal.settimeout(20)
    env = dict(cli.env, OVERLAYCTL_JOURNAL_SOCKET=path)
    argv = cli.argv("run", "-d", "--name", "jd", "--log-driver", "journald", *NONE, "bb:1", "echo", "to-journal")
    result = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    cid = result.stdout.decode().strip()
    fields = dict(line.split(b"=", 1) for line in journal.recv(65536).split(b"\n") if b"=" in line)
    assert fields[b"MESSAGE"] == b"to-journal" and fields[b"PRIORITY"] == b"6"
    assert fields[b"CONTAINER_ID"] == cid[:12].encode() and fields[b"CONTAINER_ID_FULL"] == cid.encode()
    assert fields[b"CONTAINER_NAME"] == b"jd" and fields[b"IMAGE_NAME"] == b"bb:1"
    assert fields[b"SYSLOG_IDENTIFIER"] == cid[:12].encode()
    journal.close()
    assert json.loads(cli.ok("inspect", "jd"))[0]["LogPath"] == ""
