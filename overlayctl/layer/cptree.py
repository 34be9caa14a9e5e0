"""`cp`'s trees: a path located in the host's tree or in a container's, a tar
of it made from descriptors, and a tar unpacked beneath a directory fd.

A container's paths are resolved as if its root were "/" (openat2
RESOLVE_IN_ROOT: its symlinks, absolute or full of "..", stay inside it),
the host's as the user's shell would. Below the directory a path names,
nothing follows a symlink: the tar is made by walk_beneath, and unpacked
with every parent opened beneath the destination with no symlink followed,
so neither a container's symlinks nor a hostile tar on stdin reach a file
outside the tree being read or written.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from typing import BinaryIO

from overlayctl.errors import InvalidArgumentError, NotFoundError, OverlayctlError
from overlayctl.layer.walk import DIR_FLAGS, walk_beneath
from overlayctl.runtime.syscalls import open_beneath, open_in_root

COPY_CHUNK = 1 << 20
# The kernel's own filesystems in a running container's tree: its /proc
# (with /proc/PID/mem of its processes), /sys, cgroups, devpts, mqueue.
# Docker's cp never sees them; here they are left out of a tar and refused
# as a destination.
KERNEL_FILESYSTEMS = frozenset(
    ("proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs", "debugfs", "tracefs", "bpf")
)


def kernel_devices(mountinfo: str) -> frozenset[int]:
    """st_dev of every mount of a KERNEL_FILESYSTEMS type in a mountinfo text."""
    devices = set()
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) > 2 and rest.split(" ", 1)[0] in KERNEL_FILESYSTEMS:
            major, _, minor = parts[2].partition(":")
            devices.add(os.makedev(int(major), int(minor)))
    return frozenset(devices)


class Tree:
    """The host's filesystem (root_fd None) or a container's below root_fd."""

    def __init__(self, root_fd: int | None, where: str, kernel_devs: frozenset[int] = frozenset()) -> None:
        self.root_fd = root_fd
        self.where = where  # for messages: "container c1" or "the host"
        self.kernel_devs = kernel_devs  # st_dev of its kernel filesystems (KERNEL_FILESYSTEMS)

    def check(self, fd: int, path: str) -> None:
        """Refuse a path on one of the tree's kernel filesystems."""
        if os.fstat(fd).st_dev in self.kernel_devs:
            raise InvalidArgumentError(
                f"cannot copy {path} in {self.where}: it is on a kernel filesystem (/proc, /sys, ...)"
            )

    def open(self, path: str, flags: int) -> int:
        """Open path, following symlinks (inside the tree, for a container's)."""
        if self.root_fd is None:
            return os.open(path, flags | os.O_CLOEXEC)
        return open_in_root(self.root_fd, path, flags)


class Source:
    """What a cp reads: a file, directory, symlink or special file, held by
    its parent directory's fd and its name there."""

    def __init__(self, parent_fd: int, name: str, st: os.stat_result, contents_only: bool) -> None:
        self.parent_fd = parent_fd
        self.name = name  # "" for a tree's root
        self.st = st
        self.contents_only = contents_only
        self.skip_devs: frozenset[int] = frozenset()  # left out of its tar: Tree.kernel_devs

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def close(self) -> None:
        os.close(self.parent_fd)


def _split(path: str) -> tuple[str, str, bool, bool]:
    """(parent, name, ends with "/", ends with "/.") of a cp path."""
    contents_only = path == "." or path.endswith("/.")
    body = path[:-2] if path.endswith("/.") else ("" if path == "." else path)
    trailing = body.endswith("/") or contents_only
    body = body.rstrip("/")
    if not body:
        return ("/" if path.startswith("/") else "."), "", trailing, contents_only
    parent, sep, name = body.rpartition("/")
    if not sep:
        parent = "."
    elif not parent:
        parent = "/"
    if name in (".", ".."):
        return body, "", trailing, contents_only
    return parent, name, trailing, contents_only


def locate_source(tree: Tree, path: str, follow: bool) -> Source:
    """The source path in tree; with `follow` (-L) a symlink it names is
    followed (inside the tree), otherwise it is copied as a symlink."""
    src = _locate(tree, path, follow)
    if src.st.st_dev in tree.kernel_devs:
        src.close()
        raise InvalidArgumentError(
            f"cannot copy {path} in {tree.where}: it is on a kernel filesystem (/proc, /sys, ...)"
        )
    src.skip_devs = tree.kernel_devs
    return src


