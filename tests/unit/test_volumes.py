"""Volumes without the kernel: option parsing, the stored shape, the plan
handed to the runtime, the catalog's bookkeeping and the seeding copy."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from overlayctl.container.model import ContainerConfig, HostConfig
from overlayctl.engine import volumes as volume_verbs
from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.paths import Paths
from overlayctl.store import Store
from overlayctl.store.volumes import ANONYMOUS_LABEL
from overlayctl.volumes import mounts as volumes
from overlayctl.volumes.copy import copy_tree
from overlayctl.volumes.options import (
    MountRequest,
    parse_mount_option,
    parse_tmpfs_option,
    parse_volume_option,
)

# Parsing.


@pytest.mark.parametrize(
    "text, kind, source, target, readonly, nocopy",
    [
        ("data:/data", "volume", "data", "/data", False, False),
        ("data:/data:ro", "volume", "data", "/data", True, False),
        ("data:/data:rw,nocopy", "volume", "data", "/data", False, True),
        ("data:/data:z", "volume", "data", "/data", False, False),
        ("/srv/www:/var/www:ro", "bind", "/srv/www", "/var/www", True, False),
        ("/srv//www/:/a/../b/", "bind", "/srv/www", "/b", False, False),
        ("/cache", "volume", "", "/cache", False, False),
        ("my.vol_1-x:/x:rprivate", "volume", "my.vol_1-x", "/x", False, False),
    ],
)
def test_parse_volume_option(text, kind, source, target, readonly, nocopy):
    request = parse_volume_option(text)
    assert (request.kind, request.source, request.target, request.readonly, request.nocopy) == (
        kind,
        source,
        target,
        readonly,
        nocopy,
    )
    assert request.create_source == (kind == "bind")  # -v creates a missing host dir, as Docker


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "use NAME:/path"),
        ("a:b:c:d", "use NAME:/path"),
        ("data:", "use NAME:/path"),
        (":/x", "use NAME:/path"),
        ("data", 'container path "data" must be absolute'),
        ("data:rel/path", "must be absolute"),
        ("data:/", 'cannot mount over the container\'s root "/"'),
        ("data:/x/..", "cannot mount over"),
        ("data:/x:bogus", 'unknown mode "bogus"'),
        ("data:/x:ro,rw", "more than one rw option"),
        ("data:/x:rshared", 'propagation "rshared" is not supported'),
        ("/host:/x:nocopy", "nocopy applies to volumes"),
        ("./rel:/x", "give its absolute path"),
        ("x:/x", 'invalid volume name "x"'),
        ("-bad:/x", 'invalid volume name "-bad"'),
        ("bad name:/x", 'invalid volume name "bad name"'),
    ],
)
def test_parse_volume_option_rejects(text, message):
    with pytest.raises(InvalidArgumentError) as info:
        parse_volume_option(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_mount_option():
    r = parse_mount_option("type=bind,source=/srv,target=/mnt,readonly")
    assert (r.kind, r.source, r.target, r.readonly, r.create_source) == ("bind", "/srv", "/mnt", True, False)
    r = parse_mount_option("type=volume,src=data,dst=/data,volume-nocopy,volume-label=a=b,ro=false")
    assert (r.kind, r.source, r.target, r.readonly, r.nocopy, r.labels) == (
        "volume",
        "data",
        "/data",
        False,
        True,
        {"a": "b"},
    )
    r = parse_mount_option("target=/anon")  # type defaults to volume; no source: anonymous
    assert (r.kind, r.source, r.anonymous) == ("volume", "", True)
    r = parse_mount_option("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770")
    assert (r.kind, r.tmpfs_size, r.tmpfs_mode) == ("tmpfs", 64 << 20, 0o1770)
    assert r.tmpfs_data() == f"size={64 << 20},mode=1770"
    r = parse_mount_option('type=bind,"source=/a,b",target=/c')  # CSV quoting keeps the comma
    assert r.source == "/a,b"


@pytest.mark.parametrize(
    "text, message",
    [
        ("type=nfs,target=/x", 'unknown mount type "nfs"'),
        ("type=volume,source=data", "target is required"),
        ("type=volume,source=data,target=rel", "must be absolute"),
        ("type=bind,target=/x", "needs source=/host/path"),
        ("type=bind,source=rel,target=/x", 'host path "rel" must be absolute'),
        ("type=tmpfs,source=x,target=/x", "takes no source"),
        ("type=volume,target=/x,tmpfs-size=1m", "cannot be used with type=volume"),
        ("type=bind,source=/a,target=/x,volume-nocopy", "cannot be used with type=bind"),
        ("type=tmpfs,target=/x,tmpfs-size=lots", "invalid size: 'lots'"),
        ("type=tmpfs,target=/x,tmpfs-size=0", 'bad size "0"'),
        ("type=tmpfs,target=/x,tmpfs-mode=999", "octal"),
        ("type=volume,target=/x,volume-driver=nfs", 'driver "nfs" is not supported'),
        ("type=volume,target=/x,readonly=maybe", "true or false"),
        ("type=volume,target=/x,colour=red", 'unknown key "colour"'),
        ("type=volume,target", 'field "target" must be a key=value pair'),
    ],
)
def test_parse_mount_option_rejects(text, message):
    with pytest.raises(InvalidArgumentError) as info:
        parse_mount_option(text)
    assert message in str(info.value)


def test_parse_tmpfs_option():
    r = parse_tmpfs_option("/scratch")
    assert (r.kind, r.target, r.readonly, r.tmpfs_data()) == ("tmpfs", "/scratch", False, "noexec")
    r = parse_tmpfs_option("/run:size=1g,mode=755,uid=1000,ro,nosuid,nodev")
    assert r.readonly
    assert r.tmpfs_data() == f"size={1 << 30},mode=755,uid=1000,noexec"
    assert parse_tmpfs_option("/t:size=10%,exec").tmpfs_data() == "size=10%,exec"
    for bad, message in [
        ("rel", "must be absolute"),
        ("/t:suid", '"suid" option is not supported'),
        ("/t:huge=always", 'unknown option "huge=always"'),
        ("/t:uid=bob", 'uid takes a number, not "bob"'),
        ("/t:size=x%", 'bad size "x%"'),
    ]:
        with pytest.raises(InvalidArgumentError) as info:
            parse_tmpfs_option(bad)
        assert message in str(info.value)


def test_stored_shape_round_trips():
    for request in [
        parse_volume_option("data:/data:ro,nocopy"),
        parse_volume_option("/srv:/srv"),
        parse_mount_option("type=volume,target=/x,volume-label=k=v"),
        parse_tmpfs_option("/t:size=1m,mode=1777,uid=5"),
    ]:
        data = request.to_json()
        assert MountRequest.from_json(data) == request
        assert set(data) >= {"Type", "Source", "Target", "ReadOnly"}
    assert parse_volume_option("/srv:/mnt:ro").to_json() == {
        "Type": "bind",
        "Source": "/srv",
        "Target": "/mnt",
        "ReadOnly": True,
        "Mode": "ro",
        "BindOptions": {"CreateMountpoint": True},
    }


# Image volumes and the runtime plan.


class FakeImage:
    """What prepare reads of an image; no layers, so nothing is seeded."""

    def __init__(self, image_volumes: dict | None = None) -> None:
        self.layers: list = []
        self.container_config = {"Volumes": image_volumes} if image_volumes is not None else {}


class FakeContainer:
    def __init__(self, container_id: str, mounts: list) -> None:
        self.id = container_id
        self.config = ContainerConfig(host=HostConfig(mounts=mounts))


def test_image_volumes_not_covered_become_anonymous():
    requests = [parse_volume_option("data:/data")]
    result = volumes.with_image_volumes(requests, FakeImage({"/data": {}, "/logs/": {}, "/cache": {}}))
    assert [(r.kind, r.source, r.target) for r in result] == [
        ("volume", "data", "/data"),
        ("volume", "", "/cache"),
        ("volume", "", "/logs"),
    ]


def test_duplicate_targets_rejected():
    with pytest.raises(InvalidArgumentError, match="duplicate mount point: /a"):
        volumes.with_image_volumes([parse_volume_option("aa:/a"), parse_tmpfs_option("/a/")], FakeImage())


C1, C2 = "c" * 64, "d" * 64  # containers the catalog has (created, not running)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(Paths(str(tmp_path / "root"), str(tmp_path / "run")))
    s.conn.execute("INSERT INTO images (id, config, created) VALUES ('sha256:fake', '{}', '')")
    for n, container_id in enumerate((C1, C2)):
        s.conn.execute(
            "INSERT INTO containers (id, name, image_id, image_name, config, created, status) "
            "VALUES (?, ?, 'sha256:fake', 'fake', '{}', '', 'created')",
            (container_id, f"c{n}"),
        )
    yield s
    s.close()


def test_prepare_records_and_mounts_for_orders_parents_first(store, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    requests = [
        parse_volume_option("inner:/a/b/c"),
        parse_tmpfs_option("/a/b:size=1m"),
        parse_volume_option(f"{host}:/a:ro"),
        parse_volume_option("/anon"),
    ]
    mounts = volumes.prepare(store, C1, requests, FakeImage())
    names = {v.name: v for v in volumes.volume_store(store).list_all()}
    anon = [n for n, v in names.items() if v.anonymous]
    assert sorted(names) == sorted(["inner"] + anon) and len(anon) == 1
    assert names[anon[0]].labels == {ANONYMOUS_LABEL: ""}
    assert [m.source for m in mounts] == ["inner", "", str(host), anon[0]]
    container = FakeContainer(C1, mounts)
    plan = volumes.mounts_for(store, container)
    assert [(m.kind, m.target, m.readonly) for m in plan] == [
        ("bind", "/a", True),
        ("bind", "/anon", False),
        ("tmpfs", "/a/b", False),
        ("bind", "/a/b/c", False),
    ]
    assert plan[0].source == str(host)
    assert plan[3].source == store.paths.volume_data("inner")
    assert plan[2].options == "size=1048576,noexec"
    shown = volumes.inspect_mounts(store, container)
    assert shown[0] == {
        "Type": "volume",
        "Name": "inner",
        "Source": store.paths.volume_data("inner"),
        "Destination": "/a/b/c",
        "Driver": "local",
        "Mode": "",
        "RW": True,
        "Propagation": "",
    }
    assert shown[2] == {
        "Type": "bind",
        "Source": str(host),
        "Destination": "/a",
        "Mode": "ro",
        "RW": False,
        "Propagation": "rprivate",
    }
    assert os.listdir(store.paths.tmp) == []


def test_bind_sources(store, tmp_path):
    missing = tmp_path / "made" / "by" / "v"
    mounts = volumes.prepare(store, C1, [parse_volume_option(f"{missing}:/m")], FakeImage())
    assert missing.is_dir()  # -v creates it, as Docker
    missing.rmdir()
    assert volumes.mounts_for(store, FakeContainer(C1, mounts))[0].source == str(missing)
    assert missing.is_dir()  # and again at start
    with pytest.raises(NotFoundError, match="bind source path does not exist: /nonexistent-ovl"):
        volumes.prepare(
            store,
            C2,
            [parse_volume_option("fresh:/f"), parse_mount_option("type=bind,source=/nonexistent-ovl,target=/x")],
            FakeImage(),
        )
    assert volumes.volume_store(store).find("fresh") is None  # nothing changed


def test_prepare_is_all_or_nothing(store, monkeypatch):
    volume_verbs.create_volume(store, "empty")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(volumes, "seed_from_image", fail)
    with pytest.raises(OSError):
        volumes.prepare(store, C1, [parse_volume_option("new1:/a"), parse_volume_option("/b")], FakeImage())
    assert [v.name for v in volumes.volume_store(store).list_all()] == ["empty"]
    assert volumes.volume_store(store).users("empty") == []
    assert os.listdir(store.paths.tmp) == []
    assert os.listdir(store.paths.volumes) == ["empty"]


def test_missing_volume_at_start(store):
    mounts = volumes.prepare(store, C1, [parse_volume_option("gone:/g")], FakeImage())
    volume_verbs.remove_volume(store, "gone", force=True)  # the container is not running: -f takes it
    with pytest.raises(NotFoundError, match='volume "gone" .* no longer exists'):
        volumes.mounts_for(store, FakeContainer(C1, mounts))


# The catalog's bookkeeping.


def test_create_is_idempotent_and_validates(store):
    first = volume_verbs.create_volume(store, "data", {"a": "1"})
    again = volume_verbs.create_volume(store, "data")
    assert (first.name, again.labels) == ("data", {"a": "1"})
    generated = volume_verbs.create_volume(store)
    assert len(generated.name) == 64 and not generated.anonymous
    assert os.path.isdir(store.paths.volume_data(generated.name))
    assert stat.S_IMODE(os.stat(store.paths.volume_data("data")).st_mode) == 0o755
    with pytest.raises(InvalidArgumentError):
        volume_verbs.create_volume(store, "../etc")
    with pytest.raises(InvalidArgumentError, match="driver"):
        volume_verbs.create_volume(store, "d2", driver="nfs")
    with pytest.raises(InvalidArgumentError, match="options"):
        volume_verbs.create_volume(store, "d2", options={"type": "tmpfs"})
    assert volumes.volume_store(store).find("d2") is None


def test_crash_leftover_directory_is_replaced(store):
    os.makedirs(os.path.join(store.paths.volume_data("ghost"), "stale"))
    volume_verbs.create_volume(store, "ghost")
    assert os.listdir(store.paths.volume_data("ghost")) == []


def test_rm_refused_while_used(store):
    volumes.prepare(store, C1, [parse_volume_option("data:/d")], FakeImage())
    with pytest.raises(ConflictError) as info:
        volume_verbs.remove_volume(store, "data")
    assert str(info.value) == f"remove data: volume is in use - [{'c' * 64}]"
    with pytest.raises(NotFoundError):
        volume_verbs.remove_volume(store, "nope")
    assert volume_verbs.remove_volume(store, "nope", force=True) is False
    assert volume_verbs.remove_volume(store, "data", force=True) is True  # C1 is not running
    assert not os.path.exists(store.paths.volume_dir("data"))


def test_release_and_prune(store):
    mounts = volumes.prepare(
        store, C1, [parse_volume_option("named:/n"), parse_volume_option("/a1")], FakeImage({"/a2": {}})
    )
    other = volumes.prepare(store, C2, [parse_volume_option("named:/n")], FakeImage({"/a3": {}}))
    anon = [m.source for m in mounts if m.source != "named"]
    vs = volumes.volume_store(store)
    assert volume_verbs.prune_volumes(store, all_volumes=True) == []  # everything is in use
    volumes.release(store, FakeContainer(C1, mounts), remove_anonymous=True)
    assert {v.name for v in vs.list_all()} == {"named", other[1].source}
    assert vs.users("named") == [C2]
    assert all(not os.path.exists(store.paths.volume_dir(n)) for n in anon)
    volumes.release(store, FakeContainer(C2, other), remove_anonymous=False)  # `rm` without -v
    assert {v.name for v in vs.list_all()} == {"named", other[1].source}
    assert {v.name for v in volume_verbs.list_volumes(store, ["dangling=true"])} == {"named", other[1].source}
    assert [v.name for v in volume_verbs.list_volumes(store, ["name=nam"])] == ["named"]
    assert [v.name for v in volume_verbs.list_volumes(store, [f"label={ANONYMOUS_LABEL}"])] == [other[1].source]
    removed = volume_verbs.prune_volumes(store)  # anonymous only, as Docker 23+
    assert [name for name, _ in removed] == [other[1].source]
    assert [v.name for v in vs.list_all()] == ["named"]
    assert [name for name, _ in volume_verbs.prune_volumes(store, all_volumes=True)] == ["named"]
    assert vs.list_all() == [] and os.listdir(store.paths.volumes) == []
    with pytest.raises(InvalidArgumentError):
        volume_verbs.list_volumes(store, ["colour=red"])


def test_uses_by_containers_that_are_gone_do_not_keep_volumes(store):
    # A crash between deleting a container's row and releasing its uses.
    volumes.prepare(store, "e" * 64, [parse_volume_option("/anon")], FakeImage())
    volumes.prepare(store, "f" * 64, [parse_volume_option("kept:/k")], FakeImage())
    assert len(volume_verbs.prune_volumes(store)) == 1
    volume_verbs.remove_volume(store, "kept")  # no -f needed: the user is gone
    assert volumes.volume_store(store).list_all() == []


# The seeding copy (no chroot here: copy_tree works on any two directories).


def test_copy_tree_keeps_content_links_and_metadata(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "f").write_text("data")
    os.link(src / "f", src / "sub" / "hard")
    os.symlink("/etc/passwd", src / "abs-link")
    os.mkfifo(src / "fifo")
    os.chmod(src / "f", 0o640)
    os.chmod(src / "sub", 0o711)
    os.chmod(src, 0o750)
    os.utime(src / "f", ns=(1_000_000_000, 2_000_000_000))
    os.utime(src / "sub", ns=(1_000_000_000, 3_000_000_000))
    dest = tmp_path / "dest"
    dest.mkdir()
    s, d = os.open(src, os.O_RDONLY | os.O_DIRECTORY), os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy_tree(s, d)
    finally:
        os.close(s)
        os.close(d)
    assert (dest / "f").read_text() == "data"
    assert os.stat(dest / "f").st_ino == os.stat(dest / "sub" / "hard").st_ino
    assert os.readlink(dest / "abs-link") == "/etc/passwd"  # copied, never followed
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    assert stat.S_IMODE(os.lstat(dest / "fifo").st_mode) == stat.S_IMODE(os.lstat(src / "fifo").st_mode)
    assert stat.S_IMODE(os.stat(dest / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(dest / "sub").st_mode) == 0o711
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o750
    assert os.stat(dest / "f").st_mtime_ns == 2_000_000_000
    assert os.stat(dest / "sub").st_mtime_ns == 3_000_000_000


def test_copy_tree_skips_existing_and_never_follows_dest_symlinks(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_text("image")
    (src / "keep").write_text("image")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "d")  # planted: must not be entered
    (dest / "keep").write_text("mine")
    s, d = os.open(src, os.O_RDONLY | os.O_DIRECTORY), os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy_tree(s, d)
    finally:
        os.close(s)
        os.close(d)
    assert os.listdir(outside) == []
    assert (dest / "keep").read_text() == "mine"
