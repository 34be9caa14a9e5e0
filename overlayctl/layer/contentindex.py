"""A layer's content index: what `system fsck --verify-content` checks a
stored layer directory against.

A layer's diff_id is the sha256 of the tar it came as; a layer unpacked
from someone else's tar cannot give that tar back from its directory (the
headers are the sender's), so the diff_id alone cannot be checked again.
At commit, the directory is walked once and every entry recorded, one line
each, in path order::

    <path>\\0<type> <mode> <uid> <gid> <size> <rdev> <sha256 of the data or link target> <sha256 of the xattrs>\\n

The walk reads the file data back from the page cache (it was just
written) and sha256 runs in C, so this costs a fraction of the unpack.
Checking walks the directory again and names every entry that differs,
is missing or was added. Times are left out: a read-only lower layer's
mtimes say nothing about its content, and `touch` is not damage.
"""

from __future__ import annotations

import hashlib
import os
import stat

INDEX_NAME = "content"  # layers/<id>/content, beside diff/
_CHUNK = 1 << 20
_TYPES = {
    stat.S_IFREG: "f",
    stat.S_IFDIR: "d",
    stat.S_IFLNK: "l",
    stat.S_IFCHR: "c",
    stat.S_IFBLK: "b",
    stat.S_IFIFO: "p",
    stat.S_IFSOCK: "s",
}
_EMPTY = hashlib.sha256(b"").hexdigest()


def _file_shas(dir_fd: int, name: bytes) -> tuple[str, str]:
    """The sha256 of a regular file's data and of its xattrs, through one
    descriptor (no path walked again for the xattrs)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            data = hashlib.file_digest(f, "sha256").hexdigest()
        return data, _xattr_sha(fd)
    finally:
        os.close(fd)


def _xattr_sha(target: bytes | int) -> str:
    """The sha256 of the xattrs of a path (not followed) or an open file."""
    follow = isinstance(target, int)  # (an fd has nothing to follow)
    try:
        names = sorted(os.listxattr(target, follow_symlinks=follow))
    except OSError:
        return _EMPTY
    if not names:
        return _EMPTY
    sha = hashlib.sha256()
    for name in names:
        try:
            value = os.getxattr(target, name, follow_symlinks=follow)
        except OSError:
            continue
        sha.update(name.encode() + b"\0" + len(value).to_bytes(8, "big") + value)
    return sha.hexdigest()


def _entries(root: bytes) -> dict[bytes, bytes]:
    """Every entry under root (root itself as b"."): path -> its line's rest."""
    out: dict[bytes, bytes] = {}
    seen: dict[tuple[int, int], tuple[str, str]] = {}  # hard links: read once

    def record(rel: bytes, path: bytes, st: os.stat_result, parent_fd: int, name: bytes) -> None:
        kind = _TYPES.get(stat.S_IFMT(st.st_mode), "?")
        size, data = 0, _EMPTY
        if kind == "f":
            size = st.st_size
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen[key] = _file_shas(parent_fd, name)
            data, xattrs = seen[key]
        else:
            if kind == "l":
                target = os.readlink(name, dir_fd=parent_fd)
                size, data = len(target), hashlib.sha256(target).hexdigest()
            xattrs = _xattr_sha(path)
        rdev = st.st_rdev if kind in "cb" else 0
        fields = f"{kind} {stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid} {size} {rdev} {data} {xattrs}"
        out[rel] = fields.encode()

    record(b".", root, os.lstat(root), -1, b"")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _walk(root_fd, root, b"", record)
    finally:
        os.close(root_fd)
    return out


def _walk(dir_fd: int, path: bytes, rel: bytes, record) -> None:  # type: ignore[no-untyped-def]
    with os.scandir(dir_fd) as it:
        names = sorted(os.fsencode(de.name) for de in it)
    for name in names:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        child_rel = rel + name if not rel else rel + b"/" + name
        child_path = path + b"/" + name
        record(child_rel, child_path, st, dir_fd, name)
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            try:
                _walk(fd, child_path, child_rel, record)
            finally:
                os.close(fd)


def index_tree(diff: str) -> bytes:
    """The content index of the directory ``diff``."""
    entries = _entries(os.fsencode(diff))
    return b"".join(path + b"\0" + entries[path] + b"\n" for path in sorted(entries))


def write_index(layer_dir: str) -> str:
    """Index layer_dir/diff into layer_dir/content; returns the index's
    sha256 (what the catalog keeps, so the index itself is checked too)."""
    data = index_tree(os.path.join(layer_dir, "diff"))
    with open(os.path.join(layer_dir, INDEX_NAME), "wb") as f:
        f.write(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def ensure_index(layer_dir: str) -> str:
    """write_index, unless layer_dir/content was written already (by the
    worker that unpacked the layer, beside the others): its sha256 then."""
    try:
        with open(os.path.join(layer_dir, INDEX_NAME), "rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return write_index(layer_dir)


def _parse(data: bytes) -> dict[bytes, bytes]:
    out = {}
    for line in data.splitlines():
        path, _, rest = line.partition(b"\0")
        out[path] = rest
    return out


def compare(layer_dir: str, recorded_sha: str) -> list[str]:
    """What differs between layer_dir/diff and its recorded index, one
    line per damaged entry ("changed: bin/sh"); [] when it is intact."""
    try:
        with open(os.path.join(layer_dir, INDEX_NAME), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ["its content index is missing"]
    if "sha256:" + hashlib.sha256(data).hexdigest() != recorded_sha:
        return ["its content index does not match the catalog's record"]
    recorded = _parse(data)
    try:
        now = _entries(os.fsencode(os.path.join(layer_dir, "diff")))
    except FileNotFoundError:
        return ["its directory is missing"]
    problems = []
    for path in sorted(recorded.keys() | now.keys()):
        shown = os.fsdecode(path)
        if path not in now:
            problems.append(f"missing: {shown}")
        elif path not in recorded:
            problems.append(f"added: {shown}")
        elif recorded[path] != now[path]:
            problems.append(f"changed: {shown}")
    return problems
