"""The batch file writer (layer/_batchwrite.c) and extraction with it: the
same tree, to the byte and the inode, as extraction in Python alone."""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies

from overlayctl.errors import KernelError, OverlayctlError
from overlayctl.layer import extract as extract_module
from overlayctl.util import space


@pytest.fixture(scope="module")
def batchwrite() -> Any:
    """The compiled module; scripts/setup.sh builds it, so its absence is a failure."""
    mod = extract_module._batchwrite
    assert mod is not None, "overlayctl/layer/_batchwrite.c is not built: run scripts/setup.sh"
    return mod


@pytest.fixture
def dir_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


# -- the writer itself -------------------------------------------------------


def test_writes_data_owner_mode_and_time(batchwrite: Any, dir_fd: int, tmp_path: Path) -> None:
    w = batchwrite.Writer()
    try:
        flags = batchwrite.CHOWN | batchwrite.CHMOD
        w.submit(
            dir_fd,
            [
                (b"plain", b"hello", 0o644, 0, 0, 1_500_000_000_123_456_789, 0),
                (b"suid", b"#!", 0o4755, 1000, 1001, -1, flags),
                (b"holes", bytes(8192) + b"x" + bytes(8192), 0o600, 0, 0, 0, batchwrite.CHMOD),
                (b"\xff name", memoryview(b"a view")[2:], 0o644, 0, 0, 0, 0),
            ],
        )
        assert w.wait() == (4, 0)
    finally:
        w.close()
    st = os.lstat(tmp_path / "plain")
    assert (tmp_path / "plain").read_bytes() == b"hello"
    assert st.st_mtime_ns == 1_500_000_000_123_456_789
    st = os.lstat(tmp_path / "suid")
    if os.geteuid() == 0:
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 1000, 1001)
    assert st.st_mtime_ns == -1  # before 1970, to the nanosecond
    holes = tmp_path / "holes"
    assert holes.read_bytes() == bytes(8192) + b"x" + bytes(8192)
    assert os.lstat(holes).st_blocks * 512 <= 4096  # the zero blocks were not written
    assert (tmp_path / os.fsdecode(b"\xff name")).read_bytes() == b"view"


def test_a_taken_name_stops_the_batch_there(batchwrite: Any, dir_fd: int, tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"already")
    w = batchwrite.Writer()
    try:
        w.submit(dir_fd, [(n, b"new", 0o644, 0, 0, 0, 0) for n in (b"a", b"b", b"c")])
        assert w.wait() == (1, errno.EEXIST)
    finally:
        w.close()
    assert (tmp_path / "a").read_bytes() == b"new"
    assert (tmp_path / "b").read_bytes() == b"already"
    assert not (tmp_path / "c").exists()


def test_a_symlink_in_the_way_is_not_followed(batchwrite: Any, dir_fd: int, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "outside")
    w = batchwrite.Writer()
    try:
        w.submit(dir_fd, [(b"link", b"data", 0o644, 0, 0, 0, 0)])
        assert w.wait() == (0, errno.EEXIST)
    finally:
        w.close()
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ((b"a/b", b"", 0o644, 0, 0, 0, 0), ValueError),
        ((b"..", b"", 0o644, 0, 0, 0, 0), ValueError),
        ((b"", b"", 0o644, 0, 0, 0, 0), ValueError),
        ((b"a", b"", 0o644, 2**32 - 1, 0, 0, 0), OverflowError),  # -1 would mean "leave the owner"
        ((b"a", b"", 0o644, 0, 0, 2**64, 0), OverflowError),
        ((b"a", b"", 0o17777, 0, 0, 0, 0), ValueError),
        (("a", b"", 0o644, 0, 0, 0, 0), TypeError),
    ],
)
def test_bad_files_are_refused_before_anything_is_written(
    batchwrite: Any, dir_fd: int, tmp_path: Path, item: tuple[object, ...], error: type[Exception]
) -> None:
    w = batchwrite.Writer()
    try:
        with pytest.raises(error):
            w.submit(dir_fd, [(b"first", b"x", 0o644, 0, 0, 0, 0), item])
        assert w.wait() == (0, 0)  # nothing was handed over
        w.submit(dir_fd, [(b"later", b"x", 0o644, 0, 0, 0, 0)])  # and the writer still works
        assert w.wait() == (1, 0)
    finally:
        w.close()
    assert sorted(os.listdir(tmp_path)) == ["later"]


