"""What a layer's files do not say about the tar they came from: its tar-split.

A tar made by another tool (GNU tar, say) cannot be rebuilt from its
unpacked files byte for byte: header fields, PAX records, padding and the
end-of-archive blocks are its own. Yet its sha256 is the layer's diff_id,
so `save` and `push` need that very tar. Keeping the whole tar doubles the
layer's disk; a tar-split (after Docker's idea of the same name) keeps only
the bytes that are not file contents, and for each regular file's data the
path of the file in the layer that holds it. ``reassemble`` gives back the
tar, and its digest says whether it is the same.

The file is gzip-compressed; after the line ``MAGIC`` come records:

- ``R``, a length (8 bytes, big-endian), then that many bytes of the tar;
- ``F``, a length (8 bytes), a path length (4 bytes), the path (relative to
  the layer's root, "/"-separated): the first ``length`` bytes of that file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO

from overlayctl.errors import OverlayctlError
from overlayctl.layer.tarstream import REGULAR, TarReader
from overlayctl.runtime.syscalls import open_beneath

MAGIC = b"overlayctl tar-split 1\n"
_RAW = b"R"
_FILE = b"F"
_LENGTH = struct.Struct(">Q")
_FILE_HEAD = struct.Struct(">QI")
_PIECE = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TarSplitError(OverlayctlError):
    """The layer's files no longer give back the tar its tar-split describes."""


def write(tar_path: str, diff_dir: str, out_path: str) -> str:
    """Write to ``out_path`` the tar-split of the tar at ``tar_path``, whose
    files are unpacked in ``diff_dir``; return the digest ("sha256:...") of
    the tar reassembled from it, which is the tar's own when every file
    referenced still holds its member's data."""
    refs = _references(tar_path, diff_dir)
    with open(tar_path, "rb") as src, gzip.open(out_path, "wb", compresslevel=6) as out:
        out.write(MAGIC)
        pos = 0
        for offset, length, path in refs:
            _copy_raw(src, pos, offset - pos, out.write)
            out.write(_FILE + _FILE_HEAD.pack(length, len(path)) + path)
            pos = offset + length
        _copy_raw(src, pos, os.fstat(src.fileno()).st_size - pos, out.write)
    sha = hashlib.sha256()
    reassemble(out_path, diff_dir, sha.update)
    return "sha256:" + sha.hexdigest()


def reassemble(split_path: str, diff_dir: str, sink: Callable[[bytes], object]) -> None:
    """Give ``sink`` the tar described by the tar-split at ``split_path``,
    piece by piece, file data read from ``diff_dir`` (never through a
    symlink). Raises TarSplitError when a file is missing or too short, or
    the tar-split is not one."""
    root_fd = os.open(diff_dir, _DIR_FLAGS)
    try:
        with gzip.open(split_path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise TarSplitError(f"{split_path} is not a tar-split")
            while kind := f.read(1):
                if kind == _RAW:
                    (length,) = _LENGTH.unpack(_exactly(f, _LENGTH.size, split_path))
                    while length:
                        piece = _exactly(f, min(length, _PIECE), split_path)
                        sink(piece)
                        length -= len(piece)
                elif kind == _FILE:
                    length, path_len = _FILE_HEAD.unpack(_exactly(f, _FILE_HEAD.size, split_path))
                    _copy_file(root_fd, _exactly(f, path_len, split_path), length, sink)
                else:
                    raise TarSplitError(f"{split_path} is not a tar-split (record {kind!r})")
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        # (The sink's own errors, a full disk say, go through as they are.)
        raise TarSplitError(f"cannot read the tar-split {split_path}: {e}") from e
    finally:
        os.close(root_fd)


def _references(tar_path: str, diff_dir: str) -> list[tuple[int, int, bytes]]:
    """(offset of the data in the tar, length, path) of each regular member
    whose data the unpacked layer holds as it is: the last member of its
    path, a regular file there of that size. Any other member's data stays
    in the tar-split as bytes."""
    from overlayctl.layer.extract import WHITEOUT_PREFIX, normalize_parts

    last: dict[tuple[str, ...], tuple[int, int]] = {}
    with open(tar_path, "rb") as f:
        # Its digest is known (and checked on the tar reassembled): not hashed again.
        reader = TarReader(f, hashed=False)
        for member in reader.entries():
            if member.type != REGULAR or member.sparse is not None or member.size == 0:
                continue
            parts = normalize_parts(member.name)
            if not parts or parts[-1].startswith(WHITEOUT_PREFIX):
                continue
            last[parts] = (reader.position, member.size)
    root_fd = os.open(diff_dir, _DIR_FLAGS)
    try:
        refs = [
            (offset, size, "/".join(parts).encode("utf-8", "surrogateescape"))
            for parts, (offset, size) in last.items()
            if _regular_size(root_fd, parts) == size
        ]
    finally:
        os.close(root_fd)
    return sorted(refs)


def _regular_size(root_fd: int, parts: tuple[str, ...]) -> int | None:
    try:
        # A layer may hold symlinks to anywhere: none is followed.
        fd = open_beneath(root_fd, "/".join(parts), os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        return st.st_size if stat.S_ISREG(st.st_mode) else None
    finally:
        os.close(fd)


def _copy_raw(src: BinaryIO, start: int, length: int, write: Callable[[bytes], object]) -> None:
    # Records of at most _PIECE bytes, so that neither side holds more.
    src.seek(start)
    while length > 0:
        piece = src.read(min(length, _PIECE))
        if not piece:
            raise EOFError("the tar ended early")
        write(_RAW + _LENGTH.pack(len(piece)) + piece)
        length -= len(piece)


def _copy_file(root_fd: int, path: bytes, length: int, sink: Callable[[bytes], object]) -> None:
    name = path.decode("utf-8", "surrogateescape")
    try:
        fd = open_beneath(root_fd, name, os.O_RDONLY)
    except OSError as e:
        raise TarSplitError(f"the layer's file {name} cannot be read: {e.strerror}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TarSplitError(f"the layer's file {name} is no longer a regular file")
        offset = 0
        while offset < length:
            piece = os.pread(fd, min(length - offset, _PIECE), offset)
            if not piece:
                raise TarSplitError(f"the layer's file {name} is shorter than when it was unpacked")
            sink(piece)
            offset += len(piece)
    finally:
        os.close(fd)


def _exactly(f: gzip.GzipFile, n: int, where: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise TarSplitError(f"the tar-split {where} is cut short")
    return data
