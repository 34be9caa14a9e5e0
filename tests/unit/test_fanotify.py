"""fanotify: the records of a read parsed, and (as root) a real group on a
real mount naming the process that wrote a file, or refusing in one line."""

from __future__ import annotations

import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

from overlayctl.errors import KernelError
from overlayctl.measure import growth
from overlayctl.runtime import fanotify, syscalls


def _record(mask: int, fd: int, pid: int, version: int = 3, extra: bytes = b"") -> bytes:
    body = struct.pack("=IBBHQii", 24 + len(extra), version, 0, 24, mask, fd, pid)
    return body + extra


def test_parse_reads_each_record_by_its_length() -> None:
    buffer = _record(syscalls.FAN_MODIFY, 5, 100) + _record(syscalls.FAN_CLOSE_WRITE, 6, 101, extra=b"\0" * 8)
    buffer += _record(syscalls.FAN_Q_OVERFLOW, -1, 0)
    assert fanotify.parse(buffer) == [
        fanotify.Record(syscalls.FAN_MODIFY, 5, 100),
        fanotify.Record(syscalls.FAN_CLOSE_WRITE, 6, 101),
        fanotify.Record(syscalls.FAN_Q_OVERFLOW, -1, 0),
    ]
    assert fanotify.Event(syscalls.FAN_Q_OVERFLOW, 0, "").overflow


def test_parse_refuses_another_version_and_stops_at_a_zero_length() -> None:
    with pytest.raises(KernelError, match="metadata version 4"):
        fanotify.parse(_record(syscalls.FAN_MODIFY, 5, 1, version=4))
    broken = struct.pack("=IBBHQii", 0, 3, 0, 24, syscalls.FAN_MODIFY, 5, 1)
    assert fanotify.parse(broken) == []
    assert fanotify.parse(b"") == []


@pytest.mark.root
def test_a_mount_watch_names_the_writer(tmp_path: Path) -> None:
    watch = fanotify.MountWatch(str(tmp_path))
    try:
        target = tmp_path / "written"
        writer = subprocess.Popen(["sh", "-c", f"echo hi > {target}; sleep 5"])
        try:
            deadline = time.monotonic() + 10
            seen: list[fanotify.Event] = []
            while time.monotonic() < deadline and not any(e.path == str(target) for e in seen):
                seen += watch.read()
                time.sleep(0.05)
        finally:
            writer.kill()
            writer.wait()
        mine = [e for e in seen if e.path == str(target)]
        assert mine and {e.pid for e in mine} == {writer.pid}
        assert all(e.mask & fanotify.WRITES for e in mine)
    finally:
        watch.close()
    assert watch.fd == -1


@pytest.mark.root
def test_writers_names_the_first_writer_with_its_command(tmp_path: Path) -> None:
    writers = growth.Writers(str(tmp_path))
    try:
        first = subprocess.Popen(["sh", "-c", f"echo a >> {tmp_path}/f; sleep 5; true"])
        deadline = time.monotonic() + 10
        while writers.who(f"{tmp_path}/f") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp_path / "f").write_text("later writes do not change the first writer")
        time.sleep(0.3)
        first.kill()
        first.wait()
        assert writers.who(f"{tmp_path}/f") == (first.pid, f"sh -c echo a >> {tmp_path}/f; sleep 5; true")
        assert writers.who(f"{tmp_path}/never") is None
    finally:
        writers.close()


@pytest.mark.root
def test_writers_keep_only_paths_of_the_image(tmp_path: Path) -> None:
    # Events name host paths here, so the "image" mirrors them.
    work = tmp_path / "data"
    work.mkdir()
    lower = tmp_path / "lower"
    image_dir = lower / str(work).lstrip("/")
    image_dir.mkdir(parents=True)
    (image_dir / "old").write_text("x")
    os.mknod(image_dir / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout: not shown
    writers = growth.Writers(str(tmp_path), [str(lower)])
    try:
        for name in ("new", "gone", "old"):
            (work / name).write_text("y")
        deadline = time.monotonic() + 10
        while writers.who(f"{work}/old") is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writers.close()
    assert writers.who(f"{work}/old") == (os.getpid(), growth.command_of(os.getpid()))
    assert writers.who(f"{work}/gone") is None and writers.who(f"{work}/new") is None


def test_lower_shows_stops_at_the_topmost_layer(tmp_path: Path) -> None:
    top, bottom = tmp_path / "top", tmp_path / "bottom"
    (top / "etc").mkdir(parents=True)
    (bottom / "etc").mkdir(parents=True)
    (bottom / "etc" / "passwd").write_text("x")
    (bottom / "etc" / "group").write_text("x")
    (top / "etc" / "hosts").write_text("x")
    layers = [str(top), str(bottom)]
    assert growth.lower_shows(layers, "/etc/passwd") and growth.lower_shows(layers, "/etc/hosts")
    assert not growth.lower_shows(layers, "/etc/nothing")
    if os.geteuid() == 0:
        os.mknod(top / "etc" / "group", 0o600 | 0o020000, os.makedev(0, 0))
        assert not growth.lower_shows(layers, "/etc/group")


@pytest.mark.root
def test_the_kernel_refusing_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(KernelError) as info:
        growth.Writers(str(tmp_path / "missing"))
    assert str(info.value) == f"fanotify_mark {tmp_path}/missing: No such file or directory"
    # The group made before the refusal is closed, not leaked.
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(KernelError):
        fanotify.MountWatch(str(tmp_path / "missing"))
    assert set(os.listdir("/proc/self/fd")) == fds
