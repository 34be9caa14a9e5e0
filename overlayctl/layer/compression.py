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
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


class _Counted:
    """A reader that reports how many bytes went through it."""

    def __init__(self, raw: BinaryIO, on_read: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_read = on_read

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._on_read(len(data))
        return data


@contextmanager
def decompressed_file(path: str, on_read: Callable[[int], None] | None = None) -> Iterator[BinaryIO]:
    """The uncompressed bytes of the file at ``path``, as open_decompressed
    gives them, except that gzip is inflated by a second thread into a pipe.

    zlib lets go of the GIL while it inflates, so the decompression runs on
    another core beside the (Python) unpacking instead of before it: a third
    less time for a typical layer. ``on_read`` hears of every chunk read from
    the file (compressed bytes). Corrupt gzip data is a LayerRejectedError
    once the reader is done with the stream.
    """
    count = on_read or (lambda n: None)
    with open(path, "rb") as raw:
        head = _read_head(raw)
        if detect_compression(head) != GZIP:
            raw.seek(0)
            yield open_decompressed(cast(BinaryIO, _Counted(raw, count)))
            return
    with _GunzipThread(path, count) as tar:
        yield tar


class _GunzipThread:
    """A gzip file decompressed by a thread into a pipe; the read end is the
    context's value."""

    CHUNK = 1 << 20

    def __init__(self, path: str, on_read: Callable[[int], None]) -> None:
        self.path = path
        self.on_read = on_read
        self.error: BaseException | None = None

    def __enter__(self) -> BinaryIO:
        rfd, self._wfd = os.pipe()
        self._reader = os.fdopen(rfd, "rb", buffering=self.CHUNK)
        self._thread = threading.Thread(target=self._run, name="gunzip", daemon=True)
        self._thread.start()
        return self._reader

    def _run(self) -> None:
        try:
            with open(self.path, "rb") as f, os.fdopen(self._wfd, "wb", buffering=0) as out:
                inflate, fed = zlib.decompressobj(wbits=31), False  # 31: gzip header and CRC checked
                total = 0
                while chunk := f.read(self.CHUNK):
                    total += len(chunk)
                    self.on_read(len(chunk))
                    while chunk:
                        out.write(inflate.decompress(chunk))
                        fed = True
                        chunk = b""
                        if inflate.eof:
                            # Concatenated members (pigz, appends) are one stream.
                            chunk = inflate.unused_data
                            inflate, fed = zlib.decompressobj(wbits=31), False
                if fed and not inflate.eof:
                    raise EOFError("the gzip stream ends in the middle of a member")
                if total == 0:
                    raise EOFError("the layer blob is empty")
        except BrokenPipeError:
            pass  # the reader stopped first: its own error is the one to report
        except (zlib.error, EOFError, OSError) as exc:
            self.error = exc

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self._reader.close()  # a writer still blocked on a full pipe gets EPIPE
        self._thread.join()
        if self.error is not None:
            raise LayerRejectedError(f"layer rejected: corrupt gzip data ({self.error})") from None
