"""Exec through the Engine API: raw HTTP for the hijacked stream's bytes,
and Debian's docker client (docker exec, -i, -it under a pty, -d)."""

from __future__ import annotations

import os
import pty
import select
import time

from tests.api.hijacked import Stream, frames, held_fds, joined
from tests.helpers import wait_for


def _running(api, *cmd: str, flags: tuple[str, ...] = ()) -> str:
    """A container running cmd, started by the CLI on the service's store."""
    return api.cli.ok("run", "-d", *flags, "bb:1", *cmd).strip()


def _exec(api, cid: str, cmd: list[str], **config) -> str:
    body = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True, **config}
    return api.json("POST", f"/containers/{cid}/exec", body, expect=201)["Id"]


def _inspect(api, exec_id: str) -> dict:
    return api.json("GET", f"/exec/{exec_id}/json", expect=200)


def test_exec_frames_stdout_and_stderr_then_the_exit_code(api, bb):
    cid = _running(api, "sleep", "1000")
    exec_id = _exec(api, cid, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    before = _inspect(api, exec_id)
    assert before["Running"] is False and before["ExitCode"] is None and before["ContainerID"] == cid
    stream = Stream(api.sock, "POST", f"/v1.41/exec/{exec_id}/start", {"Detach": False, "Tty": False})
    assert stream.status_line.startswith("HTTP/1.1 101 UPGRADED"), stream.status_line
    assert stream.headers["content-type"] == "application/vnd.docker.raw-stream"
    assert stream.headers["upgrade"] == "tcp" and stream.headers["connection"].lower() == "upgrade"
    pairs = frames(stream.read_all())
    stream.close()
    assert joined(pairs, 1) == b"out\n" and joined(pairs, 2) == b"err\n", pairs
    after = _inspect(api, exec_id)
    assert after["ExitCode"] == 3 and after["Running"] is False and after["Pid"] > 0
    assert after["ProcessConfig"] == {
        "arguments": ["-c", "echo out; echo err >&2; exit 3"],
        "entrypoint": "sh",
        "privileged": False,
        "tty": False,
        "user": "",
    }
    status, _, body = api.request("POST", f"/exec/{exec_id}/start", {"Detach": False})
    assert status == 409 and b"has already run" in body, (status, body)
    events = api.cli.ok("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", f"container={cid}")
    assert "exec_create: sh -c" in events and "exec_start: sh -c" in events and "exec_die" in events, events


def test_exec_stdin_then_half_close_and_output_goes_on(api, bb):
    """The client closes its write side: the process reads EOF, and its
    output still reaches the client (echo data | docker exec -i c cat)."""
    cid = _running(api, "sleep", "1000")
    exec_id = _exec(api, cid, ["sh", "-c", "cat; echo done"], AttachStdin=True)
    stream = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False})
    assert stream.status == 101
    stream.send(b"line one\nline two\n")
    stream.close_write()
    pairs = frames(stream.read_all())
    stream.close()
    assert joined(pairs, 1) == b"line one\nline two\ndone\n", pairs
    assert _inspect(api, exec_id)["ExitCode"] == 0


def test_exec_tty_is_raw_bytes_from_a_pty(api, bb):
    cid = _running(api, "sleep", "1000")
    exec_id = _exec(api, cid, ["sh", "-c", "tty; echo hi >&2"], Tty=True)
    stream = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": True})
    out = stream.read_all()
    stream.close()
    assert out.startswith(b"/dev/pts/"), out  # no frame header: raw
    assert b"hi\r\n" in out, out  # both streams on the terminal (onlcr)
    assert _inspect(api, exec_id)["ProcessConfig"]["tty"] is True


def test_exec_without_upgrade_gets_200_and_the_same_stream(api, bb):
    cid = _running(api, "sleep", "1000")
    exec_id = _exec(api, cid, ["echo", "plain"])
    stream = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {}, upgrade=False)
    assert stream.status == 200 and stream.headers["content-type"] == "application/vnd.docker.raw-stream"
    assert frames(stream.read_all()) == [(1, b"plain\n")]
    stream.close()


