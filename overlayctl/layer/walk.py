"""Walking a tree that someone else may be changing meanwhile.

A live container's upper dir belongs to the container: while the host reads
it, the container can swap a directory for a symlink to any host path
(renameat2 RENAME_EXCHANGE). A walker that checks a name and then uses its
path would follow that symlink on the host. This one holds each directory
by an fd opened beneath the root with no symlink followed (openat2 with
RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), and names every entry relative to its
directory's fd: whatever the container does, nothing outside the tree is
read. What it cannot give under such a race is a consistent picture: a
directory that is a symlink by the time it is opened is refused with
TreeChangedError.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from overlayctl.errors import OverlayctlError
from overlayctl.layer.extract import quote
from overlayctl.runtime.syscalls import open_beneath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What an open or readlink beneath a directory fd meets when the name was
# swapped, removed or retyped since it was listed.
RACE_ERRNOS = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.EINVAL, errno.EXDEV)


class TreeChangedError(OverlayctlError):
    """An entry changed type or vanished while the tree was being read."""

    def __init__(self, rel: bytes) -> None:
        super().__init__(
            f"cannot read {quote(os.fsdecode(rel))}: it changed while being read; pause or stop the container and retry"
        )


def open_root(path: str | bytes) -> int:
    """An fd of the directory `path`, the root of a walk (not itself a symlink)."""
    return os.open(path, DIR_FLAGS)


def join(rel_dir: bytes, name: bytes) -> bytes:
    """The path of `name` in the directory `rel_dir` (b"" for the root)."""
    return rel_dir + b"/" + name if rel_dir else name


def open_in_tree(root_fd: int, rel: bytes, flags: int) -> int:
    """open_beneath(root_fd, rel, flags), with a race (a component that is no
    longer a directory, or gone) reported as TreeChangedError."""
    try:
        return open_beneath(root_fd, rel, flags)
    except OSError as e:
        if e.errno in RACE_ERRNOS:
            raise TreeChangedError(rel) from e
        raise


def xattr_path(dir_fd: int, name: bytes) -> bytes:
    """A path for the *xattr calls (which have no dir_fd) to reach `name` in
    the directory `dir_fd` itself: /proc's magic link lands on that very
    directory, and `name`, the last component, is not followed when called
    with follow_symlinks=False."""
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def walk_beneath(
    root_fd: int, skip_devs: frozenset[int] = frozenset()
) -> Iterator[tuple[int, bytes, list[tuple[bytes, os.stat_result]]]]:
    """(fd, path, entries) for every directory of the tree below `root_fd`,
    the root itself (path b"") first: the directory's fd, valid until the
    next step; its path relative to the root; its entries as (name, lstat),
    in directory order. An entry that vanished between listing and lstat
    is left out; a directory that is no longer one when opened raises
    TreeChangedError. Directories on a device of skip_devs are not entered.
    """
    pending = [b""]
    while pending:
        rel_dir = pending.pop()
        fd = open_in_tree(root_fd, rel_dir, DIR_FLAGS) if rel_dir else root_fd
        try:
            entries = _list(fd)
            yield fd, rel_dir, entries
        finally:
            if fd != root_fd:
                os.close(fd)
        pending.extend(
            join(rel_dir, name) for name, st in entries if stat.S_ISDIR(st.st_mode) and st.st_dev not in skip_devs
        )


def _list(fd: int) -> list[tuple[bytes, os.stat_result]]:
    entries = []
    # scandir of an fd names entries relative to it, and DirEntry.stat is
    # fstatat(fd, name, AT_SYMLINK_NOFOLLOW).
    with os.scandir(fd) as it:
        for de in it:
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            entries.append((os.fsencode(de.name), st))
    return entries
