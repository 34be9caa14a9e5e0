"""A filesystem with project quotas, made by the test itself: a loop-mounted
ext4 (features quota and project) or xfs image, mounted with -o prjquota.

Where the kernel cannot (built without CONFIG_QUOTA / CONFIG_QFMT_V2, or
without CONFIG_XFS_QUOTA, as on the development host), the test is skipped
with what the kernel said. The mount and the loop device are always
undone, whatever the test did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SIZE_MB = 300  # xfs wants at least 300 MB since xfsprogs 5.19

_MKFS = {
    # -O quota,project: the quota inodes are part of the filesystem (no
    # quota files to make), project IDs are stored in every inode.
    "ext4": ["mkfs.ext4", "-q", "-F", "-O", "quota,project", "-E", "quotatype=prjquota"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
}


@contextmanager
def prjquota_fs(kind: str, options: str = "prjquota") -> Iterator[str]:
    """A fresh `kind` ("ext4" or "xfs") filesystem mounted with -o prjquota
    (or `options`: "defaults" gives an xfs with project IDs on every inode
    but no accounting, which any kernel mounts); its mount point. Skips
    the test, naming what failed, where this host cannot make or mount one."""
    if os.geteuid() != 0:
        pytest.skip("needs root: loop devices and mounts")
    tool = _MKFS[kind][0]
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (scripts/setup.sh test installs it)")
    work = tempfile.mkdtemp(prefix=f"octl-prjquota-{kind}-")
    image = os.path.join(work, "fs.img")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    loop = ""
    mounted = False
    try:
        with open(image, "wb") as f:
            f.truncate(SIZE_MB << 20)
        _run([*_MKFS[kind], image], f"{tool} {image}")
        loop = _run(["losetup", "--find", "--show", image], "losetup").strip()
        result = subprocess.run(["mount", "-t", kind, "-o", options, loop, mnt], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"this kernel cannot mount {kind} with -o {options}: {_said(result, loop)}")
        mounted = True
        yield mnt
    finally:
        if mounted:
            subprocess.run(["umount", mnt], capture_output=True)
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        if loop:
            subprocess.run(["losetup", "-d", loop], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def _run(argv: list[str], what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"{what} failed: {_said(result)}")
    return result.stdout


def _said(result: subprocess.CompletedProcess, device: str = "") -> str:
    """The kernel's own line about `device` (mount(8) only points at
    dmesg), else what the tool printed."""
    name = os.path.basename(device)
    if name:
        kernel = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
        lines = [line for line in kernel if f"({name})" in line]
        if lines:
            return lines[-1].split("] ", 1)[-1].strip()
    return (result.stderr or result.stdout).strip().replace("\n", "; ")
