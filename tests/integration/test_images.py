"""Import, dedupe, safe extraction, image ls/rm, and the error cases."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import subprocess
import tarfile

import pytest


def _store_dirs(cli):
    return sorted(os.listdir(cli.root / "layers")), sorted(os.listdir(cli.root / "tmp"))


def test_import_and_image_ls(cli, bb, busybox_tar):
    lines = cli.ok("image", "ls").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repo, tag, short_id = lines[1].split()[:3]
    assert (repo, tag, short_id) == ("bb", "1", bb.split(":")[1][:12])
    assert cli.ok("image", "ls", "-q").strip() == short_id
    info = json.loads(cli.ok("image", "ls", "--format", "json"))
    layer_dir = cli.root / "layers" / os.listdir(cli.root / "layers")[0]
    du = int(
        subprocess.run(["du", "-s", "--block-size=1", str(layer_dir / "diff")], capture_output=True).stdout.split()[0]
    )
    assert info["Size"] == du


def test_reimport_stores_the_layer_once(cli, bb, busybox_tar):
    layers_before, _ = _store_dirs(cli)
    gz = cli.root.parent / "bb.tar.gz"
    gz.write_bytes(gzip.compress(busybox_tar.read_bytes()))
    cli.ok("import", str(gz), "bb:2")
    xz = cli.root.parent / "bb.tar.xz"
    xz.write_bytes(lzma.compress(busybox_tar.read_bytes()))
    cli.ok("import", "-", "bb:3", input=xz.read_bytes())
    layers_after, tmp = _store_dirs(cli)
    assert layers_after == layers_before and len(layers_after) == 1
    assert tmp == []
    diff_ids = {json.loads(cli.ok("image", "inspect", t))[0]["RootFS"]["Layers"][0] for t in ("bb:1", "bb:2", "bb:3")}
    assert len(diff_ids) == 1


def test_import_zstd(cli, busybox_tar):
    zst = cli.root.parent / "bb.tar.zst"
    subprocess.run(["zstd", "-q", "-f", str(busybox_tar), "-o", str(zst)], check=True)
    cli.ok("import", str(zst), "bz:1")
    assert cli.ok("run", "--rm", "bz:1", "echo", "ok") == "ok\n"


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "entries, culprit",
    [
        ([_file("../escape")], "../escape"),
        ([_file("/abs")], "/abs"),
        ([_file("a/../../escape")], "a/../../escape"),
        ([_link("evil", "../../.."), _file("evil/passwd")], "evil"),
        ([_link("hl", "../outside", tarfile.LNKTYPE)], "hl"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "through-symlink", "hardlink-out"],
)
def test_malicious_tar_is_rejected_and_nothing_stored(cli, entries, culprit):
    before = (cli.root / "layers").exists() and _store_dirs(cli)
    result = cli("import", "-", "evil:1", input=_tar([_file("ok"), *entries]))
    assert result.returncode == 125
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert culprit.split("/")[0] in err or culprit in err
    assert _store_dirs(cli) == (before or ([], []))
    assert cli.ok("image", "ls", "-q") == ""


def test_truncated_archive_is_refused(cli, busybox_tar):
    data = gzip.compress(busybox_tar.read_bytes())[:50000]
    result = cli("import", "-", "cut:1", input=data)
    assert result.returncode == 125 and "Traceback" not in result.stderr.decode()
    assert _store_dirs(cli) == ([], [])


def test_image_rm_deletes_unshared_layers(cli, bb):
    cli.ok("import", "-", "other:1", input=_tar([_file("only-here")]))
    assert len(os.listdir(cli.root / "layers")) == 2
    out = cli.ok("image", "rm", "other:1")
    assert "Untagged: other:1" in out and out.count("Deleted:") == 2
    assert len(os.listdir(cli.root / "layers")) == 1


def test_image_rm_refused_while_a_container_uses_it(cli, bb):
    cli.ok("create", "--name", "user1", "bb:1", "true")
    result = cli("rmi", "bb:1")
    assert result.returncode == 125 and "user1" in result.stderr.decode()
    cli.ok("rm", "user1")
    cli.ok("rmi", "bb:1")
    assert os.listdir(cli.root / "layers") == []


@pytest.mark.parametrize(
    "args, code, words",
    [
        (("run", "--rm", "nope:1", "true"), 125, 'image "nope:1" not found'),
        (("run", "--rm", "BAD:ref", "true"), 125, "invalid reference format"),
        (("inspect", "ghost"), 125, "ghost"),
        (("rm", "ghost"), 125, 'container "ghost" not found'),
        (("run", "--rm", "bb:1"), 125, "no command specified"),
        (("run", "--bogus", "bb:1", "true"), 125, "unknown flag: --bogus"),
        (("run", "--rm", "-u", "alice", "bb:1", "true"), 125, "unable to find user alice"),
    ],
)
def test_errors_are_one_line(cli, bb, args, code, words):
    result = cli(*args)
    err = result.stderr.decode()
    assert result.returncode == code
    assert err.startswith("overlayctl: ") and err.count("\n") == 1, err
    assert words in err
    assert os.listdir(cli.root / "containers") == []


def test_name_in_use(cli, bb):
    cli.ok("create", "--name", "twin", "bb:1", "true")
    result = cli("create", "--name", "twin", "bb:1", "true")
    assert result.returncode == 125 and "already in use" in result.stderr.decode()
    assert len(os.listdir(cli.root / "containers")) == 1


def test_debug_shows_the_traceback(cli, bb):
    result = cli("--debug", "run", "--rm", "nope:1", "true")
    assert result.returncode == 125 and "Traceback" in result.stderr.decode()


def test_not_root_is_refused(cli, monkeypatch, capsys):
    # In-process with a faked euid: an unprivileged user could not even read
    # the interpreter of a root-owned checkout.
    from overlayctl.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for argv in (["ps"], ["run", "--rm", "bb:1", "true"], ["import", "-", "x:1"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--root", str(cli.root), "--runroot", str(cli.runroot), *argv])
        assert exit_info.value.code == 125
        assert capsys.readouterr().err == "overlayctl: overlayctl needs root: run it with sudo or as root\n"
    assert not cli.root.exists()  # refused before touching anything
