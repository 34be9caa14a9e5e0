"""Container lifecycle on the real kernel: detached containers and their
supervisor, every verb, restart policies, recovery after a killed
supervisor or a wiped runroot, sd_notify."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time

import pytest

from overlayctl.paths import cgroup_dir
from tests.helpers import wait_for

NONE = ("--network", "none")


def inspect(cli, name: str) -> dict:
    return json.loads(cli.ok("inspect", name))[0]


def log_lines(cli, name: str) -> list[str]:
    return cli.ok("logs", name).splitlines()


def stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """The process exists and has not ended (a zombie waits only for its
    reaper: init, for a supervisor whose parent is long gone)."""
    try:
        return stat_fields(pid)[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def cgroup_dirs(cid: str) -> list[str]:
    """The container's cgroup directories: one per v1 hierarchy, or the one
    of cgroup2 (where the freezer is the same directory)."""
    found = []
    unified = cgroup_dir("/sys/fs/cgroup", cid)
    if os.path.isdir(unified):
        found.append(unified)
    for tree in os.listdir("/sys/fs/cgroup"):
        path = cgroup_dir(os.path.join("/sys/fs/cgroup", tree), cid)
        if os.path.isdir(path):
            found.append(path)
    return found


V1 = os.path.isdir("/sys/fs/cgroup/freezer")  # separate hierarchies (hybrid or v1)


# --- run -d and its supervisor --------------------------------------------------------


def test_run_d_returns_once_running_with_a_small_supervisor(cli, bb):
    start = time.monotonic()
    cid = cli.ok("run", "-d", "--name", "bg", *NONE, "bb:1", "sh", "-c", "echo started; exec sleep 60").strip()
    assert len(cid) == 64 and time.monotonic() - start < 10
    state = inspect(cli, "bg")["State"]
    assert state["Status"] == "running" and state["Running"]
    pid, supervisor = state["Pid"], state["SupervisorPid"]
    # PID 1 is the supervisor's child; the supervisor is in a session of its
    # own, without a terminal (double-forked: not its leader either).
    assert int(stat_fields(pid)[1]) == supervisor
    fields = stat_fields(supervisor)
    assert int(fields[3]) not in (os.getsid(0), supervisor) and int(fields[4]) == 0
    # It became the small monitor: a bare interpreter with a few modules.
    with open(f"/proc/{supervisor}/cmdline", "rb") as f:
        assert b"overlayctl.supervise.monitor" in f.read()
    with open(f"/proc/{supervisor}/status") as f:
        rss_kb = int(next(line for line in f if line.startswith("VmRSS:")).split()[1])
    assert rss_kb < 15 * 1024, rss_kb
    wait_for(lambda: log_lines(cli, "bg") == ["started"], what="the first line in the log")
    # The overlay is only in the container's mount namespace.
    with open("/proc/self/mountinfo") as f:
        assert str(cli.root) not in f.read()
    assert f"{cid[:12]}" in cli.ok("ps")


def test_detached_exit_is_recorded_and_rm_applies(cli, bb):
    cli.ok("run", "-d", "--name", "three", *NONE, "bb:1", "sh", "-c", "sleep 0.3; exit 3")
    assert cli.ok("wait", "three") == "3\n"
    state = inspect(cli, "three")["State"]
    assert (state["Status"], state["ExitCode"], state["Pid"], state["SupervisorPid"]) == ("exited", 3, 0, 0)
    assert state["FinishedAt"] > state["StartedAt"]
    cid = cli.ok("run", "-d", "--rm", *NONE, "bb:1", "true").strip()
    wait_for(lambda: cid[:12] not in cli.ok("ps", "-a"), what="--rm to remove the container")
    assert not (cli.root / "containers" / cid).exists()


def test_start_runs_in_the_background(cli, bb):
    cli.ok("create", "--name", "later", *NONE, "bb:1", "sleep", "60")
    assert cli.ok("start", "later") == "later\n"
    assert inspect(cli, "later")["State"]["Running"]
    result = cli("start", "later")
    assert result.returncode == 125 and b"already running" in result.stderr


def test_command_not_found_detached_is_127(cli, bb):
    result = cli("run", "-d", "--name", "nf", *NONE, "bb:1", "no-such-command")
    assert result.returncode == 127 and b"executable file not found" in result.stderr
    state = inspect(cli, "nf")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 127


# --- stop, kill, restart, wait --------------------------------------------------------


TRAP = "trap 'echo got-{sig}; exit {code}' {sig}; echo ready; while :; do sleep 0.1; done"


def test_stop_sends_sigterm_and_waits_for_the_end(cli, bb):
    cli.ok("run", "-d", "--name", "termed", *NONE, "bb:1", "sh", "-c", TRAP.format(sig="TERM", code=7))
    wait_for(lambda: "ready" in log_lines(cli, "termed"), what="the trap")
    start = time.monotonic()
    assert cli.ok("stop", "termed") == "termed\n"
    assert time.monotonic() - start < 8
    state = inspect(cli, "termed")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 7)
    assert "got-TERM" in log_lines(cli, "termed")
    assert cli.ok("stop", "termed") == "termed\n"  # not running: nothing to do, as Docker


def test_stop_kills_after_the_timeout(cli, bb):
    # PID 1 of a namespace ignores SIGTERM unless it has a handler.
    cli.ok("run", "-d", "--name", "stubborn", *NONE, "bb:1", "sleep", "60")
    start = time.monotonic()
    cli.ok("stop", "-t", "1", "stubborn")
    elapsed = time.monotonic() - start
    assert 0.9 < elapsed < 8, elapsed
    assert inspect(cli, "stubborn")["State"]["ExitCode"] == 137


def test_stop_signal_option(cli, bb):
    trap = TRAP.format(sig="USR1", code=9)
    cli.ok("run", "-d", "--name", "usr1", "--stop-signal", "USR1", *NONE, "bb:1", "sh", "-c", trap)
    wait_for(lambda: "ready" in log_lines(cli, "usr1"), what="the trap")
    cli.ok("stop", "usr1")
    assert inspect(cli, "usr1")["State"]["ExitCode"] == 9
    assert inspect(cli, "usr1")["Config"]["StopSignal"] == "USR1"
    assert cli("run", "--rm", "--stop-signal", "NOPE", "bb:1", "true").returncode == 125


def signal_state(pid: int) -> str:
    """PID 1's signal masks and children, for a failure's message."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = [line.strip() for line in f if line.startswith(("State", "Sig", "ShdPnd"))]
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError as exc:
        return f"pid {pid}: {exc}"
    return f"pid {pid}: {'; '.join(lines)}; children {children}"


