"""Detach keys in a real terminal: `run -it`, `attach`, `start -ai` and
`exec -it` leave the container (or the exec'd process) running on ctrl-p
ctrl-q or --detach-keys, print Docker's "read escape sequence", and pass a
sequence that does not complete on to the program unchanged.

Each command runs on the slave side of a pty (pty.fork), as under a
terminal emulator: raw mode, the keys arriving as typed, one read each."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

import pytest

from tests.helpers import wait_for

NONE = ("--network", "none")
# A program that shows each line it reads as hex: what reached it, byte by byte.
HEXDUMP = "while read -r l; do printf '%s' \"$l\" | od -An -tx1; done"


class Terminal:
    """A command of the CLI on its own pty, read and typed at as a user would."""

    def __init__(self, cli, *args: str, env: dict[str, str] | None = None) -> None:
        import pty

        argv = cli.argv(*args)
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(argv[0], argv, env or cli.env)
        self.pid, self.fd, self.out = pid, fd, b""
        self.status: int | None = None

    def read_until(self, text: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} in {self.out[-400:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""  # EIO: the command has exited
                if not chunk:
                    raise AssertionError(f"the command ended without {text!r}: {self.out[-400:]!r}")
                self.out += chunk
        return self.out

    def ask(self, command: bytes, answer: bytes, timeout: float = 20.0) -> None:
        """Type `command` until `answer` shows up (the first may be typed
        before anything reads the terminal)."""
        deadline = time.monotonic() + timeout
        while True:
            os.write(self.fd, command + b"\r")
            try:
                self.read_until(answer, timeout=1.0)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def keys(self, *chunks: bytes) -> None:
        """Type each chunk separately, as keys are typed one after another."""
        for chunk in chunks:
            os.write(self.fd, chunk)
            time.sleep(0.1)

    def exit_code(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"still running: {self.out[-400:]!r}")
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if ready:
                    self.out += os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.status = -9
        os.close(self.fd)


@pytest.fixture
def terminals():
    opened: list[Terminal] = []
    yield opened
    for t in opened:
        t.close()


def _state(cli, name: str) -> dict:
    return json.loads(cli.ok("inspect", name))[0]["State"]


def _open(terminals, cli, *args: str, **kw) -> Terminal:
    t = Terminal(cli, *args, **kw)
    terminals.append(t)
    return t


def test_run_it_detach_then_attach_again(cli, bb, terminals):
    run = _open(terminals, cli, "run", "-it", "--name", "shell", *NONE, "bb:1", "sh")
    run.ask(b"echo answer-$((6*7))", b"answer-42")
    run.keys(b"\x10", b"\x11")
    run.read_until(b"read escape sequence")
    assert run.exit_code() == 0
    state = _state(cli, "shell")
    assert state["Running"] and state["Status"] == "running"
    assert "shell" in cli.ok("ps")
    assert "answer-42" in cli.ok("logs", "shell")  # the supervisor keeps the log after the terminal left

    again = _open(terminals, cli, "attach", "shell")
    again.ask(b"echo again-$((6*7))", b"again-42")
    again.keys(b"\x10", b"\x11")
    again.read_until(b"read escape sequence")
    assert again.exit_code() == 1  # as `docker attach`
    assert _state(cli, "shell")["Running"]

    # Attached once more, `exit` ends it: the exit code, recorded.
    last = _open(terminals, cli, "attach", "shell")
    last.ask(b"echo last-$((6*7))", b"last-42")
    os.write(last.fd, b"exit 3\r")
    assert last.exit_code() == 3
    state = _state(cli, "shell")
    assert state["Status"] == "exited" and state["ExitCode"] == 3
    assert "again-42" in cli.ok("logs", "shell")


def test_partial_sequence_reaches_the_program_and_custom_keys_detach(cli, bb, terminals):
    run = _open(
        terminals, cli, "run", "-it", "--detach-keys", "ctrl-a,a", "--name", "hex", *NONE, "bb:1", "sh", "-c", HEXDUMP
    )
    run.ask(b"ok", b"6f 6b")
    # ctrl-p then x: not the default sequence either way here; ctrl-a then
    # b: the start of ours, broken, so both bytes go on as typed.
    run.keys(b"\x10", b"x", b"\x01", b"b", b"\r")
    run.read_until(b"10 78 01 62")
    # The default keys mean nothing with --detach-keys. (The container's
    # terminal takes ctrl-q itself, as XON: the program sees ctrl-p z.)
    run.keys(b"\x10", b"\x11", b"z\r")
    run.read_until(b"10 7a")
    assert run.status is None
    run.keys(b"\x01", b"a")
    run.read_until(b"read escape sequence")
    assert run.exit_code() == 0
    assert _state(cli, "hex")["Running"]

    # The default sequence, its first key alone, also passes through.
    again = _open(terminals, cli, "attach", "hex")
    again.keys(b"\x10", b"y", b"\r")
    again.read_until(b"10 79")
    again.keys(b"\x10", b"\x11")
    again.read_until(b"read escape sequence")
    assert again.exit_code() == 1
    assert _state(cli, "hex")["Running"]


def test_detach_keys_from_dockers_config_file(cli, bb, terminals, tmp_path):
    config = tmp_path / "dockercfg"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"detachKeys": "ctrl-x,q"}))
    env = dict(cli.env, DOCKER_CONFIG=str(config))
    cli.ok("create", "-it", "--name", "cfg", *NONE, "bb:1", "sh")
    start = _open(terminals, cli, "start", "-ai", "cfg", env=env)
    start.ask(b"echo cfg-$((6*7))", b"cfg-42")
    start.keys(b"\x18", b"q")
    start.read_until(b"read escape sequence")
    assert start.exit_code() == 0
    assert _state(cli, "cfg")["Running"]
    (config / "config.json").write_text(json.dumps({"detachKeys": "ctrl-xx"}))
    result = subprocess.run(cli.argv("attach", "cfg"), capture_output=True, env=env, timeout=60)
    assert result.returncode == 125
    assert b"invalid detach keys (ctrl-xx)" in result.stderr and b"config.json" in result.stderr


def _holders(cli) -> list[int]:
    """The processes left holding a detached exec's terminal (forks of that
    `exec`, with its command line)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if b"exec" in args and str(cli.root).encode() in args:
                found.append(int(entry))
    return found


