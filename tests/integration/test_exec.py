"""`exec` on the real kernel: the process really is in the container (its
namespaces, cgroups, capabilities, seccomp filter) and its exit code
passes through."""

from __future__ import annotations

import json
import os
import time

import pytest

from overlayctl.runtime.cgroups.cgroup import find

NONE = ("--network", "none")


@pytest.fixture
def box(cli, bb):
    """A running container named box (hostname box)."""
    cli.ok("run", "-d", "--name", "box", "--hostname", "box", *NONE, "bb:1", "sleep", "600")
    return json.loads(cli.ok("inspect", "box"))[0]


def caps(text: str) -> dict[str, int]:
    pairs = (line.split() for line in text.splitlines() if line.startswith("Cap"))
    return {k.rstrip(":"): int(v, 16) for k, v in pairs}


def test_exec_shares_every_namespace(cli, box):
    pid = box["State"]["Pid"]
    names = ("mnt", "uts", "ipc", "net", "pid", "cgroup")
    script = "; ".join(f"readlink /proc/self/ns/{n}" for n in names)
    inside = cli.ok("exec", "box", "sh", "-c", script).split()
    assert inside == [os.readlink(f"/proc/{pid}/ns/{n}") for n in names]
    assert cli.ok("exec", "box", "hostname") == "box\n"
    ps = cli.ok("exec", "box", "ps", "-o", "pid,args").splitlines()
    assert ps[1].split(None, 1) == ["1", "sleep 600"]  # the container's processes, its PID 1
    # The root is the container's overlay.
    assert " / / " in cli.ok("exec", "box", "cat", "/proc/self/mountinfo").splitlines()[0]


def test_exec_has_the_containers_capabilities_and_seccomp(cli, bb):
    opts = ("--cap-drop", "net_raw", "--cap-add", "sys_time", *NONE)
    cli.ok("run", "-d", "--name", "capped", *opts, "bb:1", "sleep", "600")
    want = cli.ok("run", "--rm", *opts, "bb:1", "grep", "Cap", "/proc/self/status")
    got = cli.ok("exec", "capped", "grep", "Cap", "/proc/self/status")
    assert caps(got) == caps(want)
    status = cli.ok("exec", "capped", "grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status").split()
    assert status == ["NoNewPrivs:", "1", "Seccomp:", "2"]
    # The filter is the container's: unshare is refused without CAP_SYS_ADMIN.
    result = cli("exec", "capped", "unshare", "-U", "true")
    assert result.returncode != 0
    cli.ok("run", "-d", "--name", "open", "--security-opt", "seccomp=unconfined", *NONE, "bb:1", "sleep", "600")
    assert "Seccomp:\t0" in cli.ok("exec", "open", "cat", "/proc/self/status")


def test_exec_joins_the_containers_cgroups(cli, bb):
    cli.ok("run", "-d", "--name", "limited", "--pids-limit", "50", *NONE, "bb:1", "sleep", "600")
    pid = json.loads(cli.ok("inspect", "limited"))[0]["State"]["Pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        theirs = f.read()
    cid = json.loads(cli.ok("inspect", "limited"))[0]["Id"]
    # The exec'd process, seen from the host, is in the same cgroups.
    cli.ok("exec", "-d", "limited", "sleep", "30")
    # The pids controller's cgroup, wherever this host mounts it (v1 or v2).
    procs = os.path.join(find(cid).controllers["pids"], "cgroup.procs")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(procs) as f:
            members = f.read().split()
        if len(members) == 2:
            break
        time.sleep(0.05)
    assert len(members) == 2
    other = next(int(p) for p in members if int(p) != pid)
    with open(f"/proc/{other}/cgroup") as f:
        assert f.read() == theirs


def test_exec_exit_codes(cli, box):
    assert cli("exec", "box", "sh", "-c", "exit 7").returncode == 7
    result = cli("exec", "box", "no-such-command")
    assert result.returncode == 127 and b"executable file not found" in result.stderr
    assert cli("exec", "box", "/etc/passwd").returncode == 126
    result = cli("exec", "-w", "/no/such/dir", "box", "true")
    assert result.returncode == 126 and b"working directory" in result.stderr
    assert cli("exec", "box", "sh", "-c", "kill -9 $$").returncode == 137


def test_exec_env_workdir_user_stdin(cli, box):
    out = cli.ok("exec", "-e", "A=1", "-w", "/tmp", "box", "sh", "-c", "echo $A $(pwd) $HOME $PATH")
    assert out.split()[:3] == ["1", "/tmp", "/root"] and "/bin" in out
    assert cli.ok("exec", "-u", "nobody", "box", "id").startswith("uid=65534(nobody) gid=65534(nogroup)")
    nobody = cli.ok("exec", "-u", "nobody", "box", "grep", "CapEff", "/proc/self/status")
    assert caps(nobody)["CapEff"] == 0
    assert cli.ok("exec", "-u", "1234:5", "box", "id", "-u") == "1234\n"
    assert cli.ok("exec", "-i", "box", "cat", input=b"piped\n") == "piped\n"
    assert cli.ok("exec", "box", "cat", input=b"ignored\n") == ""  # no -i: stdin is /dev/null


def test_exec_and_run_read_e_alike(cli, box):
    """One -e check for run and exec: a bare KEY comes from the caller's
    environment, and an item without a KEY is refused by both."""
    cli.env["OCTL_TEST_E"] = "from-host"
    assert cli.ok("exec", "-e", "OCTL_TEST_E", "box", "sh", "-c", "echo $OCTL_TEST_E") == "from-host\n"
    assert cli.ok("run", "--rm", *NONE, "-e", "OCTL_TEST_E", "bb:1", "sh", "-c", "echo $OCTL_TEST_E") == "from-host\n"
    for verb in (("exec", "box"), ("run", "--rm", *NONE, "bb:1")):
        result = cli(*verb[:1], "-e", "=x", *verb[1:], "true")
        assert result.returncode == 125, result
        assert result.stderr.strip() == b'overlayctl: invalid environment variable "=x": use -e KEY=value'


def test_exec_detached_and_tty(cli, box):
    assert cli.ok("exec", "-d", "box", "sh", "-c", "echo bg > /tmp/f") == ""
    deadline = time.monotonic() + 10
    while cli("exec", "box", "cat", "/tmp/f").stdout != b"bg\n" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli.ok("exec", "box", "cat", "/tmp/f") == "bg\n"
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        argv = cli.argv("exec", "-t", "box", "sh", "-c", "tty; exit 3")
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
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 3 and b"/dev/pts/" in out


def test_exec_needs_a_running_container(cli, bb):
    cli.ok("create", "--name", "stopped", *NONE, "bb:1", "true")
    result = cli("exec", "stopped", "true")
    assert result.returncode == 125 and b"not running" in result.stderr
