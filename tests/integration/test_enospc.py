"""A full disk: on a small tmpfs made by the test, import, load, build and
pull that do not fit fail with one line naming the filesystem and the
space needed, keep nothing, and work once space is freed."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.integration.test_registry import registry  # noqa: F401 - the session's registry fixture

NONE = ("--network", "none")
SIZE_MB = 24


@pytest.fixture
def small(tmp_path: Path, busybox_tar: Path) -> Iterator[CLI]:
    """A CLI whose store is on a SIZE_MB tmpfs, with bb:1 in it."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)], check=True)
    c = CLI(mnt / "root", tmp_path / "run")
    try:
        c.ok("import", str(busybox_tar), "bb:1")
        yield c
    finally:
        ids = c("ps", "-aq", "--no-trunc").stdout.decode().split()
        if ids:
            c("rm", "-f", *ids)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def state(cli: CLI) -> dict:
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        layers = sorted(r[0] for r in conn.execute("SELECT diff_id FROM layers"))
        images = sorted(r[0] for r in conn.execute("SELECT id FROM images"))
    finally:
        conn.close()
    return {"layers": layers, "images": images, "tmp": os.listdir(cli.root / "tmp")}


def random_tar(path: Path, megabytes: int) -> Path:
    data = path.parent / "payload"
    with open(data, "wb") as f:
        f.write(os.urandom(megabytes << 20))
    with tarfile.open(path, "w") as tar:
        tar.add(data, arcname="payload")
    data.unlink()
    return path


def fill(cli: CLI, leave_mb: int) -> Path:
    """A filler file that leaves about leave_mb free on the small filesystem."""
    st = os.statvfs(cli.root)
    filler = cli.root.parent / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - (leave_mb << 20)))
    return filler


def fails_cleanly(cli: CLI, *args: str, needs: bool = True, code: int = 125) -> None:
    before = state(cli)
    result = cli(*args)
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.match(rf"overlayctl: no space left on {re.escape(str(cli.root.parent))} \(tmpfs, ", err), err
    assert "free of" in err and ("this needs about" in err) == needs, err
    assert state(cli) == before
    assert cli.ok("system", "fsck") == "no problems found\n"


def test_import_and_load_that_do_not_fit(small, tmp_path):
    big = random_tar(tmp_path / "big.tar", 8)
    filler = fill(small, 6)
    fails_cleanly(small, "import", str(big), "big:1")
    filler.unlink()
    small.ok("import", str(big), "big:1")
    archive = tmp_path / "big-saved.tar"
    small.ok("save", "-o", str(archive), "big:1")
    small.ok("rmi", "big:1")
    filler = fill(small, 6)
    fails_cleanly(small, "load", "-i", str(archive))
    filler.unlink()
    small.ok("load", "-q", "-i", str(archive))
    assert small.ok("run", "--rm", *NONE, "bb:1", "echo", "ok") == "ok\n"


def test_build_copy_that_does_not_fit(small, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "blob").write_bytes(os.urandom(8 << 20))
    (ctx / "Dockerfile").write_text("FROM bb:1\nCOPY blob /blob\n")
    filler = fill(small, 4)
    # A failed build exits 1, as `docker build`.
    fails_cleanly(small, "build", "-q", "-t", "fat:1", str(ctx), needs=False, code=1)
    filler.unlink()
    small.ok("build", "-q", "-t", "fat:1", str(ctx))
    assert small.ok("run", "--rm", *NONE, "fat:1", "sh", "-c", "wc -c < /blob").strip() == str(8 << 20)


def test_pull_that_does_not_fit(small, tmp_path, registry):  # noqa: F811 - the fixture
    small.ok("import", str(random_tar(tmp_path / "big.tar", 8)), "big:1")
    small.ok("push", "-q", "big:1", f"{registry}/enospc:1")
    small.ok("rmi", "big:1")
    filler = fill(small, 6)
    fails_cleanly(small, "pull", "-q", f"{registry}/enospc:1")
    filler.unlink()
    small.ok("pull", "-q", f"{registry}/enospc:1")