def test_kill_with_a_signal_and_sigkill(cli, bb):
    script = "trap 'echo got-hup' HUP; echo ready; while :; do sleep 0.1; done"
    cli.ok("run", "-d", "--name", "killed", *NONE, "bb:1", "sh", "-c", script)
    wait_for(lambda: "ready" in log_lines(cli, "killed"), what="the trap")
    pid = inspect(cli, "killed")["State"]["Pid"]
    cli.ok("kill", "-s", "HUP", "killed")
    try:
        wait_for(lambda: "got-hup" in log_lines(cli, "killed"), what="SIGHUP to arrive")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {signal_state(pid)}; log {log_lines(cli, 'killed')}") from None
    assert inspect(cli, "killed")["State"]["Running"]
    cli.ok("kill", "killed")
    state = inspect(cli, "killed")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    result = cli("kill", "killed")
    assert result.returncode == 125 and b"not running" in result.stderr
    assert cli("kill", "-s", "NOSUCH", "killed").returncode == 125


def test_supervisor_forwards_signals(cli, bb):
    cli.ok("run", "-d", "--name", "fw", *NONE, "bb:1", "sh", "-c", TRAP.format(sig="TERM", code=5))
    wait_for(lambda: "ready" in log_lines(cli, "fw"), what="the trap")
    supervisor = inspect(cli, "fw")["State"]["SupervisorPid"]

    def ended():
        os.kill(supervisor, signal.SIGTERM)  # repeated: busy sh may take a second one
        return inspect(cli, "fw")["State"]["Status"] == "exited"

    wait_for(ended, what="the forwarded SIGTERM to end the container")
    assert inspect(cli, "fw")["State"]["ExitCode"] == 5


