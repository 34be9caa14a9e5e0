"""Pack a layer directory into a deterministic tar, overlay whiteouts made OCI.

The tar is the layer's identity (its sha256 is the diff_id), so the same tree
must always give the same bytes, on any machine and any Python: entries are
sorted by path bytes, names of owners are left out, times are whole seconds,
and the headers are encoded here rather than by tarfile, whose output has
changed between Python versions. The format is POSIX pax: plain ustar
headers, preceded by a pax extended header only when a value does not fit
(long or non-ASCII names, large ids or sizes) or xattrs must be carried.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import BinaryIO

from overlayctl.errors import KernelError, OverlayctlError
from overlayctl.layer.extract import (
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    PAX_XATTR_PREFIX,
    WHITEOUT_PREFIX,
    LayerDigest,
    quote,
)
from overlayctl.layer.tarstream import (
    BLOCK,
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    FIFO,
    HARDLINK,
    NS,
    PAX_HEADER,
    REGULAR,
    SYMLINK,
)
from overlayctl.layer.walk import (
    DIR_FLAGS,
    RACE_ERRNOS,
    TreeChangedError,
    join,
    open_in_tree,
    open_root,
    walk_beneath,
    xattr_path,
)

_CHUNK = 1 << 20
# A ustar name or linkname field holds 100 bytes; anything longer, or not
# plain ASCII, goes into the pax header where it is unambiguous UTF-8. A name
# that is not UTF-8 at all goes there as raw bytes, without the hdrcharset
# record POSIX suggests: GNU tar warns about it, and readers (GNU tar, Go,
# Python) take the bytes as they are anyway.
_NAME_FIELD = 100
# tar's end of archive: two zero blocks. No padding to a 10 KiB record as GNU
# tar does: the OCI tools do not, and the diff_id would not care either way.
_END_OF_ARCHIVE = bytes(2 * BLOCK)
_WHITEOUT_PREFIX_B = WHITEOUT_PREFIX.encode()

# overlayfs features that make an upper dir depend on the lower layers in ways
# a layer tar cannot say: a renamed directory (redirect_dir) or a file whose
# data is still below (metacopy).
_UNEXPORTABLE_XATTRS = {
    "trusted.overlay.redirect": "redirect_dir",
    "trusted.overlay.metacopy": "metacopy",
}


@dataclass
class _Entry:
    """One tar entry to be written; ``path`` is relative, without a trailing slash."""

    path: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: list[tuple[bytes, bytes]] = field(default_factory=list)
    source: bytes | None = None  # file whose data follows the header
    inode: tuple[int, int] | None = None  # set when other links may share it
    opaque: bool = False


class _HashingWriter:
    """Write through to ``out`` while hashing and counting every byte."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self._sha.update(data)
        self.size += len(data)

    def digest(self) -> LayerDigest:
        return LayerDigest(diff_id="sha256:" + self._sha.hexdigest(), tar_size=self.size)


# -- header encoding -----------------------------------------------------


def _fits(value: int, width: int) -> bool:
    # A ustar numeric field is width-1 octal digits and a NUL.
    return 0 <= value < 8 ** (width - 1)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value if _fits(value, width) else 0)


