"""Unpacking layer tars: safety, fidelity, whiteouts, diff_id, compression."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies

from overlayctl.errors import LayerRejectedError, OverlayctlError
from overlayctl.layer.compression import detect_compression, open_decompressed
from overlayctl.layer.extract import extract_layer, normalize_parts

Member = tuple[tarfile.TarInfo, bytes | None]


def info(name: str, kind: bytes, attrs: dict[str, object]) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = 1_600_000_000
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def reg(name: str, data: bytes = b"", **attrs: object) -> Member:
    ti = info(name, tarfile.REGTYPE, attrs)
    ti.size = len(data)
    return ti, data


def dir_(name: str, **attrs: object) -> Member:
    return info(name, tarfile.DIRTYPE, attrs), None


def sym(name: str, target: str, **attrs: object) -> Member:
    return info(name, tarfile.SYMTYPE, {"linkname": target, **attrs}), None


def hard(name: str, target: str) -> Member:
    return info(name, tarfile.LNKTYPE, {"linkname": target}), None


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, **attrs: object) -> Member:
    return info(name, kind, {"devmajor": major, "devminor": minor, **attrs}), None


def make_tar(*members: Member, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    d = tmp_path / "layer"
    d.mkdir()
    return d


def extract(data: bytes, dest: Path):  # noqa: ANN201 - LayerDigest
    return extract_layer(io.BytesIO(data), str(dest))


def rejection(data: bytes, dest: Path) -> str:
    with pytest.raises(LayerRejectedError) as info:
        extract(data, dest)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- path handling ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a/b", ("a", "b")),
        ("./a//b/", ("a", "b")),
        ("a/../b", ("b",)),
        (".", ()),
        ("..", None),
        ("a/../../x", None),
        ("/abs", None),
    ],
)
def test_normalize_parts(path: str, parts: tuple[str, ...] | None) -> None:
    assert normalize_parts(path) == parts


@settings(max_examples=500, deadline=None)
@given(strategies.lists(strategies.sampled_from(["a", ".b", "..c", ".", "..", "", ".wh.d"]), max_size=6).map("/".join))
def test_normalize_parts_takes_no_shortcut_that_changes_a_path(path: str) -> None:
    # The reference: resolve every component, as the slow path does.
    stack: list[str] | None = []
    for comp in path.split("/"):
        if stack is None or comp in ("", "."):
            continue
        if comp == "..":
            stack = stack[:-1] if stack else None
        else:
            stack.append(comp)
    assert normalize_parts(path) == (None if stack is None or path.startswith("/") else tuple(stack))


# -- rejections ------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([reg("../x", b"x")], 'layer rejected: entry "../x" leaves the layer root'),
        ([reg("/abs", b"x")], 'layer rejected: entry "/abs" has an absolute path'),
        ([reg("a/../../x", b"x")], 'layer rejected: entry "a/../../x" leaves the layer root'),
        (
            [sym("evil", "../../.."), reg("evil/file", b"x")],
            'layer rejected: symlink "evil" points to "../../..", which leaves the layer root',
        ),
        (
            [sym("a/l", "../../x")],
            'layer rejected: symlink "a/l" points to "../../x", which leaves the layer root',
        ),
        (
            [sym("evil", "/"), reg("evil/etc/passwd", b"x")],
            'layer rejected: entry "evil/etc/passwd" goes through the symlink "evil"',
        ),
        (
            [dir_("sub"), sym("sub/up", ".."), reg("sub/up/x", b"x")],
            'layer rejected: entry "sub/up/x" goes through the symlink "sub/up"',
        ),
        (
            [hard("h", "../outside")],
            'layer rejected: hardlink "h" points to "../outside", which is outside the layer',
        ),
        (
            [hard("h", "/etc/passwd")],
            'layer rejected: hardlink "h" points to "/etc/passwd", which is outside the layer',
        ),
        (
            [hard("h", "later"), reg("later", b"x")],
            'layer rejected: hardlink "h" points to "later", which is not in the layer before it',
        ),
        (
            [sym("s", "/etc"), hard("h", "s/passwd")],
            'layer rejected: entry "h" goes through the symlink "s"',
        ),
        (
            [dir_("d"), hard("h", "d")],
            'layer rejected: hardlink "h" points to the directory "d"',
        ),
        (
            [reg("a", b"x"), reg("a/b", b"y")],
            'layer rejected: entry "a/b" needs "a" to be a directory',
        ),
        ([reg("d/.wh.", b"")], 'layer rejected: whiteout "d/.wh." does not name a file'),
        ([reg("d/.wh..", b"")], 'layer rejected: whiteout "d/.wh.." does not name a file'),
        (
            [reg("f", b"x", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})],
            'layer rejected: entry "f" sets the reserved xattr "trusted.overlay.redirect"',
        ),
        (
            [reg("f", b"x", pax_headers={"SCHILY.xattr.user.a\0b": "v"})],
            'layer rejected: entry "f" has an xattr record with a bad name "user.a\\u0000b"',
        ),
        (
            [reg("f", b"x", pax_headers={"SCHILY.xattr.": "v"})],
            'layer rejected: entry "f" has an xattr record with a bad name ""',
        ),
    ],
)
def test_unsafe_entries_are_rejected(members: list[Member], message: str, dest: Path, tmp_path: Path) -> None:
    data = make_tar(*members)
    assert rejection(data, dest) == message
    # Nothing was written next to the layer directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer"]


def test_rejected_name_is_quoted_on_one_line(dest: Path) -> None:
    message = rejection(make_tar(reg("../a\nb", b"")), dest)
    assert message == 'layer rejected: entry "../a\\nb" leaves the layer root'


def test_hardlink_replacing_the_directory_of_its_target_is_rejected(dest: Path) -> None:
    message = rejection(make_tar(reg("d/a", b"x"), hard("d", "d/a")), dest)
    assert message == 'layer rejected: hardlink "d" points to "d/a", inside the directory it would replace'


def test_unsupported_type_is_rejected(dest: Path) -> None:
    ti, _ = reg("odd")
    ti.type = b"Z"
    assert "unsupported type" in rejection(make_tar((ti, None)), dest)


def test_nothing_is_written_through_an_absolute_symlink(dest: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = make_tar(sym("evil", str(outside)), reg("evil/file", b"pwned"))
    assert "goes through the symlink" in rejection(data, dest)
    assert list(outside.iterdir()) == []


def test_relative_symlinks_inside_the_root_and_absolute_ones_are_fine(dest: Path) -> None:
    extract(
        make_tar(
            sym("a/b/l", "../../x"),
            sym("abs", "/etc/passwd"),
            sym("dot", "."),
            sym("a/up", ".."),
        ),
        dest,
    )
    assert os.readlink(dest / "a/b/l") == "../../x"
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert os.readlink(dest / "a/up") == ".."


def test_not_a_tar_is_rejected(dest: Path) -> None:
    assert "not a valid tar archive" in rejection(b"this is not a tar archive" * 40, dest)


def test_empty_stream_is_rejected(dest: Path) -> None:
    assert "not a valid tar archive" in rejection(b"", dest)


def test_truncated_tar_is_rejected(dest: Path) -> None:
    data = make_tar(reg("big", os.urandom(10_000)))
    assert "not a valid tar archive" in rejection(data[:5000], dest)


# -- fidelity --------------------------------------------------------------


@pytest.mark.root
def test_owners_modes_and_special_bits(dest: Path) -> None:
    extract(
        make_tar(
            dir_("shared", mode=0o2775, uid=0, gid=50),
            dir_("tmp", mode=0o1777),
            reg("bin/su", b"#!", mode=0o4755, uid=0, gid=0),
            reg("bin/wall", b"#!", mode=0o2755, uid=0, gid=5),
            reg("home/u/file", b"data", mode=0o600, uid=1000, gid=1000, uname="ignored"),
            sym("home/u/link", "file", uid=1000, gid=1001),
            dir_("ro", mode=0o555),
            reg("ro/inside", b"x", mode=0o444),
        ),
        dest,
    )

    def check(rel: str, mode: int, uid: int, gid: int) -> None:
        st = os.lstat(dest / rel)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid), rel

    check("shared", 0o2775, 0, 50)
    check("tmp", 0o1777, 0, 0)
    check("bin/su", 0o4755, 0, 0)
    check("bin/wall", 0o2755, 0, 5)
    check("home/u/file", 0o600, 1000, 1000)
    check("ro", 0o555, 0, 0)
    check("ro/inside", 0o444, 0, 0)
    st = os.lstat(dest / "home/u/link")
    assert (st.st_uid, st.st_gid) == (1000, 1001)


@pytest.mark.root
def test_implicit_parents_are_0755_root(dest: Path) -> None:
    old = os.umask(0o077)
    try:
        extract(make_tar(reg("p/q/r", b"x", uid=7, gid=7)), dest)
    finally:
        os.umask(old)
    for rel in ("p", "p/q"):
        st = os.lstat(dest / rel)
        assert stat.S_ISDIR(st.st_mode)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o755, 0, 0)


@pytest.mark.root
def test_existing_directory_takes_the_entry_metadata(dest: Path) -> None:
    extract(
        make_tar(reg("p/child", b"x"), dir_("p", mode=0o700, uid=5, gid=6, mtime=1234)),
        dest,
    )
    st = os.lstat(dest / "p")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o700, 5, 6, 1234)
    assert (dest / "p/child").read_bytes() == b"x"


@pytest.mark.root
def test_root_entry_sets_the_layer_root_metadata(dest: Path) -> None:
    extract(make_tar(dir_("./", mode=0o711, mtime=42), reg("f", b"x")), dest)
    st = os.lstat(dest)
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o711, 42)


def test_mtimes_including_directories_set_after_children(dest: Path) -> None:
    extract(
        make_tar(
            dir_("d", mtime=1_000_000_000),
            dir_("d/e", mtime=1_100_000_000),
            reg("d/e/f", b"x", mtime=1_200_000_000),
            sym("d/l", "e", mtime=1_300_000_000),
            reg("d/precise", b"x", pax_headers={"mtime": "1700000000.123456789"}),
        ),
        dest,
    )
    assert os.lstat(dest / "d").st_mtime_ns == 1_000_000_000 * 10**9
    assert os.lstat(dest / "d/e").st_mtime_ns == 1_100_000_000 * 10**9
    assert os.lstat(dest / "d/e/f").st_mtime_ns == 1_200_000_000 * 10**9
    assert os.lstat(dest / "d/l").st_mtime_ns == 1_300_000_000 * 10**9
    assert os.lstat(dest / "d/precise").st_mtime_ns == 1_700_000_000_123_456_789


@pytest.mark.root
def test_xattrs_from_pax_headers(dest: Path) -> None:
    # A file capability: version 2, cap_net_bind_service permitted+effective.
    cap = bytes.fromhex("0100000200040000000000000000000000000000")
    binary = b"\x00\xff\xfe raw"
    extract(
        make_tar(
            reg(
                "ping",
                b"elf",
                mode=0o4755,
                uid=1000,
                pax_headers={
                    "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                    "SCHILY.xattr.user.binary": binary.decode("utf-8", "surrogateescape"),
                },
            ),
            dir_("d", pax_headers={"SCHILY.xattr.trusted.note": "dir"}),
            sym("l", "ping", pax_headers={"SCHILY.xattr.trusted.sym": "yes"}),
        ),
        dest,
    )
    # chown ran before chmod and setxattr: neither setuid nor the capability was lost.
    assert stat.S_IMODE(os.lstat(dest / "ping").st_mode) == 0o4755
    assert os.getxattr(dest / "ping", "security.capability") == cap
    assert os.getxattr(dest / "ping", "user.binary") == binary
    assert os.getxattr(dest / "d", "trusted.note") == b"dir"
    assert os.getxattr(dest / "l", "trusted.sym", follow_symlinks=False) == b"yes"


@pytest.mark.root
def test_device_nodes_and_fifos(dest: Path) -> None:
    extract(
        make_tar(
            node("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666),
            node("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660, gid=6),
            node("run/fifo", tarfile.FIFOTYPE, mode=0o620),
        ),
        dest,
    )
    st = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(dest / "dev/loop0")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 0) and st.st_gid == 6
    st = os.lstat(dest / "run/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620


def test_hardlinks_share_the_inode(dest: Path) -> None:
    extract(make_tar(reg("a/f", b"data"), hard("b/g", "a/f"), hard("./a/h", "./a/f")), dest)
    ino = os.lstat(dest / "a/f").st_ino
    assert os.lstat(dest / "b/g").st_ino == ino
    assert os.lstat(dest / "a/h").st_ino == ino
    assert os.lstat(dest / "a/f").st_nlink == 3


def test_hardlink_to_a_symlink_links_the_symlink(dest: Path) -> None:
    extract(make_tar(sym("s", "/nowhere"), hard("h", "s")), dest)
    assert os.readlink(dest / "h") == "/nowhere"
    assert os.lstat(dest / "h").st_ino == os.lstat(dest / "s").st_ino


# -- whiteouts -------------------------------------------------------------


def is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


@pytest.mark.root
def test_whiteouts_become_overlay_whiteouts(dest: Path) -> None:
    extract(
        make_tar(
            dir_("etc"),
            reg("etc/.wh.passwd"),
            reg(".wh.top", mode=0o600, uid=3, mtime=99),
            reg("missing/parent/.wh.gone"),
            dir_("var/cache"),
            reg("var/cache/.wh..wh..opq"),
            reg("var/cache/kept", b"k"),
            reg(".wh..wh.plnk/123.456", b"aufs bookkeeping"),
        ),
        dest,
    )
    assert is_whiteout(dest / "etc/passwd")
    assert is_whiteout(dest / "missing/parent/gone")
    assert is_whiteout(dest / "top")
    st = os.lstat(dest / "top")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime) == (0o600, 3, 99)
    assert not (dest / "etc/.wh.passwd").exists()
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (dest / "var/cache/kept").read_bytes() == b"k"
    assert not os.path.lexists(dest / ".wh..wh.plnk")


@pytest.mark.root
def test_opaque_marker_before_its_directory_entry_keeps_the_xattr(dest: Path) -> None:
    extract(make_tar(reg("d/.wh..wh..opq"), dir_("d", mode=0o700)), dest)
    assert os.getxattr(dest / "d", "trusted.overlay.opaque") == b"y"
    assert stat.S_IMODE(os.lstat(dest / "d").st_mode) == 0o700


@pytest.mark.root
def test_whiteout_replaces_an_earlier_entry(dest: Path) -> None:
    extract(make_tar(reg("d/x/deep", b"1"), reg("d/f", b"2"), reg("d/.wh.x"), reg("d/.wh.f")), dest)
    assert is_whiteout(dest / "d/x")
    assert is_whiteout(dest / "d/f")


# -- later entries replace earlier ones ------------------------------------


def test_later_entries_replace_earlier_ones(dest: Path) -> None:
    extract(
        make_tar(
            reg("f", b"first"),
            reg("f", b"second"),
            dir_("d", mtime=5),
            reg("d/child", b"c"),
            reg("d", b"now a file"),
            reg("x", b"file"),
            dir_("x"),
            reg("x/y", b"y"),
            sym("s", "f"),
            reg("s", b"no longer a link"),
        ),
        dest,
    )
    assert (dest / "f").read_bytes() == b"second"
    assert (dest / "d").read_bytes() == b"now a file"
    assert (dest / "x/y").read_bytes() == b"y"
    assert not os.path.islink(dest / "s")
    assert (dest / "s").read_bytes() == b"no longer a link"


def test_replaced_directory_does_not_leave_stale_metadata(dest: Path) -> None:
    extract(
        make_tar(
            dir_("a/b", mtime=7, mode=0o700),
            reg("a", b"file"),
            dir_("a", mtime=9),
            reg("a/b/c", b"x", mtime=11),
        ),
        dest,
    )
    # a/b was recreated as an implicit parent, so the first a/b's entry is gone.
    assert stat.S_IMODE(os.lstat(dest / "a/b").st_mode) == 0o755
    assert os.lstat(dest / "a").st_mtime == 9


# -- names -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names(fmt: int, dest: Path) -> None:
    deep = "/".join(["d" * 50] * 3) + "/" + "f" * 90
    name = deep if fmt != tarfile.USTAR_FORMAT else "d" * 50 + "/" + "f" * 90
    target = "x" * (200 if fmt != tarfile.USTAR_FORMAT else 100)
    extract(make_tar(reg(name, b"long"), sym(name + "l", target), fmt=fmt), dest)
    assert (dest / name).read_bytes() == b"long"
    assert os.readlink(dest / (name + "l")) == target


def test_non_utf8_name(dest: Path) -> None:
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    extract(make_tar(reg(name, b"x")), dest)
    assert os.listdir(os.fsencode(dest)) == [b"caf\xe9"]


# -- sparse files and holes ------------------------------------------------


def allocated(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


def make_sparse(path: Path) -> bytes:
    with open(path, "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"x" * 5000)
        f.seek((8 << 20) - 1)
        f.write(b"y")
    return path.read_bytes()


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
@pytest.mark.parametrize(
    "flags",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
)
def test_sparse_files_stay_sparse(flags: list[str], tmp_path: Path, dest: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    content = make_sparse(src / "sparse")
    data = subprocess.run(
        ["tar", "--sparse", "-C", str(src), "-cf", "-", *flags, "sparse"],
        check=True,
        capture_output=True,
    ).stdout
    extract(data, dest)
    assert (dest / "sparse").read_bytes() == content
    assert allocated(dest / "sparse") <= 64 * 1024


def test_zero_blocks_are_written_as_holes(dest: Path) -> None:
    content = b"head" + bytes(1 << 20) + b"tail" + bytes(3 << 20)
    extract(make_tar(reg("zeros", content)), dest)
    assert (dest / "zeros").read_bytes() == content
    assert os.lstat(dest / "zeros").st_size == len(content)
    assert allocated(dest / "zeros") <= 64 * 1024


# -- diff_id ---------------------------------------------------------------


def test_diff_id_covers_every_byte_including_padding(dest: Path) -> None:
    data = make_tar(reg("f", b"hello"), dir_("d"))
    assert len(data) % 10240 == 0  # tarfile pads to a whole record
    digest = extract(data, dest)
    assert digest.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest.tar_size == len(data)


def test_diff_id_covers_trailing_bytes_after_the_end_marker(tmp_path: Path) -> None:
    data = make_tar(reg("f", b"hello")) + bytes(4096)
    (tmp_path / "x").mkdir()
    digest = extract(data, tmp_path / "x")
    assert digest.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest.tar_size == len(data)


def test_empty_layer(dest: Path) -> None:
    data = bytes(1024)
    digest = extract(data, dest)
    assert digest.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert list(dest.iterdir()) == []


# -- compression -----------------------------------------------------------


def zstd_compress(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    # Two frames back to back, as parallel compressors write them.
    half = len(data) // 2
    c = zstandard.ZstdCompressor()
    return c.compress(data[:half]) + c.compress(data[half:])


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "bzip2": bz2.compress,
    "zstd": zstd_compress,
}


class Trickle(io.RawIOBase):
    """A non-seekable source that hands out one byte per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        chunk = self._data[self._pos : self._pos + min(n if n >= 0 else 1, 1)]
        self._pos += len(chunk)
        return chunk


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_compressed_layers(kind: str, tmp_path: Path) -> None:
    data = make_tar(reg("a/f", os.urandom(50_000)), dir_("a"), sym("a/l", "f"))
    packed = COMPRESSORS[kind](data)
    assert detect_compression(packed[:6]) == kind
    expected = "sha256:" + hashlib.sha256(data).hexdigest()
    for i, source in enumerate((io.BytesIO(packed), Trickle(packed))):
        target = tmp_path / f"out{i}"
        target.mkdir()
        digest = extract_layer(open_decompressed(source), str(target))  # type: ignore[arg-type]
        assert digest.diff_id == expected
        assert digest.tar_size == len(data)
        assert (target / "a/l").is_symlink()