def _locate(tree: Tree, path: str, follow: bool) -> Source:
    parent, name, trailing, contents_only = _split(path)
    missing = NotFoundError(f"could not find the file {path} in {tree.where}")
    try:
        if not name:
            fd = tree.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            return Source(fd, "", os.fstat(fd), True)
        parent_fd = tree.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise missing from None
    except NotADirectoryError:
        raise InvalidArgumentError(f"cannot copy {path}: a component of it is not a directory") from None
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) and (follow or trailing):
            # Resolved whole, from the tree's root: the link's target stays inside it.
            target = tree.open(f"{parent}/{name}", os.O_PATH)
            os.close(parent_fd)
            st = os.fstat(target)
            if not stat.S_ISDIR(st.st_mode):
                return _FileSource(target, name, st)
            dir_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=target)
            os.close(target)
            return Source(dir_fd, "", st, True) if contents_only else _NamedDir(dir_fd, name, st)
    except FileNotFoundError:
        os.close(parent_fd)
        raise missing from None
    except BaseException:
        os.close(parent_fd)
        raise
    if (trailing or contents_only) and not stat.S_ISDIR(st.st_mode):
        os.close(parent_fd)
        raise InvalidArgumentError(f"cannot copy {path}: not a directory")
    return Source(parent_fd, name, st, contents_only)


class _FileSource(Source):
    """A file reached through a followed symlink: held by an O_PATH fd."""

    def __init__(self, fd: int, name: str, st: os.stat_result) -> None:
        super().__init__(fd, name, st, False)


class _NamedDir(Source):
    """A directory reached through a followed symlink, named as the link."""

    def __init__(self, dir_fd: int, name: str, st: os.stat_result) -> None:
        super().__init__(dir_fd, "", st, False)
        self.link_name = name


def source_name(src: Source) -> str:
    """The name the source has in a tar of it (its basename)."""
    if isinstance(src, _NamedDir):
        return src.link_name
    return src.name


# -- making the tar --------------------------------------------------------------------


