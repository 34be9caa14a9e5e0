"""What a container's writable layer holds: diff, commit and export.

`diff` reads the upper dir against the image's layers, `commit` turns the
upper dir into a layer of a new image, `export` writes the merged tree.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from overlayctl import faults, jsonio
from overlayctl.errors import ConflictError
from overlayctl.layer.extract import is_opaque, is_whiteout
from overlayctl.store import Store
from overlayctl.store.containers import RUNNING, Container
from overlayctl.store.images import Image
from overlayctl.units import now_rfc3339


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
    visible: set[str] = set()
    deleted: set[str] = set()
    for layer in lowers:
        path = os.path.join(layer, rel)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISDIR(st.st_mode):
            break
        for de in os.scandir(path):
            if de.name in visible or de.name in deleted:
                continue
            if is_whiteout(de.stat(follow_symlinks=False)):
                deleted.add(de.name)
            else:
                visible.add(de.name)
        if is_opaque(path):
            break
    return visible


def changes(upper: str, lowers: tuple[str, ...]) -> list[tuple[str, str]]:
    """Docker's `diff`: ("A"|"C"|"D", "/path") for what the upper dir changes.

    A whiteout is a deletion; an entry that exists below is changed (so the
    parents of every change show as "C"), otherwise added. An opaque
    directory replaces the one below: what was visible under it and is not
    in the upper dir any more is deleted.
    """
    found: list[tuple[str, str]] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        directory = os.path.join(upper, rel_dir) if rel_dir else upper
        present = set()
        with os.scandir(directory) as it:
            entries = list(it)
        for de in entries:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            present.add(de.name)
            st = de.stat(follow_symlinks=False)
            if is_whiteout(st):
                found.append(("D", "/" + rel))
                continue
            below = exists_in_stack(lowers, rel)
            found.append(("C" if below else "A", "/" + rel))
            if stat.S_ISDIR(st.st_mode):
                pending.append(rel)
        if rel_dir and is_opaque(directory) and exists_in_stack(lowers, rel_dir):
            for name in _names_in_stack(lowers, rel_dir) - present:
                found.append(("D", f"/{rel_dir}/{name}"))
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
    from overlayctl.reference import parse_reference

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
    cfg = container.config.get("Config", {})
    entry: dict[str, Any] = {"created": created, "created_by": " ".join(
        list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    )}
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
    return new


@contextmanager
def _paused(store: Store, container: Container, pause: bool) -> Iterator[None]:
    """Freeze a running container for the block, so that what is read is one
    moment of its upper dir; thawed afterwards, even on failure. A container
    the user paused stays paused."""
    from overlayctl import control

    if not pause or container.status != RUNNING or not container.process_alive() or control.is_paused(container):
        yield
        return
    control.pause(store, container)
    try:
        yield
    finally:
        # Not control.unpause: if someone thawed it meanwhile, that is no error here.
        control.thaw_if_paused(container)


def _apply_change(config: dict[str, Any], text: str) -> None:
    """One Dockerfile instruction from --change, applied to the config."""
    from overlayctl.build.builder import apply_change

    apply_change(config, text)


def export(store: Store, container: Container, out: BinaryIO) -> None:
    """`docker export`: the container's merged filesystem as a tar on `out`."""
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

    def write() -> None:
        with os.fdopen(os.dup(fd), "wb") as f:
            write_layer_tar("/", f)

    in_rootfs(layout, store.paths.root, store.paths.mountpoint, write, os.environ.get("OVERLAYCTL_OVERLAY_API", "new"))
