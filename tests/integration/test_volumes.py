"""Volumes, binds and tmpfs mounts on the real kernel: shared data, data kept
out of the upper dir, read-only binds, image VOLUMEs seeded from the image,
`rm -v`, the volume commands, symlinked targets that must stay inside the
container, and bad input that changes nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from overlayctl.util.humanize import human_size


def _build(cli, tmp_path: Path, tag: str, dockerfile: str) -> None:
    ctx = tmp_path / f"ctx-{tag.replace(':', '-')}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    cli.ok("build", "-q", "-t", tag, str(ctx))


def _volumes(cli) -> list[str]:
    return cli.ok("volume", "ls", "-q").split()


def _volume(cli, name: str) -> dict:
    return json.loads(cli.ok("volume", "inspect", name))[0]


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


@pytest.fixture
def vi(cli, bb, tmp_path: Path) -> str:
    """An image with a VOLUME whose directory holds files with an owner and modes."""
    _build(
        cli,
        tmp_path,
        "vi:1",
        "FROM bb:1\n"
        "RUN mkdir -p /vol/sub && echo seeded > /vol/a && ln /vol/a /vol/sub/hard && ln -s a /vol/link"
        " && chown -R 1000:1000 /vol && chmod 750 /vol && chmod 600 /vol/a\n"
        "VOLUME /vol\n",
    )
    return "vi:1"


def test_named_volume_outlives_containers(cli, bb):
    assert cli.ok("run", "--rm", "-v", "data:/data", "bb:1", "sh", "-c", "echo hi > /data/f") == ""
    assert cli.ok("run", "--rm", "-v", "data:/data:ro", "bb:1", "cat", "/data/f") == "hi\n"
    assert (cli.root / "volumes" / "data" / "_data" / "f").read_text() == "hi\n"
    assert _volumes(cli) == ["data"]  # --rm takes anonymous volumes only
    info = _volume(cli, "data")
    assert info["Mountpoint"] == str(cli.root / "volumes" / "data" / "_data")
    assert (info["Name"], info["Driver"], info["Scope"], info["Labels"]) == ("data", "local", "local", {})
    result = cli("run", "--rm", "-v", "data:/data:ro", "bb:1", "sh", "-c", "echo x > /data/g")
    assert result.returncode != 0 and b"Read-only file system" in result.stderr
    assert not (cli.root / "volumes" / "data" / "_data" / "g").exists()


def test_volume_data_stays_out_of_the_upper_dir(cli, bb):
    cli.ok("run", "--name", "c1", "-v", "big:/big", "bb:1", "dd", "if=/dev/zero", "of=/big/blob", "bs=1M", "count=4")
    info = json.loads(cli.ok("inspect", "-s", "c1"))[0]
    upper = Path(info["GraphDriver"]["Data"]["UpperDir"])
    assert info["SizeRw"] < 64 * 1024, info["SizeRw"]
    assert not (upper / "big" / "blob").exists()
    assert [p.name for p in upper.rglob("*") if p.is_file()] == []
    blob = cli.root / "volumes" / "big" / "_data" / "blob"
    assert blob.stat().st_size == 4 << 20
    ps = json.loads(cli.ok("ps", "-a", "-s", "--format", "json").splitlines()[0])
    assert ps["SizeRw"] == info["SizeRw"]
    assert info["Mounts"] == [
        {
            "Type": "volume",
            "Name": "big",
            "Source": str(blob.parent),
            "Destination": "/big",
            "Driver": "local",
            "Mode": "",
            "RW": True,
            "Propagation": "",
        }
    ]
    assert info["HostConfig"]["Mounts"] == [{"Type": "volume", "Source": "big", "Target": "/big", "ReadOnly": False}]


def test_bind_mounts(cli, bb, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("from host\n")
    result = cli("run", "--rm", "-v", f"{host}:/mnt:ro", "bb:1", "sh", "-c", "cat /mnt/in; touch /mnt/x")
    assert result.returncode != 0
    assert result.stdout == b"from host\n" and b"Read-only file system" in result.stderr
    assert sorted(os.listdir(host)) == ["in"]
    cli.ok("run", "--rm", "--mount", f"type=bind,source={host},target=/mnt", "bb:1", "sh", "-c", "echo out > /mnt/o")
    assert (host / "o").read_text() == "out\n"
    # A file can be bound too.
    assert cli.ok("run", "--rm", "-v", f"{host / 'in'}:/etc/motd:ro", "bb:1", "cat", "/etc/motd") == "from host\n"
    # -v creates a missing host directory, as Docker does; --mount refuses.
    made = tmp_path / "made" / "here"
    cli.ok("run", "--rm", "-v", f"{made}:/m", "bb:1", "true")
    assert made.is_dir()
    gone = tmp_path / "gone"
    result = cli("run", "--rm", "--mount", f"type=bind,source={gone},target=/m", "bb:1", "true")
    assert result.returncode == 125
    assert result.stderr.decode() == (
        f'overlayctl: invalid mount config for type "bind": bind source path does not exist: {gone}\n'
    )
    assert not gone.exists()
    assert cli.ok("ps", "-aq") == ""


def test_image_volume_seeded_from_the_image(cli, vi):
    out = cli.ok(
        "run", "--name", "keep", vi, "sh", "-c",
        'stat -c "%u:%g %a" /vol /vol/a; cat /vol/a; readlink /vol/link;'
        " stat -c %i /vol/a /vol/sub/hard; echo b > /vol/b",
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[:4] == ["1000:1000 750", "1000:1000 600", "seeded", "a"]
    assert lines[4] == lines[5]  # the hard link is still one
    (anon,) = _volumes(cli)
    assert len(anon) == 64
    assert _volume(cli, anon)["Labels"] == {"com.docker.volume.anonymous": ""}
    data = cli.root / "volumes" / anon / "_data"
    assert (data / "a").read_text() == "seeded\n" and (data / "b").read_text() == "b\n"
    assert (data.stat().st_uid, stat.S_IMODE(data.stat().st_mode)) == (1000, 0o750)
    # `rm` keeps anonymous volumes (dangling until pruned); `rm -v` takes them.
    cli.ok("rm", "keep")
    assert _volumes(cli) == [anon]
    assert cli.ok("volume", "ls", "-q", "--filter", "dangling=true").split() == [anon]
    cli.ok("run", "--name", "gone", vi, "true")
    assert len(_volumes(cli)) == 2
    cli.ok("rm", "-v", "gone")
    assert _volumes(cli) == [anon]
    out = cli.ok("volume", "prune", "-f")
    assert out.startswith(f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: ")
    assert _volumes(cli) == [] and os.listdir(cli.root / "volumes") == []
    cli.ok("run", "--rm", vi, "true")  # --rm takes its anonymous volume along
    assert _volumes(cli) == []


def test_named_volume_over_image_volume(cli, vi):
    # Named over the image's VOLUME: no anonymous one; the new volume is seeded.
    assert cli.ok("run", "--rm", "-v", "mine:/vol", vi, "cat", "/vol/a") == "seeded\n"
    assert _volumes(cli) == ["mine"]
    # An existing volume that has content is never seeded over.
    cli.ok("run", "--rm", "-v", "mine:/vol", vi, "sh", "-c", "rm /vol/a; echo kept > /vol/own")
    assert cli.ok("run", "--rm", "-v", "mine:/vol", vi, "ls", "/vol") == "link\nown\nsub\n"
    assert not (cli.root / "volumes" / "mine" / "_data" / "a").exists()
    # nocopy: the volume stays empty.
    assert cli.ok("run", "--rm", "-v", "bare:/vol:nocopy", vi, "ls", "-A", "/vol") == ""
    assert cli.ok("run", "--rm", "--mount", "type=volume,src=bare2,dst=/vol,volume-nocopy", vi, "ls", "/vol") == ""
    # An empty volume created beforehand is seeded at its first use, as Docker does.
    cli.ok("volume", "create", "pre")
    assert cli.ok("run", "--rm", "-v", "pre:/vol", vi, "cat", "/vol/a") == "seeded\n"


def test_tmpfs_mounts(cli, bb):
    out = cli.ok(
        "run", "--rm", "--tmpfs", "/scratch:size=1m,mode=1777", "bb:1", "sh", "-c",
        'echo x > /scratch/f && grep " /scratch " /proc/self/mounts && stat -c %a /scratch',
    )  # fmt: skip
    mounts_line, mode = out.splitlines()
    assert mounts_line.startswith("tmpfs /scratch tmpfs rw,nosuid,nodev")
    assert "size=1024k" in mounts_line and mode == "1777"
    out = cli.ok(
        "run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=64k,readonly", "bb:1", "sh", "-c",
        'grep " /t " /proc/self/mounts; touch /t/x || echo refused',
    )  # fmt: skip
    assert out.startswith("tmpfs /t tmpfs ro,") and "size=64k" in out and out.endswith("refused\n")
    assert _volumes(cli) == []


def test_tmpfs_size_takes_dockers_size_syntax(cli, bb):
    """--tmpfs size= reads sizes as --memory does: 1GiB once failed here only."""
    kib = {"1GiB": 1 << 20, "1gb": 1 << 20, "1g": 1 << 20, "0.5g": 1 << 19, "1e3m": 1000 << 10}
    for spelling, size in kib.items():
        out = cli.ok("run", "--rm", "--tmpfs", f"/x:size={spelling}", "bb:1", "grep", " /x ", "/proc/self/mounts")
        assert f"size={size}k" in out, (spelling, out)


def test_symlinked_target_stays_inside_the_container(cli, bb, tmp_path):
    """runc CVE-2021-30465 class: /evil -> /etc in the image must send the
    mount to the container's /etc, never the host's."""
    for name in ("x", "y"):
        if os.path.lexists(f"/etc/{name}"):
            pytest.skip(f"/etc/{name} exists on this host")
    _build(cli, tmp_path, "evil:1", "FROM bb:1\nRUN mkdir /etc/x && echo image > /etc/x/inner && ln -s /etc /evil\n")
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    before = _mount_points()
    out = cli.ok(
        "run", "--rm", "-v", "somevol:/evil/x", "-v", f"{host_dir}:/evil/y", "evil:1", "sh", "-c",
        "cat /evil/x/inner; echo c > /evil/x/w; echo d > /evil/y/w;"
        ' grep -c " /etc/x " /proc/self/mountinfo; grep -c " /etc/y " /proc/self/mountinfo',
    )  # fmt: skip
    # Seeded from the image's own /etc/x; mounted on the container's /etc/x and /etc/y.
    assert out == "image\n1\n1\n"
    assert not os.path.lexists("/etc/x") and not os.path.lexists("/etc/y")
    assert _mount_points() == before
    data = cli.root / "volumes" / "somevol" / "_data"
    assert sorted(os.listdir(data)) == ["inner", "w"]
    assert (host_dir / "w").read_text() == "d\n"


def test_volume_rm_refused_while_in_use(cli, bb):
    holder = cli.ok("create", "--name", "holder", "-v", "used:/u", "bb:1", "true").strip()
    result = cli("volume", "rm", "used")
    assert result.returncode == 125
    assert result.stderr.decode() == f"overlayctl: remove used: volume is in use - [{holder}]\n"
    live = cli.ok("run", "-d", "--name", "live", "-v", "busy:/b", "-v", "used:/u2", "bb:1", "sleep", "60").strip()
    result = cli("volume", "rm", "-f", "busy")
    assert result.returncode == 125 and f"volume is in use - [{live}]" in result.stderr.decode()
    result = cli("volume", "rm", "-f", "used")  # "holder" is not running, "live" is
    assert result.returncode == 125 and f"[{live}]" in result.stderr.decode() and holder not in result.stderr.decode()
    cli.ok("rm", "-f", "live")
    assert set(_volumes(cli)) == {"busy", "used"}
    # -f takes a volume from containers that are not running; their next start says so.
    assert cli.ok("volume", "rm", "-f", "used") == "used\n"
    result = cli("start", "-a", "holder")
    assert result.returncode == 125 and b'volume "used" (mounted at /u) no longer exists' in result.stderr
    assert cli.ok("volume", "prune", "-f") == "Total reclaimed space: 0B\n"  # busy is named
    assert _volumes(cli) == ["busy"]


def test_volume_commands(cli):
    assert cli.ok("volume", "create", "--label", "team=a", "v1") == "v1\n"
    assert cli.ok("volume", "create", "v1") == "v1\n"  # exists: no error, as Docker
    generated = cli.ok("volume", "create").strip()
    assert len(generated) == 64 and all(c in "0123456789abcdef" for c in generated)
    table = cli.ok("volume", "ls").splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split()[1] for line in table[1:]) == sorted(["v1", generated])
    rows = [json.loads(line) for line in cli.ok("volume", "ls", "--format", "json").splitlines()]
    assert {r["Name"]: r["Labels"] for r in rows} == {"v1": "team=a", generated: ""}
    assert cli.ok("volume", "ls", "-q", "--filter", "label=team=a") == "v1\n"
    assert _volume(cli, "v1")["Labels"] == {"team": "a"}
    (cli.root / "volumes" / "v1" / "_data" / "f").write_bytes(b"x" * 10000)
    # Not confirmed: nothing removed.
    result = cli("volume", "prune", "-a", input=b"n\n")
    assert result.returncode == 0 and b"WARNING!" in result.stdout
    assert len(_volumes(cli)) == 2
    du = subprocess.run(
        ["du", "-s", "-c", "--block-size=1", *(str(cli.root / "volumes" / n / "_data") for n in ("v1", generated))],
        capture_output=True,
        check=True,
    )
    total = int(du.stdout.split()[-2])  # the files and the directories, as du counts them
    out = cli.ok("volume", "prune", "-a", input=b"y\n")
    assert out.endswith(f"Deleted Volumes:\n{generated}\nv1\n\nTotal reclaimed space: {human_size(total)}\n")
    assert _volumes(cli) == []
    result = cli("volume", "rm", "nope")
    assert result.returncode == 125
    assert result.stderr.decode() == 'overlayctl: volume "nope" not found; see "overlayctl volume ls"\n'
    assert cli.ok("volume", "rm", "-f", "nope") == "nope\n"
    for bad in (["create", "-o", "type=tmpfs", "t1"], ["create", "-d", "nfs", "t2"], ["create", "../x"]):
        result = cli("volume", *bad)
        assert result.returncode == 125 and result.stderr.count(b"\n") == 1, bad
    assert _volumes(cli) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["-v", "a:b:c:d"], 'invalid volume specification "a:b:c:d"'),
        (["-v", "data:rel"], 'container path "rel" must be absolute'),
        (["-v", "rel"], 'container path "rel" must be absolute'),
        (["-v", "data:/x:bogus"], 'unknown mode "bogus"'),
        (["-v", "./dir:/x"], "give its absolute path"),
        (["--mount", "type=nfs,target=/x"], 'unknown mount type "nfs"'),
        (["--mount", "type=volume,source=data"], "target is required"),
        (["--mount", "type=bind,source=/nonexistent-ovl,target=/x"], "bind source path does not exist"),
        (["--tmpfs", "scratch"], 'container path "scratch" must be absolute'),
        (["-v", "aa:/x", "-v", "bb:/x"], "duplicate mount point: /x"),
        (["-v", "fresh:/a", "--mount", "type=bind,source=/nonexistent-ovl,target=/b"], "does not exist"),
    ],
)
def test_bad_input_changes_nothing(cli, bb, args, message):
    for verb in ("run", "create"):
        result = cli(verb, *args, "bb:1", "true")
        assert result.returncode == 125
        err = result.stderr.decode()
        assert err.startswith("overlayctl: ") and err.count("\n") == 1 and message in err, err
    assert cli.ok("ps", "-aq") == ""
    assert _volumes(cli) == []
    assert os.listdir(cli.root / "tmp") == []
    assert not (cli.root / "volumes").exists() or os.listdir(cli.root / "volumes") == []


def test_tmpfs_is_noexec_by_default_as_docker(cli, bb):
    script = "cp /bin/busybox /t/busybox && /t/busybox true && echo ran || echo refused"
    out = cli.ok("run", "--rm", "--network", "none", "--tmpfs", "/t", "bb:1", "sh", "-c", script)
    assert out.split() == ["refused"]
    out = cli.ok("run", "--rm", "--network", "none", "--tmpfs", "/t:exec", "bb:1", "sh", "-c", script)
    assert out.split() == ["ran"]
