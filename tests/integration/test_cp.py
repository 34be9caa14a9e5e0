"""`cp` through the CLI as a script uses it: both ways, a tar on stdin and
stdout, running and stopped containers, Docker's path and ownership rules,
and symlinks inside the container that point out of it."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import CLI


def _tar(entries: list[tuple[str, str, str]]) -> bytes:
    """A tar of (name, kind, data-or-link-target) entries, kind file|dir|link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 4321
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data.encode()))
    return buf.getvalue()


def _names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(m.name for m in tar.getmembers())


@pytest.fixture(params=["stopped", "running"])
def ctr(request, cli, bb) -> str:
    """A container named c1, created (never started) or running."""
    if request.param == "running":
        cli.ok("run", "-d", "--name", "c1", "--network", "none", "bb:1", "sleep", "300")
    else:
        cli.ok("create", "--name", "c1", "--network", "none", "bb:1", "sleep", "300")
    return request.param


def _cat(cli: CLI, tmp_path: Path, path: str) -> str:
    """A file's content in c1, read back with cp (works stopped or running)."""
    out = tmp_path / "readback"
    cli.ok("cp", f"c1:{path}", str(out))
    try:
        return out.read_text()
    finally:
        out.unlink()


def test_cp_both_ways_with_docker_s_path_rules(cli, ctr, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A\n")
    (src / "sub" / "b.txt").write_text("B\n")
    # A file into a directory keeps its name; to a new name, it takes that name.
    cli.ok("cp", str(src / "a.txt"), "c1:/tmp")
    cli.ok("cp", str(src / "a.txt"), "c1:/tmp/renamed.txt")
    assert _cat(cli, tmp_path, "/tmp/a.txt") == _cat(cli, tmp_path, "/tmp/renamed.txt") == "A\n"
    # An existing file is overwritten.
    (tmp_path / "new.txt").write_text("new\n")
    cli.ok("cp", str(tmp_path / "new.txt"), "c1:/tmp/a.txt")
    assert _cat(cli, tmp_path, "/tmp/a.txt") == "new\n"
    # A directory into an existing one lands under its own name; to a new
    # path, the new directory gets its contents; SRC/. copies the contents.
    cli.ok("cp", str(src), "c1:/tmp")
    cli.ok("cp", str(src), "c1:/made")
    cli.ok("cp", f"{src}/.", "c1:/etc")
    assert _cat(cli, tmp_path, "/tmp/src/sub/b.txt") == "B\n"
    assert _cat(cli, tmp_path, "/made/sub/b.txt") == "B\n"
    assert _cat(cli, tmp_path, "/etc/a.txt") == "A\n"
    # Out again, with the same rules on the host.
    cli.ok("cp", "c1:/made", str(tmp_path / "out"))
    assert (tmp_path / "out" / "sub" / "b.txt").read_text() == "B\n"
    cli.ok("cp", "c1:/made", str(tmp_path / "out"))
    assert (tmp_path / "out" / "made" / "a.txt").read_text() == "A\n"
    cli.ok("cp", "c1:/made/.", str(tmp_path / "flat"))
    assert sorted(os.listdir(tmp_path / "flat")) == ["a.txt", "sub"]


@pytest.mark.parametrize(
    "src, dest, words",
    [
        ("c1:/nope", "{tmp}/x", 'could not find the file /nope in container "c1"'),
        ("{tmp}/nope", "c1:/tmp", "could not find the file {tmp}/nope"),
        ("{tmp}/dir", "c1:/bin/sh", "cannot copy a directory to a file"),
        ("{tmp}/file", "c1:/no/such/place", "no such directory: /no/such"),
        ("{tmp}/file", "c1:/newdir/", "no such directory: /newdir/"),
        ("c1:/bin/sh/", "{tmp}/x", "not a directory"),
        ("c1:/tmp", "c2:/tmp", "copying between containers is not supported"),
        ("{tmp}/file", "{tmp}/other", "must specify at least one container source"),
        ("{tmp}/file", "ghost:/tmp", 'container "ghost" not found'),
    ],
)
def test_cp_errors_are_one_line(cli, ctr, tmp_path, src, dest, words):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("f")
    tmp = str(tmp_path)
    result = cli("cp", src.format(tmp=tmp), dest.format(tmp=tmp))
    err = result.stderr.decode()
    assert result.returncode == 125 and err.startswith("overlayctl: ") and err.count("\n") == 1, err
    assert words.format(tmp=tmp) in err
    assert not (tmp_path / "x").exists()


def test_cp_tar_on_stdout_and_stdin(cli, ctr, tmp_path):
    out = cli("cp", "c1:/etc", "-").stdout
    assert "etc/passwd" in _names(out) and "etc" in _names(out)
    assert "passwd" in _names(cli("cp", "c1:/etc/.", "-").stdout)
    assert _names(cli("cp", "c1:/bin/sh", "-").stdout) == ["sh"]
    tar = _tar([("in", "dir", ""), ("in/f.txt", "file", "from a tar\n")])
    cli.ok("cp", "-", "c1:/tmp", input=tar)
    assert _cat(cli, tmp_path, "/tmp/in/f.txt") == "from a tar\n"
    result = cli("cp", "-", "c1:/bin/sh", input=tar)
    assert result.returncode == 125 and "is not a directory" in result.stderr.decode()


def test_ownership_into_and_out_of_the_container(cli, ctr, tmp_path):
    host = tmp_path / "owned"
    host.write_text("o\n")
    os.chown(host, 1234, 2345)
    os.chmod(host, 0o604)
    cli.ok("cp", str(host), "c1:/root-owned")
    cli.ok("cp", "-a", str(host), "c1:/kept")
    members = {}
    for name in ("root-owned", "kept"):
        with tarfile.open(fileobj=io.BytesIO(cli("cp", f"c1:/{name}", "-").stdout)) as tar:
            m = tar.getmembers()[0]
            members[name] = (m.uid, m.gid, m.mode)
    # Into the container: root's unless -a; modes kept either way.
    assert members == {"root-owned": (0, 0, 0o604), "kept": (1234, 2345, 0o604)}
    # Out of it: the caller's unless -a.
    cli.ok("cp", "c1:/kept", str(tmp_path / "mine"))
    cli.ok("cp", "-a", "c1:/kept", str(tmp_path / "theirs"))
    st, kept = (tmp_path / "mine").stat(), (tmp_path / "theirs").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (os.getuid(), os.getgid(), 0o604)
    assert (kept.st_uid, kept.st_gid) == (1234, 2345)
    # A tar on stdin: root's too, unless -a.
    cli.ok("cp", "-", "c1:/tmp", input=_tar([("t.txt", "file", "t")]))
    with tarfile.open(fileobj=io.BytesIO(cli("cp", "c1:/tmp/t.txt", "-").stdout)) as tar:
        assert (tar.getmembers()[0].uid, tar.getmembers()[0].mode) == (0, 0o640)


def test_follow_link(cli, ctr, tmp_path):
    cli.ok(
        "cp",
        "-",
        "c1:/",
        input=_tar(
            [
                ("data", "dir", ""),
                ("data/f", "file", "target\n"),
                ("flink", "link", "/data/f"),
                ("dlink", "link", "data"),
            ]
        ),
    )
    cli.ok("cp", "c1:/flink", str(tmp_path / "as-link"))
    assert os.readlink(tmp_path / "as-link") == "/data/f"
    cli.ok("cp", "-L", "c1:/flink", str(tmp_path / "as-file"))
    assert (tmp_path / "as-file").read_text() == "target\n"
    cli.ok("cp", "-L", "c1:/dlink", str(tmp_path / "as-dir"))
    assert (tmp_path / "as-dir" / "f").read_text() == "target\n"
    # A symlink on the way (not the last component) is followed inside the container.
    assert _cat(cli, tmp_path, "/dlink/f") == "target\n"


def test_running_container_sees_the_copy_and_its_volume_is_copied(cli, bb, tmp_path):
    cli.ok("run", "-d", "--name", "c1", "--network", "none", "-v", "cpvol:/data", "bb:1", "sleep", "300")
    (tmp_path / "f").write_text("live\n")
    cli.ok("cp", str(tmp_path / "f"), "c1:/data/")
    assert cli.ok("exec", "c1", "cat", "/data/f") == "live\n"
    cli.ok("exec", "c1", "sh", "-c", "echo written-inside > /data/g")
    cli.ok("cp", "c1:/data/g", str(tmp_path / "g"))
    assert (tmp_path / "g").read_text() == "written-inside\n"
    cli.ok("rm", "-f", "c1")
    cli.ok("volume", "rm", "cpvol")


def test_exited_container(cli, bb, tmp_path):
    cli.ok("run", "--name", "c1", "--network", "none", "bb:1", "sh", "-c", "echo last words > /out")
    cli.ok("cp", "c1:/out", str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "last words\n"
    cli.ok("cp", str(tmp_path / "out"), "c1:/back")
    assert cli.ok("start", "-a", "c1") == ""
    assert _cat(cli, tmp_path, "/back") == "last words\n"


# -- symlinks that point out of the container ---------------------------------------------


def test_symlinks_pointing_out_never_reach_the_host(cli, ctr, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    before = sorted(os.listdir(host))
    climb = "../" * 12
    cli.ok(
        "cp",
        "-",
        "c1:/",
        input=_tar(
            [
                ("abs", "link", str(host)),  # an absolute host path
                ("rel", "link", climb + str(host).lstrip("/")),  # ../../.. past the root
                ("abs-secret", "link", f"{host}/secret"),
                ("top", "link", "/"),
            ]
        ),
    )
    for src in ("c1:/abs/secret", "c1:/rel/secret", f"c1:/top{host}/secret"):
        result = cli("cp", src, str(tmp_path / "got"))
        assert result.returncode == 125 and "could not find the file" in result.stderr.decode(), src
        assert not (tmp_path / "got").exists()
    for args in (("-L", "c1:/abs-secret", "-"), ("-L", "c1:/abs", "-")):
        result = cli("cp", *args)
        assert result.returncode == 125 and b"host secret" not in result.stdout
    # Destinations through the same links: the container's tree or nothing.
    (tmp_path / "payload").write_text("pwned\n")
    for dest in ("c1:/abs/", "c1:/abs/pwned", "c1:/rel/pwned", f"c1:/top{host}/pwned"):
        result = cli("cp", str(tmp_path / "payload"), dest)
        assert result.returncode == 125, dest
    assert sorted(os.listdir(host)) == before and (host / "secret").read_text() == "host secret\n"
    # Where the container has that path itself, that is what is used.
    cli.ok(
        "cp",
        "-",
        "c1:/",
        input=_tar(
            [(str(host).lstrip("/"), "dir", ""), (f"{str(host).lstrip('/')}/secret", "file", "container's own\n")]
        ),
    )
    assert _cat(cli, tmp_path, "/abs/secret") == "container's own\n"
    assert _cat(cli, tmp_path, "/rel/secret") == "container's own\n"
    # Without -L the link itself comes out (as Docker's), never what it names on the host.
    assert _names(cli("cp", "c1:/abs-secret", "-").stdout) == ["abs-secret"]
    cli.ok("cp", "-L", "c1:/abs-secret", str(tmp_path / "followed"))
    assert (tmp_path / "followed").read_text() == "container's own\n"
    cli.ok("cp", str(tmp_path / "payload"), "c1:/abs/pwned")
    assert _cat(cli, tmp_path, f"{host}/pwned") == "pwned\n"
    assert sorted(os.listdir(host)) == before and (host / "secret").read_text() == "host secret\n"


def test_a_tar_on_stdin_cannot_write_through_its_own_symlinks(cli, ctr, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    for entries in (
        [("evil", "link", str(host)), ("evil/pwned", "file", "x")],
        [("evil", "link", "../" * 12 + str(host).lstrip("/")), ("evil/pwned", "file", "x")],
        [("../../../../../../../../" + str(host).lstrip("/") + "/pwned", "file", "x")],
    ):
        result = cli("cp", "-", "c1:/tmp", input=_tar(entries))
        assert result.returncode == 125, entries
        assert os.listdir(host) == []


def test_stopped_container_s_volumes_are_copied_where_it_sees_them(cli, bb, tmp_path):
    cli.ok(
        "create",
        "--name",
        "c1",
        "--network",
        "none",
        "-v",
        "cpvol:/data",
        "-v",
        "rovol:/ro:ro",
        "-v",
        f"{tmp_path}/bound:/bound",
        "bb:1",
        "sleep",
        "300",
    )
    (tmp_path / "bound").mkdir(exist_ok=True)
    (tmp_path / "f").write_text("into the volume\n")
    cli.ok("cp", str(tmp_path / "f"), "c1:/data/")
    cli.ok("cp", str(tmp_path / "f"), "c1:/bound/")
    assert (tmp_path / "bound" / "f").read_text() == "into the volume\n"
    result = cli("cp", str(tmp_path / "f"), "c1:/ro/")
    assert result.returncode == 125 and "Read-only file system" in result.stderr.decode()
    cli.ok("rm", "c1")
    # In the volume, not in the container's own layer.
    out = cli.ok("run", "--rm", "--network", "none", "-v", "cpvol:/v", "bb:1", "cat", "/v/f")
    assert out == "into the volume\n"
    cli.ok("create", "--name", "c2", "--network", "none", "-v", "cpvol:/other", "bb:1", "true")
    cli.ok("cp", "c2:/other/f", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "into the volume\n"
    cli.ok("rm", "c2")
    cli.ok("volume", "rm", "cpvol", "rovol")


def test_a_running_container_s_kernel_filesystems_are_left_alone(cli, bb, tmp_path):
    """Its /proc holds /proc/PID/mem of its processes, its /sys the kernel's
    knobs: as Docker's cp, never read or written."""
    cli.ok("run", "-d", "--name", "c1", "--network", "none", "bb:1", "sleep", "300")
    for src in ("c1:/proc/1/environ", "c1:/proc", "c1:/sys/kernel"):
        result = cli("cp", src, str(tmp_path / "x"))
        assert result.returncode == 125 and "kernel filesystem" in result.stderr.decode(), src
    (tmp_path / "f").write_text("x")
    for dest in ("c1:/proc/", "c1:/sys/kernel/"):
        result = cli("cp", str(tmp_path / "f"), dest)
        assert result.returncode == 125 and "kernel filesystem" in result.stderr.decode(), dest
    result = cli("cp", "-", "c1:/", input=_tar([("proc/1/comm", "file", "evil")]))
    assert result.returncode == 125 and "kernel filesystem" in result.stderr.decode()
    names = _names(cli("cp", "c1:/", "-").stdout)
    assert "bin/sh" in names and not [n for n in names if n.split("/")[0] in ("proc", "sys")]
