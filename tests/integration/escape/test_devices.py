"""Device nodes open nothing unless granted: attacks and grants.

A default container keeps CAP_MKNOD (it is in Docker's default set), so it
can make a node equal to the host's /dev/zero (1:5) on every kind of mount
it has. Every such node must fail to open with EACCES, the kernel's answer
for a node on a nodev mount; /dev/zero is harmless, and a read returns data
whenever the node does open, so a hole shows as "opened". `--device` and
`--privileged` are the grants, and the permissions of a grant hold.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile

import pytest

from overlayctl.paths import cgroup_dir

# Where a default container can make a node: the mount kinds, by the
# options that give them and a path on each.
MOUNT_KINDS = {
    "root overlay": ((), "/tmp"),
    "/dev": ((), "/dev"),
    "/dev/shm": ((), "/dev/shm"),
    "named volume": (("-v", "devvol:/named"), "/named"),
    "anonymous volume": (("-v", "/anon"), "/anon"),
    "bind -v": (("-v", "{host}:/bound"), "/bound"),
    "--mount bind": (("--mount", "type=bind,source={host2},target=/mounted"), "/mounted"),
    "--mount volume": (("--mount", "type=volume,source=devvol2,target=/mvol"), "/mvol"),
    "--tmpfs": (("--tmpfs", "/scratch"), "/scratch"),
}


def _attempt(path: str) -> str:
    # "made" proves mknod worked (else the test would pass for nothing);
    # then head reads 4 bytes if the node opens.
    node = f"{path}/evil-zero"
    return (
        f"if mknod {node} c 1 5; then "
        f"n=$(head -c 4 {node} 2>/tmp/err.$$ | wc -c); "
        f'if [ "$n" = 4 ]; then echo "{path} opened"; else echo "{path} blocked $(cat /tmp/err.$$)"; fi; '
        f'else echo "{path} mknod-failed"; fi'
    )


def _cgroup_dirs(container_id: str) -> list[str]:
    found = []
    for tree in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        d = cgroup_dir(tree, container_id)
        if os.path.isdir(d):
            found.append(d)
    return found


@pytest.mark.slow
def test_a_made_node_opens_nothing_on_any_mount(cli, bb, tmp_path):
    host, host2 = tmp_path / "hostdir", tmp_path / "hostdir2"
    host.mkdir()
    host2.mkdir()
    options: list[str] = []
    for opts, _ in MOUNT_KINDS.values():
        options += [o.format(host=host, host2=host2) for o in opts]
    script = "; ".join(_attempt(path) for _, path in MOUNT_KINDS.values())
    out = cli.ok("run", "--rm", "--network", "none", *options, "bb:1", "sh", "-c", script)
    lines = out.strip().splitlines()
    print(out)
    assert len(lines) == len(MOUNT_KINDS), out
    for (kind, (_, path)), line in zip(MOUNT_KINDS.items(), lines, strict=True):
        assert line.startswith(f"{path} blocked"), f"{kind}: {line}"
        assert "Permission denied" in line, f"{kind}: {line}"  # EACCES: nodev, not some other failure
    # The nodes made on the binds are on the host too: proof they were really made.
    for directory in (host, host2):
        assert stat.S_ISCHR((directory / "evil-zero").lstat().st_mode)


def test_a_node_made_under_a_read_only_root_bind_stays_dead(cli, bb, tmp_path):
    # --read-only remounts / and a :ro bind is made read-only: neither may
    # drop the nodev that a node already on those mounts meets.
    host = tmp_path / "withnode"
    host.mkdir()
    os.mknod(host / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    script = "head -c 4 /ro/zero | wc -c; echo x > /ro/new 2>/dev/null && echo writable || echo read-only"
    result = cli("run", "--rm", "--read-only", "-v", f"{host}:/ro:ro", "bb:1", "sh", "-c", script)
    out = result.stdout.decode().split()
    assert out == ["0", "read-only"], (out, result.stderr)
    assert b"Permission denied" in result.stderr


def test_a_node_shipped_in_the_image_opens_nothing_even_with_a_read_only_root(cli, busybox_tar, tmp_path):
    # --read-only's bind remount of / sets exactly the flags it is given:
    # it once dropped nodev, and an image's node opened the host's device.
    tar = tmp_path / "with-node.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(tar, "w") as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        node = tarfile.TarInfo("shipped-zero")
        node.type, node.devmajor, node.devminor, node.mode = tarfile.CHRTYPE, 1, 5, 0o666
        out.addfile(node)
    cli.ok("import", str(tar), "withnode:1")
    script = "stat -c %t:%T /shipped-zero; head -c 4 /shipped-zero | wc -c"
    for extra in ((), ("--read-only",)):
        result = cli("run", "--rm", *extra, "withnode:1", "sh", "-c", script)
        assert result.stdout.decode().split() == ["1:5", "0"], (extra, result.stdout, result.stderr)
        assert b"Permission denied" in result.stderr, extra


def test_a_read_only_bind_is_read_only_with_its_submounts(cli, bb, tmp_path):
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(inner)], check=True)
    try:
        script = "touch /o/inner/f 2>/dev/null && echo inner-writable || echo inner-read-only"
        out = cli.ok("run", "--rm", "-v", f"{outer}:/o:ro", "bb:1", "sh", "-c", script).strip()
    finally:
        subprocess.run(["umount", str(inner)], check=True)
    assert out == "inner-read-only"


def test_a_granted_device_opens(cli, bb):
    script = "stat -c %t:%T /dev/mynull; echo data > /dev/mynull && echo written; head -c 4 /dev/mynull | wc -c"
    out = cli.ok("run", "--rm", "--device", "/dev/null:/dev/mynull", "bb:1", "sh", "-c", script).split()
    assert out == ["1:3", "written", "0"]
    # Outside /dev, in a directory the image lacks, with the default container path.
    out = cli.ok("run", "--rm", "--device", "/dev/zero:/opt/dev/z", "bb:1", "head", "-c", "4", "/opt/dev/z")
    assert out == "\0\0\0\0"
    out = cli.ok("run", "--rm", "--device", "/dev/full", "bb:1", "stat", "-c", "%t:%T", "/dev/full")
    assert out.strip() == "1:7"


def test_device_permissions_are_enforced_by_the_cgroup(cli, bb):
    script = (
        "head -c 4 /dev/z | wc -c; "
        "echo x > /dev/z 2>/dev/null && echo z-written || echo z-write-denied; "
        ": > /dev/w && echo w-opened; "  # (/dev/full refuses the data itself: ENOSPC)
        "head -c 1 /dev/w >/dev/null 2>&1 && echo w-read || echo w-read-denied; "
        "echo x > /dev/null && echo null-written"
    )
    result = cli(
        "run", "--name", "perm", "--device", "/dev/zero:/dev/z:r", "--device", "/dev/full:/dev/w:w",
        "bb:1", "sh", "-c", script,
    )
    out = result.stdout.decode().split()
    assert out == ["4", "z-write-denied", "w-opened", "w-read-denied", "null-written"], (out, result.stderr)
    data = json.loads(cli.ok("inspect", "perm"))[0]
    cid = data["Id"]
    assert data["HostConfig"]["Devices"] == [
        {"PathOnHost": "/dev/zero", "PathInContainer": "/dev/z", "CgroupPermissions": "r"},
        {"PathOnHost": "/dev/full", "PathInContainer": "/dev/w", "CgroupPermissions": "w"},
    ]
    assert _cgroup_dirs(cid) == [], "the device program's cgroup outlived the container"
    cli.ok("rm", "perm")


@pytest.mark.slow
def test_a_detached_container_and_its_exec_keep_the_permissions(cli, bb):
    cid = cli.ok("run", "-d", "--device", "/dev/zero:/dev/z:r", "bb:1", "sleep", "30").strip()
    try:
        assert _cgroup_dirs(cid), "no cgroup was made for the device program"
        result = cli("exec", cid, "sh", "-c", "echo x > /dev/z")
        assert result.returncode != 0 and b"Operation not permitted" in result.stderr, result
        assert cli.ok("exec", cid, "sh", "-c", "head -c 4 /dev/z | wc -c").strip() == "4"
    finally:
        cli("rm", "-f", cid)
    assert _cgroup_dirs(cid) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/etc/hostname", "--device /etc/hostname: not a character or block device on the host"),
        ("/no/such/dev", "--device /no/such/dev: no such file or directory on the host"),
        ("/dev/null:dev/x", '"dev/x" is not an absolute path'),
        ("/dev/null:/dev/x:rwx", 'permissions "rwx" are not some of r, w and m'),
        ("/dev/null:/dev/x:r:w", "use HOST[:CONTAINER[:rwm]]"),
    ],
)
def test_bad_device_values_are_refused_in_one_line(cli, bb, value, message):
    for verb in ("create", "run"):
        result = cli(verb, "--device", value, "bb:1", "true")
        err = result.stderr.decode()
        assert result.returncode == 125, (verb, err)
        assert err.count("\n") == 1 and message in err, (verb, err)
    assert cli.ok("ps", "-aq") == ""


def test_privileged_gets_the_hosts_devices(cli, bb):
    path = "/dev/loop-control"
    if not os.path.exists(path):
        pytest.skip(f"this host has no {path}")
    rdev = os.stat(path).st_rdev
    script = f"stat -c %t:%T {path}; : < {path} && echo opened"
    out = cli.ok("run", "--rm", "--privileged", "bb:1", "sh", "-c", script).split()
    assert out == [f"{os.major(rdev):x}:{os.minor(rdev):x}", "opened"]
    # Without --privileged it is not there.
    result = cli("run", "--rm", "bb:1", "stat", path)
    assert result.returncode != 0


def test_generated_etc_files_are_nodev(cli, bb):
    # /etc/hosts, /etc/hostname and /etc/resolv.conf are binds of files on
    # the host's filesystem: nodev like every other bind.
    out = cli.ok("run", "--rm", "bb:1", "cat", "/proc/self/mountinfo")
    etc = [line.split() for line in out.splitlines() if line.split()[4].startswith("/etc/")]
    assert sorted(fields[4] for fields in etc) == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"], out
    for fields in etc:
        assert "nodev" in fields[5].split(","), fields
