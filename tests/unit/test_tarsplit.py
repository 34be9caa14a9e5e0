"""A layer's tar-split gives back the tar it was unpacked from, byte for
byte, from far fewer bytes; and refuses when the layer's files changed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies

from overlayctl.layer import tarsplit
from overlayctl.layer.extract import extract_layer
from tests.unit.test_batchwrite import _OTHER, _REG, _layer


def _split_of(tar: bytes, where: Path) -> tuple[str, Path, Path]:
    """Unpack ``tar`` under ``where`` and write its tar-split; (the digest
    reassembled, the layer's files, the tar-split)."""
    (where / "layer.tar").write_bytes(tar)
    diff = where / "diff"
    diff.mkdir()
    extract_layer(io.BytesIO(tar), str(diff))
    split = where / "tar-split"
    return tarsplit.write(str(where / "layer.tar"), str(diff), str(split)), diff, split


def _reassembled(split: Path, diff: Path) -> bytes:
    out = bytearray()
    tarsplit.reassemble(str(split), str(diff), out.extend)
    return bytes(out)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@settings(max_examples=80, deadline=None)
@given(strategies.lists(strategies.one_of(_REG, _REG, _OTHER), min_size=1, max_size=25))
def test_gives_back_the_tar_whatever_its_members_did(ops: list[tuple[Any, ...]]) -> None:
    # Repeated paths, files replaced by directories and links, hardlinks:
    # whatever the layer's files no longer hold stays in the tar-split.
    tar = _layer(ops)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            digest, diff, split = _split_of(tar, Path(tmp))
        except Exception as e:  # noqa: BLE001 - a layer extraction refuses is not this test's business
            if "layer rejected" in str(e):
                return
            raise
        assert digest == _sha(tar)
        assert _reassembled(split, diff) == tar


@pytest.mark.skipif(not os.path.exists("/bin/tar"), reason="GNU tar not installed")
def test_a_gnu_tar_of_many_files_keeps_little(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(300):
        (src / "d" / f"f{i}").write_bytes(os.urandom(1000 + i))
    (src / "d" / "zeros").write_bytes(bytes(100_000))
    (src / "big").write_bytes(os.urandom(1 << 20))
    os.link(src / "big", src / "hard")
    (src / "link").symlink_to("d/f1")
    tar = subprocess.run(["tar", "-C", str(src), "-cf", "-", "."], check=True, capture_output=True).stdout
    where = tmp_path / "w"
    where.mkdir()
    digest, diff, split = _split_of(tar, where)
    assert digest == _sha(tar)
    assert _reassembled(split, diff) == tar
    # Headers, padding and the end: a few percent of the tar, compressed.
    assert split.stat().st_size < len(tar) / 50


def _tar(files: dict[str, bytes]) -> bytes:
    return _layer([("reg", name, data, 0o644, 0, 0, 0) for name, data in files.items()])


def test_a_path_written_twice_takes_its_data_from_the_last(tmp_path: Path) -> None:
    # The first "a"'s bytes are not in the layer any more: kept in the tar-split.
    tar = _layer([("reg", "a", b"1" * 3000, 0o644, 0, 0, 0), ("reg", "a", b"2" * 3000, 0o644, 0, 0, 0)])
    digest, diff, split = _split_of(tar, tmp_path)
    assert (diff / "a").read_bytes() == b"2" * 3000
    assert digest == _sha(tar)


def test_a_changed_file_gives_another_tar(tmp_path: Path) -> None:
    tar = _tar({"a": b"x" * 5000, "b": b"y" * 100})
    digest, diff, split = _split_of(tar, tmp_path)
    assert digest == _sha(tar)
    (diff / "a").write_bytes(b"z" * 5000)
    assert _sha(_reassembled(split, diff)) != _sha(tar)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "a").unlink(), "the layer's file a cannot be read"),
        (lambda d: (d / "a").write_bytes(b"short"), "the layer's file a is shorter than when it was unpacked"),
    ],
)
def test_a_missing_or_cut_file_is_said(tmp_path: Path, change: Any, message: str) -> None:
    tar = _tar({"a": b"x" * 5000})
    _, diff, split = _split_of(tar, tmp_path)
    change(diff)
    with pytest.raises(tarsplit.TarSplitError, match=message):
        _reassembled(split, diff)


def test_no_file_is_read_through_a_symlink(tmp_path: Path) -> None:
    tar = _tar({"d/secret": b"layer data" * 100})
    _, diff, split = _split_of(tar, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host data!" * 100)
    for entry in (diff / "d").iterdir():
        entry.unlink()
    (diff / "d").rmdir()
    (diff / "d").symlink_to(outside)
    with pytest.raises(tarsplit.TarSplitError, match="the layer's file d/secret cannot be read"):
        _reassembled(split, diff)


def test_not_a_tar_split_is_said(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"not gzip at all")
    (tmp_path / "diff").mkdir()
    with pytest.raises(tarsplit.TarSplitError, match="cannot read the tar-split"):
        tarsplit.reassemble(str(bogus), str(tmp_path / "diff"), lambda _b: None)
