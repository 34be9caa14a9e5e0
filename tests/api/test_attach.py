"""Attach through the Engine API: raw HTTP for the hijacked stream's
bytes, and Debian's docker client (docker run's attach before start, run
-i with stdin, run --rm, docker attach)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from tests.api.hijacked import Stream, frames, held_fds, joined
from tests.helpers import wait_for


def _status(api, cid: str) -> str:
    return api.cli.ok("inspect", "-f", "{{.State.Status}}", cid).strip()


# --- raw HTTP --------------------------------------------------------------------------


def test_attach_frames_a_running_containers_output_until_it_ends(api, bb):
    cid = api.cli.ok(
        "run", "-d", "bb:1", "sh", "-c", "read x < /dev/null; sleep 1; echo out; echo err >&2; exit 4"
    ).strip()
    stream = Stream(api.sock, "POST", f"/v1.41/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    assert stream.status_line.startswith("HTTP/1.1 101 UPGRADED"), stream.status_line
    assert stream.headers["content-type"] == "application/vnd.docker.raw-stream"
    pairs = frames(stream.read_all())
    stream.close()
    assert joined(pairs, 1) == b"out\n" and joined(pairs, 2) == b"err\n", pairs
    wait_for(lambda: _status(api, cid) == "exited", 30, "the container's end")


def test_attach_only_the_streams_asked_for_and_the_log_first(api, bb):
    cid = api.cli.ok("run", "-d", "bb:1", "sh", "-c", "echo early; echo early-err >&2; sleep 1; echo late").strip()
    wait_for(lambda: b"early-err" in api.cli("logs", cid).stderr, 30, "the first lines in the log")
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?logs=1&stream=1&stdout=1&stderr=0")
    pairs = frames(stream.read_all())
    stream.close()
    assert pairs == [(1, b"early\n"), (1, b"late\n")], pairs


def test_attach_stdin_and_half_close(api, bb):
    """An attach made before the start (docker run -i's): the client's
    stdin reaches the container's; closing its write side closes the
    container's stdin, and the rest of the output still comes."""
    cid = api.cli.ok("create", "-i", "bb:1", "sh", "-c", "cat; echo bye").strip()
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
    status, _, body = api.request("POST", f"/containers/{cid}/start")
    assert status == 204, (status, body)
    stream.send(b"to cat\n")
    stream.read_until(b"to cat\n")
    stream.close_write()
    pairs = frames(stream.read_all())
    stream.close()
    assert joined(pairs, 1) == b"to cat\nbye\n", pairs
    wait_for(lambda: _status(api, cid) == "exited", 30, "the container's end")


def test_attach_to_a_running_container_ends_with_its_input(api, bb):
    """docker attach's: stdin reaches the container; the end of the
    client's input ends the attach (as dockerd's), the container's stdin
    stays open and it goes on."""
    cid = api.cli.ok("run", "-d", "-i", "bb:1", "cat").strip()
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
    stream.send(b"echoed\n")
    stream.read_until(b"echoed\n")
    stream.close_write()
    assert frames(stream.read_all(timeout=10)) == [(1, b"echoed\n")]
    stream.close()
    assert _status(api, cid) == "running"
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1")
    stream.send(b"again\n")
    stream.read_until(b"again\n")
    stream.close()


def test_attach_with_a_tty_is_raw_and_resize_reaches_it(api, bb):
    cid = api.cli.ok("run", "-d", "-i", "-t", "bb:1", "sh", "-c", "read x; stty size; echo done").strip()
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1")
    status, _, _ = api.request("POST", f"/containers/{cid}/resize?h=21&w=77")
    assert status == 200
    time.sleep(0.5)  # (the resize is the supervisor's other connection: let it be taken first)
    stream.send(b"go\r")
    out = stream.read_all()
    stream.close()
    assert b"21 77" in out and b"done" in out, out
    assert out[:1] != b"\x01", out  # raw, no frame header


def test_detach_keys_leave_the_container_running(api, bb):
    cid = api.cli.ok("run", "-d", "-i", "-t", "bb:1", "sh").strip()
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x,x")
    stream.send(b"echo mark-$((40+2))\r")
    stream.read_until(b"mark-42")
    stream.send(b"\x18x")
    stream.read_all(timeout=10)  # the service ends the stream
    stream.close()
    assert _status(api, cid) == "running"


def test_attach_errors(api, bb):
    status, _, body = api.request("POST", "/containers/nosuch/attach?stream=1&stdout=1")
    assert status == 404 and b"No such container: nosuch" in body, (status, body)
    cid = api.cli.ok("run", "-d", "bb:1", "sleep", "1000").strip()
    status, _, body = api.request("POST", f"/containers/{cid}/attach?stream=1&detachKeys=ctrl-%3F")
    assert status == 400 and b"detach keys" in body, (status, body)
    status, _, body = api.request("POST", f"/containers/{cid}/resize?h=1")
    assert status == 400, body
    stopped = api.cli.ok("create", "bb:1", "true").strip()
    status, _, body = api.request("POST", f"/containers/{stopped}/resize?h=10&w=10")
    assert status == 409 and b"is not running" in body, (status, body)
    # A container the CLI runs in the foreground has no attach socket.
    foreground = subprocess.Popen(
        api.cli.argv("run", "--name", "fg", "bb:1", "sleep", "1000"),
        env=api.cli.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: api.cli("inspect", "-f", "{{.State.Status}}", "fg").stdout == b"running\n", 30, "fg")
        status, _, body = api.request("POST", "/containers/fg/attach?stream=1&stdout=1")
        assert status == 409 and b"no attach socket" in body, (status, body)
    finally:
        api.cli("rm", "-f", "fg")
        foreground.wait(timeout=30)


def test_a_client_that_leaves_mid_stream_costs_nothing(api, bb):
    cid = api.cli.ok("run", "-d", "bb:1", "sh", "-c", "while true; do echo tick; sleep 0.05; done").strip()
    waiting = api.cli.ok("create", "bb:1", "true").strip()
    before = held_fds(api.proc.pid)
    for _ in range(3):
        stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
        stream.read_until(b"tick")
        stream.close()
        stream = Stream(api.sock, "POST", f"/containers/{waiting}/attach?stream=1&stdout=1&stderr=1")
        stream.close()  # (it waited for a start)
    status, _, body = api.request("GET", "/_ping")
    assert status == 200 and body == b"OK"
    wait_for(lambda: held_fds(api.proc.pid) <= before, 10, f"the service's pipes and sockets back to {before}")
    assert _status(api, cid) == "running"
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdout=1")
    assert b"tick" in stream.read_until(b"tick")
    stream.close()


def test_an_attach_waiting_for_the_start_sees_all_the_output(api, bb):
    """docker run's order: attach, then start. The attach waits; the start
    hands it a connection made before the command runs."""
    cid = api.cli.ok("create", "bb:1", "sh", "-c", "echo first; echo second >&2").strip()
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    assert stream.status == 101
    status, _, body = api.request("POST", f"/containers/{cid}/start")
    assert status == 204, (status, body)
    pairs = frames(stream.read_all())
    stream.close()
    assert joined(pairs, 1) == b"first\n" and joined(pairs, 2) == b"second\n", pairs


def test_an_attach_waiting_sees_a_start_made_elsewhere(api, bb):
    """A container started by the CLI, not through the service: the waiting
    attach finds it running and attaches."""
    cid = api.cli.ok("create", "bb:1", "sh", "-c", "sleep 1.5; echo from-cli").strip()
    stream = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1")
    api.cli.ok("start", cid)
    assert frames(stream.read_all()) == [(1, b"from-cli\n")]
    stream.close()


# --- Debian's docker client ------------------------------------------------------------


def test_docker_run_prints_the_output_and_returns_the_exit_code(api, bb):
    result = api.docker("run", "bb:1", "echo", "hi")
    assert result.returncode == 0 and result.stdout == b"hi\n", result
    result = api.docker("run", "bb:1", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3, result
    assert result.stdout == b"out\n" and result.stderr == b"err\n", result


def test_docker_run_i_passes_stdin(api, bb):
    result = api.docker("run", "-i", "bb:1", "cat", input=b"data\nmore data\n")
    assert result.returncode == 0, result
    assert result.stdout == b"data\nmore data\n", result


def test_docker_run_rm_leaves_no_container(api, bb):
    result = api.docker("run", "--rm", "bb:1", "sh", "-c", "echo gone; exit 2")
    assert result.returncode == 2 and result.stdout == b"gone\n", result
    wait_for(lambda: api.cli.ok("ps", "-aq") == "", 30, "the --rm container to be removed")


def test_docker_attach_to_a_running_container(api, bb):
    cid = api.cli.ok("run", "-d", "bb:1", "sh", "-c", "sleep 1; echo attached; exit 6").strip()
    result = api.docker("attach", cid)
    assert result.stdout == b"attached\n", result
    assert result.returncode == 6, result


def test_docker_run_it_under_a_pty_and_detach(api, bb):
    """docker run -it: the shell has a terminal; ctrl-p ctrl-q leaves it running."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve("/usr/bin/docker", ["docker", "run", "-it", "--name", "tty1", "bb:1", "sh"], api.env)
    out = b""
    try:
        deadline = time.monotonic() + 30
        step = 0
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
            if step == 0 and b"#" in out:
                os.write(fd, b"tty; echo val-$((6*7))\r")
                step = 1
            elif step == 1 and b"val-42" in out:
                os.write(fd, b"\x10\x11")
                step = 2
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert b"/dev/pts/" in out and b"val-42" in out, out
    assert os.waitstatus_to_exitcode(status) == 0, (status, out)
    assert _status(api, "tty1") == "running"
    subprocess.run(api.cli.argv("rm", "-f", "tty1"), env=api.cli.env, capture_output=True, timeout=60)


def test_stopping_the_service_mid_stream_loses_nothing(api, bb):
    """SIGTERM to the service with an attach and an exec streaming: it
    exits (stop_service allows seconds), the streams end, the container
    goes on."""
    from tests.api.conftest import stop_service

    cid = api.cli.ok("run", "-d", "bb:1", "sh", "-c", "while true; do echo tick; sleep 0.05; done").strip()
    attached = Stream(api.sock, "POST", f"/containers/{cid}/attach?stream=1&stdout=1")
    attached.read_until(b"tick")
    exec_id = api.json(
        "POST",
        f"/containers/{cid}/exec",
        {"Cmd": ["sh", "-c", "echo begun; sleep 3"], "AttachStdout": True},
        expect=201,
    )["Id"]
    execed = Stream(api.sock, "POST", f"/exec/{exec_id}/start", {"Detach": False})
    execed.read_until(b"begun")
    stop_service(api.proc)
    attached.read_all(timeout=10)
    execed.read_all(timeout=10)
    attached.close()
    execed.close()
    assert _status(api, cid) == "running"


def test_docker_run_i_passes_megabytes_of_stdin_whole(api, bb):
    """More stdin than the supervisor holds for a container (1 MiB): the
    sender is held back, not the bytes dropped, and the tail comes before
    the container's stdin closes."""
    import hashlib

    data = os.urandom(6 << 20)
    result = api.docker("run", "-i", "bb:1", "md5sum", input=data)
    assert result.returncode == 0, result
    assert result.stdout.split()[0].decode() == hashlib.md5(data).hexdigest(), result


def test_docker_start_a_sees_the_first_output(api, bb):
    cid = api.cli.ok("create", "bb:1", "sh", "-c", "echo started; echo on-err >&2; exit 4").strip()
    result = api.docker("start", "-a", cid)
    assert result.stdout == b"started\n" and result.stderr == b"on-err\n", result
    assert result.returncode == 4, result


def test_docker_run_of_a_command_that_is_not_there(api, bb):
    """The start fails (the start handler's 400): the waiting attach ends,
    and the docker client says why and exits 127, as with dockerd."""
    result = api.docker("run", "bb:1", "nosuchcmd")
    assert result.returncode == 127, result
    assert b"nosuchcmd" in result.stderr and b"executable file not found" in result.stderr, result
