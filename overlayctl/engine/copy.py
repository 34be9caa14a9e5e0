"""`docker cp`: files between a container and the host, or a tar on
stdin/stdout, for running and stopped containers alike.

A running container's root is reached through /proc/PID/root: a directory
fd of its root in its own mount namespace, so its volumes and binds are
seen where it sees them. A stopped (created or exited) one has its overlay
mounted in a private mount namespace for the copy, as `export` does, with
its volumes and binds attached at their targets. Either way every path in it is
resolved beneath that fd (overlayctl.layer.cptree), never on the host.

Docker's path rules: SRC/. copies a directory's contents; a destination
that exists as a directory receives SRC under its own name, one that does
not exist is created with SRC's content (its parent must exist); a
directory cannot replace a file. Ownership: files copied into the
container belong to root (0:0), files copied out to the caller; -a keeps
the source's uid and gid. -L follows a symlink given as SRC.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable
from typing import BinaryIO

from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.layer.cptree import (
    COPY_CHUNK,
    Source,
    Tree,
    extract_tar,
    kernel_devices,
    locate_source,
    piped,
    source_name,
    write_tar,
)
from overlayctl.store import Store
from overlayctl.store.containers import RUNNING, Container


def split_argument(text: str) -> tuple[str | None, str]:
    """CONTAINER:PATH as (container, path), a host path or "-" as (None, text).

    As Docker: a path that starts with "/" or "." is the host's even with
    a ":" in it (write ./a:b for a local file called a:b)."""
    if text == "-" or text.startswith(("/", ".")) or ":" not in text:
        return None, text
    name, _, path = text.partition(":")
    return name, path


def copy(
    store: Store,
    source: str,
    destination: str,
    *,
    archive: bool = False,
    follow: bool = False,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> None:
    """`cp SRC DEST`: exactly one of them a CONTAINER:PATH."""
    src_ctr, src_path = split_argument(source)
    dst_ctr, dst_path = split_argument(destination)
    if src_ctr is not None and dst_ctr is not None:
        raise InvalidArgumentError("copying between containers is not supported")
    if src_ctr is None and dst_ctr is None:
        raise InvalidArgumentError("must specify at least one container source")
    if not (src_path if src_ctr is not None else dst_path):
        raise InvalidArgumentError("the container path is empty; give CONTAINER:PATH, e.g. c1:/etc/hostname")
    if src_ctr is not None:
        container = store.containers.get(src_ctr)
        out = stdout or sys.stdout.buffer
        if dst_path == "-":
            out.flush()

        def work(root_fd: int) -> None:
            _copy_out(_tree(root_fd, container), src_path, dst_path, archive, follow, out)
    else:
        assert dst_ctr is not None
        container = store.containers.get(dst_ctr)
        in_stream = stdin or sys.stdin.buffer
        if src_path == "-" and follow:
            raise InvalidArgumentError("-L cannot be used with a tar on standard input")

        def work(root_fd: int) -> None:
            _copy_in(_tree(root_fd, container), src_path, dst_path, archive, follow, in_stream)

    in_container_root(store, container, work)


def _tree(root_fd: int, container: Container) -> Tree:
    kernel_devs: frozenset[int] = frozenset()
    if container.status == RUNNING:
        # Its /proc, /sys and the like, as its own mount table lists them.
        try:
            with open(f"/proc/{container.pid}/mountinfo", encoding="utf-8", errors="replace") as f:
                kernel_devs = kernel_devices(f.read())
        except FileNotFoundError:
            raise ConflictError(f'container "{container.name}" stopped during the copy; retry') from None
    return Tree(root_fd, f'container "{container.name}"', kernel_devs)


def _copy_out(tree: Tree, src_path: str, dst_path: str, archive: bool, follow: bool, out: BinaryIO) -> None:
    src = locate_source(tree, src_path, follow)
    try:
        if dst_path == "-":
            # As Docker: the tar's top entry is SRC's own name (its contents for SRC/.).
            write_tar(src, "" if src.contents_only else source_name(src), out)
            out.flush()
            return
        dest_fd, top = _destination(Tree(None, "the host"), dst_path, src)
        try:
            piped(src, top, dest_fd, None if archive else (os.getuid(), os.getgid()))
        finally:
            os.close(dest_fd)
    finally:
        src.close()


def _copy_in(tree: Tree, src_path: str, dst_path: str, archive: bool, follow: bool, stream: BinaryIO) -> None:
    owner = None if archive else (0, 0)
    if src_path == "-":
        _unpack_into(tree, dst_path, stream, owner)
        return
    src = locate_source(Tree(None, "the host"), src_path, follow)
    try:
        dest_fd, top = _destination(tree, dst_path, src)
        try:
            tree.check(dest_fd, dst_path)
            piped(src, top, dest_fd, owner, tree.kernel_devs)
        finally:
            os.close(dest_fd)
    finally:
        src.close()


def _unpack_into(
    tree: Tree, dst_path: str, stream: BinaryIO, owner: tuple[int, int] | None, no_overwrite_dir_non_dir: bool = False
) -> None:
    """A tar unpacked into dst_path, which must be a directory (symlinks on
    the way to it followed inside the tree)."""
    try:
        dest_fd = tree.open(dst_path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise NotFoundError(f"could not find the file {dst_path} in {tree.where}") from None
    except NotADirectoryError:
        raise InvalidArgumentError(f"extraction point is not a directory: {dst_path}") from None
    try:
        tree.check(dest_fd, dst_path)
        extract_tar(stream, dest_fd, owner, tree.kernel_devs, no_overwrite_dir_non_dir)
    finally:
        os.close(dest_fd)


def _destination(tree: Tree, path: str, src: Source) -> tuple[int, str]:
    """(fd of the directory to unpack into, name of SRC's top entry there;
    "" to unpack a directory's contents), by Docker's rules."""
    trailing = path.endswith(("/", "/.")) or path in (".", "/")
    try:
        fd = tree.open(path, os.O_PATH)
    except FileNotFoundError:
        fd = -1
    except NotADirectoryError:
        raise InvalidArgumentError(f"cannot copy to {path}: a component of it is not a directory") from None
    if fd >= 0:
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        if is_dir:
            top = "" if src.contents_only else source_name(src)
            return tree.open(path, os.O_RDONLY | os.O_DIRECTORY), top
        if src.is_dir:
            raise InvalidArgumentError(f"cannot copy a directory to a file: {path}")
        if trailing:
            raise InvalidArgumentError(f"cannot copy to {path}: not a directory")
    elif trailing:
        raise NotFoundError(f"no such directory: {path} in {tree.where}")
    parent, _, name = path.rstrip("/").rpartition("/")
    parent = parent or ("/" if path.startswith("/") else ".")
    try:
        return tree.open(parent, os.O_RDONLY | os.O_DIRECTORY), name
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"no such directory: {parent} in {tree.where}") from None


def in_container_root(
    store: Store, container: Container, work: Callable[[int], None], keep_fds: Iterable[int] = ()
) -> None:
    """Call work with an fd of the container's root directory: its running
    root (in its mount namespace), or its overlay mounted privately while
    it is stopped. Then work runs in a child that holds only stdio and
    keep_fds (runtime.rootfs.in_rootfs): the descriptors it reads or writes."""
    if container.status == RUNNING and container.process_alive():
        try:
            root_fd = os.open(f"/proc/{container.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ConflictError(f'container "{container.name}" stopped during the copy; retry') from None
        try:
            # The pid could have been reused between the check and the open.
            if not container.process_alive():
                raise ConflictError(f'container "{container.name}" stopped during the copy; retry')
            work(root_fd)
        finally:
            os.close(root_fd)
        return
    if container.status == RUNNING:
        raise ConflictError(f'container "{container.name}" is being stopped; retry when it has')
    _in_stopped_root(store, container, work, keep_fds)


def _in_stopped_root(store: Store, container: Container, work: Callable[[int], None], keep_fds: Iterable[int]) -> None:
    from overlayctl.runtime.rootfs import bind_beneath, in_rootfs
    from overlayctl.volumes.mounts import mounts_for

    image = store.images.get(container.image_id)
    layout = store.overlay_layout(image, container)
    if not os.path.isdir(layout.workdir):
        os.mkdir(layout.workdir, 0o700)
    mountpoint = store.paths.mountpoint
    # Its volumes and binds are where it would see them (as Docker's cp
    # mounts them); a tmpfs would be empty, and is not mounted.
    binds = [m for m in mounts_for(store, container) if m.kind == "bind"]

    def run() -> None:
        root_fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            bind_beneath(root_fd, binds)
            work(root_fd)
        finally:
            os.close(root_fd)

    sys.stdout.flush()
    api = os.environ.get("OVERLAYCTL_OVERLAY_API", "new")
    # No chroot: the host side of the copy is the host's, and the
    # container's side is reached only beneath root_fd.
    in_rootfs(layout, store.paths.root, mountpoint, run, api, keep_fds=keep_fds, chroot=False)


# -- the Engine API's archive endpoints (dockerd's GET/HEAD/PUT .../archive) --------------

# Go's os.FileMode type bits, which Docker's path stat carries in "mode".
_GO_MODE_DIR = 1 << 31
_GO_MODE_SYMLINK = 1 << 27
_GO_MODE_DEVICE = 1 << 26
_GO_MODE_NAMED_PIPE = 1 << 25
_GO_MODE_SOCKET = 1 << 24
_GO_MODE_SETUID = 1 << 23
_GO_MODE_SETGID = 1 << 22
_GO_MODE_CHAR_DEVICE = 1 << 21
_GO_MODE_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    """st_mode as Go's os.FileMode: the permission bits, and the type and
    set-id bits where Go keeps them (the docker client tests them so)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {
        stat.S_IFDIR: _GO_MODE_DIR,
        stat.S_IFLNK: _GO_MODE_SYMLINK,
        stat.S_IFIFO: _GO_MODE_NAMED_PIPE,
        stat.S_IFSOCK: _GO_MODE_SOCKET,
        stat.S_IFBLK: _GO_MODE_DEVICE,
        stat.S_IFCHR: _GO_MODE_DEVICE | _GO_MODE_CHAR_DEVICE,
    }.get(kind, 0)
    if st_mode & stat.S_ISUID:
        mode |= _GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= _GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= _GO_MODE_STICKY
    return mode


def _container_path(text: str) -> str:
    """A path in the container as dockerd takes it: relative to its root,
    with a trailing "/" or "/." kept (they mean the directory itself)."""
    if not text:
        raise InvalidArgumentError("the path in the container is empty")
    return "/" + text.lstrip("/") if not text.startswith("/") else text


def _path_stat(tree: Tree, path: str) -> dict[str, object]:
    from overlayctl.util.humanize import rfc3339_ns

    src = locate_source(tree, path, follow=False)
    try:
        st = os.stat(src.name, dir_fd=src.parent_fd, follow_symlinks=False) if src.name else src.st
    finally:
        src.close()
    link_target = ""
    if stat.S_ISLNK(st.st_mode):
        link_target = _resolved(tree, path)
    stripped = path.rstrip("/")
    name = os.path.basename(stripped) if stripped else "/"
    return {
        "name": name,
        "size": st.st_size,
        "mode": go_file_mode(st.st_mode),
        "mtime": rfc3339_ns(st.st_mtime_ns),
        "linkTarget": link_target,
    }


def _resolved(tree: Tree, path: str) -> str:
    """Where a symlink leads inside the tree, as an absolute path in it
    (dockerd's linkTarget): every link on the way followed inside the
    tree, the last one's target taken as it is written when it is missing."""
    assert tree.root_fd is not None
    root = os.readlink(f"/proc/self/fd/{tree.root_fd}")
    try:
        fd = tree.open(path, os.O_PATH)
    except OSError:
        parent, _, name = path.rstrip("/").rpartition("/")
        parent_fd = tree.open(parent or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            target = os.readlink(name, dir_fd=parent_fd)
            where = os.readlink(f"/proc/self/fd/{parent_fd}")
        finally:
            os.close(parent_fd)
        base = "/" + os.path.relpath(where, root).lstrip(".") if where != root else "/"
        return os.path.normpath(os.path.join(base, target)) if not target.startswith("/") else os.path.normpath(target)
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    if where == root:
        return "/"
    return "/" + os.path.relpath(where, root)


def _result_pipe(work: Callable[[int], object]) -> tuple[Callable[[int], None], Callable[[], bytes], int]:
    """work's return value (JSON) brought back from the child a stopped
    container's work runs in: (the work to run, a reader of what it wrote
    for after the work, the descriptor to keep in the child)."""
    import json

    r, w = os.pipe()
    closed = [False]  # set where run ran: in this process, or in the child

    def run(root_fd: int) -> None:
        data = json.dumps(work(root_fd)).encode()
        os.write(w, data)  # small: the pipe holds it until the parent reads
        os.close(w)
        closed[0] = True

    def read() -> bytes:
        if not closed[0]:
            os.close(w)  # ours (the child's copy died with it)
        with os.fdopen(r, "rb") as f:
            return f.read()

    return run, read, w


def path_stat(store: Store, container: Container, path: str) -> dict[str, object]:
    """Docker's ContainerPathStat of path in the container (HEAD .../archive,
    which `docker cp` asks first): name, size, mode (Go's FileMode), mtime,
    and for a symlink linkTarget, where it leads inside the container. The
    last element of the path is not followed, as dockerd."""
    import json

    path = _container_path(path)

    def work(root_fd: int) -> dict[str, object]:
        return _path_stat(_tree(root_fd, container), path)

    run, read, keep = _result_pipe(work)
    try:
        in_container_root(store, container, run, keep_fds=(keep,))
    finally:
        data = read()
    return json.loads(data)


def archive_path(store: Store, container: Container, path: str, out: BinaryIO) -> None:
    """A tar of path in the container on out (GET .../archive): its top
    entry named as the path's last element ("." for PATH/., as dockerd);
    nothing below it followed."""
    path = _container_path(path)

    # dockerd names a directory's contents (PATH/.) "./" and "./NAME": the
    # docker client renames "." to the destination's name.
    dot = path.endswith("/.")

    def work(root_fd: int) -> None:
        src = locate_source(_tree(root_fd, container), path, follow=False)
        try:
            write_tar(src, "." if dot else "" if src.contents_only else source_name(src), out)
            out.flush()
        finally:
            src.close()

    in_container_root(store, container, work, keep_fds=(out.fileno(),))


def extract_archive(
    store: Store,
    container: Container,
    path: str,
    stream: BinaryIO,
    *,
    archive: bool = False,
    no_overwrite_dir_non_dir: bool = False,
) -> None:
    """A tar from stream unpacked into the directory path in the container
    (PUT .../archive, `docker cp - CONTAINER:PATH`), beneath its root with
    no symlink leading out. Files belong to root unless archive (-a) keeps
    the tar's owners. What follows the tar's end is read and dropped."""
    path = _container_path(path)
    owner = None if archive else (0, 0)

    def work(root_fd: int) -> None:
        import tarfile

        try:
            _unpack_into(_tree(root_fd, container), path, stream, owner, no_overwrite_dir_non_dir)
        except tarfile.TarError as exc:
            raise InvalidArgumentError(f"the archive is not a whole tar: {exc}") from None
        while stream.read(COPY_CHUNK):
            pass

    in_container_root(store, container, work, keep_fds=(stream.fileno(),))
