"""Unpack a layer tar into a directory, safely, and compute its diff_id.

A layer tar comes from outside (a registry, an archive, a build) and is
unpacked as root, so every entry is checked before it touches the disk:

- its path must stay inside the layer root (no absolute path, no ``..``
  climbing out);
- no entry may be reached through a symlink unpacked earlier: parents are
  opened one component at a time with O_NOFOLLOW, relative to the directory
  fd of the layer root, so the host's tree is never followed;
- a relative symlink may not point above the layer root, and a hardlink must
  point at a file this layer already unpacked.

Absolute symlink targets are allowed, as in Docker: inside the container
they resolve against the container's root, and nothing here follows them.

OCI whiteouts become overlayfs whiteouts, which is what the kernel reads in a
lowerdir: ``dir/.wh.NAME`` becomes a character device 0:0 called ``NAME``
(overlayfs reserved that device number because no real device uses it) and
``dir/.wh..wh..opq`` becomes the xattr ``trusted.overlay.opaque=y`` on
``dir``, which hides everything the lower layers have in it.

Small plain files, most of a layer, are created by the compiled batch writer
(``_batchwrite.c``) when it is built: a batch of them in the directory of the
entry before, on a thread that does not hold the GIL, while the next headers
are parsed here. Every check above is made here first; the writer only
makes the syscalls (openat with O_EXCL|O_NOFOLLOW, pwrite, fchown, fchmod,
futimens), and a name already taken comes back here to be replaced. Any
other entry waits until the batches before it are written.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from overlayctl.errors import KernelError, LayerRejectedError
from overlayctl.layer import tarstream
from overlayctl.layer.tarstream import Entry, TarFormatError, TarReader
from overlayctl.util import jsonio

try:
    from overlayctl.layer import _batchwrite
except ImportError:  # not compiled (no C compiler at install): Python writes every file
    _batchwrite = None  # type: ignore[assignment]

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# aufs kept its own bookkeeping (.wh..wh.plnk, .wh..wh.aufs) under this
# prefix; Docker drops such entries, and so do we.
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"
# overlayfs reads its own state (opaque, redirect, metacopy, origin) from these
# xattrs: a layer that set them could change how the kernel merges the stack.
OVERLAY_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR_PREFIX = "SCHILY.xattr."


def is_whiteout(st: os.stat_result) -> bool:
    """An overlay whiteout: overlayfs took device 0:0, which no real device has."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str | bytes | int) -> bool:
    """An overlay opaque directory (a path, or an fd of the directory):
    nothing of the layers below shows through."""
    try:
        if isinstance(path, int):
            return os.getxattr(path, OPAQUE_XATTR) == b"y"
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False

_HOLE_BLOCK = 4096
_ZERO_BLOCK = bytes(_HOLE_BLOCK)
_ZERO_RUN = bytes(64)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Parts = tuple[str, ...]

# Small files are written in batches by _batchwrite's worker thread while
# the next headers are parsed: a batch is handed over when it has this many
# files or bytes. One batch is in flight while the next one fills.
_BATCH_FILES = 64
_BATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class LayerDigest:
    """Identity of a layer: sha256 and length of its uncompressed tar."""

    diff_id: str
    tar_size: int


def quote(name: str) -> str:
    """Quote a tar or file name for a one-line message, whatever bytes it holds."""
    printable = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return jsonio.dumps(printable)


def _rejected(reason: str) -> LayerRejectedError:
    return LayerRejectedError(f"layer rejected: {reason}")


def normalize_parts(path: str) -> Parts | None:
    """Split a relative tar path into components, resolving ``.`` and ``..``.

    Returns None when the path is absolute or climbs above its root. The
    resolution is lexical, which is safe here because nothing is ever looked
    up through a symlink while unpacking.
    """
    if path.startswith("/"):
        return None
    if path and not path.startswith(".") and "/." not in path and "//" not in path and not path.endswith("/"):
        return tuple(path.split("/"))  # no ".", "..", or empty component: nothing to resolve
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