def test_restart_verb_and_wait(cli, bb):
    cli.ok("run", "-d", "--name", "rs", *NONE, "bb:1", "sh", "-c", TRAP.format(sig="TERM", code=0))
    before = inspect(cli, "rs")["State"]
    wait_for(lambda: "ready" in log_lines(cli, "rs"), what="the trap")
    cli.ok("restart", "-t", "5", "rs")
    after = inspect(cli, "rs")["State"]
    assert after["Running"] and after["Pid"] != before["Pid"] and after["StartedAt"] > before["StartedAt"]
    # wait blocks until the end and prints the code.
    cli.ok("create", "--name", "waited", *NONE, "bb:1", "sh", "-c", "sleep 1; exit 5")
    cli.ok("start", "waited")
    start = time.monotonic()
    assert cli.ok("wait", "waited") == "5\n"
    assert time.monotonic() - start > 0.5


# --- restart policies -------------------------------------------------------------------


def test_on_failure_restarts_twice(cli, bb):
    cli.ok("run", "-d", "--name", "of", "--restart", "on-failure:2", *NONE, "bb:1", "sh", "-c", "echo run; exit 1")
    wait_for(
        lambda: (s := inspect(cli, "of"))["State"]["Status"] == "exited" and s["RestartCount"] == 2,
        what="two restarts",
    )
    info = inspect(cli, "of")
    assert info["State"]["ExitCode"] == 1 and info["HostConfig"]["RestartPolicy"] == {
        "Name": "on-failure",
        "MaximumRetryCount": 2,
    }
    assert log_lines(cli, "of") == ["run"] * 3
    time.sleep(0.5)
    assert inspect(cli, "of")["RestartCount"] == 2  # and no more


def test_always_restarts_until_stopped(cli, bb):
    cli.ok("run", "-d", "--name", "al", "--restart", "always", *NONE, "bb:1", "sh", "-c", "echo up; sleep 0.2")
    wait_for(lambda: inspect(cli, "al")["RestartCount"] >= 2, what="two restarts")
    cli.ok("stop", "-t", "1", "al")
    info = inspect(cli, "al")
    assert info["State"]["Status"] == "exited"
    count = info["RestartCount"]
    time.sleep(1)
    assert inspect(cli, "al")["RestartCount"] == count and inspect(cli, "al")["State"]["Status"] == "exited"
    # A manual start starts counting again.
    cli.ok("start", "al")
    assert inspect(cli, "al")["RestartCount"] < min(count, 2)
    cli.ok("rm", "-f", "al")
    assert "al" not in cli.ok("ps", "-a")


def test_unless_stopped_restarts_a_crash_but_not_a_stop(cli, bb):
    cli.ok("run", "-d", "--name", "us", "--restart", "unless-stopped", *NONE, "bb:1", "sleep", "60")
    first = inspect(cli, "us")["State"]["Pid"]
    os.kill(first, signal.SIGKILL)  # a crash, not a stop
    wait_for(
        lambda: (s := inspect(cli, "us"))["State"]["Running"] and s["State"]["Pid"] != first,
        what="the restart after a crash",
    )
    assert inspect(cli, "us")["RestartCount"] == 1
    cli.ok("stop", "-t", "0", "us")
    time.sleep(0.5)
    info = inspect(cli, "us")
    assert info["State"]["Status"] == "exited" and info["RestartCount"] == 1
    cli.ok("start", "us")
    cli.ok("kill", "us")  # kill is a stop too
    time.sleep(0.5)
    assert inspect(cli, "us")["State"]["Status"] == "exited"


def test_foreground_run_hands_restarts_to_a_supervisor(cli, bb):
    result = cli("run", "--name", "fg", "--restart", "on-failure:1", *NONE, "bb:1", "sh", "-c", "echo go; exit 2")
    assert result.returncode == 2 and result.stdout == b"go\n"
    wait_for(
        lambda: (s := inspect(cli, "fg"))["RestartCount"] == 1 and s["State"]["Status"] == "exited",
        what="the restart in the background",
    )
    assert log_lines(cli, "fg") == ["go", "go"]


def test_restart_and_rm_conflict(cli, bb):
    result = cli("run", "--rm", "--restart", "always", "bb:1", "true")
    assert result.returncode == 125 and b"--restart and --rm" in result.stderr
    assert cli("create", "--restart", "sometimes", "bb:1", "true").returncode == 125
    assert cli.ok("ps", "-aq") == ""


