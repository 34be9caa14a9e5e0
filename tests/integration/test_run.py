"""Containers on the real kernel: overlay, namespaces, exit codes, cleanup."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from tests.conftest import kernel_has_lowerdir_plus


def test_run_prints_and_removes(cli, bb):
    result = cli("run", "--rm", "bb:1", "sh", "-c", "echo hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hi\n"
    assert cli.ok("ps", "-aq") == ""
    assert os.listdir(cli.root / "containers") == []


def test_pid1_hostname_env_workdir(cli, bb):
    out = cli.ok(
        "run",
        "--name",
        "c1",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "--hostname",
        "box",
        "bb:1",
        "sh",
        "-c",
        'echo $$ $(hostname) $A $(pwd); ls /proc | grep -c "^[0-9]"',
    )
    pid, host, a, cwd, nprocs = out.split()
    assert (pid, host, a, cwd) == ("1", "box", "1", "/tmp")
    # Only the shell and the processes of the pipeline are visible: a new PID namespace.
    assert int(nprocs) <= 4


def test_overlay_never_on_host_mount_table(cli, bb):
    proc = subprocess.Popen(
        cli.argv("run", "--rm", "bb:1", "sh", "-c", "echo up; sleep 5"), stdout=subprocess.PIPE, env=cli.env
    )
    try:
        assert proc.stdout.readline() == b"up\n"
        # The overlay names its upper dir (under the store root) in its
        # options: no such line may exist outside the container.
        for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
            with open(table) as f:
                assert str(cli.root) not in f.read(), table
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_inside_the_container_is_an_overlay(cli, bb):
    out = cli.ok("run", "--rm", "bb:1", "cat", "/proc/self/mountinfo")
    root_line = out.splitlines()[0]
    assert " / / " in root_line and " - overlay " in root_line
    # The new mount API, one fsconfig per layer; mount(2) before Linux 6.8.
    assert ("lowerdir+=" if kernel_has_lowerdir_plus() else "lowerdir=") in root_line


def test_copy_up_leaves_the_image_layer_unchanged(cli, bb):
    # (--network none: no init layer, so the image's layer is the first lowerdir.)
    cli.ok("run", "--name", "cow", "--network", "none", "bb:1", "sh", "-c", "echo changed >> /etc/passwd")
    info = json.loads(cli.ok("inspect", "cow"))[0]
    upper = info["GraphDriver"]["Data"]["UpperDir"]
    lower = info["GraphDriver"]["Data"]["LowerDir"].split(":")[0]
    with open(os.path.join(upper, "etc/passwd")) as f:
        assert f.read().endswith("changed\n")
    with open(os.path.join(lower, "etc/passwd")) as f:
        assert "changed" not in f.read()
    # Only the copied-up file and its parent are in the upper dir.
    assert sorted(os.listdir(upper)) == ["etc"]


def test_delete_leaves_a_whiteout(cli, bb):
    cli.ok("run", "--name", "wh", "bb:1", "rm", "/etc/group")
    upper = json.loads(cli.ok("inspect", "wh"))[0]["GraphDriver"]["Data"]["UpperDir"]
    st = os.lstat(os.path.join(upper, "etc/group"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def test_replaced_directory_is_opaque(cli, bb):
    replace = "rm -rf /etc && mkdir /etc && echo new > /etc/only && ls /etc"
    # The merged view shows only the new content...
    # (--network none: nothing is mounted on /etc/hosts, which rm -rf /etc would hit.)
    assert cli.ok("run", "--name", "opq", "--network", "none", "bb:1", "sh", "-c", replace).split() == ["only"]
    upper = json.loads(cli.ok("inspect", "opq"))[0]["GraphDriver"]["Data"]["UpperDir"]
    assert os.getxattr(os.path.join(upper, "etc"), "trusted.overlay.opaque") == b"y"
    # ...and the container starts again on its own upper dir.
    assert cli.ok("start", "-a", "opq").split() == ["only"]
    # The image layer is untouched.
    assert cli.ok("run", "--rm", "--network", "none", "bb:1", "ls", "/etc").split() == ["group", "passwd"]


@pytest.mark.parametrize("code", [0, 1, 3, 42])
def test_exit_code_passes_through(cli, bb, code):
    assert cli("run", "--rm", "bb:1", "sh", "-c", f"exit {code}").returncode == code


def test_death_by_signal_is_128_plus_n(cli, bb):
    # PID 1 cannot be killed from inside its namespace; the host can.
    proc = subprocess.Popen(
        cli.argv("run", "--name", "kk", "bb:1", "sh", "-c", "echo up; sleep 30"), stdout=subprocess.PIPE, env=cli.env
    )
    assert proc.stdout.readline() == b"up\n"
    pid = json.loads(cli.ok("inspect", "kk"))[0]["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=20) == 137
    assert json.loads(cli.ok("inspect", "kk"))[0]["State"]["ExitCode"] == 137


def test_sigterm_is_forwarded(cli, bb):
    proc = subprocess.Popen(
        cli.argv(
            "run",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ),
        stdout=subprocess.PIPE,
        env=cli.env,
    )
    assert proc.stdout.readline() == b"ready\n"
    # Repeat the signal until the container ends: a loaded machine can
    # deliver the first one while busybox sh is between fork and wait, where
    # it may run its trap only after the next signal.
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
    out = proc.stdout.read()
    proc.stdout.close()
    assert out.startswith(b"got-term\n")
    assert proc.returncode == 7


def test_command_not_found_is_127(cli, bb):
    result = cli("run", "--rm", "bb:1", "no-such-command")
    assert result.returncode == 127
    assert result.stderr.decode().count("\n") == 1
    assert "executable file not found" in result.stderr.decode()
    assert os.listdir(cli.root / "containers") == []


def test_not_executable_is_126(cli, bb):
    assert cli("run", "--rm", "bb:1", "/etc/passwd").returncode == 126


def test_create_then_start_attached(cli, bb):
    cli.ok("create", "--name", "c2", "bb:1", "sh", "-c", "echo from-c2")
    ps = cli.ok("ps", "-a")
    assert "Created" in ps and "c2" in ps
    assert cli.ok("start", "-a", "c2") == "from-c2\n"
    info = json.loads(cli.ok("inspect", "c2"))[0]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    assert info["Name"] == "/c2" and info["Config"]["Cmd"] == ["sh", "-c", "echo from-c2"]


def test_inspect_is_docker_shaped(cli, bb):
    cli.ok("run", "--name", "c1", "-e", "A=1", "-w", "/tmp", "--hostname", "box", "bb:1", "true")
    info = json.loads(cli.ok("inspect", "-s", "c1"))[0]
    for key in ("Id", "Name", "Image", "Config", "State", "GraphDriver", "SizeRw", "SizeRootFs"):
        assert key in info
    assert info["Image"] == bb
    assert info["Config"]["Hostname"] == "box" and info["Config"]["WorkingDir"] == "/tmp"
    assert "A=1" in info["Config"]["Env"]
    assert info["GraphDriver"]["Name"] == "overlay"
    assert set(info["GraphDriver"]["Data"]) == {"LowerDir", "UpperDir", "WorkDir"}
    for key in ("Status", "Running", "Pid", "ExitCode", "StartedAt", "FinishedAt"):
        assert key in info["State"]
    assert info["SizeRootFs"] > info["SizeRw"] >= 4096


def test_sizes_match_du(cli, bb):
    cli.ok("run", "--name", "big", "bb:1", "sh", "-c", "dd if=/dev/zero of=/data bs=1k count=100 2>/dev/null")
    row = json.loads(cli.ok("ps", "-a", "-s", "--format", "json"))
    upper = cli.root / "containers" / json.loads(cli.ok("inspect", "big"))[0]["Id"] / "upper"
    du = int(
        subprocess.run(["du", "-s", "--block-size=1", str(upper)], capture_output=True, check=True).stdout.split()[0]
    )
    assert row["SizeRw"] == du
    image_size = json.loads(cli.ok("image", "ls", "--format", "json"))["Size"]
    assert row["SizeRootFs"] == du + image_size
    table = cli.ok("ps", "-a", "-s")
    assert "(virtual " in table


def test_rm_removes_upper_dir(cli, bb):
    cid = cli.ok("create", "bb:1", "true").strip()
    assert (cli.root / "containers" / cid / "upper").is_dir()
    cli.ok("rm", cid[:12])
    assert not (cli.root / "containers" / cid).exists()


def test_detached_container_and_rm_f(cli, bb):
    cid = cli.ok("run", "-d", "--name", "bg", "bb:1", "sleep", "60").strip()
    info = json.loads(cli.ok("inspect", "bg"))[0]
    assert info["Id"] == cid and info["State"]["Running"] and info["State"]["Pid"] > 0
    assert "bg" in cli.ok("ps")
    assert cli("rm", "bg").returncode == 125  # running: needs -f
    cli.ok("rm", "-f", "bg")
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{info['State']['Pid']}")


def test_tty_is_a_real_pty(cli, bb):
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        os.execve(
            cli.argv("run", "--rm", "-t", "bb:1", "sh", "-c", "tty; exit 5")[0],
            cli.argv("run", "--rm", "-t", "bb:1", "sh", "-c", "tty; exit 5"),
            cli.env,
        )
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
    assert os.waitstatus_to_exitcode(status) == 5
    assert b"/dev/pts/0" in out


# Docker's default set: chown dac_override fowner fsetid kill setgid setuid
# setpcap net_bind_service net_raw sys_chroot mknod audit_write setfcap.
DOCKER_DEFAULT_CAPS = 0x00000000A80425FB


def test_capabilities_are_dockers_defaults(cli, bb):
    out = cli.ok("run", "--rm", "bb:1", "grep", "^Cap", "/proc/self/status")
    caps = {name.rstrip(":"): int(value, 16) for name, value in (line.split() for line in out.splitlines())}
    assert caps == {
        "CapInh": 0,
        "CapPrm": DOCKER_DEFAULT_CAPS,
        "CapEff": DOCKER_DEFAULT_CAPS,
        "CapBnd": DOCKER_DEFAULT_CAPS,
        "CapAmb": 0,
    }
    # Without CAP_SYS_ADMIN the container cannot mount, even as root.
    result = cli("run", "--rm", "bb:1", "mount", "-t", "tmpfs", "none", "/tmp")
    assert result.returncode != 0
    assert b"denied" in result.stderr.lower() or b"not permitted" in result.stderr.lower()