def _xattrs(member: Entry) -> list[tuple[str, bytes]]:
    if not member.pax:
        return []
    found = []
    for key, value in member.pax.items():
        if not key.startswith(PAX_XATTR_PREFIX):
            continue
        name = key[len(PAX_XATTR_PREFIX) :]
        if name.startswith(OVERLAY_XATTR_PREFIX):
            raise _rejected(f"entry {quote(member.name)} sets the reserved xattr {quote(name)}")
        if "\0" in name or not name:
            # No xattr name can hold a NUL (or be empty): the record is malformed.
            raise _rejected(f"entry {quote(member.name)} has an xattr record with a bad name {quote(name)}")
        # The record's bytes as they are: binary values (security.capability) included.
        found.append((name, value))
    return sorted(found)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


def _umask() -> int:
    """The process's umask, read without changing it (threads may be creating files)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o777  # unknown: always fchmod


def _write_with_holes(chunks: Iterable[bytes], fd: int) -> int:
    """Write ``chunks`` into ``fd`` one after another, leaving zero blocks
    unwritten, and return the file's length as written (the end of the
    last block written).

    Unwritten ranges read back as zeros, and the filesystem allocates nothing
    for whole blocks never written: a sparse file stays sparse, and zero-filled
    regions of ordinary files cost no disk. When the data ends in zeros, the
    caller sets the final length with ftruncate, which covers that hole.
    """
    offset = 0
    written = 0
    for chunk in chunks:
        written = _write_chunk(fd, chunk, offset) or written
        offset += len(chunk)
    return written


def _write_chunk(fd: int, chunk: bytes, offset: int) -> int:
    """Write ``chunk`` at ``offset`` but for its zero blocks; the end of the
    last block written, 0 when all were zeros."""
    if len(chunk) >= _HOLE_BLOCK and _ZERO_RUN not in chunk:
        # Not even 64 zeros in a row, so no zero block: the common case,
        # told by one search (for a short needle: a block-long one costs
        # more to prepare than an 8 KiB file takes to scan).
        n = os.pwrite(fd, chunk, offset)
        if n != len(chunk):
            _pwrite_all(fd, memoryview(chunk)[n:], offset + n)
        return offset + len(chunk)
    if chunk.count(0) == len(chunk):
        return 0
    return _write_nonzero_blocks(fd, chunk, offset)


def _write_regions(tar: TarReader, regions: list[tuple[int, int]], fd: int) -> int:
    """Write a sparse member, whose data is its regions' bytes one after
    another; return the end of the last byte written."""
    data = tar.chunks()
    pending = memoryview(b"")
    written = 0
    for offset, length in regions:
        while length > 0:
            if not pending:
                pending = memoryview(next(data, b""))
                if not pending:
                    raise _rejected("a sparse file has less data than its map says")
            piece, pending = pending[:length], pending[length:]
            _pwrite_all(fd, piece, offset)
            offset += len(piece)
            length -= len(piece)
            written = max(written, offset)
    return written


def _write_nonzero_blocks(fd: int, chunk: bytes, offset: int) -> int:
    """Write the blocks of ``chunk`` that are not all zeros; the end of the
    last one written (``chunk`` has at least one)."""
    view = memoryview(chunk)
    run_start: int | None = None
    written = 0
    pos = 0
    while pos < len(chunk):
        # Block edges follow file offsets so that holes line up with the
        # filesystem's blocks.
        end = min(len(chunk), pos + _HOLE_BLOCK - (offset + pos) % _HOLE_BLOCK)
        if chunk.startswith(_ZERO_BLOCK[: end - pos], pos):
            if run_start is not None:
                _pwrite_all(fd, view[run_start:pos], offset + run_start)
                written = offset + pos
                run_start = None
        elif run_start is None:
            run_start = pos
        pos = end
    if run_start is not None:
        _pwrite_all(fd, view[run_start:], offset + run_start)
        written = offset + len(chunk)
    return written


class _Extractor:
    """State of one extraction: the root fd, a cached parent fd, directories to finish."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        # Entries of a tar come grouped by directory: keeping the last parent
        # open saves walking the path from the root for every entry.
        self._cached_parts: Parts | None = None
        self._cached_fd = -1
        # Directory mode and mtime are applied at the end: creating children
        # would change the mtime, and a read-only mode could block them.
        self._pending_dirs: dict[Parts, tuple[int, int]] = {}
        self._set_owner = os.geteuid() == 0
        # A new file is owned by root:root when we are root and no directory
        # hands down its group (setgid): no dir made here has its mode yet,
        # so only the root's could. Then a root-owned entry needs no chown.
        st = os.fstat(root_fd)
        self._born_root = os.geteuid() == 0 and os.getegid() == 0 and not st.st_mode & stat.S_ISGID
        self._umask = _umask()
        # Batched small files (see _BATCH_FILES): the one being filled, and
        # the one the writer has, with its own fd of their directory.
        self._writer: _batchwrite.Writer | None = None
        self._batch: list[tuple[bytes, bytes | memoryview, int, int, int, int, int]] = []
        self._batch_entries: list[tuple[Entry, Parts, bytes | memoryview]] = []
        self._batch_bytes = 0
        self._in_flight: tuple[int, list[tuple[Entry, Parts, bytes | memoryview]]] | None = None

    # -- fds -------------------------------------------------------------

    def close(self) -> None:
        """Release everything; a batch in flight is finished first, its
        outcome ignored (close() is for giving up as well as for the end)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._in_flight is not None:
            os.close(self._in_flight[0])
            self._in_flight = None
        self._batch, self._batch_entries = [], []
        self._drop_cache()

    def _drop_cache(self) -> None:
        if self._cached_fd not in (-1, self._root_fd):
            os.close(self._cached_fd)
        self._cached_parts = None
        self._cached_fd = -1

    def _release(self, fd: int) -> None:
        if fd != self._root_fd:
            os.close(fd)

    def _descend(self, dir_parts: Parts, entry: str, *, create: bool) -> int | None:
        """Open ``dir_parts`` below the root without following any symlink.

        Missing directories are created 0755 root when ``create`` is set;
        otherwise None is returned. The returned fd belongs to the caller (it
        is the root fd itself for an empty path: release it with _release).
        """
        fd = self._root_fd
        try:
            for i, comp in enumerate(dir_parts):
                try:
                    st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        self._release(fd)
                        return None
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    child = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                    self._fix_implicit_dir(child)
                else:
                    here = "/".join(dir_parts[: i + 1])
                    if stat.S_ISLNK(st.st_mode):
                        raise _rejected(f"entry {quote(entry)} goes through the symlink {quote(here)}")
                    if not stat.S_ISDIR(st.st_mode):
                        raise _rejected(f"entry {quote(entry)} needs {quote(here)} to be a directory")
                    # O_NOFOLLOW makes the check above binding: if a symlink
                    # appeared in between, the open fails instead of following.
                    child = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                self._release(fd)
                fd = child
        except BaseException:
            self._release(fd)
            raise
        return fd

    def _fix_implicit_dir(self, fd: int) -> None:
        # mkdir's mode is filtered by the umask and its group may come from a
        # setgid parent: say exactly what a parent missing from the tar is.
        if self._set_owner:
            os.fchown(fd, 0, 0)
        os.fchmod(fd, 0o755)

    def _parent_fd(self, parts: Parts, entry: str) -> int:
        """A borrowed fd of the directory that holds ``parts[-1]``, created if missing."""
        dir_parts = parts[:-1]
        if self._cached_parts != dir_parts:
            self._drop_cache()
            fd = self._descend(dir_parts, entry, create=True)
            assert fd is not None
            self._cached_parts, self._cached_fd = dir_parts, fd
        return self._cached_fd

    def _forget_under(self, parts: Parts) -> None:
        """Forget pending metadata and the cached fd at or below a removed directory."""
        n = len(parts)
        for key in [k for k in self._pending_dirs if k[:n] == parts]:
            del self._pending_dirs[key]
        if self._cached_parts is not None and self._cached_parts[:n] == parts:
            self._drop_cache()

    def _remove_existing(self, parent_fd: int, parts: Parts) -> None:
        # A later entry replaces an earlier one with the same path, whatever
        # either of them is (tar semantics).
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._forget_under(parts)
            shutil.rmtree(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)

    # -- metadata --------------------------------------------------------

    def _chown(self, member: Entry, parent_fd: int, name: str) -> None:
        if self._set_owner:
            os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)

    def _set_xattrs_at(self, parent_fd: int, name: str, xattrs: list[tuple[str, bytes]]) -> None:
        # setxattr has no *at() form: /proc/self/fd/N names the parent
        # directory we already hold, and the last component is not followed.
        path = f"/proc/self/fd/{parent_fd}/{name}"
        for key, value in xattrs:
            os.setxattr(path, key, value, follow_symlinks=False)

    def _set_times_at(self, parent_fd: int, name: str, member: Entry) -> None:
        t = member.mtime_ns
        os.utime(name, ns=(t, t), dir_fd=parent_fd, follow_symlinks=False)

    # -- batches ---------------------------------------------------------

    def _batchable(self, member: Entry, parts: Parts) -> bool:
        # A plain small file in the directory the batch is for; anything
        # with xattrs, holes by map, or a new parent takes the Python path.
        return (
            _batchwrite is not None
            and member.type == tarstream.REGULAR
            and member.sparse is None
            and member.size <= tarstream.CHUNK
            and parts[:-1] == self._cached_parts
            and (not member.pax or not _xattrs(member))
        )

    def _add_to_batch(self, member: Entry, parts: Parts, data: bytes | memoryview) -> None:
        uid, gid, mode = member.uid, member.gid, member.mode & 0o7777
        # The same owner and mode rules as _regular.
        chown = self._set_owner and not (self._born_root and uid == 0 and gid == 0)
        flags = _batchwrite.CHOWN if chown else 0
        if chown or mode != mode & 0o777 & ~self._umask:
            flags |= _batchwrite.CHMOD
        name = parts[-1].encode("utf-8", "surrogateescape")
        self._batch.append((name, data, mode, uid, gid, member.mtime_ns, flags))
        self._batch_entries.append((member, parts, data))
        self._batch_bytes += len(data)
        if len(self._batch) >= _BATCH_FILES or self._batch_bytes >= _BATCH_BYTES:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the batch being filled to the writer, once the one it has is done."""
        self._collect()
        if not self._batch:
            return
        batch, entries = self._batch, self._batch_entries
        self._batch, self._batch_entries, self._batch_bytes = [], [], 0
        if self._writer is None:
            self._writer = _batchwrite.Writer()
        # The writer gets an fd of its own: the cached one may be closed
        # while the batch is still being written.
        dir_fd = os.dup(self._cached_fd)
        try:
            self._writer.submit(dir_fd, batch)
        except (OverflowError, ValueError):
            # An owner or time too large for the syscalls' types: Python
            # says so for the entry that has it.
            os.close(dir_fd)
            self._write_here(entries)
            return
        except BaseException:
            os.close(dir_fd)
            raise
        self._in_flight = (dir_fd, entries)

    def _collect(self) -> None:
        """Wait for the batch in flight; a file whose name was taken, and
        those after it, are then written here (replacing, as tar does)."""
        if self._in_flight is None:
            return
        dir_fd, entries = self._in_flight
        self._in_flight = None
        try:
            assert self._writer is not None
            done, err = self._writer.wait()
        finally:
            os.close(dir_fd)
        if err == 0:
            return
        if err != errno.EEXIST:
            cause = OSError(err, os.strerror(err))
            raise KernelError(f"cannot unpack layer entry {quote(entries[done][0].name)}: {cause.strerror}") from cause
        self._write_here(entries[done:])

    def _write_here(self, entries: list[tuple[Entry, Parts, bytes | memoryview]]) -> None:
        for member, parts, data in entries:
            try:
                self._regular(None, member, parts, bytes(data))
            except OSError as e:
                raise KernelError(f"cannot unpack layer entry {quote(member.name)}: {e.strerror or e}") from e

    def settle(self) -> None:
        """Write every batched file before anything else touches the tree."""
        self._hand_over()
        self._collect()

    # -- entries ---------------------------------------------------------

    def extract(self, tar: TarReader, member: Entry) -> None:
        parts = normalize_parts(member.name)
        if parts is None:
            if member.name.startswith("/"):
                raise _rejected(f"entry {quote(member.name)} has an absolute path")
            raise _rejected(f"entry {quote(member.name)} leaves the layer root")
        if not parts:
            self.settle()
            self._root_entry(member)
            return
        if parts[0].startswith(WHITEOUT_META_PREFIX) and parts != (OPAQUE_MARKER,):
            # aufs-era bookkeeping at the top of the layer (.wh..wh.plnk,
            # .wh..wh.aufs): not content. A hardlink into it is then rejected
            # as pointing at nothing, which only very old images would do.
            return
        if parts[-1].startswith(WHITEOUT_PREFIX):
            self.settle()
            self._whiteout(member, parts)
            return
        if self._batchable(member, parts):
            self._add_to_batch(member, parts, tar.whole_view())
            return
        self.settle()
        if member.isdir():
            self._directory(member, parts)
        elif member.isreg():
            self._regular(tar, member, parts)
        elif member.issym():
            self._symlink(member, parts)
        elif member.islnk():
            self._hardlink(member, parts)
        elif member.type in (tarstream.CHAR, tarstream.BLOCKDEV, tarstream.FIFO):
            self._node(member, parts)
        else:
            raise _rejected(f"entry {quote(member.name)} has the unsupported type {member.type!r}")

    def _root_entry(self, member: Entry) -> None:
        if not member.isdir():
            raise _rejected(f"entry {quote(member.name)} is the layer root but not a directory")
        if self._set_owner:
            os.fchown(self._root_fd, member.uid, member.gid)
        for key, value in _xattrs(member):
            os.setxattr(self._root_fd, key, value)
        self._pending_dirs[()] = (member.mode, member.mtime_ns)

    def _whiteout(self, member: Entry, parts: Parts) -> None:
        base = parts[-1]
        if base == OPAQUE_MARKER:
            parent_fd = self._parent_fd(parts, member.name)
            os.setxattr(parent_fd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return
        target = base[len(WHITEOUT_PREFIX) :]
        if target in ("", ".", ".."):
            raise _rejected(f"whiteout {quote(member.name)} does not name a file")
        target_parts = parts[:-1] + (target,)
        parent_fd = self._parent_fd(target_parts, member.name)
        self._remove_existing(parent_fd, target_parts)
        # Keep the entry's owner, mode and mtime on the device so that writing
        # the layer back gives the same .wh. entry.
        os.mknod(target, stat.S_IFCHR | (member.mode & 0o7777), os.makedev(0, 0), dir_fd=parent_fd)
        self._chown(member, parent_fd, target)
        os.chmod(target, member.mode & 0o7777, dir_fd=parent_fd)
        self._set_times_at(parent_fd, target, member)

    def _directory(self, member: Entry, parts: Parts) -> None:
        parent_fd = self._parent_fd(parts, member.name)
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        else:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=parent_fd)
                os.mkdir(name, 0o700, dir_fd=parent_fd)
        # An existing directory (an implicit parent, or a repeated entry) just
        # takes this entry's metadata; xattrs already there, like the opaque
        # marker, stay.
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            if self._set_owner:
                os.fchown(fd, member.uid, member.gid)
            for key, value in _xattrs(member):
                os.setxattr(fd, key, value)
        finally:
            os.close(fd)
        self._pending_dirs[parts] = (member.mode, member.mtime_ns)

    def _regular(self, tar: TarReader | None, member: Entry, parts: Parts, data: bytes | None = None) -> None:
        """Unpack a regular file whose data is read from ``tar``, or is
        ``data`` when it was read already (a batched file written here after all)."""
        xattrs = _xattrs(member)
        parent_fd = self._parent_fd(parts, member.name)
        mode = member.mode & 0o7777
        # Created with its permission bits (the directory is ours, in
        # staging): as often as not the umask leaves them as they are, and
        # no fchmod is needed. O_EXCL fails on anything already there, a
        # symlink included, which is then replaced.
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, mode & 0o777, dir_fd=parent_fd)
        except FileExistsError:
            self._remove_existing(parent_fd, parts)
            fd = os.open(parts[-1], _FILE_FLAGS, mode & 0o777, dir_fd=parent_fd)
        try:
            if data is not None:
                written, size = _write_chunk(fd, data, 0), member.size
            elif tar is None:
                raise AssertionError("a regular file without its data")
            elif member.sparse is None and member.size <= tarstream.CHUNK:
                # Most files: all their data in one piece, one write.
                written, size = _write_chunk(fd, tar.whole(), 0), member.size
            elif member.sparse is None:
                written, size = _write_with_holes(tar.chunks(), fd), member.size
            else:
                written, size = _write_regions(tar, member.sparse, fd), member.realsize
            if written != size:
                os.ftruncate(fd, size)
            # Order matters: chown clears setuid/setgid and
            # security.capability, so it goes before chmod and the xattrs.
            chowned = False
            if self._set_owner and not (self._born_root and member.uid == 0 and member.gid == 0):
                os.fchown(fd, member.uid, member.gid)
                chowned = True
            if chowned or mode != mode & 0o777 & ~self._umask:
                os.fchmod(fd, mode)
            for key, value in xattrs:
                os.setxattr(fd, key, value)
            t = member.mtime_ns
            os.utime(fd, ns=(t, t))
        finally:
            os.close(fd)

    def _symlink(self, member: Entry, parts: Parts) -> None:
        target = member.linkname
        if not target:
            raise _rejected(f"symlink {quote(member.name)} has an empty target")
        if not target.startswith("/") and normalize_parts("/".join(parts[:-1] + (target,))) is None:
            raise _rejected(f"symlink {quote(member.name)} points to {quote(target)}, which leaves the layer root")
        xattrs = _xattrs(member)
        parent_fd = self._parent_fd(parts, member.name)
        name = parts[-1]
        try:
            os.symlink(target, name, dir_fd=parent_fd)
        except FileExistsError:
            self._remove_existing(parent_fd, parts)
            os.symlink(target, name, dir_fd=parent_fd)
        # No chmod: a symlink's mode means nothing on Linux.
        self._chown(member, parent_fd, name)
        self._set_xattrs_at(parent_fd, name, xattrs)
        self._set_times_at(parent_fd, name, member)

    def _hardlink(self, member: Entry, parts: Parts) -> None:
        target_parts = normalize_parts(member.linkname)
        if not target_parts:
            raise _rejected(
                f"hardlink {quote(member.name)} points to {quote(member.linkname)}, which is outside the layer"
            )
        missing = _rejected(
            f"hardlink {quote(member.name)} points to {quote(member.linkname)}, which is not in the layer before it"
        )
        target_fd = self._descend(target_parts[:-1], member.name, create=False)
        if target_fd is None:
            raise missing
        try:
            try:
                st = os.stat(target_parts[-1], dir_fd=target_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise missing from None
            if stat.S_ISDIR(st.st_mode):
                raise _rejected(f"hardlink {quote(member.name)} points to the directory {quote(member.linkname)}")
            if target_parts == parts:
                return
            if target_parts[: len(parts)] == parts:
                # Replacing the directory would delete the very file to link.
                raise _rejected(
                    f"hardlink {quote(member.name)} points to {quote(member.linkname)}, "
                    "inside the directory it would replace"
                )
            parent_fd = self._parent_fd(parts, member.name)
            self._remove_existing(parent_fd, parts)
            # The link shares the target's inode, and with it the owner, mode
            # and times set when the target was unpacked.
            os.link(
                target_parts[-1],
                parts[-1],
                src_dir_fd=target_fd,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        finally:
            self._release(target_fd)

    def _node(self, member: Entry, parts: Parts) -> None:
        if member.type == tarstream.CHAR:
            kind, dev = stat.S_IFCHR, os.makedev(member.devmajor, member.devminor)
        elif member.type == tarstream.BLOCKDEV:
            kind, dev = stat.S_IFBLK, os.makedev(member.devmajor, member.devminor)
        else:
            kind, dev = stat.S_IFIFO, 0
        xattrs = _xattrs(member)
        parent_fd = self._parent_fd(parts, member.name)
        self._remove_existing(parent_fd, parts)
        name = parts[-1]
        mode = member.mode & 0o7777
        os.mknod(name, kind | mode, dev, dir_fd=parent_fd)
        self._chown(member, parent_fd, name)
        # mknod has just created this node, so chmod cannot be led elsewhere;
        # it is needed because mknod's mode went through the umask.
        os.chmod(name, mode, dir_fd=parent_fd)
        self._set_xattrs_at(parent_fd, name, xattrs)
        self._set_times_at(parent_fd, name, member)

    def finish(self) -> None:
        """Apply directory modes and mtimes, deepest first, now that all children exist."""
        self.settle()
        self._drop_cache()
        for parts in sorted(self._pending_dirs, key=len, reverse=True):
            mode, mtime = self._pending_dirs[parts]
            name = "/".join(parts) or "."
            try:
                fd = self._descend(parts, name, create=False)
                if fd is None:
                    continue
                try:
                    os.fchmod(fd, mode & 0o7777)
                    os.utime(fd, ns=(mtime, mtime))
                finally:
                    self._release(fd)
            except OSError as e:
                raise KernelError(
                    f"cannot set the mode and mtime of layer directory {quote(name)}: {e.strerror or e}"
                ) from e


def extract_layer(stream: BinaryIO, dest: str) -> LayerDigest:
    """Unpack the uncompressed layer tar read from ``stream`` into ``dest``.

    ``dest`` must be an existing empty directory. Owners (numeric ids), modes
    with setuid/setgid/sticky bits, mtimes, PAX xattrs, device nodes, fifos,
    symlinks, hardlinks and sparse files are kept; OCI whiteouts become
    overlay whiteouts. The stream is read once, forwards, to its very end, and
    the returned diff_id is the sha256 of every byte read.

    Raises LayerRejectedError for an unsafe or malformed archive and
    KernelError when the filesystem refuses an operation; either way ``dest``
    is left half-filled, for the caller to delete.
    """
    reader = TarReader(stream)
    root_fd = os.open(dest, _DIR_FLAGS)
    extractor = _Extractor(root_fd)
    try:
        _extract_all(reader, extractor)
        reader.drain()
    finally:
        extractor.close()
        os.close(root_fd)
        reader.close()
    return LayerDigest(diff_id=reader.digest(), tar_size=reader.size)


def _extract_all(reader: TarReader, extractor: _Extractor) -> None:
    try:
        for member in reader.entries():
            try:
                extractor.extract(reader, member)
            except OSError as e:
                raise KernelError(f"cannot unpack layer entry {quote(member.name)}: {e.strerror or e}") from e
        extractor.finish()
    except TarFormatError as e:
        raise _rejected(f"not a valid tar archive ({e})") from e