def _ustar(
    name: bytes,
    typeflag: bytes,
    *,
    mode: int = 0,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    buf = bytearray(BLOCK)

    def put(offset: int, width: int, data: bytes) -> None:
        data = data[:width]
        buf[offset : offset + len(data)] = data

    put(0, 100, name)
    put(100, 8, _octal(mode, 8))
    put(108, 8, _octal(uid, 8))
    put(116, 8, _octal(gid, 8))
    put(124, 12, _octal(size, 12))
    put(136, 12, _octal(mtime, 12))
    put(148, 8, b" " * 8)  # the checksum is computed with its own field as spaces
    put(156, 1, typeflag)
    put(157, 100, linkname)
    put(257, 6, b"ustar\0")
    put(263, 2, b"00")
    # uname and gname (265, 297) stay empty: only numeric ids are meaningful
    # in a container, and host names would make the tar machine-dependent.
    put(329, 8, _octal(devmajor, 8))
    put(337, 8, _octal(devminor, 8))
    put(148, 8, b"%06o\0 " % sum(buf))
    return bytes(buf)


def _pad(length: int) -> bytes:
    return bytes(-length % BLOCK)


def _pax_record(key: bytes, value: bytes) -> bytes:
    # "LEN key=value\n" where LEN counts the whole record, its own digits too.
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return str(length).encode() + body


def _encode_header(e: _Entry) -> bytes:
    name = e.path + b"/" if e.typeflag == DIRECTORY else e.path
    records: dict[bytes, bytes] = {}
    if len(name) > _NAME_FIELD or not name.isascii():
        records[b"path"] = name
    if len(e.linkname) > _NAME_FIELD or not e.linkname.isascii():
        records[b"linkpath"] = e.linkname
    for key, value, width in (
        (b"uid", e.uid, 8),
        (b"gid", e.gid, 8),
        (b"size", e.size, 12),
        (b"mtime", e.mtime, 12),
    ):
        if not _fits(value, width):
            records[key] = b"%d" % value
    for xname, xvalue in e.xattrs:
        records[PAX_XATTR_PREFIX.encode() + xname] = xvalue
    header = b""
    if records:
        body = b"".join(_pax_record(k, records[k]) for k in sorted(records))
        header = _ustar(b"././@PaxHeader", PAX_HEADER, mode=0o644, size=len(body))
        header += body + _pad(len(body))
    header += _ustar(
        name,
        e.typeflag,
        mode=e.mode,
        uid=e.uid,
        gid=e.gid,
        size=e.size,
        mtime=e.mtime,
        linkname=e.linkname,
        devmajor=e.devmajor,
        devminor=e.devminor,
    )
    return header


# -- reading the tree ----------------------------------------------------


def _read_xattrs(dir_fd: int, name: bytes, rel: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The xattrs to carry in the tar, and whether the entry is an opaque directory."""
    path = xattr_path(dir_fd, name)
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return [], False
        raise _named(e, rel) from e
    carried = []
    opaque = False
    for xname in names:
        if xname in _UNEXPORTABLE_XATTRS:
            feature = _UNEXPORTABLE_XATTRS[xname]
            raise OverlayctlError(
                f"cannot write layer: {quote(os.fsdecode(rel))} uses overlayfs {feature}, "
                f"which a layer tar cannot express; mount the overlay with {feature}=off"
            )
        try:
            value = os.getxattr(path, xname, follow_symlinks=False)
        except OSError as e:
            raise _named(e, rel) from e
        if xname.startswith(OVERLAY_XATTR_PREFIX):
            # overlayfs bookkeeping (origin, impure, ...) describes this host's
            # stack, not the layer; only opacity has an OCI spelling.
            opaque = opaque or (xname == OPAQUE_XATTR and value == b"y")
            continue
        carried.append((os.fsencode(xname), value))
    carried.sort()
    return carried, opaque


def _named(e: OSError, rel: bytes) -> Exception:
    """`e` naming the entry by its path in the tree, not by the /proc path
    or the bare name it was reached by; a race says so."""
    if e.errno in RACE_ERRNOS:
        return TreeChangedError(rel)
    return OSError(e.errno, e.strerror, rel)


def _entry_for(dir_fd: int, name: bytes, rel: bytes, st: os.stat_result, clamp: int | None) -> _Entry | None:
    if name.startswith(_WHITEOUT_PREFIX_B):
        # The name would read back as a whiteout and delete a lower file.
        raise OverlayctlError(
            f"cannot write layer: {quote(os.fsdecode(rel))} has a name starting with "
            f"{quote(WHITEOUT_PREFIX)}, which layer tars reserve for whiteouts; rename it"
        )
    mtime = st.st_mtime_ns // NS
    if clamp is not None and mtime > clamp:
        mtime = clamp
    mode = stat.S_IMODE(st.st_mode)
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFCHR and st.st_rdev == 0:
        # An overlay whiteout. The kernel may share one whiteout inode between
        # many names, so it never becomes a hardlink: each is its own entry.
        dirname, _, base = rel.rpartition(b"/")
        path = (dirname + b"/" if dirname else b"") + _WHITEOUT_PREFIX_B + base
        return _Entry(path, REGULAR, mode, st.st_uid, st.st_gid, mtime)
    if kind == stat.S_IFSOCK:
        # A socket is a live endpoint, not content: tar cannot carry it.
        return None
    xattrs, opaque = _read_xattrs(dir_fd, name, rel)
    e = _Entry(rel, REGULAR, mode, st.st_uid, st.st_gid, mtime, xattrs=xattrs)
    if kind == stat.S_IFDIR:
        e.typeflag = DIRECTORY
        e.opaque = opaque
        return e
    if st.st_nlink > 1:
        e.inode = (st.st_dev, st.st_ino)
    if kind == stat.S_IFREG:
        e.size = st.st_size
        e.source = rel
    elif kind == stat.S_IFLNK:
        e.typeflag = SYMLINK
        try:
            e.linkname = os.readlink(name, dir_fd=dir_fd)
        except OSError as err:
            raise _named(err, rel) from err
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        e.typeflag = CHAR if kind == stat.S_IFCHR else BLOCKDEV
        e.devmajor = os.major(st.st_rdev)
        e.devminor = os.minor(st.st_rdev)
    else:
        e.typeflag = FIFO
    return e


def _scan(root_fd: int, clamp: int | None) -> list[_Entry]:
    entries = []
    for dir_fd, rel_dir, listing in walk_beneath(root_fd):
        for name, st in listing:
            entry = _entry_for(dir_fd, name, join(rel_dir, name), st, clamp)
            if entry is not None:
                entries.append(entry)
    return entries


def _link_hardlinks(entries: list[_Entry]) -> None:
    """Turn every later name of a multiply-linked inode into a link to its first name."""
    first: dict[tuple[int, int], bytes] = {}
    for e in entries:
        if e.inode is None:
            continue
        if e.inode not in first:
            first[e.inode] = e.path
            continue
        e.typeflag = HARDLINK
        e.linkname = first[e.inode]
        e.size = 0
        e.source = None
        e.xattrs = []
        e.devmajor = e.devminor = 0


def _opaque_marker(d: _Entry) -> _Entry:
    return _Entry(d.path + b"/" + OPAQUE_MARKER.encode(), REGULAR, d.mode & 0o777, d.uid, d.gid, d.mtime)


class _Dirs:
    """The fd of the directory the last file was read from: entries come
    sorted by path, so the files of one directory mostly follow each other,
    and each directory is opened (beneath the root) once rather than once
    per file."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.rel = b""
        self.fd = root_fd

    def open_file(self, rel: bytes) -> int:
        rel_dir, _, name = rel.rpartition(b"/")
        if rel_dir != self.rel:
            self.close()
            if rel_dir:
                self.fd = open_in_tree(self.root_fd, rel_dir, DIR_FLAGS)
            self.rel = rel_dir
        # O_NONBLOCK: if the name became a fifo since the scan, fail instead
        # of waiting for a writer that never comes. Opened beneath the root,
        # what is read is in the tree even if names were swapped since.
        return open_in_tree(self.fd, name, os.O_RDONLY | os.O_NONBLOCK)

    def close(self) -> None:
        if self.fd != self.root_fd:
            os.close(self.fd)
        self.rel, self.fd = b"", self.root_fd


def _copy_data(dirs: _Dirs, e: _Entry, w: _HashingWriter) -> None:
    assert e.source is not None
    try:
        fd = dirs.open_file(e.source)
    except TreeChangedError:
        raise TreeChangedError(e.source) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OverlayctlError(f"cannot write layer: {quote(os.fsdecode(e.path))} changed type while being read")
        remaining = e.size
        while remaining:
            data = os.read(fd, min(_CHUNK, remaining))
            if not data:
                # The header already promised e.size bytes.
                raise OverlayctlError(
                    f"cannot write layer: {quote(os.fsdecode(e.path))} shrank while being read; "
                    "stop the container and retry"
                )
            w.write(data)
            remaining -= len(data)
    finally:
        os.close(fd)
    w.write(_pad(e.size))


def write_layer_tar(src_dir: str, out: BinaryIO, *, clamp_mtime: int | None = None) -> LayerDigest:
    """Write the layer directory ``src_dir`` to ``out`` as a deterministic tar.

    ``src_dir`` is an overlay upper dir or an unpacked layer. Entries come
    sorted by path bytes (the root itself is not an entry), in pax format,
    with numeric owners only, mtimes in whole seconds (clamped to
    ``clamp_mtime`` when given), xattrs as ``SCHILY.xattr.*`` except
    overlayfs' own, and hardlinks pointing at the first name written. Overlay
    whiteouts become ``.wh.NAME`` files and an opaque directory is followed by
    its ``.wh..wh..opq`` entry. Sockets are skipped.

    The tree is read beneath ``src_dir`` only, never through a symlink (see
    overlayctl.layer.walk): a live container's upper dir may be read.

    Returns the diff_id (sha256 of exactly the bytes written) and the size.
    Raises OverlayctlError for trees a layer cannot express,
    TreeChangedError when the tree changed under the walk, and KernelError
    when reading the tree or writing ``out`` fails.
    """
    try:
        root_fd = open_root(src_dir)
        try:
            w = _write_tree(root_fd, out, clamp_mtime)
        finally:
            os.close(root_fd)
    except OSError as e:
        where = f" ({os.fsdecode(e.filename)})" if e.filename else ""
        raise KernelError(f"cannot write layer tar of {quote(src_dir)}: {e.strerror or e}{where}") from e
    return w.digest()


def _write_tree(root_fd: int, out: BinaryIO, clamp_mtime: int | None) -> _HashingWriter:
    entries = _scan(root_fd, clamp_mtime)
    entries.sort(key=lambda e: e.path)
    _link_hardlinks(entries)
    w = _HashingWriter(out)
    dirs = _Dirs(root_fd)
    try:
        for e in entries:
            w.write(_encode_header(e))
            if e.source is not None:
                _copy_data(dirs, e, w)
            if e.opaque:
                w.write(_encode_header(_opaque_marker(e)))
    finally:
        dirs.close()
    w.write(_END_OF_ARCHIVE)
    return w


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def digest_tree(src_dir: str) -> LayerDigest:
    """The diff_id ``src_dir`` would have as a layer, without keeping the tar."""
    return write_layer_tar(src_dir, _Discard())  # type: ignore[arg-type]


def normalize_tree(src_dir: str, *, clamp_mtime: int | None = None) -> None:
    """Make an upper dir fit to be stored as a layer directory, in place.

    A stored layer must be exactly what its tar says, so that writing the
    tar again (save, push) gives the same diff_id: mtimes newer than
    ``clamp_mtime`` are set to it, and overlayfs' own bookkeeping xattrs
    (origin, impure, ...), which describe the stack the upper was made on,
    are removed. Opacity and whiteouts stay: they are the layer's content.
    """
    root_fd = open_root(src_dir)
    try:
        for dir_fd, _rel_dir, listing in walk_beneath(root_fd):
            for name, st in listing:
                _drop_overlay_xattrs(xattr_path(dir_fd, name))
                if clamp_mtime is not None and st.st_mtime_ns > clamp_mtime * NS:
                    os.utime(name, ns=(clamp_mtime * NS, clamp_mtime * NS), dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(root_fd)


def _drop_overlay_xattrs(path: bytes) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        if name.startswith(OVERLAY_XATTR_PREFIX) and name != OPAQUE_XATTR and name not in _UNEXPORTABLE_XATTRS:
            os.removexattr(path, name, follow_symlinks=False)