def test_one_batch_at_a_time_and_none_after_close(batchwrite: Any, dir_fd: int, tmp_path: Path) -> None:
    w = batchwrite.Writer()
    w.submit(dir_fd, [(b"a", b"x", 0o644, 0, 0, 0, 0)])
    with pytest.raises(RuntimeError):
        w.submit(dir_fd, [(b"b", b"x", 0o644, 0, 0, 0, 0)])
    w.close()  # finishes the batch in flight first
    assert w.wait() == (1, 0)
    with pytest.raises(RuntimeError):
        w.submit(dir_fd, [])
    assert os.listdir(tmp_path) == ["a"]


# -- extraction with and without it -----------------------------------------


class _Counting:
    """The module, with a count of the batches handed to its writers."""

    def __init__(self, mod: Any) -> None:
        self._mod = mod
        self.CHOWN, self.CHMOD = mod.CHOWN, mod.CHMOD
        self.files = 0

    def Writer(self) -> Any:  # noqa: N802 - stands in for the type
        counting = self
        inner = self._mod.Writer()

        class _W:
            def submit(self, fd: int, files: list[Any]) -> None:
                inner.submit(fd, files)
                counting.files += len(files)

            def wait(self) -> tuple[int, int]:
                return inner.wait()  # type: ignore[no-any-return]

            def close(self) -> None:
                inner.close()

        return _W()


def _unpack(data: bytes, dest: str, mod: Any) -> str | None:
    """Extract with ``mod`` as the batch writer (None: Python alone); the
    error message when the layer is refused."""
    saved = extract_module._batchwrite
    extract_module._batchwrite = mod
    try:
        extract_module.extract_layer(io.BytesIO(data), dest)
    except OverlayctlError as e:
        return str(e)
    finally:
        extract_module._batchwrite = saved
    return None


_TAR_TIMES_BEFORE = 1_700_000_000 * 10**9  # every time in the layers made below is earlier


