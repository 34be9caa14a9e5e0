"""save and load: round trips across stores, the archive formats of podman
and Docker, bad archives that must leave the store as it was, and podman
itself loading what we save and saving what we load."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import CLI, REPO

TABLES = ("layers", "images", "image_layers", "tags", "layer_blobs", "image_manifests")


# -- helpers -------------------------------------------------------------------


def _second_store(cli: CLI) -> CLI:
    return CLI(cli.root.parent / "root2", cli.root.parent / "run2")


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer_tar(entries: list[tuple[str, bytes]]) -> bytes:
    return _tar(dict(entries))


def oci_archive(
    layers: list[bytes],
    name: str = "evil:1",
    layer_type: str | None = None,
    diff_ids: list[str] | None = None,
    wire: Callable[[bytes], bytes] = lambda gz: gz,
) -> bytes:
    """An OCI archive of an image with these uncompressed layers (gzip on the
    wire, each blob passed through `wire` and described as what it gives)."""
    blobs: dict[str, bytes] = {}
    descs = []
    for tar in layers:
        gz = wire(gzip.compress(tar, mtime=0))
        blobs[_digest(gz)] = gz
        descs.append(
            {
                "mediaType": layer_type or "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": _digest(gz),
                "size": len(gz),
            }
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids or [_digest(t) for t in layers]},
        }
    ).encode()
    blobs[_digest(config)] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": descs,
        }
    ).encode()
    blobs[_digest(manifest)] = manifest
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _digest(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": name},
            }
        ],
    }
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    files.update({"blobs/sha256/" + d.split(":")[1]: b for d, b in blobs.items()})
    files["index.json"] = json.dumps(index).encode()
    return _tar(files)


def store_state(cli: CLI) -> dict:
    """Everything a failed load must leave as it was."""
    state: dict = {}
    for sub in ("layers", "blobs", "tmp", "leases"):
        top = cli.root / sub
        state[sub] = sorted(str(p.relative_to(top)) for p in top.rglob("*")) if top.exists() else []
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        for table in TABLES:
            state[table] = sorted(map(tuple, conn.execute(f"SELECT * FROM {table}").fetchall()))
    finally:
        conn.close()
    return state


def _inspect(cli: CLI, image: str) -> dict:
    return json.loads(cli.ok("image", "inspect", image))[0]


@pytest.fixture
def built(cli: CLI, bb: str, tmp_path: Path) -> str:
    """A three-layer image on bb:1: files, then a whiteout and an opaque directory."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM bb:1\n"
        "RUN mkdir -p /d/sub && echo a > /d/a && echo b > /f && echo keep > /d/sub/k\n"
        "RUN rm /f /bin/vi && rm -rf /d && mkdir /d && echo c > /d/c\n"
        'CMD ["/bin/sh"]\n'
    )
    cli.ok("build", "-q", "--timestamp", "1700000000", "-t", "multi:1", str(ctx))
    return _inspect(cli, "multi:1")["Id"]


# -- round trips ------------------------------------------------------------------


def test_round_trip_across_stores(cli, built, tmp_path):
    first = tmp_path / "first.tar"
    cli.ok("save", "-o", str(first), "multi:1")
    other = _second_store(cli)
    out = other.ok("load", "-i", str(first))
    assert out.splitlines()[-1] == "Loaded image: multi:1"
    assert sum(line.endswith(": Loading layer") for line in out.splitlines()) == 3
    ours, theirs = _inspect(cli, "multi:1"), _inspect(other, "multi:1")
    assert theirs["Id"] == ours["Id"] == built
    assert theirs["RootFS"]["Layers"] == ours["RootFS"]["Layers"]
    # The whiteouts and the opaque directory came through.
    script = "test ! -e /f && test ! -e /bin/vi && test ! -e /d/a && test ! -e /d/sub && cat /d/c"
    assert other.ok("run", "--rm", "--network", "none", "multi:1", "sh", "-c", script) == "c\n"
    # Saved again from the second store: the same blobs, byte for byte, and
    # indeed the same archive.
    second = tmp_path / "second.tar"
    other.ok("save", "-o", str(second), "multi:1")
    a, b = _members(first.read_bytes()), _members(second.read_bytes())
    assert {k: _digest(v) for k, v in a.items()} == {k: _digest(v) for k, v in b.items()}
    assert first.read_bytes() == second.read_bytes()
    assert os.listdir(other.root / "tmp") == []


