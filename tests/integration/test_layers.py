"""Deep stacks through the library API: the kernel's 500-layer limit, the
new mount API, and the classic mount(2) fallback with its page limit."""

from __future__ import annotations

import io
import tarfile

import pytest

from overlayctl.paths import Paths
from overlayctl.store import Store
from overlayctl.util.humanize import now_rfc3339
from overlayctl.util.reference import parse_reference
from tests.conftest import kernel_has_lowerdir_plus


def _one_file_layer(name: str, data: bytes) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in ((name, data), ("which", data)):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    buf.seek(0)
    return buf


def _stack(cli, busybox_tar, count: int, tag: str) -> None:
    store = Store(Paths(str(cli.root), str(cli.runroot)))
    try:
        with open(busybox_tar, "rb") as f:
            base, _ = store.layers.import_tar(f)
        diff_ids = [base.diff_id]
        for i in range(1, count):
            layer, new = store.layers.import_tar(_one_file_layer(f"layer{i}", f"{i}\n".encode()))
            assert new
            diff_ids.append(layer.diff_id)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": now_rfc3339(),
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        image = store.images.create(config, parse_reference(tag))
        assert len(image.layers) == count
    finally:
        store.close()


@pytest.mark.slow
def test_500_layers_run(cli, busybox_tar):
    _stack(cli, busybox_tar, 500, "deep:500")
    if not kernel_has_lowerdir_plus():
        # One page of mount(2) options cannot name 500 layers: refused, not truncated.
        result = cli("run", "--rm", "deep:500", "true")
        assert result.returncode == 125 and "mount(2) takes at most 4096" in result.stderr.decode()
        return
    out = cli.ok(
        "run",
        "--rm",
        "deep:500",
        "sh",
        "-c",
        "cat /layer1 /layer250 /layer499 /which; grep -o 'lowerdir+=' /proc/self/mountinfo | wc -l",
    )
    assert out.split() == ["1", "250", "499", "499", "500"]


def test_501_layers_refused_cleanly(cli, busybox_tar):
    _stack(cli, busybox_tar, 501, "deep:501")
    result = cli("run", "--rm", "deep:501", "true")
    assert result.returncode == 125
    assert "at most 500" in result.stderr.decode()


def test_classic_mount_fallback(cli, busybox_tar):
    _stack(cli, busybox_tar, 3, "small:3")
    cli.env["OVERLAYCTL_OVERLAY_API"] = "classic"
    out = cli.ok("run", "--rm", "--network", "none", "small:3", "sh", "-c", "cat /which; head -1 /proc/self/mountinfo")
    which, mountinfo = out.split("\n", 1)
    assert which == "2"
    assert "lowerdir=layers/" in mountinfo and "lowerdir+=" not in mountinfo


def test_classic_mount_refuses_instead_of_truncating(cli, busybox_tar):
    _stack(cli, busybox_tar, 200, "wide:200")
    cli.env["OVERLAYCTL_OVERLAY_API"] = "classic"
    result = cli("run", "--rm", "wide:200", "true")
    assert result.returncode == 125
    err = result.stderr.decode()
    assert "mount(2) takes at most 4096" in err and err.count("\n") == 1
