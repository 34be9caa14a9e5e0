"""Build inputs and flags: -f -, build - (a context tar), NAME.dockerignore,
--label, --iidfile, -q, --platform, the automatic platform ARGs, # syntax=,
and the exit codes of a failed build."""

from __future__ import annotations

import io
import json
import os
import platform
import tarfile
from pathlib import Path

import pytest

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
HOST = f"linux/{ARCH}"


def _tar(entries: dict[str, str | tuple[str, str]]) -> bytes:
    """A tar of files (name: text) and symlinks (name: ("symlink", target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, value in entries.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = value[1]
                tar.addfile(info)
                continue
            data = value.encode()
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _inspect(cli, image: str) -> dict:
    return json.loads(cli.ok("image", "inspect", image))[0]


def test_dockerfile_on_stdin_with_a_context_dir(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("from the context\n")
    cli.ok("build", "-t", "in:1", "-f", "-", str(ctx), input=b"FROM bb:1\nCOPY f.txt /f.txt\n")
    assert cli.ok("run", "--rm", "in:1", "cat", "/f.txt") == "from the context\n"
    # Errors name it as Docker does, not by a staging path.
    result = cli("build", "-f", "-", str(ctx), input=b"FROM bb:1\nBOGUS x\n")
    assert result.returncode == 1
    assert result.stderr.decode().strip() == "overlayctl: Dockerfile:2: unknown instruction: BOGUS"
    assert os.listdir(cli.root / "tmp") == []


def test_context_tar_on_stdin_with_the_dockerfile_inside(cli, bb, tmp_path):
    data = _tar(
        {
            "Dockerfile": "FROM bb:1\nCOPY . /ctx/\n",
            "sub/build.Dockerfile": "FROM bb:1\nCOPY app.txt /app.txt\n",
            "app.txt": "app\n",
            "link": ("symlink", "/etc/passwd"),
        }
    )
    cli.ok("build", "-t", "tar:1", "-", input=data)
    listing = cli.ok("run", "--rm", "tar:1", "ls", "-A", "/ctx", "/ctx/sub")
    assert "app.txt" in listing and "build.Dockerfile" in listing and "stdin" not in listing
    assert cli.ok("run", "--rm", "tar:1", "readlink", "/ctx/link") == "/etc/passwd\n"
    cli.ok("build", "-t", "tar:2", "-f", "sub/build.Dockerfile", "-", input=data)
    assert cli.ok("run", "--rm", "tar:2", "cat", "/app.txt") == "app\n"
    # A plain Dockerfile on stdin: no context at all, as Docker.
    cli.ok("build", "-t", "tar:3", "-", input=b"FROM bb:1\nRUN echo ok > /ok\n")
    assert cli.ok("run", "--rm", "tar:3", "cat", "/ok") == "ok\n"
    assert os.listdir(cli.root / "tmp") == []


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ({"../escape": "x", "Dockerfile": "FROM bb:1\n"}, None),  # cleaned into the context: builds
        ({"dir": ("symlink", "/tmp"), "dir/evil": "x", "Dockerfile": "FROM bb:1\n"}, "leads outside the context"),
        ({"app.txt": "x"}, "has no Dockerfile at Dockerfile"),
    ],
)
def test_context_tar_that_tries_to_escape_or_lacks_a_dockerfile(cli, bb, tmp_path, entries, needle):
    result = cli("build", "-", input=_tar(entries))
    err = result.stderr.decode()
    if needle is None:
        assert result.returncode == 0, err
    else:
        assert result.returncode == 1 and needle in err, err
    assert not (Path("/tmp") / "evil").exists()
    assert not (cli.root / "escape").exists() and not (cli.root / "tmp" / "escape").exists()
    assert os.listdir(cli.root / "tmp") == []


def test_dockerfile_dockerignore_takes_precedence(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("a.txt", "b.txt"):
        (ctx / name).write_text(name)
    (ctx / ".dockerignore").write_text("a.txt\n")
    (ctx / "app.Dockerfile.dockerignore").write_text("b.txt\n")
    (ctx / "app.Dockerfile").write_text("FROM bb:1\nCOPY . /c/\n")
    (ctx / "Dockerfile").write_text("FROM bb:1\nCOPY . /c/\n")
    cli.ok("build", "-t", "ign:1", "-f", str(ctx / "app.Dockerfile"), str(ctx))
    names = cli.ok("run", "--rm", "ign:1", "ls", "/c").split()
    assert "a.txt" in names and "b.txt" not in names
    cli.ok("build", "-t", "ign:2", str(ctx))
    names = cli.ok("run", "--rm", "ign:2", "ls", "/c").split()
    assert "a.txt" not in names and "b.txt" in names


def test_label_iidfile_quiet_platform_and_syntax(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "# syntax=docker/dockerfile:1.7\n# check=skip=all\nFROM bb:1\nLABEL a=from-file b=2\n"
    )
    out = cli.ok("build", "-t", "lab:1", str(ctx))
    assert "# syntax=docker/dockerfile:1.7 is not used" in out and out.count("syntax") == 1
    iid = tmp_path / "iid"
    out = cli.ok(
        "build", "-q", "--label", "a=cli", "--label", "c=x=y", "--iidfile", str(iid), "--platform", HOST, str(ctx)
    )
    image_id = iid.read_text()
    assert out == image_id + "\n" and image_id.startswith("sha256:")  # -q: the ID alone
    assert _inspect(cli, image_id)["Config"]["Labels"] == {"a": "cli", "b": "2", "c": "x=y"}
    result = cli(
        "build", "--iidfile", str(iid), "--platform", "linux/s390x" if ARCH != "s390x" else "linux/arm64", str(ctx)
    )
    assert not iid.exists()  # no stale ID left by a failed build
    assert result.returncode == 1
    assert "is not this host's platform" in result.stderr.decode()


def test_automatic_platform_args(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "ARG TARGETARCH\n"
        "FROM --platform=$BUILDPLATFORM bb:1\n"
        "ARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG TARGETVARIANT\n"
        "ARG BUILDPLATFORM\nARG BUILDOS\nARG BUILDARCH\n"
        'RUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDOS $BUILDARCH" > /p\n'
        'RUN echo "[$BUILDVARIANT]" > /undeclared\n'
    )
    cli.ok("build", "-t", "plat:1", str(ctx))
    assert cli.ok("run", "--rm", "plat:1", "cat", "/p") == f"{HOST} linux {ARCH} [] {HOST} linux {ARCH}\n"
    assert cli.ok("run", "--rm", "plat:1", "cat", "/undeclared") == "[]\n"  # only declared ones
    (ctx / "Dockerfile").write_text(
        "FROM --platform=linux/s390x bb:1\n" if ARCH != "s390x" else "FROM --platform=linux/arm64 bb:1\n"
    )
    result = cli("build", str(ctx))
    assert result.returncode == 1
    assert "Dockerfile:1: FROM: FROM --platform" in result.stderr.decode()


def test_unknown_flag_names_build_help_and_failed_builds_exit_1(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    result = cli("build", "--no-such-flag", str(ctx))
    assert result.returncode == 125
    assert 'see "overlayctl build --help"' in result.stderr.decode()
    result = cli("image", "build", "--no-such-flag", str(ctx))
    assert result.returncode == 125
    assert 'see "overlayctl image build --help"' in result.stderr.decode()
    for dockerfile in (
        "FROM bb:1\nRUN exit 7\n",
        "FROM bb:1\nCOPY nothing /x\n",
        "FROM bb:1\nEXPOSE nope\n",
        "RUN x\n",
    ):
        (ctx / "Dockerfile").write_text(dockerfile)
        result = cli("build", str(ctx))
        err = result.stderr.decode()
        assert result.returncode == 1, (dockerfile, err)
        assert "Dockerfile:" in err and len(err.strip().splitlines()) == 1, err
    result = cli("build", str(tmp_path / "missing"))
    assert result.returncode == 1