def test_import_keeps_a_tar_split_that_gives_the_tar_back(cli, busybox_tar, tmp_path):
    cli.ok("import", str(busybox_tar), "plain:1")
    # Not the whole tar again beside the layer: its headers and padding.
    assert not [p for p in (cli.root / "blobs").rglob("*") if p.is_file()]
    (split,) = (cli.root / "layers").glob("*/tar-split")
    assert split.stat().st_size < busybox_tar.stat().st_size / 20
    archive = tmp_path / "plain.tar"
    cli.ok("save", "--compression", "none", "-o", str(archive), "plain:1")
    assert busybox_tar.read_bytes() in _members(archive.read_bytes()).values()  # the very tar
    other = _second_store(cli)
    other.ok("load", "-i", str(archive))
    assert _inspect(other, "plain:1")["Id"] == _inspect(cli, "plain:1")["Id"]


def test_save_says_when_an_imported_layers_file_changed(cli, busybox_tar, tmp_path):
    cli.ok("import", str(busybox_tar), "plain:1")
    (busybox,) = (cli.root / "layers").glob("*/diff/bin/busybox")
    busybox.write_bytes(b"not busybox any more")
    result = cli("save", "-o", str(tmp_path / "out.tar"), "plain:1")
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "cannot export layer sha256:" in err and "re-import the image" in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.tar").exists()


def test_load_twice_says_already_exists(cli, built, tmp_path):
    archive = tmp_path / "m.tar"
    cli.ok("save", "-o", str(archive), "multi:1")
    other = _second_store(cli)
    other.ok("load", "-i", str(archive))
    before = store_state(other)
    lines = other.ok("load", input=archive.read_bytes()).splitlines()
    assert [line.split(": ", 1)[1] for line in lines[:-1]] == ["Already exists"] * 3
    assert lines[-1] == "Loaded image: multi:1"
    assert store_state(other) == before


def test_rmi_removes_the_blobs_of_the_layers_it_removes(cli, built, tmp_path):
    archive = tmp_path / "m.tar"
    cli.ok("save", "-o", str(archive), "multi:1")
    other = _second_store(cli)
    other.ok("images")  # the store, made
    empty = store_state(other)
    other.ok("load", "-q", "-i", str(archive))
    assert len(store_state(other)["blobs"]) == 1 + 3  # sha256/ and the 3 layer tars
    other.ok("rmi", "multi:1")
    after = store_state(other)
    assert after.pop("blobs") == ["sha256"]
    assert after == {k: v for k, v in empty.items() if k != "blobs"}


def test_load_quiet(cli, bb, tmp_path):
    archive = tmp_path / "bb.tar"
    cli.ok("save", "-o", str(archive), "bb:1")
    other = _second_store(cli)
    assert other.ok("load", "-q", "-i", str(archive)) == "Loaded image: bb:1\n"


def test_save_to_stdout_and_docker_archive(cli, built, tmp_path):
    data = cli("save", "--format", "docker-archive", "multi:1", "bb:1").stdout
    files = _members(data)
    manifest = json.loads(files["manifest.json"])
    assert [m["RepoTags"] for m in manifest] == [["multi:1"], ["bb:1"]]
    # Layers are the plain tars: their digests are the diff_ids.
    layers = _inspect(cli, "multi:1")["RootFS"]["Layers"]
    assert [_digest(files[p]) for p in manifest[0]["Layers"]] == layers
    other = _second_store(cli)
    other.ok("load", input=data)
    assert _inspect(other, "multi:1")["Id"] == built
    assert other.ok("run", "--rm", "--network", "none", "multi:1", "cat", "/d/c") == "c\n"