# --- pause, rename, top -------------------------------------------------------------------


COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"


def test_pause_freezes_and_unpause_thaws(cli, bb):
    cid = cli.ok("run", "-d", "--name", "paused", *NONE, "bb:1", "sh", "-c", COUNTER).strip()
    wait_for(lambda: len(log_lines(cli, "paused")) > 3, what="the counter")
    assert cli.ok("pause", "paused") == "paused\n"
    info = inspect(cli, "paused")["State"]
    assert info["Status"] == "paused" and info["Paused"] and info["Running"]
    assert "(Paused)" in cli.ok("ps")
    frozen = len(log_lines(cli, "paused"))
    time.sleep(0.6)
    assert len(log_lines(cli, "paused")) == frozen
    assert cli("pause", "paused").returncode == 125  # already paused
    assert cli("exec", "paused", "true").returncode == 125
    cli.ok("unpause", "paused")
    wait_for(lambda: len(log_lines(cli, "paused")) > frozen + 3, what="the counter to go on")
    assert inspect(cli, "paused")["State"]["Status"] == "running"
    assert cli("unpause", "paused").returncode == 125  # not paused
    # A paused container stops (and is killed) too.
    cli.ok("pause", "paused")
    cli.ok("stop", "-t", "1", "paused")
    assert inspect(cli, "paused")["State"]["Status"] == "exited"
    assert cgroup_dirs(cid) == []


def test_rm_f_of_a_paused_container(cli, bb):
    cid = cli.ok("run", "-d", "--name", "pr", *NONE, "-m", "64m", "bb:1", "sh", "-c", COUNTER).strip()
    cli.ok("pause", "pr")
    pid = inspect(cli, "pr")["State"]["Pid"]
    cli.ok("rm", "-f", "pr")
    assert not alive(pid) and cgroup_dirs(cid) == []


def test_rename(cli, bb):
    cli.ok("create", "--name", "old", *NONE, "bb:1", "true")
    cli.ok("create", "--name", "taken", *NONE, "bb:1", "true")
    cli.ok("rename", "old", "new")
    assert inspect(cli, "new")["Name"] == "/new"
    assert cli("inspect", "old").returncode == 125
    result = cli("rename", "new", "taken")
    assert result.returncode == 125 and b"already in use" in result.stderr
    assert cli("rename", "new", "bad name!").returncode == 125


def test_top_lists_the_containers_processes(cli, bb):
    cli.ok("run", "-d", "--name", "tp", *NONE, "bb:1", "sh", "-c", "sleep 100 & sleep 200 & wait")
    pid = inspect(cli, "tp")["State"]["Pid"]

    def listed():
        out = cli.ok("top", "tp").splitlines()
        return out if len(out) >= 4 else None

    lines = wait_for(listed, what="both sleeps")
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = [line.split(None, 7) for line in lines[1:]]
    assert {r[7] for r in rows} >= {"sleep 100", "sleep 200"}
    assert str(pid) in {r[1] for r in rows}  # host pids
    assert all(r[0] == "root" for r in rows)


# --- attach ---------------------------------------------------------------------------


