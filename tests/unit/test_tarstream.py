"""The layer tar reader against tarfile: the same members from the same
bytes, whatever the format; stricter where a tar is damaged."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlayctl.layer.tarstream import TarFormatError, TarReader

FORMATS = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}


def read_all(data: bytes) -> tuple[list[tuple], TarReader]:
    reader = TarReader(io.BytesIO(data))
    out = []
    for e in reader.entries():
        body = b"".join(reader.chunks()) if e.isreg() else None
        xattrs = sorted((k, v) for k, v in e.pax.items() if k.startswith("SCHILY.xattr."))
        out.append((e.name, e.type, e.mode, e.uid, e.gid, e.mtime_ns, e.linkname, e.devmajor, e.devminor, xattrs, body))
    reader.drain()
    return out, reader


def with_tarfile(data: bytes) -> list[tuple]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|", encoding="utf-8", errors="surrogateescape") as t:
        for m in t:
            body = t.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
            kind = b"0" if m.isreg() else m.type
            xattrs = sorted(
                (k, v.encode("utf-8", "surrogateescape")) for k, v in m.pax_headers.items() if k.startswith("SCHILY.")
            )
            mtime_ns = int(m.mtime) * 10**9
            out.append((m.name, kind, m.mode, m.uid, m.gid, mtime_ns, m.linkname, m.devmajor, m.devminor, xattrs, body))
    return out


# Paths of a few components; the long ones need GNU long names, PAX paths
# or ustar's prefix field.
segment = st.text(alphabet=st.sampled_from("abcé_-.x"), min_size=1, max_size=60)
names = st.one_of(
    st.lists(segment, min_size=1, max_size=3).map("/".join),
    st.lists(segment.map(lambda s: s + "y" * 40), min_size=3, max_size=5).map("/".join),
)
members = st.lists(
    st.tuples(
        names,
        st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]),
        st.binary(max_size=3000),
        st.integers(0, 0o7777),
        st.integers(0, 70000),
        st.integers(0, 2**33 - 1),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(members=members, fmt=st.sampled_from(sorted(FORMATS)))
def test_the_same_members_as_tarfile(members: list[tuple], fmt: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=FORMATS[fmt], encoding="utf-8") as t:
        for name, kind, body, mode, uid, mtime in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, uid + 1, mtime
            if kind == tarfile.SYMTYPE:
                info.linkname = name[::-1]
            if kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, uid % 256
            if kind == tarfile.REGTYPE:
                info.size = len(body)
                if fmt == "pax":
                    info.pax_headers = {"SCHILY.xattr.user.k": "v\udcff"}
            try:
                t.addfile(info, io.BytesIO(body) if kind == tarfile.REGTYPE else None)
            except ValueError:
                assert fmt == "ustar"  # a name ustar cannot split into prefix and name: left out
    data = buf.getvalue()
    ours, reader = read_all(data)
    assert ours == with_tarfile(data)
    assert reader.size == len(data)
    assert reader.digest() == "sha256:" + hashlib.sha256(data).hexdigest()


def one_file(fmt: int = tarfile.GNU_FORMAT, **attrs: object) -> bytearray:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name in ("a", "b"):
            info = tarfile.TarInfo(name)
            info.size = 3
            for k, v in attrs.items():
                setattr(info, k, v)
            t.addfile(info, io.BytesIO(b"abc"))
    return bytearray(buf.getvalue())


def test_large_ids_in_base_256() -> None:
    entries, _ = read_all(bytes(one_file(uid=2**40, gid=5)))
    assert entries[0][3] == 2**40 and entries[0][4] == 5


def test_a_bad_checksum_after_the_first_header_is_an_error() -> None:
    # tarfile would end the archive there and drop the rest without a word.
    data = one_file()
    data[1024 + 10] ^= 1  # the second member's name
    with pytest.raises(TarFormatError, match="bad checksum"):
        read_all(bytes(data))


def test_a_header_cut_short_is_an_error() -> None:
    data = bytes(one_file())
    with pytest.raises(TarFormatError, match="truncated header"):
        read_all(data[: 1024 + 100])


def test_data_cut_short_is_an_error() -> None:
    data = bytes(one_file())
    with pytest.raises(TarFormatError, match="unexpected end of data"):
        read_all(data[:514])


def test_not_a_tar() -> None:
    with pytest.raises(TarFormatError):
        read_all(b"x" * 2048)
    with pytest.raises(TarFormatError, match="empty"):
        read_all(b"")


def test_a_number_that_is_not_octal_is_an_error() -> None:
    data = one_file()
    data[124:136] = b"0000000009\0\0"  # size: 9 is no octal digit
    data[148:156] = b"        "
    data[148:155] = f"{sum(data[:512]):06o}\0".encode()
    with pytest.raises(TarFormatError, match="invalid number"):
        read_all(bytes(data))


def test_global_pax_records_apply_to_the_members_after_them() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"uid": "4242"}) as t:
        info = tarfile.TarInfo("f")
        t.addfile(info, io.BytesIO(b""))
    (entry,), _ = read_all(buf.getvalue())
    assert entry[0] == "f" and entry[3] == 4242


def empty_file_with_pax(records: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("f")
        info.pax_headers = records
        t.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


def test_the_pax_mtime_keeps_its_nanoseconds() -> None:
    (entry,), _ = read_all(empty_file_with_pax({"mtime": "1700000000.123456789"}))
    assert entry[5] == 1700000000_123456789


def test_an_old_style_directory_with_a_trailing_slash() -> None:
    data = one_file(fmt=tarfile.USTAR_FORMAT, name="d/", type=tarfile.AREGTYPE, size=0)
    entries, _ = read_all(bytes(data[:512]) + bytes(1024))
    assert entries[0][0] == "d" and entries[0][1] == b"5"


def test_a_negative_owner_is_an_error() -> None:
    # GNU base-256 can say -1, which chown would take as "leave as it is".
    with pytest.raises(TarFormatError, match="negative"):
        read_all(bytes(one_file(uid=-1)))


def test_a_pax_path_with_a_nul_byte_is_an_error() -> None:
    with pytest.raises(TarFormatError, match="NUL"):
        read_all(empty_file_with_pax({"path": "a\0b"}))


def test_a_sparse_name_with_a_nul_byte_is_an_error() -> None:
    with pytest.raises(TarFormatError, match="NUL"):
        read_all(empty_file_with_pax({"GNU.sparse.name": "a\0b"}))
