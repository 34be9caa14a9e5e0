"""Walking beneath a root: open_beneath (openat2 and its fallback) and walk_beneath."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from overlayctl.layer.walk import TreeChangedError, open_root, walk_beneath
from overlayctl.runtime import syscalls


@pytest.fixture(params=["openat2", "components"])
def resolver(request, monkeypatch) -> str:
    """Each test runs with openat2 and with the per-component fallback
    kernels without openat2 get."""
    monkeypatch.setattr(syscalls, "_have_openat2", None if request.param == "openat2" else False)
    return request.param


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "f").write_text("outside\n")
    root = tmp_path / "root"
    (root / "a" / "sub").mkdir(parents=True)
    (root / "a" / "sub" / "f").write_text("inside\n")
    (root / "abs").symlink_to(outside)
    (root / "rel").symlink_to("a")
    return root


def _read(root_fd: int, rel: str) -> bytes:
    fd = syscalls.open_beneath(root_fd, rel, os.O_RDONLY)
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def test_open_beneath_reads_inside_and_follows_no_symlink(tree, resolver):
    root_fd = open_root(str(tree))
    try:
        assert _read(root_fd, "a/sub/f") == b"inside\n"
        for path in ("abs/sub/f", "rel/sub/f", "abs", "rel"):
            with pytest.raises(OSError) as e:
                _read(root_fd, path)
            assert e.value.errno in (errno.ELOOP, errno.ENOTDIR), (path, e.value)
        with pytest.raises(OSError) as e:
            _read(root_fd, "../outside/sub/f")
        assert e.value.errno == errno.EXDEV
        # O_PATH opens a final symlink itself, as lstat sees it.
        fd = syscalls.open_beneath(root_fd, "abs", os.O_PATH)
        assert os.readlink("", dir_fd=fd) == str(tree.parent / "outside")
        os.close(fd)
    finally:
        os.close(root_fd)
    if resolver == "components":
        assert syscalls._have_openat2 is False  # the fallback was what ran


def test_walk_beneath_lists_every_directory_once(tree):
    root_fd = open_root(str(tree))
    try:
        seen = {rel: sorted(name for name, _ in listing) for _, rel, listing in walk_beneath(root_fd)}
    finally:
        os.close(root_fd)
    assert seen == {b"": [b"a", b"abs", b"rel"], b"a": [b"sub"], b"a/sub": [b"f"]}


def test_a_directory_swapped_for_a_symlink_during_the_walk_is_refused(tree, resolver):
    root_fd = open_root(str(tree))
    try:
        walk = walk_beneath(root_fd)
        next(walk)  # the root is listed: a is a directory
        os.rename(tree / "a", tree / "a.moved")
        (tree / "a").symlink_to(tree.parent / "outside")
        with pytest.raises(TreeChangedError, match='"a": it changed while being read'):
            next(walk)
    finally:
        os.close(root_fd)
