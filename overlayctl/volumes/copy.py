"""The tree copier that seeds a new volume with what the image has at its
target: between two open directories, by fd, never following a name.
"""

from __future__ import annotations

import errno
import os
import stat


def copy_targets(jobs: list[tuple[str, int]]) -> None:
    """For each (path, directory fd): copy the directory at path (resolved
    from the current root) into the fd's directory, and give that directory
    the owner, mode and times of the source. A missing path, or one that is
    not a directory, seeds nothing."""
    for path, dest_fd in jobs:
        try:
            src_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            copy_tree(src_fd, dest_fd)
        finally:
            os.close(src_fd)


def copy_tree(src_fd: int, dest_fd: int) -> None:
    """Copy a directory's content and metadata between two open directories.

    Entries already present in the destination are left alone (two
    containers seeding one empty volume at once give the same result).
    Hard links inside the tree stay hard links. Every name is created
    relative to its parent's fd, exclusively, and never followed, so a
    symlink in the destination cannot redirect the copy.
    """
    links: dict[tuple[int, int], tuple[tuple[str, ...], str]] = {}
    # Modes are given at creation (mknod has no fd to fchmod, and chmod by
    # name would follow a symlink swapped in meanwhile): no umask may cut them.
    umask = os.umask(0)
    try:
        _copy_entries(src_fd, dest_fd, dest_fd, (), links)
        _copy_metadata(src_fd, dest_fd, os.fstat(src_fd))
    finally:
        os.umask(umask)


def _copy_entries(
    src_fd: int,
    dest_fd: int,
    root_fd: int,
    rel: tuple[str, ...],
    links: dict[tuple[int, int], tuple[tuple[str, ...], str]],
) -> None:
    with os.scandir(src_fd) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        st = os.lstat(name, dir_fd=src_fd)
        mode = st.st_mode
        try:
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=dest_fd)
                sub_src = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
                try:
                    sub_dest = os.open(
                        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dest_fd
                    )
                    try:
                        _copy_entries(sub_src, sub_dest, root_fd, rel + (name,), links)
                        _copy_metadata(sub_src, sub_dest, st)
                    finally:
                        os.close(sub_dest)
                finally:
                    os.close(sub_src)
                continue
            if st.st_nlink > 1:
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    _link_beneath(root_fd, first, dest_fd, name)
                    continue
                links[(st.st_dev, st.st_ino)] = (rel, name)
            if stat.S_ISREG(mode):
                _copy_file(src_fd, dest_fd, name, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dest_fd)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dest_fd, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dest_fd, follow_symlinks=False)
            else:  # devices, fifos, sockets
                os.mknod(name, mode, st.st_rdev, dir_fd=dest_fd)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dest_fd, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dest_fd, follow_symlinks=False)
        except FileExistsError:
            continue


def _link_beneath(root_fd: int, first: tuple[tuple[str, ...], str], dest_fd: int, name: str) -> None:
    """Hard-link name to the first copy of its inode, reaching that copy's
    directory one component at a time without following symlinks: a path
    string would follow one planted in a volume that is in use."""
    parents, first_name = first
    fd = os.dup(root_fd)
    try:
        for part in parents:
            sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.link(first_name, name, src_dir_fd=fd, dst_dir_fd=dest_fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _copy_file(src_dir: int, dest_dir: int, name: str, st: os.stat_result) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dest = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dest_dir
        )
        try:
            _copy_data(src, dest)
            _copy_metadata(src, dest, st)
        finally:
            os.close(dest)
    finally:
        os.close(src)


def _copy_data(src: int, dest: int) -> None:
    try:
        while os.sendfile(dest, src, None, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
    while chunk := os.read(src, 1 << 20):
        os.write(dest, chunk)


def _copy_metadata(src: int, dest: int, st: os.stat_result) -> None:
    """Owner, then mode (chown clears set-id bits), then extended attributes
    (chown also clears security.capability), then times, last of all."""
    os.fchown(dest, st.st_uid, st.st_gid)
    os.fchmod(dest, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src)
    except OSError:
        names = []
    for attr in names:
        try:
            os.setxattr(dest, attr, os.getxattr(src, attr))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.ENODATA):
                raise
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