def _tree(root: str) -> dict[str, tuple[object, ...]]:
    """Everything extraction sets, per path; inodes as the first path that has each."""
    out: dict[str, tuple[object, ...]] = {}
    first_path: dict[int, str] = {}
    for here, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(here, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mtime: int | None = st.st_mtime_ns
            if stat.S_ISDIR(st.st_mode) and st.st_mtime_ns > _TAR_TIMES_BEFORE:
                mtime = None  # a parent the tar does not list: extraction's own clock
            row: tuple[object, ...] = (st.st_mode, st.st_uid, st.st_gid, mtime)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    row += (f.read(), st.st_blocks, first_path.setdefault(st.st_ino, rel))
            elif stat.S_ISLNK(st.st_mode):
                row += (os.readlink(path),)
            out[rel] = row
    return out


_NAMES = ["d1/a", "d1/b", "d1/c", "d1/sub/e", "d2/x", "d2/y", "top", "d1", "d2/x/z"]
_DATA = strategies.one_of(
    strategies.binary(max_size=3000),
    strategies.binary(min_size=700, max_size=700),  # the same size, other bytes
    strategies.integers(0, 9000).map(bytes),
    strategies.tuples(strategies.binary(min_size=1, max_size=100), strategies.integers(0, 9000)).map(
        lambda t: t[0] + bytes(t[1]) + t[0]
    ),
)
_REG = strategies.builds(
    lambda name, data, mode, uid, gid, mtime: ("reg", name, data, mode, uid, gid, mtime),
    strategies.sampled_from(_NAMES),
    _DATA,
    strategies.sampled_from([0o644, 0o600, 0o640, 0o777, 0o4755, 0o2755, 0o1644]),
    strategies.sampled_from([0, 1000]),
    strategies.sampled_from([0, 50]),
    strategies.sampled_from([0, 1_600_000_000, -5, 1_600_000_000.25]),  # a fraction goes in a PAX record
)
_OTHER = strategies.one_of(
    strategies.tuples(strategies.just("dir"), strategies.sampled_from(["d1", "d2", "d1/sub", "d2/x"])),
    strategies.tuples(strategies.just("sym"), strategies.sampled_from(_NAMES), strategies.sampled_from(["a", "/x"])),
    strategies.tuples(strategies.just("hard"), strategies.sampled_from(_NAMES), strategies.sampled_from(_NAMES)),
)


def _layer(ops: list[tuple[Any, ...]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for op in ops:
            ti = tarfile.TarInfo(op[1])
            ti.mtime = 1_600_000_000
            data = None
            if op[0] == "reg":
                _, _, data, ti.mode, ti.uid, ti.gid, ti.mtime = op
                ti.size = len(data)
            elif op[0] == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            else:
                ti.type = tarfile.SYMTYPE if op[0] == "sym" else tarfile.LNKTYPE
                ti.linkname = op[2]
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@settings(max_examples=80, deadline=None)
@given(strategies.lists(strategies.one_of(_REG, _REG, _REG, _OTHER), min_size=1, max_size=30))
def test_batched_and_python_extraction_make_the_same_tree(ops: list[tuple[Any, ...]]) -> None:
    mod = extract_module._batchwrite
    assert mod is not None, "overlayctl/layer/_batchwrite.c is not built: run scripts/setup.sh"
    data = _layer(ops)
    with tempfile.TemporaryDirectory() as tmp:
        batched, python = os.path.join(tmp, "batched"), os.path.join(tmp, "python")
        os.mkdir(batched)
        os.mkdir(python)
        outcome = _unpack(data, batched, mod)
        assert outcome == _unpack(data, python, None)
        if outcome is None:
            assert _tree(batched) == _tree(python)


def test_many_small_files_go_through_the_writer(batchwrite: Any, tmp_path: Path) -> None:
    files = [("reg", f"d/f{i}", os.urandom(100 + i), 0o644, 0, 0, 1_600_000_000 + i) for i in range(300)]
    data = _layer([("dir", "d"), *files])
    counting = _Counting(batchwrite)
    (tmp_path / "out").mkdir()
    assert _unpack(data, str(tmp_path / "out"), counting) is None
    # All but the first file of the directory, which opens it.
    assert counting.files == 299
    for _, name, content, *_rest, mtime in files:
        assert (tmp_path / "out" / name).read_bytes() == content
        assert os.lstat(tmp_path / "out" / name).st_mtime == mtime


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs of the test's own, unmounted even when the test fails."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tiny", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.root
@pytest.mark.parametrize("mode", ["batched", "python"])
def test_a_full_filesystem_names_the_entry_and_says_why(
    mode: str, batchwrite: Any, tiny_fs: Path
) -> None:
    files = [("reg", f"d/f{i:03}", os.urandom(8192), 0o644, 0, 0, 0) for i in range(100)]
    data = _layer([("dir", "d"), *files])
    saved = extract_module._batchwrite
    extract_module._batchwrite = batchwrite if mode == "batched" else None
    try:
        with pytest.raises(KernelError) as info:
            extract_module.extract_layer(io.BytesIO(data), str(tiny_fs))
    finally:
        extract_module._batchwrite = saved
    message = str(info.value)
    assert message.startswith('cannot unpack layer entry "d/f') and message.endswith(": No space left on device")
    assert space.is_out_of_space(info.value)