def test_exec_it_detach_leaves_the_process_running(cli, bb, terminals):
    cli.ok("run", "-d", "--name", "host", *NONE, "bb:1", "sleep", "300")
    ex = _open(terminals, cli, "exec", "-it", "host", "sh")
    ex.ask(b"echo $$ > /tmp/exec.pid; echo in-$((6*7))", b"in-42")
    ex.keys(b"\x10", b"\x11")
    ex.read_until(b"read escape sequence")
    assert ex.exit_code() == 1  # as `docker exec`
    pid = cli.ok("exec", "host", "cat", "/tmp/exec.pid").strip()
    assert cli("exec", "host", "kill", "-0", pid).returncode == 0  # the shell lives on
    cli.ok("rm", "-f", "host")
    # With the container gone, so is whatever held the detached shell's terminal.
    wait_for(lambda: not _holders(cli), timeout=20, what="the terminal holder to exit")


def test_bad_detach_keys_are_refused_before_anything_is_done(cli, bb):
    result = cli("run", "-it", "--detach-keys", "shift-a", "--name", "never", *NONE, "bb:1", "true")
    assert result.returncode == 125
    assert result.stderr.decode().strip().endswith("invalid detach keys (shift-a): Unknown character: 'shift-a'")
    assert cli.ok("ps", "-aq") == ""


def test_run_it_rm_returns_the_exit_code_once_removed(cli, bb, terminals):
    run = _open(terminals, cli, "run", "-it", "--rm", "--name", "gone", *NONE, "bb:1", "sh")
    run.ask(b"echo here-$((6*7))", b"here-42")
    os.write(run.fd, b"exit 5\r")
    assert run.exit_code() == 5
    assert cli.ok("ps", "-aq") == ""  # removed before `run` returned, as docker run --rm


def test_the_container_outlives_its_terminal(cli, bb, terminals):
    run = _open(terminals, cli, "run", "-it", "--name", "orphan", *NONE, "bb:1", "sh")
    run.ask(b"echo before-$((6*7))", b"before-42")
    os.close(run.fd)  # the window is closed: the CLI gets SIGHUP
    run.fd = os.open("/dev/null", os.O_RDONLY)  # (for close())
    run.exit_code()
    state = _state(cli, "orphan")
    assert state["Running"]
    assert "before-42" in cli.ok("logs", "orphan")
    cli.ok("stop", "-t", "1", "orphan")
    state = _state(cli, "orphan")
    assert state["Status"] == "exited" and not state["Running"]


def test_a_slow_terminal_loses_no_output(cli, bb, terminals):
    # Nobody reads the terminal for a while: the output backs up through the
    # CLI and the attach socket into the supervisor, which keeps it for the
    # client instead of letting it go.
    run = _open(terminals, cli, "run", "-it", "--name", "burst", *NONE, "bb:1", "sh", "-c", "seq 1 200000; echo end")
    time.sleep(3)
    out = run.read_until(b"\r\nend\r\n", timeout=60)
    assert run.exit_code() == 0
    numbers = [line for line in out.split(b"\r\n") if line.isdigit()]
    assert numbers == [str(n).encode() for n in range(1, 200001)]