def test_attach_streams_output_and_stdin_and_returns_the_exit_code(cli, bb):
    script = "echo ready; read line; echo got-$line; echo to-err >&2; exit 4"
    cli.ok("run", "-di", "--name", "at", *NONE, "bb:1", "sh", "-c", script)
    proc = subprocess.Popen(
        cli.argv("attach", "at"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env
    )
    try:
        out, err = proc.communicate(b"hello\n", timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 4
    assert out == b"got-hello\n" and err == b"to-err\n"  # "ready" came before we attached
    logs = cli("logs", "at")
    assert logs.stdout == b"ready\ngot-hello\n" and logs.stderr == b"to-err\n"


def test_attach_to_a_tty_and_detach(cli, bb):
    import pty

    cli.ok("run", "-dit", "--name", "tty", *NONE, "bb:1", "sh")
    pid, fd = pty.fork()
    if pid == 0:
        argv = cli.argv("attach", "tty")
        os.execve(argv[0], argv, cli.env)
    try:
        out = b""
        deadline = time.monotonic() + 20
        while b"answer-42" not in out and time.monotonic() < deadline:
            # Again until it is answered: the first may come before attach runs.
            os.write(fd, b"echo answer-$((6*7))\r")
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                out += os.read(fd, 4096)
        assert b"answer-42" in out
        os.write(fd, b"\x10\x11")  # ctrl-p ctrl-q
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 1  # as `docker attach` after a detach
    finally:
        os.close(fd)
    assert inspect(cli, "tty")["State"]["Running"]  # detached, not stopped
    assert "answer-42" in cli.ok("logs", "tty")


def test_attach_needs_a_running_detached_container(cli, bb):
    cli.ok("create", "--name", "idle", *NONE, "bb:1", "true")
    assert b"not running" in cli("attach", "idle").stderr


# --- recovery -------------------------------------------------------------------------


def _nothing_left(cli, cid: str, pids: list[int]) -> None:
    assert not [p for p in pids if alive(p)]
    assert cgroup_dirs(cid) == []
    for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(table) as f:
            assert str(cli.root) not in f.read()
    assert not (cli.runroot / "containers" / (cid + ".sock")).exists()
    assert not (cli.root / "containers" / cid).exists()


def test_recovery_after_the_supervisor_is_killed(cli, bb):
    cid = cli.ok("run", "-d", "--name", "victim", *NONE, "-m", "64m", "bb:1", "sh", "-c", COUNTER).strip()
    cli.ok("pause", "victim")
    cli.ok("unpause", "victim")
    state = inspect(cli, "victim")["State"]
    pid, supervisor = state["Pid"], state["SupervisorPid"]
    # v1: memory (and more) for the limit, and the freezer; v2: one directory for both.
    assert len(cgroup_dirs(cid)) >= (2 if V1 else 1)
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(pid), what="PID 1 to die with its supervisor")
    state = inspect(cli, "victim")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == -1 and not state["Running"]
    assert "Exited (unknown)" in cli.ok("ps", "-a")
    assert cli.ok("wait", "victim") == "-1\n"
    assert cli.ok("stop", "victim") == "victim\n"
    assert len(log_lines(cli, "victim")) > 0
    cli.ok("rm", "-f", "victim")
    _nothing_left(cli, cid, [pid, supervisor])


def test_recovery_after_a_wiped_runroot(cli, bb):
    cid = cli.ok("run", "-d", "--name", "boot", *NONE, "--restart", "always", "bb:1", "sh", "-c", COUNTER).strip()
    # The first line logged before the supervisor goes: logs must survive it.
    wait_for(lambda: log_lines(cli, "boot"), what="the first log line")
    state = inspect(cli, "boot")["State"]
    pid, supervisor = state["Pid"], state["SupervisorPid"]
    # A reboot: every process gone, and /run with them.
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(pid), what="PID 1 to die")
    shutil.rmtree(cli.runroot)
    state = inspect(cli, "boot")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == -1
    assert "boot" in cli.ok("ps", "-a") and "boot" not in cli.ok("ps")
    assert cli.ok("logs", "boot")
    # It starts again, with a fresh runroot, and stops and goes as usual.
    cli.ok("start", "boot")
    assert inspect(cli, "boot")["State"]["Running"]
    new = inspect(cli, "boot")["State"]
    cli.ok("rm", "-f", "boot")
    _nothing_left(cli, cid, [pid, supervisor, new["Pid"], new["SupervisorPid"]])


def test_boot_starts_what_the_restart_policies_ask_for(cli, bb):
    for name, policy in (
        ("always", "always"),
        ("unless", "unless-stopped"),
        ("stopped", "unless-stopped"),
        ("never", "no"),
    ):
        cli.ok("run", "-d", "--name", name, *NONE, "--restart", policy, "bb:1", "sleep", "100")
    cli.ok("stop", "-t", "0", "stopped")  # by hand: not brought back at boot
    # A reboot: every process gone, and /run with them.
    gone = []
    for name in ("always", "unless", "never"):
        state = inspect(cli, name)["State"]
        os.kill(state["SupervisorPid"], signal.SIGKILL)
        gone.append(state["Pid"])
    for pid in gone:
        wait_for(lambda pid=pid: not alive(pid), what="PID 1 to die")
    shutil.rmtree(cli.runroot)
    out = cli.ok("system", "reconcile", "--boot")
    assert sorted(line for line in out.splitlines() if line.startswith("started: ")) == [
        "started: always",
        "started: unless",
    ]
    running = {name: inspect(cli, name)["State"]["Running"] for name in ("always", "unless", "stopped", "never")}
    assert running == {"always": True, "unless": True, "stopped": False, "never": False}


