"""disk_usage must agree with GNU du to the byte and to the inode."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlayctl.errors import OverlayctlError
from overlayctl.layer import du
from overlayctl.layer.du import Usage, disk_usage

needs_du = pytest.mark.skipif(shutil.which("du") is None, reason="GNU du not installed")


def gnu_du(path: Path) -> Usage:
    def run(*flags: str) -> int:
        out = subprocess.run(["du", "-s", *flags, str(path)], capture_output=True, check=True)
        return int(out.stdout.split()[0])

    return Usage(
        bytes=run("--block-size=1"),
        apparent=run("--apparent-size", "--block-size=1"),
        inodes=run("--inodes"),
    )


def write_sparse(path: Path, size: int, islands: list[tuple[int, bytes]]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in islands:
            f.seek(offset)
            f.write(data)


@needs_du
@pytest.mark.root
def test_matches_gnu_du_on_a_layer_like_tree(tmp_path: Path) -> None:
    root = tmp_path / "upper"
    (root / "a/b/c").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a/small").write_bytes(b"x")
    (root / "a/b/c/big").write_bytes(os.urandom(300_000))
    write_sparse(root / "sparse", 64 << 20, [(1 << 20, b"data"), ((64 << 20) - 1, b"z")])
    os.link(root / "a/b/c/big", root / "a/big-again")
    os.link(root / "a/b/c/big", root / "big-third")
    os.link(root / "sparse", root / "a/b/sparse-link")
    os.symlink("a/small", root / "link")
    os.mkfifo(root / "fifo")
    # Overlay whiteouts, two of them sharing one inode as the kernel does.
    os.mknod(root / "a/.deleted", stat.S_IFCHR, 0)
    os.link(root / "a/.deleted", root / "a/b/.also-deleted")
    os.setxattr(root / "a/b", "trusted.overlay.opaque", b"y")
    # Values too big for the inode spill into an extra block on ext4.
    os.setxattr(root / "a/small", "user.big", b"v" * 3000)
    os.setxattr(root / "empty", "trusted.big", b"w" * 3500)
    # A hardlink whose other name is outside the measured tree.
    (tmp_path / "elsewhere").write_bytes(b"shared" * 1000)
    os.link(tmp_path / "elsewhere", root / "from-outside")

    assert disk_usage(str(root)) == gnu_du(root)


@needs_du
def test_matches_gnu_du_for_a_single_file_and_a_symlink(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 10_000)
    os.symlink("f", tmp_path / "l")
    assert disk_usage(str(f)) == gnu_du(f)
    assert disk_usage(str(tmp_path / "l")) == gnu_du(tmp_path / "l")


def test_counts_the_top_directory_and_each_inode_once(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    os.link(tmp_path / "f", tmp_path / "g")
    top = os.lstat(tmp_path)
    f = os.lstat(tmp_path / "f")
    usage = disk_usage(str(tmp_path))
    assert usage.inodes == 2
    assert usage.apparent == top.st_size + 5
    assert usage.bytes == (top.st_blocks + f.st_blocks) * 512


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OverlayctlError, match="cannot measure"):
        disk_usage(str(tmp_path / "nope"))


# -- property: any small tree ----------------------------------------------

Op = tuple[str, int, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(["dir", "file", "sparse", "hardlink", "symlink", "xattr", "whiteout"]),
        st.integers(min_value=0, max_value=50),  # picks a parent or a target
        st.integers(min_value=0, max_value=20_000),  # a size
    ),
    max_size=30,
)


def build(root: Path, plan: list[Op]) -> None:
    dirs = [root]
    files: list[Path] = []
    for i, (kind, pick, size) in enumerate(plan):
        parent = dirs[pick % len(dirs)]
        path = parent / f"n{i}"
        if kind == "dir":
            path.mkdir()
            dirs.append(path)
        elif kind == "file":
            path.write_bytes(b"d" * size)
            files.append(path)
        elif kind == "sparse":
            write_sparse(path, size * 1000, [(size * 500, b"island")] if size else [])
            files.append(path)
        elif kind == "hardlink" and files:
            os.link(files[pick % len(files)], path)
        elif kind == "symlink":
            os.symlink("x" * (size % 300 + 1), path)
        elif kind == "xattr":
            target = (dirs + files)[pick % (len(dirs) + len(files))]
            try:
                os.setxattr(target, f"user.x{i}", b"v" * (size % 2000 + 1))
            except OSError as e:
                # ext4 keeps all of an inode's xattrs in one block: a full one is fine.
                if e.errno != errno.ENOSPC:
                    raise
        elif kind == "whiteout" and os.geteuid() == 0:
            os.mknod(path, stat.S_IFCHR, 0)


@needs_du
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=ops)
def test_matches_gnu_du_on_random_trees(plan: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "t"
        root.mkdir()
        build(root, plan)
        expected = gnu_du(root)
        assert disk_usage(str(root)) == expected
        # The same tree shared out among forked workers after a few entries.
        with mock.patch.object(du, "SERIAL_BUDGET", 3):
            assert disk_usage(str(root), workers=3) == expected


@needs_du
@pytest.mark.parametrize("workers, budget", [(1, du.SERIAL_BUDGET), (2, 10), (4, 1)])
def test_deep_and_wide_trees_serial_and_shared_out(tmp_path: Path, workers: int, budget: int) -> None:
    root = tmp_path / "t"
    # Deeper than the walk holds descriptors for, so the rest goes by path.
    deep = root
    for level in range(du._MAX_FD_DEPTH + 40):
        deep = deep / "d"
        deep.mkdir(parents=True)
        if level % 50 == 0:
            (deep / "f").write_bytes(b"x" * level)
    for i in range(30):
        wide = root / f"w{i}"
        wide.mkdir()
        for j in range(i):
            (wide / f"f{j}").write_bytes(b"y" * (j * 300))
        if i:
            os.link(wide / "f0", root / f"link{i}")  # a hard link across subtrees
    with mock.patch.object(du, "SERIAL_BUDGET", budget), mock.patch.object(os, "fork", wraps=os.fork) as fork:
        assert disk_usage(str(root), workers=workers) == gnu_du(root)
    assert fork.call_count == workers - 1

