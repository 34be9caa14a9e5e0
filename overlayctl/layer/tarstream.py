"""Read a layer tar forwards, once, hashing every byte on the way.

tarfile parses a header in ~75 us of Python and copies member data through
three buffers; a layer of a few thousand small files spends more time there
than in the kernel creating them. This reader parses the 512-byte headers
with one struct call and hands member data out as slices of the chunk it
read, which is all extraction needs: the formats layers come in (ustar, GNU
long names and sparse files, PAX with xattrs and sparse maps), read strictly
forwards so that a pipe or a decompressor will do.

It is stricter than tarfile where tarfile is lenient: a header with a bad
checksum or an unreadable number after the first one ends the archive in
tarfile; here it is an error (the layer is refused, not half-read).
"""

from __future__ import annotations

import hashlib
import queue
import struct
import threading
import zlib
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import BinaryIO

BLOCK = 512
CHUNK = 1 << 20  # what is read at a time, and the largest piece of data handed out
_META_LIMIT = 16 << 20  # a long name or a PAX header larger than this is not one
_ZERO_HEADER = bytes(BLOCK)
_NO_PAX: Mapping[str, bytes] = MappingProxyType({})
_ADLER_MOD = 65521
# PAX records that make a member a GNU sparse file (formats 0.0, 0.1, 1.0).
_SPARSE_KEYS = frozenset(("GNU.sparse.map", "GNU.sparse.size", "GNU.sparse.major"))
NS = 1_000_000_000
# name, mode+uid+gid, size, mtime, chksum, typeflag, linkname, magic,
# devmajor, devminor, prefix (version, uname and gname are not read: owners
# are numeric in layers)
_HEADER = struct.Struct("100s24s12s12s8sc100s6s2x64x8s8s155s")
# The mode, uid and gid fields of a header, as found before: a layer has few
# distinct ones, and a lookup costs less than parsing three numbers.
_IDS: dict[bytes, tuple[int, int, int]] = {}
_IDS_LIMIT = 4096

REGULAR = b"0"
HARDLINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIRECTORY = b"5"
FIFO = b"6"
_REGULAR_TYPES = (b"0", b"\0", b"7")  # "7" (contiguous) is a regular file everywhere
_GNU_SPARSE = b"S"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"
PAX_HEADER = b"x"  # the records of the next member
_PAX_GLOBAL = b"g"


class TarFormatError(Exception):
    """The stream is not a tar archive, or not a whole one."""


class Entry:
    """One member: the header fields extraction uses, PAX applied."""

    __slots__ = (
        "name",
        "type",
        "mode",
        "uid",
        "gid",
        "size",
        "mtime_ns",
        "linkname",
        "devmajor",
        "devminor",
        "pax",
        "sparse",
        "realsize",
    )

    def __init__(self, name: str, kind: bytes, mode: int, uid: int, gid: int, mtime_ns: int) -> None:
        self.name = name
        self.type = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime_ns = mtime_ns
        self.size = 0
        self.linkname = ""
        self.devmajor = self.devminor = 0
        self.pax: Mapping[str, bytes] = _NO_PAX  # this member's PAX records (global ones under them)
        # A sparse file: the (offset, length) of each data region, stored
        # one after another as the member's data, and the file's length.
        self.sparse: list[tuple[int, int]] | None = None
        self.realsize = 0

    def isdir(self) -> bool:
        return self.type == DIRECTORY

    def isreg(self) -> bool:
        return self.type == REGULAR

    def issym(self) -> bool:
        return self.type == SYMLINK

    def islnk(self) -> bool:
        return self.type == HARDLINK


def _text(raw: bytes) -> str:
    # Names are bytes on Linux: undecodable ones survive as surrogates and
    # are encoded back the same way when the file is created.
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _number(field: bytes) -> int:
    """A header number: octal text, or GNU's base-256 for large values."""
    try:
        # Octal digits ended by NULs or spaces, as nearly every tar writes
        # them: int() reads them once the ending is cut (and refuses
        # anything else, which the slow way below then reads).
        return int(field.rstrip(b"\0 "), 8)
    except ValueError:
        pass
    if field[0] & 0x80:
        if field[0] not in (0x80, 0xFF):
            raise TarFormatError("invalid number in a header")
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0xFF else n
    text = field.split(b"\0", 1)[0]
    try:
        # int() skips the spaces old tars pad with, as tarfile reads them.
        return int(text, 8)
    except ValueError:
        if not text.strip():
            return 0
        raise TarFormatError("invalid number in a header") from None