def _info(name: str, st: os.stat_result, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        raise InvalidArgumentError(f"cannot copy {name}: a socket or unknown file type")
    return info


def _add(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str, st: os.stat_result) -> None:
    if stat.S_ISSOCK(st.st_mode):
        return  # as tar does: a socket is not copied
    if stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            with os.fdopen(os.dup(fd), "rb") as f:
                tar.addfile(_info(arcname, st), f)
        finally:
            os.close(fd)
        return
    link = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
    tar.addfile(_info(arcname, st, link))


def write_tar(src: Source, top: str, out: BinaryIO) -> None:
    """A tar of src on out, its top entry named `top` (with `top` "" and a
    directory, only its contents, as Docker's "SRC/."). Nothing below src
    is followed."""
    tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
    try:
        if isinstance(src, _FileSource) and not stat.S_ISREG(src.st.st_mode):
            tar.addfile(_info(top, src.st))
            return
        if isinstance(src, _FileSource):
            with os.fdopen(os.open(f"/proc/self/fd/{src.parent_fd}", os.O_RDONLY | os.O_CLOEXEC), "rb") as f:
                tar.addfile(_info(top, src.st), f)
            return
        if not src.is_dir:
            _add(tar, src.parent_fd, src.name, top, src.st)
            return
        root = os.open(src.name, DIR_FLAGS, dir_fd=src.parent_fd) if src.name else os.dup(src.parent_fd)
        try:
            if top:
                tar.addfile(_info(top, os.fstat(root)))
            for dir_fd, rel_dir, entries in walk_beneath(root, src.skip_devs):
                for raw, st in entries:
                    if st.st_dev in src.skip_devs:
                        continue
                    rel = os.fsdecode(rel_dir + b"/" + raw if rel_dir else raw)
                    _add(tar, dir_fd, os.fsdecode(raw), f"{top}/{rel}" if top else rel, st)
        finally:
            os.close(root)
    finally:
        tar.close()


# -- unpacking it ------------------------------------------------------------------------


def _parts(name: str) -> list[str]:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgumentError(f'cannot copy "{name}": a tar entry may not climb out with ".."')
    return parts


def extract_tar(
    stream: BinaryIO,
    dest_fd: int,
    owner: tuple[int, int] | None,
    kernel_devs: frozenset[int] = frozenset(),
    no_overwrite_dir_non_dir: bool = False,
) -> None:
    """Unpack a tar into the directory dest_fd. Every entry's parent is
    opened beneath dest_fd following no symlink (a symlink the tar made, or
    the tree had, is never a way out), and refused on a filesystem of
    kernel_devs. `owner` is the uid and gid every file gets, or None to
    keep the tar's. A directory never gives way to a file; with
    no_overwrite_dir_non_dir (Docker's API flag) a file does not give way
    to a directory either. A file the tar ends in the middle of is removed,
    not left cut short."""
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            parts = _parts(member.name)
            if not parts:
                continue
            try:
                parent_fd = _parent(dest_fd, parts[:-1], owner or (0, 0))
            except OSError as e:
                raise OverlayctlError(f"cannot copy {member.name}: {e.strerror}") from e
            if os.fstat(parent_fd).st_dev in kernel_devs:
                os.close(parent_fd)
                raise InvalidArgumentError(f"cannot copy {member.name}: it would land on a kernel filesystem")
            try:
                _extract_one(tar, member, parent_fd, parts[-1], dest_fd, owner, no_overwrite_dir_non_dir)
            except OSError as e:
                raise OverlayctlError(f"cannot copy {member.name}: {e.strerror}") from e
            finally:
                os.close(parent_fd)
            if member.isdir():
                dirs.append(("/".join(parts), member))
    # Last, deepest first: writing in a directory changes its mtime.
    for rel, member in reversed(dirs):
        fd = open_beneath(dest_fd, rel, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)


def _parent(dest_fd: int, parts: list[str], owner: tuple[int, int]) -> int:
    """The entry's parent directory, opened beneath dest_fd with no symlink
    followed; directories the tar does not list are made (0755), as tar does."""
    fd = os.dup(dest_fd)
    try:
        for part in parts:
            try:
                next_fd = open_beneath(fd, part, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                next_fd = open_beneath(fd, part, os.O_RDONLY | os.O_DIRECTORY)
                os.fchown(next_fd, *owner)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _extract_one(
    tar: tarfile.TarFile,
    m: tarfile.TarInfo,
    parent_fd: int,
    name: str,
    dest_fd: int,
    owner: tuple[int, int] | None,
    no_overwrite_dir_non_dir: bool = False,
) -> None:
    uid, gid = owner if owner is not None else (m.uid, m.gid)
    try:
        existing: os.stat_result | None = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode) and not m.isdir():
        raise InvalidArgumentError(f"cannot overwrite directory {m.name} with non-directory")
    if existing is not None and not stat.S_ISDIR(existing.st_mode) and m.isdir() and no_overwrite_dir_non_dir:
        raise InvalidArgumentError(f"cannot overwrite non-directory {m.name} with directory")
    if existing is not None and not stat.S_ISDIR(existing.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        existing = None
    if m.isdir():
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        fd = open_beneath(parent_fd, name, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode & 0o7777)
        finally:
            os.close(fd)
    elif m.isreg():
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent_fd)
        try:
            data = tar.extractfile(m)
            assert data is not None
            try:
                while chunk := data.read(COPY_CHUNK):
                    os.write(fd, chunk)
            except BaseException:
                os.unlink(name, dir_fd=parent_fd)  # a cut-short file is no copy of it
                raise
            os.fchown(fd, uid, gid)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)
    elif m.issym():
        os.symlink(m.linkname, name, dir_fd=parent_fd)
        os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
        os.utime(name, (m.mtime, m.mtime), dir_fd=parent_fd, follow_symlinks=False)
    elif m.islnk():
        # The target is found beneath the destination, with no symlink on the way.
        target = open_beneath(dest_fd, "/".join(_parts(m.linkname)), os.O_PATH)
        try:
            os.link(f"/proc/self/fd/{target}", name, dst_dir_fd=parent_fd, follow_symlinks=True)
        finally:
            os.close(target)
    elif m.ischr() or m.isblk() or m.isfifo():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
        os.mknod(name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=parent_fd)
        os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)


def piped(
    src: Source, top: str, dest_fd: int, owner: tuple[int, int] | None, kernel_devs: frozenset[int] = frozenset()
) -> None:
    """write_tar and extract_tar joined by a pipe, the tar made on a thread."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(w, "wb") as out:
                write_tar(src, top, out)
        except BrokenPipeError:
            pass  # the reader failed: its error is the one to tell
        except BaseException as exc:  # noqa: BLE001 - raised by the caller
            errors.append(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        with os.fdopen(r, "rb") as stream:
            extract_tar(stream, dest_fd, owner, kernel_devs)
            stream.read()  # the tar's padding, so the writer never blocks
    finally:
        thread.join()
    if errors:
        raise errors[0]
