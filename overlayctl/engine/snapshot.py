"""What a container's writable layer holds: diff, commit and export.

`diff` reads the upper dir against the image's layers, `commit` turns the
upper dir into a layer of a new image, `export` writes the merged tree.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from overlayctl.errors import ConflictError
from overlayctl.layer.extract import is_opaque, is_whiteout
from overlayctl.store import Store
from overlayctl.store.containers import RUNNING, Container
from overlayctl.store.images import Image
from overlayctl.util import faults, jsonio
from overlayctl.util.humanize import now_rfc3339


def exists_in_stack(lowers: tuple[str, ...], rel: str) -> bool:
    """Whether /rel is visible in the merged view of `lowers` (top first),
    following overlay whiteouts and opaque directories."""
    parts = rel.split("/")
    for layer in lowers:
        hidden_below = False
        for i in range(len(parts)):
            path = os.path.join(layer, *parts[: i + 1])
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                break
            if is_whiteout(st):
                return False
            if i == len(parts) - 1:
                return True
            if not stat.S_ISDIR(st.st_mode):
                return False
            if is_opaque(path):
                hidden_below = True
        if hidden_below:
            return False
    return False


def _names_in_stack(lowers: tuple[str, ...], rel: str) -> set[str]:
    """Names visible in directory /rel of the merged `lowers`."""
    from overlayctl.layer.walk import open_root
    from overlayctl.runtime.syscalls import open_beneath

    visible: set[str] = set()
    deleted: set[str] = set()
    for layer in lowers:
        root_fd = open_root(layer)
        try:
            # An image's layer may hold a symlink where another has a
            # directory: overlayfs stops there, and so does this, instead
            # of listing wherever it points on the host.
            fd = open_beneath(root_fd, rel, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                break
            raise
        finally:
            os.close(root_fd)
        try:
            with os.scandir(fd) as it:
                for de in it:
                    if de.name in visible or de.name in deleted:
                        continue
                    if is_whiteout(de.stat(follow_symlinks=False)):
                        deleted.add(de.name)
                    else:
                        visible.add(de.name)
            opaque = is_opaque(fd)
        finally:
            os.close(fd)
        if opaque:
            break
    return visible


def changes(upper: str, lowers: tuple[str, ...]) -> list[tuple[str, str]]:
    """Docker's `diff`: ("A"|"C"|"D", "/path") for what the upper dir changes.

    A whiteout is a deletion; an entry that exists below is changed (so the
    parents of every change show as "C"), otherwise added. An opaque
    directory replaces the one below: what was visible under it and is not
    in the upper dir any more is deleted. The upper dir may belong to a
    running container: it is read beneath its root, never through a
    symlink (see overlayctl.layer.walk).
    """
    from overlayctl.layer.walk import join, open_root, walk_beneath, xattr_path

    found: list[tuple[str, str]] = []
    opaque_dirs: set[bytes] = set()
    root_fd = open_root(upper)
    try:
        for dir_fd, rel_dir_b, listing in walk_beneath(root_fd):
            rel_dir = os.fsdecode(rel_dir_b)
            present = set()
            for name, st in listing:
                rel = os.fsdecode(join(rel_dir_b, name))
                present.add(os.fsdecode(name))
                if is_whiteout(st):
                    found.append(("D", "/" + rel))
                    continue
                below = exists_in_stack(lowers, rel)
                found.append(("C" if below else "A", "/" + rel))
                if stat.S_ISDIR(st.st_mode) and is_opaque(xattr_path(dir_fd, name)):
                    opaque_dirs.add(join(rel_dir_b, name))
            if rel_dir_b in opaque_dirs and exists_in_stack(lowers, rel_dir):
                for gone in _names_in_stack(lowers, rel_dir) - present:
                    found.append(("D", f"/{rel_dir}/{gone}"))
    finally:
        os.close(root_fd)
    found.sort(key=lambda item: item[1].encode())
    return found


def container_changes(store: Store, container: Container) -> list[tuple[str, str]]:
    """`diff CONTAINER`."""
    image = store.images.get(container.image_id)
    layout = store.overlay_layout(image, container)
    return changes(layout.upperdir, layout.lowerdirs)


def commit(
    store: Store,
    container: Container,
    name: str | None,
    message: str = "",
    author: str = "",
    change: list[str] | None = None,
    *,
    pause: bool = True,
) -> Image:
    """`docker commit`: the container's upper dir becomes a new top layer.

    The upper dir is written as a deterministic layer tar and unpacked into
    the store (so the layer is exactly its tar, whatever overlayfs left in
    the upper dir); the new config is the image's, plus the history entry
    and any --change instructions. A running container is paused while its
    upper dir is read, as Docker does, unless `pause` is false.
    """
    from overlayctl.layer.writer import write_layer_tar
    from overlayctl.util.reference import parse_reference

    ref = parse_reference(name) if name else None
    image = store.images.get(container.image_id)
    config: dict[str, Any] = jsonio.loads(jsonio.canonical(image.config))
    for text in change or []:
        _apply_change(config, text)
    upper = store.paths.upper(container.id)
    spool = os.path.join(store.paths.tmp, f"commit-{os.getpid()}-{os.urandom(6).hex()}.tar")
    try:
        with open(spool, "w+b") as f:
            with _paused(store, container, pause):
                write_layer_tar(upper, f)
                faults.point("commit-spooled")
            f.seek(0)
            layer, _new = store.layers.import_tar(f)
    finally:
        if os.path.exists(spool):
            os.unlink(spool)
    created = now_rfc3339()
    entry: dict[str, Any] = {"created": created, "created_by": " ".join(container.config.config.argv)}
    if message:
        entry["comment"] = message
    if author:
        entry["author"] = author
        config["author"] = author
    config["created"] = created
    config.setdefault("history", []).append(entry)
    config["rootfs"]["diff_ids"].append(layer.diff_id)
    faults.point("commit-layer")
    new = store.images.create(config, ref)
    # Remember where it came from, as a build step would, so that `history`
    # can name the image below it. The key is unique: never a cache hit.
    from overlayctl.store.buildcache import CacheEntry

    key = "commit:" + os.urandom(16).hex()
    store.build_cache.record(new.id, [CacheEntry(image.id, key, new.id, jsonio.canonical(config))])
    store.containers.record(
        container, "commit", comment=message, imageID=new.id, imageRef=str(ref) if ref is not None else ""
    )
    return new


@contextmanager
def _paused(store: Store, container: Container, pause: bool) -> Iterator[None]:
    """Freeze a running container for the block, so that what is read is one
    moment of its upper dir; thawed afterwards, even on failure. A container
    the user paused stays paused."""
    from overlayctl.engine import control

    if not pause or container.status != RUNNING or not container.process_alive() or control.is_paused(container):
        yield
        return
    try:
        control.pause(store, container)
    except ConflictError:
        # It stopped, or was paused by someone else, since the check: either
        # way it stands still, and it is not ours to thaw.
        yield
        return
    try:
        yield
    finally:
        # Not control.unpause: if someone thawed it meanwhile, that is no error here.
        control.thaw_if_paused(container)


def _apply_change(config: dict[str, Any], text: str) -> None:
    """One Dockerfile instruction from --change, applied to the config."""
    from overlayctl.builder.builder import apply_change

    apply_change(config, text)


def export(store: Store, container: Container, out: BinaryIO) -> None:
    """`docker export`: the container's merged filesystem as a tar on `out`.

    Unlike Docker, a running container is refused: its overlay lives in
    its own mount namespace, and a second overlay on the same upper dir
    while it runs is undefined behaviour for overlayfs.
    """
    from overlayctl.layer.writer import write_layer_tar
    from overlayctl.runtime.rootfs import in_rootfs

    if container.status == RUNNING:
        raise ConflictError(f'container "{container.name}" is running; stop it before exporting')
    image = store.images.get(container.image_id)
    layout = store.overlay_layout(image, container)
    if not os.path.isdir(layout.workdir):
        os.mkdir(layout.workdir, 0o700)
    out.flush()
    fd = out.fileno()
    mountpoint = store.paths.mountpoint

    def write() -> None:
        with os.fdopen(os.dup(fd), "wb") as f:
            write_layer_tar(mountpoint, f)

    # No chroot: the writer reads beneath the mount and follows no symlink
    # (as commit does), and it needs the host's /proc to read xattrs.
    api = os.environ.get("OVERLAYCTL_OVERLAY_API", "new")
    in_rootfs(layout, store.paths.root, mountpoint, write, api, keep_fds=(fd,), chroot=False)
    store.containers.record(container, "export")


def export_to_file(store: Store, container: Container, path: str) -> None:
    """`export -o FILE`: written beside FILE and renamed into place, so a
    failed export leaves no half tar under FILE's name."""
    partial = f"{path}.partial-{os.getpid()}"
    try:
        with open(partial, "wb") as f:
            export(store, container, f)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
