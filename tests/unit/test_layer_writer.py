"""Writing layer tars: determinism, format, whiteout conversion, round trips."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from overlayctl.errors import OverlayctlError
from overlayctl.layer.extract import extract_layer
from overlayctl.layer.writer import write_layer_tar

MTIME = 1_650_000_000


def write(src: Path, **kwargs: int) -> bytes:
    out = io.BytesIO()
    digest = write_layer_tar(str(src), out, **kwargs)
    data = out.getvalue()
    assert digest.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert digest.tar_size == len(data)
    return data


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        return tf.getmembers()


def touch_times(root: Path) -> None:
    """Give every entry a fixed mtime, bottom-up so directories keep theirs."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(0, MTIME * 10**9 + 123), follow_symlinks=False)


def file(path: Path, data: bytes = b"", mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def build_plain_tree(root: Path, reverse: bool = False) -> None:
    """Files, dirs, symlinks, hardlinks and odd names: nothing that needs root."""
    steps: list[Callable[[], object]] = [
        lambda: file(root / "etc/hostname", b"box\n"),
        lambda: file(root / "etc/a-b", b"sorts before etc/ in bytes order"),
        lambda: file(root / "usr/bin/tool", b"\x7fELF" + bytes(range(250)) * 12, 0o755),
        lambda: file(root / "caf\xe9.txt", b"unicode"),
        lambda: file(root / ("deep/" + "d" * 80 + "/" + "f" * 90), b"long path"),
        lambda: file(root / "sparse", b""),
        lambda: (root / "empty-dir").mkdir(),
    ]
    for step in reversed(steps) if reverse else steps:
        step()
    with open(root / "sparse", "r+b") as f:
        f.truncate(5 << 20)
        f.seek(1 << 20)
        f.write(b"island")
    os.link(root / "usr/bin/tool", root / "usr/bin/alias")
    os.link(root / "usr/bin/tool", root / "a-first-link")
    os.symlink("../etc/hostname", root / "usr/host")
    os.symlink("/" + "t" * 150, root / "long-target")
    os.mkdir(os.fsencode(root) + b"/raw-\xff")
    file(Path(os.fsdecode(os.fsencode(root) + b"/raw-\xff/in")), b"x")
    os.setxattr(root / "etc/hostname", "user.note", b"\x00binary\xff")
    touch_times(root)


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    root = tmp_path / "plain"
    root.mkdir()
    build_plain_tree(root)
    return root


def build_root_tree(root: Path) -> None:
    """Everything an upper dir can hold, including what only root can make."""
    build_plain_tree(root)
    file(root / "bin/su", b"#!", 0o755)
    os.chown(root / "bin/su", 0, 0)
    os.chmod(root / "bin/su", 0o4755)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    file(root / "home/u/f", b"mine", 0o600)
    os.chown(root / "home/u/f", 1000, 1000)
    os.chown(root / "home/u", 1000, 1000)
    file(root / "big-ids", b"")
    os.chown(root / "big-ids", 3_000_000, 4_000_000)  # beyond ustar's 7 octal digits
    os.symlink("f", root / "home/u/l")
    os.chown(root / "home/u/l", 1000, 1001, follow_symlinks=False)
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(root / "fifo", 0o600)
    # Overlay whiteouts: one alone, two sharing an inode as the kernel does.
    os.mknod(root / "etc/shadow", stat.S_IFCHR, 0)
    os.mknod(root / "etc/wh-shared-1", stat.S_IFCHR, 0)
    os.link(root / "etc/wh-shared-1", root / "usr/wh-shared-2")
    # An opaque directory, and overlay bookkeeping that must not leak.
    file(root / "var/cache/new", b"n")
    os.setxattr(root / "var/cache", "trusted.overlay.opaque", b"y")
    os.setxattr(root / "etc", "trusted.overlay.impure", b"y")
    os.setxattr(root / "etc/hostname", "trusted.overlay.origin", b"\x00\xfb")
    os.setxattr(root / "usr/bin/tool", "security.capability", bytes.fromhex("0100000200040000" + "00" * 12))
    os.setxattr(root / "usr/host", "trusted.linkx", b"on a symlink", follow_symlinks=False)
    touch_times(root)


@pytest.fixture
def full(tmp_path: Path) -> Path:
    root = tmp_path / "full"
    root.mkdir()
    build_root_tree(root)
    return root


def snapshot(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Everything a layer must preserve, keyed by relative path; hardlinks by group."""
    base = os.fsencode(root)
    inodes: dict[tuple[int, int], bytes] = {}
    result: dict[bytes, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                content = st.st_rdev
            xattrs = sorted(
                (n, os.getxattr(full, n, follow_symlinks=False))
                for n in os.listxattr(full, follow_symlinks=False)
                if not n.startswith("trusted.overlay.") or n == "trusted.overlay.opaque"
            )
            group = None
            whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) and not whiteout:
                group = inodes.setdefault((st.st_dev, st.st_ino), rel)
            mode = None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
            result[rel] = (
                kind, mode, st.st_uid, st.st_gid, st.st_mtime_ns // 10**9,
                st.st_size if not stat.S_ISDIR(st.st_mode) else None,
                content, tuple(xattrs), group,
            )  # fmt: skip
    return result


def extract_to(data: bytes, dest: Path) -> Path:
    dest.mkdir()
    extract_layer(io.BytesIO(data), str(dest))
    return dest


# -- determinism -----------------------------------------------------------


def test_same_tree_gives_the_same_bytes(plain: Path) -> None:
    assert write(plain) == write(plain)


def test_creation_order_does_not_matter(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    build_plain_tree(one)
    build_plain_tree(two, reverse=True)
    assert write(one) == write(two)


def test_entries_sorted_by_path_bytes_with_empty_owner_names(plain: Path) -> None:
    data = write(plain)
    infos = members(data)
    names = [os.fsencode(m.name) for m in infos]
    assert names == sorted(names)
    assert b"etc/a-b" in names and names.index(b"etc/a-b") < names.index(b"etc/hostname")
    assert all(m.uname == "" and m.gname == "" for m in infos)
    assert all(m.name not in (".", "") for m in infos)
    assert b"empty-dir/\0" in data  # directories carry tar's trailing slash


def test_mtimes_are_whole_seconds_and_clamped(plain: Path) -> None:
    assert {m.mtime for m in members(write(plain))} == {MTIME}
    assert {m.mtime for m in members(write(plain, clamp_mtime=1000))} == {1000}
    assert {m.mtime for m in members(write(plain, clamp_mtime=MTIME + 50))} == {MTIME}


def test_empty_tree_is_just_the_end_marker(tmp_path: Path) -> None:
    assert write(tmp_path) == bytes(1024)


# -- format ----------------------------------------------------------------


def test_readable_by_tarfile_with_the_right_fields(plain: Path) -> None:
    by_name = {m.name: m for m in members(write(plain))}
    tool, alias, first = by_name["usr/bin/tool"], by_name["usr/bin/alias"], by_name["a-first-link"]
    # The first name in sorted order holds the data, later ones link to it.
    assert first.isreg() and first.size == 3004 and first.mode == 0o755
    assert alias.islnk() and alias.linkname == "a-first-link"
    assert tool.islnk() and tool.linkname == "a-first-link"
    assert by_name["usr/host"].issym() and by_name["usr/host"].linkname == "../etc/hostname"
    assert by_name["long-target"].linkname == "/" + "t" * 150
    assert by_name["empty-dir"].isdir()
    assert by_name["caf\xe9.txt"].size == len(b"unicode")
    assert by_name["raw-\udcff/in"].isreg()
    hostname = by_name["etc/hostname"]
    assert hostname.pax_headers["SCHILY.xattr.user.note"].encode("utf-8", "surrogateescape") == (b"\x00binary\xff")


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
def test_gnu_tar_reads_it_cleanly(plain: Path, tmp_path: Path) -> None:
    data = write(plain)
    listing = subprocess.run(["tar", "-tvf", "-"], input=data, capture_output=True, check=True)
    assert listing.stderr == b""
    out = tmp_path / "gnu"
    out.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-xpf", "-", "-C", str(out)],
        input=data,
        check=True,
        capture_output=True,
    )
    assert snapshot(out) == snapshot(plain)


# -- overlay to OCI conversion ---------------------------------------------


@pytest.mark.root
def test_whiteouts_and_opaque_dirs_become_oci(full: Path) -> None:
    infos = members(write(full))
    names = [m.name for m in infos]
    by_name = {m.name: m for m in infos}
    for wh in ("etc/.wh.shadow", "etc/.wh.wh-shared-1", "usr/.wh.wh-shared-2"):
        assert by_name[wh].isreg() and by_name[wh].size == 0, wh
    assert "etc/shadow" not in names
    # The opaque marker follows its directory directly.
    assert names[names.index("var/cache") + 1] == "var/cache/.wh..wh..opq"
    assert all(not k.startswith("SCHILY.xattr.trusted.overlay.") for m in infos for k in m.pax_headers)
    cap = by_name["usr/bin/tool"] if by_name["usr/bin/tool"].isreg() else by_name["a-first-link"]
    assert "SCHILY.xattr.security.capability" in cap.pax_headers


@pytest.mark.root
def test_special_files_owners_and_big_ids(full: Path) -> None:
    by_name = {m.name: m for m in members(write(full))}
    assert by_name["null"].ischr() and (by_name["null"].devmajor, by_name["null"].devminor) == (1, 3)
    assert by_name["loop0"].isblk() and by_name["loop0"].devmajor == 7
    assert by_name["fifo"].isfifo() and by_name["fifo"].mode == 0o600
    assert by_name["bin/su"].mode == 0o4755
    assert by_name["tmp"].isdir() and by_name["tmp"].mode == 0o1777
    assert (by_name["home/u/l"].uid, by_name["home/u/l"].gid) == (1000, 1001)
    assert (by_name["big-ids"].uid, by_name["big-ids"].gid) == (3_000_000, 4_000_000)


def test_socket_is_skipped(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    file(src / "keep", b"k")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "sock"))
        assert [m.name for m in members(write(src))] == ["keep"]


def test_name_with_whiteout_prefix_is_refused(tmp_path: Path) -> None:
    file(tmp_path / "d/.wh.sneaky", b"")
    with pytest.raises(OverlayctlError, match=r'"d/\.wh\.sneaky" has a name starting with'):
        write_layer_tar(str(tmp_path), io.BytesIO())


@pytest.mark.root
def test_redirect_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "moved").mkdir()
    os.setxattr(tmp_path / "moved", "trusted.overlay.redirect", b"/old")
    with pytest.raises(OverlayctlError, match="redirect_dir=off"):
        write_layer_tar(str(tmp_path), io.BytesIO())


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OverlayctlError, match="cannot write layer tar of"):
        write_layer_tar(str(tmp_path / "nope"), io.BytesIO())


# -- round trips -----------------------------------------------------------


def test_round_trip_plain(plain: Path, tmp_path: Path) -> None:
    data = write(plain)
    out = extract_to(data, tmp_path / "out")
    assert snapshot(out) == snapshot(plain)
    assert write(out) == data
    # Holes survive: the extracted sparse file is not 5 MiB on disk.
    assert os.lstat(out / "sparse").st_blocks * 512 <= 64 * 1024


@pytest.mark.root
def test_round_trip_everything(full: Path, tmp_path: Path) -> None:
    data = write(full)
    out = extract_to(data, tmp_path / "out")
    assert snapshot(out) == snapshot(full)
    assert write(out) == data
