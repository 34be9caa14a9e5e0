"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    """Poll `predicate` until it returns something true, and return that;
    fail the test after `timeout` seconds naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def write_file(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write `text` at `path` (its parents made) with `mode`; the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def du_bytes(path: Path) -> int:
    """`du -s --block-size=1 path`: the allocated bytes the tests compare with."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, check=True).stdout
    return int(out.split()[0])


def store_device(path: Path) -> str | None:
    """The whole block device ("MAJ:MIN") that holds `path`, or None when
    its filesystem has none (tmpfs, overlay)."""
    import os

    st = os.stat(path)
    device = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not os.path.exists(device):
        return None
    if os.path.exists(os.path.join(device, "partition")):
        device = os.path.join(os.path.realpath(device), "..")
    with open(os.path.join(device, "dev")) as f:
        return f.read().strip()


def device_bytes_written(device: str) -> int:
    """Bytes written to a block device since boot (/sys/.../stat, 512-byte sectors)."""
    with open(f"/sys/dev/block/{device}/stat") as f:
        return int(f.read().split()[6]) * 512


@contextmanager
def block_io_counted(device: str) -> Iterator[None]:
    """Let cgroup v1 blkio count `device`'s bytes while the block runs.

    Since Linux 6.9 blk-throttle starts on a queue only when a rule is first
    set on it, and its counters (blkio.throttle.io_service_bytes_recursive,
    what Docker reads on v1) count nothing before. A scratch cgroup sets a
    rule no I/O reaches (1 TB/s) on the device, and is removed after; the
    queue keeps counting. Nothing to do on cgroup v2, whose io.stat always counts."""
    import os

    from overlayctl.runtime.cgroups.layout import host_layout

    layout = host_layout()
    if layout.version != 1 or "blkio" not in layout.v1:
        yield
        return
    scratch = os.path.join(layout.v1["blkio"], f"overlayctl-test-{os.getpid()}")
    os.mkdir(scratch)
    try:
        with open(os.path.join(scratch, "blkio.throttle.write_bps_device"), "w") as f:
            f.write(f"{device} {1 << 40}")
        yield
    finally:
        os.rmdir(scratch)


def upper_dir(cli, name: str) -> Path:
    """The upper dir of the cli fixture's container `name`."""
    import json

    cid = json.loads(cli.ok("inspect", name))[0]["Id"]
    return cli.root / "containers" / cid / "upper"
