"""Debian's docker client (/usr/bin/docker, 20.10) against `system service`:
a session of the commands people type, each one's output checked.

The session is cut into a few tests by theme, so that one missing endpoint
fails its own test and not every command after it."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import DOCKER, Api
from tests.helpers import write_file

pytestmark = pytest.mark.slow


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _read_until(fd: int, needle: bytes, timeout: float, sofar: bytes = b"") -> bytes:
    """Read fd (a pty master or a pipe) until needle shows up, EOF, or timeout;
    all that was read."""
    data = sofar
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the pty's other side is closed
            break
        if not chunk:
            break
        data += chunk
    return data


def test_run_ps_logs_stop_rm(api: Api, bb: str) -> None:
    # run: the output of a foreground container, and its exit code.
    assert api.docker_ok("run", "--rm", "bb:1", "echo", "hello from run") == "hello from run\n"
    failed = api.docker("run", "--rm", "bb:1", "sh", "-c", "echo to-stderr >&2; exit 7")
    assert failed.returncode == 7
    assert failed.stderr.decode() == "to-stderr\n"

    # run -d prints the full ID; ps lists it by name and image.
    cid = api.docker_ok(
        "run",
        "-d",
        "--name",
        "ticker",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line-$i; sleep 0.3; done; sleep 300",
    ).strip()
    assert len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)
    rows = _lines(api.docker_ok("ps", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.Status}}"))
    assert len(rows) == 1, rows
    short, name, image, status = rows[0].split(" ", 3)
    assert (short, name, image) == (cid[:12], "ticker", "bb:1")
    assert status.startswith("Up")
    assert api.docker_ok("inspect", "-f", "{{.State.Running}} {{.Name}}", "ticker").strip() == "true /ticker"

    # logs -f follows: the three lines arrive, in order, while the container runs.
    follow = subprocess.Popen([DOCKER, "logs", "-f", "ticker"], stdout=subprocess.PIPE, env=api.env)
    try:
        assert follow.stdout is not None
        seen = _read_until(follow.stdout.fileno(), b"line-3\n", 30)
        assert seen == b"line-1\nline-2\nline-3\n", seen
        assert follow.poll() is None, "logs -f ended while the container runs"
    finally:
        follow.kill()
        follow.wait()
    assert api.docker_ok("logs", "--tail", "1", "ticker") == "line-3\n"

    # stop: the container is Exited, logs -f on it ends by itself.
    assert api.docker_ok("stop", "-t", "1", "ticker").strip() == "ticker"
    assert api.docker_ok("ps", "-q") == ""
    all_rows = _lines(api.docker_ok("ps", "-a", "--format", "{{.Names}} {{.Status}}"))
    assert len(all_rows) == 1 and all_rows[0].startswith("ticker Exited ("), all_rows
    done = api.docker("logs", "-f", "ticker", timeout=30)
    assert done.stdout == b"line-1\nline-2\nline-3\n"

    # rm: gone, and a second rm is Docker's "No such container".
    assert api.docker_ok("rm", "ticker").strip() == "ticker"
    assert api.docker_ok("ps", "-aq") == ""
    again = api.docker("rm", "ticker")
    assert again.returncode == 1
    assert b"No such container: ticker" in again.stderr


def test_exec_it_under_a_pty(api: Api, bb: str) -> None:
    api.docker_ok("run", "-d", "--name", "box", "bb:1", "sleep", "300")
    assert api.docker_ok("exec", "box", "cat", "/proc/1/cmdline") == "sleep\x00300\x00"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [DOCKER, "exec", "-it", "box", "sh"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=api.env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        # busybox sh's root prompt, "/ # ", says the shell reads its terminal.
        out = _read_until(master, b"# ", 30)
        assert b"# " in out, out
        os.write(master, b"tty; echo done-$((6*7)); exit 3\r")
        out = _read_until(master, b"\x00never", 30, out)
        assert proc.wait(timeout=30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text, text
    assert "done-42" in text, text
    api.docker_ok("rm", "-f", "box")


def test_cp_both_ways(api: Api, bb: str, tmp_path: Path) -> None:
    api.docker_ok("run", "-d", "--name", "cpbox", "bb:1", "sleep", "300")
    write_file(tmp_path / "in" / "note.txt", "carried in\n")
    api.docker_ok("cp", str(tmp_path / "in" / "note.txt"), "cpbox:/tmp/note.txt")
    assert api.docker_ok("exec", "cpbox", "cat", "/tmp/note.txt") == "carried in\n"
    api.docker_ok("exec", "cpbox", "sh", "-c", "mkdir -p /out/sub && echo carried out > /out/sub/f")
    api.docker_ok("cp", "cpbox:/out", str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub" / "f").read_text() == "carried out\n"
    missing = api.docker("cp", "cpbox:/no/such/file", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert b"No such container:path" in missing.stderr or b"no such file" in missing.stderr.lower()
    api.docker_ok("rm", "-f", "cpbox")


def test_images_tag_build_inspect(api: Api, bb: str, tmp_path: Path) -> None:
    listed = _lines(api.docker_ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
    assert listed == [f"bb:1 {bb.removeprefix('sha256:')[:12]}"], listed

    api.docker_ok("tag", "bb:1", "mine/bb:2")
    tags = sorted(line.split()[0] for line in _lines(api.docker_ok("images", "--format", "{{.Repository}}:{{.Tag}} x")))
    assert tags == ["bb:1", "mine/bb:2"]

    ctx = tmp_path / "ctx"
    write_file(
        ctx / "Dockerfile",
        'FROM bb:1\nCOPY hello.txt /hello.txt\nRUN echo built > /built\nCMD ["cat", "/hello.txt", "/built"]\n',
    )
    write_file(ctx / "hello.txt", "from the context\n")
    out = api.docker_ok("build", "-t", "built:1", str(ctx))
    assert "Step 1/4 : FROM bb:1" in out, out
    assert "Successfully built " in out, out
    assert "Successfully tagged built:1" in out, out
    assert api.docker_ok("run", "--rm", "built:1") == "from the context\nbuilt\n"

    assert api.docker_ok("inspect", "-f", "{{json .Config.Cmd}}", "built:1").strip() == '["cat","/hello.txt","/built"]'
    assert api.docker_ok("image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", "bb:1").strip().startswith("linux/")
    history = api.docker_ok("history", "--format", "{{.CreatedBy}}", "built:1")
    assert "echo built > /built" in history, history

    assert "Untagged: mine/bb:2" in api.docker_ok("rmi", "mine/bb:2")
    gone = api.docker("image", "inspect", "mine/bb:2")
    assert gone.returncode == 1 and b"No such image: mine/bb:2" in gone.stderr


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    """An open local docker-registry on 127.0.0.1, as the pull/push tests use."""
    from tests.integration.test_registry import Registry

    r = Registry()
    yield r.host
    r.stop()


def test_push_then_pull_through_a_local_registry(api: Api, bb: str, registry: str) -> None:
    ref = f"{registry}/clients/bb:pushed"
    api.docker_ok("tag", "bb:1", ref)
    pushed = api.docker_ok("push", ref)
    assert f"The push refers to repository [{registry}/clients/bb]" in pushed, pushed
    assert "pushed: digest: sha256:" in pushed, pushed

    assert f"Untagged: {ref}" in api.docker_ok("rmi", ref)
    pulled = api.docker_ok("pull", ref)
    assert "pushed: Pulling from clients/bb" in pulled, pulled
    assert "Digest: sha256:" in pulled, pulled
    assert f"Status: Image is up to date for {ref}" in pulled or f"Downloaded newer image for {ref}" in pulled, pulled
    assert pulled.strip().splitlines()[-1] == ref
    assert api.docker_ok("run", "--rm", ref, "echo", "pulled") == "pulled\n"

    unknown = api.docker("pull", f"{registry}/clients/none:1")
    assert unknown.returncode == 1
    assert b"not found" in unknown.stderr.lower() or b"manifest unknown" in unknown.stderr.lower(), unknown.stderr


def test_networks_and_volumes(api: Api, bb: str) -> None:
    nid = api.docker_ok("network", "create", "clientsnet").strip()
    assert len(nid) == 64
    assert "clientsnet" in api.docker_ok("network", "ls", "--format", "{{.Name}}").split()
    api.docker_ok(
        "run", "-d", "--name", "srv", "--network", "clientsnet", "bb:1", "nc", "-ll", "-p", "7000", "-e", "echo", "pong"
    )
    # A container on the same network finds srv by name.
    reply = api.docker_ok(
        "run", "--rm", "--network", "clientsnet", "bb:1", "sh", "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do nc srv 7000 </dev/null && exit 0; sleep 0.3; done; exit 1",
    )  # fmt: skip
    assert reply == "pong\n"
    members = api.docker_ok("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "clientsnet").split()
    assert members == ["srv"]
    api.docker_ok("rm", "-f", "srv")
    assert api.docker_ok("network", "rm", "clientsnet").strip() == "clientsnet"
    assert "clientsnet" not in api.docker_ok("network", "ls", "--format", "{{.Name}}").split()

    assert api.docker_ok("volume", "create", "keep").strip() == "keep"
    api.docker_ok("run", "--rm", "-v", "keep:/data", "bb:1", "sh", "-c", "echo kept > /data/f")
    assert api.docker_ok("run", "--rm", "-v", "keep:/data", "bb:1", "cat", "/data/f") == "kept\n"
    assert api.docker_ok("volume", "ls", "--format", "{{.Driver}} {{.Name}}").strip() == "local keep"
    mountpoint = api.docker_ok("volume", "inspect", "-f", "{{.Mountpoint}}", "keep").strip()
    assert Path(mountpoint, "f").read_text() == "kept\n"
    assert api.docker_ok("volume", "rm", "keep").strip() == "keep"
    assert api.docker_ok("volume", "ls", "-q") == ""


def test_events_and_system_df(api: Api, bb: str) -> None:
    since = str(int(time.time()) - 1)
    stream = subprocess.Popen(
        [
            DOCKER,
            "events",
            "--filter",
            "type=container",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ],
        stdout=subprocess.PIPE,
        env=api.env,
    )
    try:
        assert stream.stdout is not None
        time.sleep(0.5)  # the stream is open before the container comes
        api.docker_ok("run", "--name", "evented", "bb:1", "true")
        seen = _read_until(stream.stdout.fileno(), b"container die evented", 30)
    finally:
        stream.send_signal(signal.SIGINT)
        try:
            stream.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stream.kill()
            stream.wait()
    assert b"container create evented" in seen, seen
    assert b"container start evented" in seen, seen
    assert b"container die evented" in seen, seen

    # since/until: a bounded query that returns by itself.
    until = str(int(time.time()) + 1)
    time.sleep(1.1)
    past = api.docker_ok("events", "--since", since, "--until", until, "--format", "{{json .}}", timeout=30)
    actions = [
        (e["Type"], e["Action"])
        for e in map(json.loads, _lines(past))
        if e.get("Actor", {}).get("Attributes", {}).get("name") == "evented"
    ]
    assert ("container", "create") in actions and ("container", "die") in actions, actions

    df = _lines(api.docker_ok("system", "df"))
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], df
    rows = {line.split()[0]: line.split() for line in df[1:]}
    assert rows["Images"][1:3] == ["1", "1"], df  # bb:1, used by the stopped container
    assert rows["Containers"][1:3] == ["1", "0"], df
    assert rows["Local"][2] == "0", df  # "Local Volumes": none
    verbose = api.docker_ok("system", "df", "-v")
    assert "evented" in verbose, verbose
    assert api.docker_ok("rm", "evented").strip() == "evented"
