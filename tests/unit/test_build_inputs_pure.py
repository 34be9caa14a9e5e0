"""Build inputs without root: a context tar unpacked safely, the platform
checks and ARGs, and the build flags' errors."""

from __future__ import annotations

import io
import os
import platform
import tarfile
from pathlib import Path

import pytest

from overlayctl.builder.context import extract_context_tar
from overlayctl.cli import runopts
from overlayctl.errors import InvalidArgumentError
from overlayctl.oci.platform import check_platform, host_platform

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    info.mtime = 1_000_000
    return info


def test_context_tar_keeps_files_modes_links_and_times(tmp_path):
    stream = _tar(
        (_entry("./app/", tarfile.DIRTYPE, mode=0o750), None),
        (_entry("./app/run.sh", mode=0o755), b"#!/bin/sh\n"),
        (_entry("app/hard", tarfile.LNKTYPE, link="app/run.sh"), None),
        (_entry("app/abs", tarfile.SYMTYPE, link="/etc/passwd"), None),
        (_entry("app/fifo", tarfile.FIFOTYPE), None),
        (_entry("app/dev", tarfile.CHRTYPE), None),
    )
    extract_context_tar(stream, str(tmp_path))
    run = tmp_path / "app" / "run.sh"
    assert run.read_bytes() == b"#!/bin/sh\n" and (run.stat().st_mode & 0o777) == 0o755
    assert run.stat().st_mtime == 1_000_000
    assert os.path.samefile(run, tmp_path / "app" / "hard")
    assert os.readlink(tmp_path / "app" / "abs") == "/etc/passwd"  # kept as written, never followed here
    assert sorted(os.listdir(tmp_path / "app")) == ["abs", "hard", "run.sh"]  # no fifo, no device


def test_context_tar_names_cannot_climb_out(tmp_path):
    inside = tmp_path / "ctx"
    inside.mkdir()
    extract_context_tar(_tar((_entry("../../up.txt"), b"x"), (_entry("/abs.txt"), b"y")), str(inside))
    assert sorted(os.listdir(inside)) == ["abs.txt", "up.txt"]
    assert not (tmp_path / "up.txt").exists()


@pytest.mark.parametrize(
    "members",
    [
        ((_entry("out", tarfile.SYMTYPE, link="../.."), None), (_entry("out/evil"), b"x")),
        ((_entry("out", tarfile.SYMTYPE, link="/"), None), (_entry("out/tmp/evil"), b"x")),
        ((_entry("hard", tarfile.LNKTYPE, link="../../etc/passwd"), None),),
    ],
)
def test_context_tar_cannot_write_through_a_link_or_link_outside(tmp_path, members):
    inside = tmp_path / "a" / "ctx"
    inside.mkdir(parents=True)
    with pytest.raises(InvalidArgumentError):
        extract_context_tar(_tar(*members), str(inside))
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_not_a_tar_is_one_clear_error(tmp_path):
    with pytest.raises(InvalidArgumentError, match="not a valid tar archive"):
        extract_context_tar(io.BytesIO(b"\x1f\x8b" + b"garbage" * 100), str(tmp_path))


def test_only_this_hosts_platform_is_accepted():
    host = str(host_platform())
    assert host == f"linux/{ARCH}"
    check_platform(host, "--platform")
    check_platform(host.upper(), "--platform")
    if ARCH == "amd64":
        check_platform("linux/amd64/v1", "--platform")
    other = "linux/s390x" if ARCH != "s390x" else "linux/arm64"
    with pytest.raises(InvalidArgumentError, match=f"is not this host's platform \\({host}\\)"):
        check_platform(other, "--platform")
    with pytest.raises(InvalidArgumentError, match="use OS/ARCH"):
        check_platform("amd64", "--platform")


def test_platform_args_are_buildkits_names():
    args = host_platform().args()
    assert set(args) == {
        f"{side}{key}" for side in ("TARGET", "BUILD") for key in ("PLATFORM", "OS", "ARCH", "VARIANT")
    }
    assert args["TARGETOS"] == args["BUILDOS"] == "linux"
    assert args["TARGETARCH"] == ARCH and args["TARGETPLATFORM"] == f"linux/{ARCH}"


def test_build_flags_parse_and_an_unknown_one_names_build_help():
    opts, positional = runopts.parse(
        ["--label", "a=1", "-q", "--iidfile", "f", "-f", "-", ".", "--label", "b=2", "--platform", "linux/amd64"],
        runopts.BUILD_OPTIONS,
        interspersed=True,
        command="build",
    )
    assert positional == ["."]
    assert opts["labels"] == ["a=1", "b=2"] and opts["quiet"] and opts["iidfile"] == "f"
    assert opts["dockerfile"] == "-" and opts["platform"] == "linux/amd64"
    _opts, positional = runopts.parse(["-"], runopts.BUILD_OPTIONS, interspersed=True, command="build")
    assert positional == ["-"]
    with pytest.raises(InvalidArgumentError, match='see "overlayctl build --help"'):
        runopts.parse(["--squash", "."], runopts.BUILD_OPTIONS, interspersed=True, command="build")
