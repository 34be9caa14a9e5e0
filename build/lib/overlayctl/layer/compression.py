"""Recognise a compressed layer by its magic bytes and decompress it as a stream.

Layers arrive from registries, archives and pipes (``overlayctl image load
< x.tar``), so the input may not be seekable: the first bytes are read once,
kept, and replayed in front of the rest of the stream.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from typing import BinaryIO, cast

from overlayctl.errors import LayerRejectedError, OverlayctlError

# Longest magic we look for (xz); reading more would only delay the first byte.
_MAGIC_LEN = 6

GZIP = "gzip"
XZ = "xz"
ZSTD = "zstd"
BZIP2 = "bzip2"

_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", GZIP),
    (b"\xfd7zXZ\x00", XZ),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"BZh", BZIP2),
)


def detect_compression(head: bytes) -> str | None:
    """Name the compression whose magic starts ``head``, or None for plain data."""
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return None


class _Replay(io.RawIOBase):
    """The bytes already read for sniffing, then the rest of the source."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        if not data:
            return 0
        buf[: len(data)] = data
        return len(data)


class _Decompressed(io.RawIOBase):
    """A decompressing reader whose data errors become a rejected layer.

    Each library reports corrupt input with its own exception type, raised from
    deep inside tarfile's reads; translating them here means the layer code
    sees one error for "this is not a valid layer".
    """

    def __init__(self, inner: BinaryIO, kind: str, data_errors: tuple[type[Exception], ...] = ()) -> None:
        super().__init__()
        self._inner = inner
        self._kind = kind
        self._data_errors = (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) + data_errors

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buf))
        except self._data_errors as e:
            raise self._rejected(e) from e
        except OSError as e:
            # bz2 reports bad data as an OSError without an errno; a real I/O
            # error on the source always carries one.
            if e.errno is not None:
                raise
            raise self._rejected(e) from e
        buf[: len(data)] = data
        return len(data)

    def _rejected(self, e: BaseException) -> LayerRejectedError:
        detail = str(e) or type(e).__name__
        return LayerRejectedError(f"layer rejected: corrupt {self._kind} data ({detail})")

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def _read_head(raw: BinaryIO) -> bytes:
    # A pipe may hand back fewer bytes than asked for: keep reading until the
    # longest magic fits or the input ends.
    head = b""
    while len(head) < _MAGIC_LEN:
        chunk = raw.read(_MAGIC_LEN - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _zstd_reader(source: BinaryIO) -> tuple[BinaryIO, tuple[type[Exception], ...]]:
    # Imported here: most layers are gzip, and zstandard is an optional extra.
    try:
        import zstandard
    except ImportError:
        raise OverlayctlError(
            'cannot read a zstd-compressed layer: the zstandard module is missing; run "pip install zstandard"'
        ) from None
    # Layers compressed in parallel (pzstd, seekable zstd) are several frames
    # back to back: without read_across_frames only the first would be read.
    reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True, closefd=False)
    return cast(BinaryIO, reader), (zstandard.ZstdError,)


def open_decompressed(raw: BinaryIO) -> BinaryIO:
    """Return a stream of the uncompressed bytes of ``raw``.

    The compression is chosen from the magic bytes at the start of ``raw``
    (gzip, xz, zstd or bzip2); anything else is passed through unchanged, so a
    plain tar comes back as is. ``raw`` is read strictly forwards and never
    seeked, so stdin and sockets work. Corrupt compressed data raises
    LayerRejectedError when it is read; a zstd stream without the zstandard
    module installed raises OverlayctlError.
    """
    head = _read_head(raw)
    source = io.BufferedReader(_Replay(head, raw), buffer_size=1 << 16)
    kind = detect_compression(head)
    if kind is None:
        return cast(BinaryIO, source)
    inner: BinaryIO
    data_errors: tuple[type[Exception], ...] = ()
    if kind == GZIP:
        inner = cast(BinaryIO, gzip.GzipFile(fileobj=source, mode="rb"))
    elif kind == XZ:
        inner = cast(BinaryIO, lzma.LZMAFile(source, mode="rb"))
    elif kind == BZIP2:
        inner = cast(BinaryIO, bz2.BZ2File(source, mode="rb"))
    else:
        inner, data_errors = _zstd_reader(source)
    decompressed = _Decompressed(inner, kind, data_errors)
    return cast(BinaryIO, io.BufferedReader(decompressed, buffer_size=1 << 20))