@pytest.mark.parametrize("compression, magic", [("none", b""), ("gzip", b"\x1f\x8b"), ("zstd", b"\x28\xb5\x2f\xfd")])
def test_compression_choices(cli, built, tmp_path, compression, magic):
    archive = tmp_path / "c.tar"
    cli.ok("save", "--compression", compression, "-o", str(archive), "multi:1")
    files = _members(archive.read_bytes())
    index = json.loads(files["index.json"])
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]])
    suffix = {"none": "tar", "gzip": "tar+gzip", "zstd": "tar+zstd"}[compression]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1." + suffix}
    for layer in manifest["layers"]:
        assert files["blobs/sha256/" + layer["digest"].split(":")[1]].startswith(magic)
    other = _second_store(cli)
    other.ok("load", "-i", str(archive))
    assert _inspect(other, "multi:1")["Id"] == built


# -- bad archives ---------------------------------------------------------------------


def _good_layer() -> bytes:
    return _layer_tar([("new-file", b"hello\n")])


def _corrupt_blob(data: bytes) -> bytes:
    files = _members(data)
    name = max((n for n in files if n.startswith("blobs/")), key=lambda n: len(files[n]))
    blob = bytearray(files[name])
    blob[len(blob) // 2] ^= 0xFF
    files[name] = bytes(blob)
    return _tar(files)


def _drop_layer_blob(data: bytes) -> bytes:
    files = _members(data)
    name = max((n for n in files if n.startswith("blobs/")), key=lambda n: len(files[n]))
    del files[name]
    return _tar(files)


BAD = {
    "truncated": (lambda: oci_archive([_good_layer(), _layer_tar([("x", b"x" * 100000)])])[:-30000], "truncated"),
    "digest mismatch": (lambda: _corrupt_blob(oci_archive([_good_layer()])), "does not match its digest"),
    "missing blob": (lambda: _drop_layer_blob(oci_archive([_good_layer()])), "missing from the archive"),
    "unsupported media type": (
        lambda: oci_archive([_good_layer()], layer_type="application/vnd.oci.image.layer.v1.tar+bzip2"),
        "unsupported layer media type",
    ),
    "escaping entry": (lambda: oci_archive([_good_layer(), _layer_tar([("../escape", b"x")])]), "layer rejected"),
    "whiteout of ..": (lambda: oci_archive([_good_layer(), _layer_tar([("a/.wh...", b"")])]), "layer rejected"),
    # Blobs that match their digests but not gzip: a worker's gunzip fails.
    "corrupt gzip": (
        lambda: oci_archive(
            [_good_layer(), _layer_tar([("big", b"y" * 300000)]), _layer_tar([("z", b"z")])],
            wire=lambda gz: gz[:-12] if len(gz) > 200 else gz,
        ),
        "corrupt gzip data",
    ),
    "not a tar": (lambda: b"hello, this is not an archive" * 100, "not a valid image archive"),
    "no index": (lambda: _tar({"foo": b"bar"}), "not an image archive"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_archive_changes_nothing(cli, bb, tmp_path, case):
    make, message = BAD[case]
    before = store_state(cli)
    path = tmp_path / "bad.tar"
    path.write_bytes(make())
    result = cli("load", "-i", str(path))
    err = result.stderr.decode()
    assert result.returncode == 125, err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert store_state(cli) == before
    assert not (tmp_path / "escape").exists()


def test_layer_digest_must_match_config(cli, bb, tmp_path):
    data = _members(oci_archive([_good_layer()]))
    # A config that names another diff_id for the (valid) layer blob.
    index = json.loads(data["index.json"])
    manifest = json.loads(data["blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]])
    config = json.loads(data["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    config["rootfs"]["diff_ids"] = [_digest(b"something else")]
    raw = json.dumps(config).encode()
    manifest["config"].update(digest=_digest(raw), size=len(raw))
    mraw = json.dumps(manifest).encode()
    index["manifests"][0].update(digest=_digest(mraw), size=len(mraw))
    files = {"oci-layout": data["oci-layout"], "index.json": json.dumps(index).encode()}
    for blob in (raw, mraw, *(v for k, v in data.items() if k.startswith("blobs/") and v[:2] == b"\x1f\x8b")):
        files["blobs/sha256/" + _digest(blob).split(":")[1]] = blob
    before = store_state(cli)
    path = tmp_path / "lie.tar"
    path.write_bytes(_tar(files))
    result = cli("load", "-i", str(path))
    assert result.returncode == 125
    assert "does not match its image config" in result.stderr.decode()
    assert store_state(cli) == before


def test_save_of_an_unknown_image_leaves_no_file(cli, bb, tmp_path):
    result = cli("save", "-o", str(tmp_path / "x.tar"), "nope:1")
    assert result.returncode == 125 and b'"nope:1" not found' in result.stderr
    assert not list(tmp_path.glob("x.tar*"))


# -- podman, the real peer -----------------------------------------------------------------


class Podman:
    """podman with a private store and peers.sh's configuration."""

    def __init__(self, top: Path, env: dict[str, str]) -> None:
        self.top = top
        self.env = env
        self.base = [
            shutil.which("podman") or "podman",
            "--root",
            str(top / "root"),
            "--runroot",
            str(top / "run"),
            "--storage-driver",
            "overlay",
        ]

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run([*self.base, *args], capture_output=True, env=self.env, timeout=timeout)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/setup.sh --test installs it)")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    top = tmp_path_factory.mktemp("podman")
    out = subprocess.run(
        ["sh", str(REPO / "scripts" / "bench" / "peers.sh"), "--no-install", str(top / "peers")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        if line.startswith("export CONTAINERS_CONF="):
            env["CONTAINERS_CONF"] = line.split("=", 1)[1].strip("'")
    p = Podman(top, env)
    yield p
    p("rm", "-a", "-f", check=False)
    p("rmi", "-a", "-f", check=False)
    mounts = [line for line in open("/proc/self/mountinfo") if str(top) in line]
    for line in mounts:
        subprocess.run(["umount", "-l", line.split()[4]], capture_output=True)
    shutil.rmtree(top, ignore_errors=True)


def test_podman_loads_and_runs_our_oci_archive(cli, built, tmp_path, podman):
    archive = tmp_path / "ours.tar"
    cli.ok("save", "-o", str(archive), "multi:1")
    out = podman("load", "-i", str(archive)).stdout.decode()
    assert "multi:1" in out
    try:
        listed = podman("images", "--no-trunc", "--format", "{{.ID}}", "multi:1").stdout.decode().split()
        assert "sha256:" + listed[0].removeprefix("sha256:") == built
        run = podman("run", "--rm", "--network=none", "multi:1", "sh", "-c", "test ! -e /f && cat /d/c")
        assert run.stdout == b"c\n"
    finally:
        podman("rmi", "-f", "multi:1", check=False)


def test_podman_loads_our_docker_archive(cli, built, tmp_path, podman):
    archive = tmp_path / "ours-docker.tar"
    cli.ok("save", "--format", "docker-archive", "-o", str(archive), "multi:1")
    podman("load", "-i", str(archive))
    try:
        listed = podman("images", "--no-trunc", "--format", "{{.ID}}", "multi:1").stdout.decode().split()
        assert "sha256:" + listed[0].removeprefix("sha256:") == built
        assert podman("run", "--rm", "--network=none", "multi:1", "/bin/true").returncode == 0
    finally:
        podman("rmi", "-f", "multi:1", check=False)


@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_we_load_and_run_podman_archives(cli, busybox_tar, tmp_path, podman, fmt):
    ref = f"localhost/octl-podman-{fmt}:1"
    podman("import", "-q", str(busybox_tar), ref)
    archive = tmp_path / "theirs.tar"
    try:
        podman("save", "--format", fmt, "-o", str(archive), ref)
        podman_id = podman("images", "--no-trunc", "--format", "{{.ID}}", ref).stdout.decode().split()[0]
    finally:
        podman("rmi", "-f", ref, check=False)
    out = cli.ok("load", "-i", str(archive))
    assert out.splitlines()[-1] == f"Loaded image: {ref}"
    assert _inspect(cli, ref)["Id"].removeprefix("sha256:") == podman_id.removeprefix("sha256:")
    assert cli.ok("run", "--rm", "--network", "none", ref, "echo", "ok") == "ok\n"


def test_same_build_in_two_stores_saves_the_same_archive(cli, built, tmp_path):
    # Layers made here are compressed deterministically: the same build
    # anywhere gives the same blobs, manifest and archive.
    other = _second_store(cli)
    # The same base image (an import would differ in its creation time).
    other.ok("load", input=cli("save", "bb:1").stdout)
    ctx = tmp_path / "ctx"
    other.ok("build", "-q", "--timestamp", "1700000000", "-t", "multi:1", str(ctx))
    mine, theirs = tmp_path / "mine.tar", tmp_path / "theirs.tar"
    cli.ok("save", "-o", str(mine), "multi:1")
    other.ok("save", "-o", str(theirs), "multi:1")
    a, b = _members(mine.read_bytes()), _members(theirs.read_bytes())
    assert _inspect(cli, "multi:1")["RootFS"] == _inspect(other, "multi:1")["RootFS"]
    assert sorted(a) == sorted(b)
    assert mine.read_bytes() == theirs.read_bytes()


def test_docker_archive_with_a_bad_name_stores_nothing(cli, bb, tmp_path):
    data = _members(cli("save", "--format", "docker-archive", "bb:1").stdout)
    manifest = json.loads(data["manifest.json"])
    manifest[0]["RepoTags"] = ["Not/Valid:1"]
    data["manifest.json"] = json.dumps(manifest).encode()
    other = _second_store(cli)
    other.ok("images")
    before = store_state(other)
    result = other("load", input=_tar(data))
    assert result.returncode == 125 and b"invalid reference format" in result.stderr
    assert store_state(other) == before


def test_a_blob_that_lies_about_a_stored_layer_is_refused(cli, bb, tmp_path):
    # The config names a layer the store has; the blob is another layer.
    # Nothing is unpacked, but the blob would be kept and sent out by the
    # next save as that layer: it is checked all the same.
    stored = _inspect(cli, "bb:1")["RootFS"]["Layers"][0]
    before = store_state(cli)
    path = tmp_path / "lie.tar"
    path.write_bytes(oci_archive([_good_layer()], diff_ids=[stored]))
    result = cli("load", "-i", str(path))
    assert result.returncode == 125 and b"does not match its image config" in result.stderr
    assert store_state(cli) == before


def _du_without_catalog(root: Path) -> int:
    """`du` of the store but the catalog's files (SQLite reuses its pages
    as it likes)."""
    out = subprocess.run(
        ["du", "-s", "--block-size=1", "--exclude=catalog.db*", str(root)], capture_output=True, check=True, text=True
    )
    return int(out.stdout.split()[0])


def test_saves_do_not_grow_the_store_for_good(cli, built, tmp_path):
    first = tmp_path / "first.tar"
    cli.ok("save", "-o", str(first), "multi:1")
    cli.ok("system", "gc")
    before = _du_without_catalog(cli.root)
    blobs = cli.root / "blobs" / "sha256"
    assert os.listdir(blobs) == []
    for i, args in enumerate((("--format", "docker-archive"), ("--compression", "zstd"), ())):
        cli.ok("save", "-o", str(tmp_path / f"{i}.tar"), *args, "multi:1")
    assert _du_without_catalog(cli.root) > before  # the tars saves made are kept ...
    out = cli.ok("system", "gc")
    assert out.count("exported blob") == 9, out  # 3 layers, 3 ways: gzip, zstd, plain tar
    # ... until gc, which gives the store back its size.
    assert os.listdir(blobs) == []
    assert _du_without_catalog(cli.root) == before
    # They are made again byte for byte: the same image, the same archive.
    again = tmp_path / "again.tar"
    cli.ok("save", "-o", str(again), "multi:1")
    assert again.read_bytes() == first.read_bytes()
    assert cli.ok("system", "fsck") == "no problems found\n"