def _checksum_ok(header: bytes, recorded: bytes) -> bool:
    want = _number(recorded)
    # The sum of the header's bytes, the checksum field counted as eight
    # spaces (8 * 32 = 256). Adler-32's low half is 1 + that sum modulo
    # 65521, computed in C: ten times faster than sum() over 512 bytes. A
    # header can sum to 130560 at most, so a false match needs a recorded
    # checksum off by exactly 65521 or 131042; the data's digests are
    # checked anyway.
    low = zlib.adler32(header) & 0xFFFF
    if 0 <= want <= 130560 and (want + sum(header[148:156]) - 256 + 1 - low) % _ADLER_MOD == 0:
        return True
    unsigned = sum(header) - sum(header[148:156]) + 256
    if want == unsigned:
        return True
    # Some old tars summed signed chars.
    signed = sum(struct.unpack_from("148b8x356b", header)) + 256
    return want == signed


def _pax_records(data: bytes) -> list[tuple[str, bytes]]:
    """The "LEN KEY=VALUE\\n" records of a PAX header, in order (GNU sparse
    0.0 repeats its keys)."""
    out = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding at the end
            break
        space = data.find(b" ", pos, pos + 24)
        try:
            length = int(data[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise TarFormatError("invalid PAX header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise TarFormatError("invalid PAX header")
        out.append((key.decode("utf-8", "surrogateescape"), value))
        pos = end
    return out


def _pax_int(pax: Mapping[str, bytes], key: str) -> int | None:
    raw = pax.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise TarFormatError(f"invalid PAX {key}") from None
    if value < 0:
        raise TarFormatError(f"invalid PAX {key}")
    return value


def _pax_mtime_ns(text: bytes) -> int:
    # Exact nanoseconds: a float would lose them on current dates.
    try:
        return int(Decimal(text.decode("ascii")) * NS)
    except (InvalidOperation, UnicodeDecodeError, ValueError):
        raise TarFormatError("invalid PAX mtime") from None


def _pairs(numbers: list[int]) -> list[tuple[int, int]]:
    if len(numbers) % 2:
        raise TarFormatError("invalid sparse map")
    return list(zip(numbers[::2], numbers[1::2], strict=True))


class _Hasher:
    """sha256 on a thread of its own: hashlib lets go of the GIL while it
    hashes a large piece, so the diff_id is computed beside the unpacking
    instead of in its way."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def update(self, data: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
            self._thread.start()
        self._queue.put(data)

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._sha.update(data)

    def close(self) -> None:
        """Wait for everything given so far to be hashed; the thread ends."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


class TarReader:
    """The members of the tar read from ``raw``: iterate over ``entries()``
    and read a member's data with ``chunks()`` before asking for the next.

    Every byte read from ``raw`` is hashed (unless ``hashed`` is False, for
    a tar whose digest is known), the end-of-archive blocks and anything
    after them included once ``drain()`` has run; ``digest()`` and ``size``
    then describe the whole stream. ``close()`` when the reader is left
    before digest().
    """

    def __init__(self, raw: BinaryIO, *, hashed: bool = True) -> None:
        self._raw = raw
        self._sha = _Hasher() if hashed else None
        self.size = 0
        self._buf = b""
        self._pos = 0
        self._left = 0  # data bytes of the current member not read yet
        self._pad = 0  # zero bytes after them, to the next block

    # -- the stream --------------------------------------------------------

    def _read(self, n: int) -> bytes:
        data = self._raw.read(n)
        if data:
            if self._sha is not None:
                self._sha.update(data)
            self.size += len(data)
        return data or b""

    def _take(self, n: int) -> bytes:
        """The next ``n`` bytes, or fewer at the end of the stream."""
        end = self._pos + n
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            return out
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n:
            data = self._read(max(CHUNK, n - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        # The last chunk read becomes the buffer; only the n bytes asked
        # for are copied (not the whole chunk, a megabyte, at every edge).
        last = parts[-1]
        keep = len(last) - (have - n) if have > n else len(last)
        parts[-1] = last[:keep] if keep < len(last) else last
        self._buf, self._pos = last, keep
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _skip(self, n: int) -> None:
        while n > 0:
            got = len(self._take(min(n, CHUNK)))
            if got == 0:
                raise TarFormatError("unexpected end of data")
            n -= got

    @property
    def position(self) -> int:
        """Bytes of the stream consumed so far: right after entries() yields
        a member, where that member's data starts."""
        return self.size - (len(self._buf) - self._pos)

    def drain(self) -> None:
        """Read (and hash) the stream to its end: the diff_id covers the
        end-of-archive blocks and any padding after them."""
        while self._read(CHUNK):
            pass

    def digest(self) -> str:
        """sha256 of every byte read, as "sha256:<hex>"."""
        if self._sha is None:
            raise ValueError("this reader does not hash")
        return "sha256:" + self._sha.hexdigest()

    def close(self) -> None:
        """Stop the hashing thread (digest() does too); call it when giving up early."""
        if self._sha is not None:
            self._sha.close()

    # -- member data ----------------------------------------------------------

    def chunks(self) -> Iterator[bytes]:
        """The current member's (remaining) data, in pieces of at most 1 MiB:
        slices of what was read, the chunk itself when it is all the member's."""
        while self._left:
            avail = len(self._buf) - self._pos
            if avail == 0:
                data = self._read(CHUNK)
                if not data:
                    raise TarFormatError("unexpected end of data")
                self._buf, self._pos, avail = data, 0, len(data)
            n = min(avail, self._left)
            piece = self._buf if n == len(self._buf) else self._buf[self._pos : self._pos + n]
            self._pos += n
            self._left -= n
            yield piece

    def whole(self) -> bytes:
        """The current member's (remaining) data in one piece: for members
        of at most CHUNK bytes (larger ones are read with chunks())."""
        data = self._take(self._left)
        if len(data) != self._left:
            raise TarFormatError("unexpected end of data")
        self._left = 0
        return data

    def whole_view(self) -> bytes | memoryview:
        """whole(), but data that lies in the chunk read comes as a view of
        it rather than a copy (for a consumer that takes any buffer)."""
        end = self._pos + self._left
        if end > len(self._buf):
            return self.whole()
        view = memoryview(self._buf)[self._pos : end]
        self._pos = end
        self._left = 0
        return view

    def _data(self, size: int, what: str) -> bytes:
        """A whole small member (a long name, a PAX header), padding skipped."""
        if size > _META_LIMIT:
            raise TarFormatError(f"{what} of {size} bytes")
        data = self._take(size)
        if len(data) != size:
            raise TarFormatError("unexpected end of data")
        self._skip(-size % BLOCK)
        return data

    def _finish_member(self) -> None:
        self._skip(self._left + self._pad)
        self._left = self._pad = 0

    # -- headers --------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Every member, in order; long names, PAX records and sparse maps
        already applied. Raises TarFormatError for anything malformed."""
        global_pax: dict[str, bytes] = {}
        pax: list[tuple[str, bytes]] = []
        longname = longlink = None
        first = True
        while True:
            if self._left or self._pad:
                self._finish_member()
            header = self._take(BLOCK)
            if len(header) < BLOCK:
                if first:
                    raise TarFormatError("empty file" if not header else "truncated header")
                if header:
                    raise TarFormatError("truncated header")
                return  # no end-of-archive blocks: GNU tar accepts that too
            if header == _ZERO_HEADER:
                return
            fields = _HEADER.unpack_from(header)
            if not _checksum_ok(header, fields[4]):
                raise TarFormatError("bad checksum" if not first else "not a tar header (bad checksum)")
            first = False
            kind = fields[5]
            size = _number(fields[2])
            if size < 0:
                raise TarFormatError("negative size")
            if kind == _GNU_LONGNAME:
                longname = _cstr(self._data(size, "long name"))
                continue
            if kind == _GNU_LONGLINK:
                longlink = _cstr(self._data(size, "long link name"))
                continue
            if kind in (PAX_HEADER, _PAX_GLOBAL):
                records = _pax_records(self._data(size, "PAX header"))
                if kind == PAX_HEADER:
                    pax = records
                else:
                    global_pax.update(records)
                continue
            entry = self._entry(fields, header, size, global_pax, pax, longname, longlink)
            pax, longname, longlink = [], None, None
            yield entry

    def _entry(
        self,
        fields: tuple,  # type: ignore[type-arg]
        header: bytes,
        size: int,
        global_pax: dict[str, bytes],
        records: list[tuple[str, bytes]],
        longname: bytes | None,
        longlink: bytes | None,
    ) -> Entry:
        kind = fields[5]
        name = fields[0].split(b"\0", 1)[0]
        if fields[7] == b"ustar\0" and fields[10][0]:
            # POSIX ustar: a long name is split over prefix and name.
            name = _cstr(fields[10]) + b"/" + name
        if longname is not None:
            name = longname
        link = longlink if longlink is not None else _cstr(fields[6])
        ids = _IDS.get(fields[1])
        if ids is None:
            raw = fields[1]
            ids = (_number(raw[:8]), _number(raw[8:16]), _number(raw[16:]))
            if len(_IDS) >= _IDS_LIMIT:
                _IDS.clear()
            _IDS[raw] = ids
        mode, uid, gid = ids
        mtime_ns = _number(fields[3]) * NS
        pax = _NO_PAX
        if records or global_pax:
            pax = {**global_pax, **dict(records)}
            name = pax.get("path", name)
            link = pax.get("linkpath", link)
            uid = _pax_int(pax, "uid") if "uid" in pax else uid  # type: ignore[assignment]
            gid = _pax_int(pax, "gid") if "gid" in pax else gid  # type: ignore[assignment]
            size = _pax_int(pax, "size") if "size" in pax else size  # type: ignore[assignment]
            if "mtime" in pax:
                mtime_ns = _pax_mtime_ns(pax["mtime"])
            if b"\0" in name or b"\0" in link:
                raise TarFormatError("a PAX path with a NUL byte in it")
        if kind in _REGULAR_TYPES:
            # (The old V7 way of writing a directory: a name ending in "/".)
            kind = DIRECTORY if kind == b"\0" and name.endswith(b"/") else REGULAR
        if mode < 0 or uid < 0 or gid < 0:
            raise TarFormatError("a negative mode, uid or gid")
        e = Entry("", kind, mode, uid, gid, mtime_ns)
        e.pax = pax
        if kind in (CHAR, BLOCKDEV):
            e.devmajor = _number(fields[8])
            e.devminor = _number(fields[9])
        # Only regular files and the sparse kinds carry data that is theirs;
        # any other member's data is skipped unread.
        self._left = size
        self._pad = -size % BLOCK
        if kind == REGULAR or kind == _GNU_SPARSE:
            e.size = size
        if kind == _GNU_SPARSE:
            self._old_gnu_sparse(e, header)
        elif pax and kind == REGULAR and not _SPARSE_KEYS.isdisjoint(pax):
            self._pax_sparse(e, pax, records)
        if pax and "GNU.sparse.name" in pax:
            name = pax["GNU.sparse.name"]
            if b"\0" in name:
                raise TarFormatError("a PAX path with a NUL byte in it")
        if kind == DIRECTORY:
            name = name.rstrip(b"/")
        e.name = _text(name)
        e.linkname = _text(link)
        return e

    def _old_gnu_sparse(self, e: Entry, header: bytes) -> None:
        # GNU's own format: up to four (offset, length) pairs in the header,
        # more in extension blocks that follow it.
        regions = self._sparse_slots(header, 386, 4)
        extended = header[482]
        while extended:
            block = self._take(BLOCK)
            if len(block) < BLOCK:
                raise TarFormatError("unexpected end of data")
            regions += self._sparse_slots(block, 0, 21)
            extended = block[504]
        e.type = REGULAR
        e.sparse = regions
        e.realsize = _number(header[483:495])

    @staticmethod
    def _sparse_slots(block: bytes, pos: int, count: int) -> list[tuple[int, int]]:
        out = []
        for i in range(count):
            at = pos + 24 * i
            offset, length = _number(block[at : at + 12]), _number(block[at + 12 : at + 24])
            if offset or length:
                out.append((offset, length))
        return out

    def _pax_sparse(self, e: Entry, pax: Mapping[str, bytes], records: list[tuple[str, bytes]]) -> None:
        realsize = _pax_int(pax, "GNU.sparse.realsize")
        if realsize is None:
            realsize = _pax_int(pax, "GNU.sparse.size")
        if "GNU.sparse.map" in pax:  # format 0.1: "offset,length,..."
            raw = pax["GNU.sparse.map"]
            try:
                regions = _pairs([int(x) for x in raw.split(b",")] if raw else [])
            except ValueError:
                raise TarFormatError("invalid sparse map") from None
        elif pax.get("GNU.sparse.major") == b"1":  # format 1.0: the map opens the data
            regions = self._sparse_map_in_data()
        else:  # format 0.0: offset and numbytes records, repeated
            numbers = []
            for key, value in records:
                if key in ("GNU.sparse.offset", "GNU.sparse.numbytes"):
                    try:
                        numbers.append(int(value))
                    except ValueError:
                        raise TarFormatError("invalid sparse map") from None
            regions = _pairs(numbers)
        if realsize is None:
            raise TarFormatError("sparse file without its size")
        e.sparse = regions
        e.realsize = realsize

    def _sparse_map_in_data(self) -> list[tuple[int, int]]:
        # Decimal lines: the count, then offset and length for each region,
        # padded to a whole block; counted in the member's data.
        text = b""
        numbers: list[int] = []
        wanted: int | None = None
        while wanted is None or len(numbers) < 2 * wanted:
            if b"\n" not in text:
                if self._left < BLOCK:
                    raise TarFormatError("invalid sparse map")
                text += self._take(BLOCK)
                self._left -= BLOCK
                continue
            line, text = text.split(b"\n", 1)
            try:
                value = int(line)
            except ValueError:
                raise TarFormatError("invalid sparse map") from None
            if wanted is None:
                wanted = value
            else:
                numbers.append(value)
        return _pairs(numbers)