def test_wiped_runroot_under_a_running_container(cli, bb):
    cid = cli.ok("run", "-d", "--name", "live", *NONE, "bb:1", "sleep", "60").strip()
    state = inspect(cli, "live")["State"]
    shutil.rmtree(cli.runroot)
    assert inspect(cli, "live")["State"]["Running"]  # the processes are the truth
    cli.ok("stop", "-t", "0", "live")
    assert inspect(cli, "live")["State"]["ExitCode"] == 137
    cli.ok("rm", "-f", "live")
    _nothing_left(cli, cid, [state["Pid"], state["SupervisorPid"]])


def test_killing_the_container_leaves_no_mount(cli, bb):
    cli.ok("run", "-d", "--name", "tree", *NONE, "bb:1", "sh", "-c", "sleep 100 & sleep 100 & wait")
    state = inspect(cli, "tree")["State"]
    os.kill(state["Pid"], signal.SIGKILL)
    assert cli.ok("wait", "tree") == "137\n"
    for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(table) as f:
            assert str(cli.root) not in f.read()
    wait_for(lambda: not alive(state["SupervisorPid"]), what="the supervisor to exit")


# --- sd_notify ------------------------------------------------------------------------


def test_foreground_start_notifies_systemd(cli, bb, tmp_path):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(30)
    cli.ok("create", "--name", "unit", *NONE, "bb:1", "sh", "-c", "echo hi; exit 3")
    env = dict(cli.env, NOTIFY_SOCKET=path)
    result = subprocess.run(cli.argv("start", "-a", "unit"), capture_output=True, env=env, timeout=60)
    assert result.returncode == 3 and result.stdout == b"hi\n"
    ready = server.recv(4096).decode().split("\n")
    assert ready[0] == "READY=1" and ready[1].startswith("MAINPID=") and ready[2].startswith("STATUS=")
    stopping = server.recv(4096).decode()
    assert stopping.startswith("STOPPING=1") and "exited (3)" in stopping
    server.close()


@pytest.mark.parametrize("verb", ["stop", "kill", "pause", "unpause", "top", "wait", "logs", "attach", "restart"])
def test_verbs_name_missing_containers(cli, verb):
    result = cli(verb, "nope")
    assert result.returncode == 125 and b'"nope" not found' in result.stderr


def test_the_container_starts_with_default_signal_dispositions(cli, bb):
    """Whatever overlayctl was started from (nohup ignores SIGHUP, a shell's
    background job SIGINT and SIGQUIT, Python SIGPIPE), the container's
    processes start with every signal at its default and none blocked, as
    Docker's do: a shell as PID 1 could not even trap an ignored one."""

    def careless_parent() -> None:
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})

    def masks(*args: str) -> dict[str, str]:
        result = subprocess.run(cli.argv(*args), capture_output=True, env=cli.env, preexec_fn=careless_parent)
        assert result.returncode == 0, result.stderr
        fields = dict(line.split(":\t") for line in result.stdout.decode().splitlines() if ":\t" in line)
        return {k: fields[k] for k in ("SigIgn", "SigBlk")}

    clean = {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000"}
    assert masks("run", "--rm", *NONE, "bb:1", "cat", "/proc/self/status") == clean
    script = "trap 'echo got-hup' HUP; echo ready; while :; do sleep 0.1 & wait; done"
    subprocess.run(
        cli.argv("run", "-d", "--name", "bg", *NONE, "bb:1", "sh", "-c", script),
        env=cli.env,
        preexec_fn=careless_parent,
        check=True,
        capture_output=True,
    )
    wait_for(lambda: "ready" in log_lines(cli, "bg"), what="the trap")
    assert masks("exec", "bg", "cat", "/proc/self/status") == clean
    cli.ok("kill", "-s", "HUP", "bg")
    wait_for(lambda: "got-hup" in log_lines(cli, "bg"), what="SIGHUP to be trapped")
    cli.ok("rm", "-f", "bg")