def test_plain_tar_passes_through_a_pipe(dest: Path) -> None:
    data = make_tar(reg("f", b"plain"))
    assert detect_compression(data[:6]) is None
    digest = extract_layer(open_decompressed(Trickle(data)), str(dest))  # type: ignore[arg-type]
    assert digest.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_tiny_input_is_passed_through() -> None:
    assert open_decompressed(io.BytesIO(b"BZ")).read() == b"BZ"
    assert open_decompressed(io.BytesIO(b"")).read() == b""


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_corrupt_compressed_data_is_rejected(kind: str, dest: Path) -> None:
    # Compressible data: corrupting stored (incompressible) blocks could go
    # unnoticed by formats whose checksum is optional, like zstd.
    data = make_tar(reg("f", b"layer content " * 20_000))
    packed = bytearray(COMPRESSORS[kind](data))
    middle = len(packed) // 2
    packed[middle : middle + 64] = bytes(64)
    with pytest.raises(LayerRejectedError):
        extract_layer(open_decompressed(io.BytesIO(bytes(packed))), str(dest))


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_truncated_compressed_data_is_rejected(kind: str, dest: Path) -> None:
    data = make_tar(reg("f", os.urandom(100_000)))
    packed = COMPRESSORS[kind](data)
    with pytest.raises(LayerRejectedError):
        extract_layer(open_decompressed(io.BytesIO(packed[: len(packed) // 2])), str(dest))


def test_missing_zstandard_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(OverlayctlError, match="pip install zstandard"):
        open_decompressed(io.BytesIO(b"\x28\xb5\x2f\xfd" + bytes(20)))