def test_exec_detached_runs_in_the_background(api, bb):
    cid = _running(api, "sleep", "1000")
    exec_id = _exec(api, cid, ["sh", "-c", "sleep 0.3; echo made > /tmp/mark"])
    status, _, body = api.request("POST", f"/exec/{exec_id}/start", {"Detach": True})
    assert status == 200 and body == b"", (status, body)
    assert _inspect(api, exec_id)["Running"] is True
    wait_for(lambda: _inspect(api, exec_id)["ExitCode"] == 0, 30, "the detached exec to end")
    assert api.cli.ok("exec", cid, "cat", "/tmp/mark") == "made\n"


def test_exec_errors_are_dockers(api, bb):
    status, _, body = api.request("POST", "/containers/nosuch/exec", {"Cmd": ["true"]})
    assert status == 404 and b"No such container: nosuch" in body, (status, body)
    cid = _running(api, "sleep", "1000")
    status, _, body = api.request("POST", f"/containers/{cid}/exec", {"Cmd": []})
    assert status == 400 and b"No exec command specified" in body, (status, body)
    status, _, body = api.request(
        "POST", f"/containers/{cid}/exec", b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and b"\n" not in body.strip() and b'"message"' in body, (status, body)
    status, _, body = api.request("POST", f"/containers/{cid}/exec", {"Cmd": ["true"], "Env": "A=1"})
    assert status == 400, (status, body)
    exec_id = _exec(api, cid, ["true"])
    status, _, body = api.request("POST", f"/exec/{exec_id}/start", [1, 2])
    assert status == 400, (status, body)
    status, _, body = api.request("GET", "/exec/0123abc/json")
    assert status == 404 and b"No such exec instance: 0123abc" in body, (status, body)
    status, _, _ = api.request("POST", "/exec/0123abc/start", {"Detach": True})
    assert status == 404
    # A command that is not there: the message in the stream, 127 as its code.
    exec_id = _exec(api, cid, ["nosuchcommand"])
    stream = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {"Detach": False})
    text = joined(frames(stream.read_all()), 1)
    stream.close()
    assert b"nosuchcommand" in text and text.endswith(b"\r\n"), text
    assert _inspect(api, exec_id)["ExitCode"] == 127
    api.cli.ok("pause", cid)
    status, _, body = api.request("POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
    assert status == 409 and b"is paused, unpause the container before exec" in body, (status, body)
    api.cli.ok("unpause", cid)
    api.cli.ok("stop", "-t", "0", cid)
    status, _, body = api.request("POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
    assert status == 409 and f"Container {cid} is not running".encode() in body, (status, body)


def test_a_client_that_leaves_mid_stream_costs_nothing(api, bb):
    """The exec goes on (its output read and dropped) and is reaped; the
    service answers; the container is unharmed."""
    cid = _running(api, "sleep", "1000")
    before = held_fds(api.proc.pid)
    ids = []
    for tty in (False, True):
        exec_id = _exec(
            api, cid, ["sh", "-c", "i=0; while [ $i -lt 30 ]; do echo line $i; i=$((i+1)); sleep 0.05; done"], Tty=tty
        )
        stream = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": tty})
        stream.read_until(b"line 2")
        stream.close()
        ids.append(exec_id)
    status, _, body = api.request("GET", "/_ping")
    assert status == 200 and body == b"OK"
    for exec_id in ids:
        wait_for(lambda e=exec_id: _inspect(api, e)["ExitCode"] == 0, 30, "the exec to end without its client")
    wait_for(lambda: held_fds(api.proc.pid) <= before, 10, f"the service's pipes and sockets back to {before}")
    assert api.cli.ok("exec", cid, "echo", "still") == "still\n"
    assert "Up" in api.cli.ok("ps", "--filter", f"id={cid}")


def test_exec_resize_sets_the_terminal_size(api, bb):
    cid = _running(api, "sleep", "1000")
    exec_id = _exec(api, cid, ["sh", "-c", "read line; stty size"], Tty=True, AttachStdin=True)
    stream = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": True})
    status, _, _ = api.request("POST", f"/exec/{exec_id}/resize?h=33&w=101")
    assert status == 200
    status, _, body = api.request("POST", f"/exec/{exec_id}/resize?h=x&w=1")
    assert status == 400, body
    stream.send(b"go\n")
    out = stream.read_all()
    stream.close()
    assert b"33 101" in out, out


# --- Debian's docker client ------------------------------------------------------------


def test_docker_exec_output_and_exit_codes(api, bb):
    cid = _running(api, "sleep", "1000")
    assert api.docker_ok("exec", cid, "echo", "hello there") == "hello there\n"
    result = api.docker("exec", cid, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert result.returncode == 7, result
    assert result.stdout == b"out\n" and result.stderr == b"err\n", result
    result = api.docker(
        "exec", "-e", "WHO=you", "-w", "/tmp", "-u", "nobody", cid, "sh", "-c", "echo $WHO $(pwd) $(id -u)"
    )
    assert result.stdout == b"you /tmp 65534\n", result


def test_docker_exec_i_passes_stdin(api, bb):
    cid = _running(api, "sleep", "1000")
    result = api.docker("exec", "-i", cid, "sh", "-c", "tr a-z A-Z; echo end", input=b"some data\n")
    assert result.returncode == 0, result
    assert result.stdout == b"SOME DATA\nend\n", result


def test_docker_exec_d(api, bb):
    cid = _running(api, "sleep", "1000")
    assert api.docker_ok("exec", "-d", cid, "sh", "-c", "echo bg > /tmp/bg") == ""
    wait_for(lambda: api.cli("exec", cid, "cat", "/tmp/bg").stdout == b"bg\n", 30, "the detached exec's file")


def test_docker_exec_it_under_a_pty(api, bb):
    """docker exec -it with a terminal: the process has one (tty answers
    /dev/pts/N), typed input reaches it, and the exit code comes back."""
    cid = _running(api, "sleep", "1000")
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(
            "/usr/bin/docker", ["docker", "exec", "-it", cid, "sh", "-c", "tty; read x; echo got-$x; exit 5"], api.env
        )
    out = b""
    try:
        deadline = time.monotonic() + 30
        sent = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"/dev/pts/" in out:
                os.write(fd, b"abc\r")
                sent = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert b"/dev/pts/" in out, out
    assert b"got-abc" in out, out
    assert os.waitstatus_to_exitcode(status) == 5, (status, out)


def test_docker_exec_on_a_stopped_container_fails(api, bb):
    cid = api.cli.ok("create", "bb:1", "true").strip()
    result = api.docker("exec", cid, "true")
    assert result.returncode != 0 and b"is not running" in result.stderr, result


def test_exec_privileged_gets_every_capability(api, bb):
    cid = _running(api, "sleep", "1000")

    def cap_eff(privileged: bool) -> str:
        exec_id = _exec(api, cid, ["grep", "CapEff", "/proc/self/status"], Privileged=privileged)
        stream = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {"Detach": False})
        out = joined(frames(stream.read_all()), 1).decode()
        stream.close()
        assert _inspect(api, exec_id)["ProcessConfig"]["privileged"] is privileged
        return out.split()[1]

    plain, privileged = int(cap_eff(False), 16), int(cap_eff(True), 16)
    assert plain & privileged == plain and privileged > plain, (hex(plain), hex(privileged))
    assert privileged & (1 << 21), hex(privileged)  # CAP_SYS_ADMIN, which Docker's default set lacks


def test_docker_exec_i_passes_megabytes_of_stdin_whole(api, bb):
    import hashlib

    cid = _running(api, "sleep", "1000")
    data = os.urandom(5 << 20)
    result = api.docker("exec", "-i", cid, "md5sum", input=data)
    assert result.returncode == 0, result
    assert result.stdout.split()[0].decode() == hashlib.md5(data).hexdigest(), result


def test_docker_py_exec_run_and_attach(api, bb):
    """docker-py's low-level client (requests under it) on the hijacked
    streams: exec_start demuxed and streamed, and an attach with the log."""
    import docker

    client = docker.APIClient(base_url=api.host, version="1.41")
    try:
        cid = _running(api, "sh", "-c", "echo from-log; sleep 1000")
        exec_id = client.exec_create(cid, ["sh", "-c", "echo out; echo err >&2; exit 9"])["Id"]
        assert client.exec_start(exec_id, demux=True) == (b"out\n", b"err\n")
        assert client.exec_inspect(exec_id)["ExitCode"] == 9
        exec_id = client.exec_create(cid, ["sh", "-c", "for i in 1 2 3; do echo $i; done"])["Id"]
        assert b"".join(client.exec_start(exec_id, stream=True)) == b"1\n2\n3\n"
        wait_for(lambda: b"from-log" in api.cli("logs", cid).stdout, 30, "the log line")
        assert client.attach(cid, stdout=True, stderr=True, stream=False, logs=True).startswith(b"from-log\n")
    finally:
        client.close()
