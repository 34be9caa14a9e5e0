"""Isolation from inside a default container: every escape attempt must fail.

Each attempt that succeeds is a failing test. Attempts that need raw
syscalls run a small static C program (escape/escape.c) built with the
host's gcc into an image.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import image_with_program, static_program

ESCAPE_SOURCE = Path(__file__).parent / "escape" / "escape.c"


@pytest.fixture(scope="session")
def escape_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_program(ESCAPE_SOURCE, tmp_path_factory.mktemp("escape"))


@pytest.fixture
def escape_image(cli, bb, escape_binary, tmp_path) -> str:
    return image_with_program(cli, escape_binary, tmp_path)


@pytest.fixture
def host_marker(tmp_path) -> Path:
    marker = tmp_path / "host-marker"
    marker.write_text("host\n")
    return marker


def test_escape_attempts_from_a_default_container_fail(cli, escape_image, host_marker):
    out = cli.ok("run", "--rm", "--network", "none", escape_image, "/escape", str(host_marker))
    results = dict(line.split(": ", 1) for line in out.splitlines())
    assert set(results) == {"open_by_handle_at", "mount", "unshare_mount_ns", "chroot"}, out
    escaped = {name: r for name, r in results.items() if not r.startswith("blocked")}
    assert not escaped, out
    assert host_marker.read_text() == "host\n"


def test_kernel_interfaces_are_masked_or_read_only(cli, bb):
    script = (
        "cat /proc/keys /proc/timer_list /proc/sched_debug 2>/dev/null | wc -c; "
        "ls /sys/firmware | wc -l; "
        "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo sys-writable || echo sys-ro; "
        "echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-writable || echo sysrq-ro; "
        # /dev/null is bound over it, as Docker does: an open fails where that
        # bind is nodev and reads nothing where it is not; never memory.
        "head -c 64 /proc/kcore 2>/dev/null | wc -c"
    )
    out = cli.ok("run", "--rm", "--network", "none", "bb:1", "sh", "-c", script).split()
    assert out == ["0", "0", "sys-ro", "sysrq-ro", "0"]
    # A privileged container sees them, as with Docker.
    out = cli.ok("run", "--rm", "--network", "none", "--privileged", "bb:1", "sh", "-c", "ls /sys/firmware | wc -l")
    assert int(out) > 0


def test_host_processes_mounts_and_binaries_are_invisible(cli, bb):
    script = (
        "ls /proc | grep -c '^[0-9]'; "
        "for p in /proc/[0-9]*; do readlink $p/exe; done | sort -u; "
        "cat /proc/self/mountinfo"
    )
    out = cli.ok("run", "--rm", "--network", "none", "bb:1", "sh", "-c", script)
    lines = out.splitlines()
    assert int(lines[0]) <= 5
    # Only busybox runs in there: no supervisor, no python, no host binary.
    exes = [line for line in lines[1:] if line.startswith("/") and " " not in line]
    assert set(exes) <= {"/bin/busybox", "/bin/sh", "/bin/ls", "/bin/grep", "/bin/sort", "/bin/readlink"}, exes
    # Mount points: only what the runtime mounted for the container, none
    # of the host's own mounts. (The overlay's options name the layer
    # directories, as Docker's do: that is not a mount of them.)
    mount_points = {line.split()[4] for line in lines[1 + len(exes) :]}
    allowed = {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"}
    allowed |= {f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom", "tty")}
    allowed |= {f"/proc/{n}" for n in ("asound", "acpi", "interrupts", "kcore", "keys", "latency_stats",
                                        "timer_list", "timer_stats", "sched_debug", "scsi", "bus", "fs", "irq",
                                        "sys", "sysrq-trigger")}
    allowed |= {"/sys/firmware", "/sys/devices/virtual/powercap"}
    allowed |= {p for p in mount_points if p.startswith("/sys/devices/system/cpu/") and p.endswith("/thermal_throttle")}
    assert mount_points <= allowed, mount_points - allowed


def test_a_made_block_device_does_not_open_the_host_disk(cli, bb):
    dev = os.stat("/").st_dev
    major, minor = os.major(dev), os.minor(dev)
    script = (
        f"mknod /tmp/disk b {major} {minor} && mknod /dev/disk b {major} {minor} && "
        "head -c 512 /tmp/disk >/dev/null 2>&1 && echo root-readable || echo root-blocked; "
        "head -c 512 /dev/disk >/dev/null 2>&1 && echo dev-readable || echo dev-blocked"
    )
    out = cli.ok("run", "--rm", "--network", "none", "bb:1", "sh", "-c", script).split()
    assert out == ["root-blocked", "dev-blocked"]


def test_capabilities_add_drop_and_privileged(cli, bb):
    def eff(*opts: str) -> int:
        out = cli.ok("run", "--rm", "--network", "none", *opts, "bb:1", "grep", "CapEff", "/proc/self/status")
        return int(out.split()[1], 16)

    default = eff()
    assert default == 0xA80425FB
    assert eff("--cap-drop", "ALL") == 0
    assert eff("--cap-drop", "ALL", "--cap-add", "chown") == 1 << 0
    assert eff("--cap-add", "SYS_ADMIN") == default | (1 << 21)
    assert eff("--cap-drop", "net_raw") == default & ~(1 << 13)
    assert eff("--privileged") & (1 << 21)
    result = cli("run", "--rm", "--network", "none", "--cap-add", "SYS_NONSENSE", "bb:1", "true")
    assert result.returncode == 125
    assert result.stderr.decode().strip() == "overlayctl: unknown capability: 'SYS_NONSENSE'; see capabilities(7)"
    assert cli.ok("ps", "-aq") == ""  # nothing created
    status = cli.ok("run", "--rm", "--network", "none", "bb:1", "grep", "NoNewPrivs", "/proc/self/status")
    assert status.split() == ["NoNewPrivs:", "1"]


def test_user_names_from_the_images_passwd_with_supplementary_groups(cli, bb, tmp_path):
    ctx = tmp_path / "users"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM bb:1\n"
        "RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd"
        " && echo 'app:x:1000:' >> /etc/group && echo 'extra:x:2000:app' >> /etc/group\n"
        "USER app\n"
    )
    cli.ok("build", "-q", "-t", "users:1", str(ctx))
    out = cli.ok("run", "--rm", "--network", "none", "users:1", "sh", "-c", "id -u; id -g; id -G; echo $HOME")
    assert out.split() == ["1000", "1000", "1000", "2000", "/home/app"]
    # A non-root user has no effective capabilities; root is back with -u 0.
    out = cli.ok("run", "--rm", "--network", "none", "users:1", "grep", "CapEff", "/proc/self/status")
    assert int(out.split()[1], 16) == 0
    assert cli.ok("run", "--rm", "--network", "none", "-u", "0", "users:1", "id", "-u").strip() == "0"
    assert cli.ok("run", "--rm", "--network", "none", "-u", "app:extra", "users:1", "id", "-g").strip() == "2000"
    result = cli("run", "--rm", "--network", "none", "-u", "ghost", "users:1", "true")
    assert result.returncode == 125
    assert "unable to find user ghost" in result.stderr.decode()


def test_read_only_root(cli, bb):
    out = cli.ok(
        "run", "--rm", "--network", "none", "--read-only", "bb:1", "sh", "-c",
        "touch /x 2>/dev/null && echo root-rw || echo root-ro; touch /dev/shm/x && echo shm-rw",
    )
    assert out.split() == ["root-ro", "shm-rw"]
