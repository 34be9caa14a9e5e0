"""Pure logic: references, units, option parsing, mount plans, overlay options."""

from __future__ import annotations

import pytest

from overlayctl.cli import runopts
from overlayctl.errors import MAX_LINE, MAX_WORD, InvalidArgumentError, KernelError, one_line
from overlayctl.runtime.mountplan import DeviceNode, FsMount, OverlayMount, rootfs_plan
from overlayctl.runtime.overlay import PAGE_SIZE, OverlayLayout, classic_options
from overlayctl.runtime.spec import merge_env, resolve_env
from overlayctl.store.images import chain_ids
from overlayctl.util.humanize import human_duration, human_size
from overlayctl.util.reference import parse_reference, split_digest, validate_container_name


@pytest.mark.parametrize(
    "text, repo, tag",
    [
        ("bb:1", "bb", "1"),
        ("acme/my-base-image:1.0", "acme/my-base-image", "1.0"),
        ("busybox", "busybox", "latest"),
        ("localhost:5000/a/b:x", "localhost:5000/a/b", "x"),
        ("a.b-c__d:v_1.2-3", "a.b-c__d", "v_1.2-3"),
        # Docker's normalisation: Docker Hub's host and library/ are dropped.
        ("docker.io/library/busybox:latest", "busybox", "latest"),
        ("docker.io/library/x:1", "x", "1"),
        ("index.docker.io/library/x", "x", "latest"),
        ("docker.io/user/x", "user/x", "latest"),
        ("docker.io/library/a/b:2", "library/a/b", "2"),
        ("library/busybox", "library/busybox", "latest"),
        # Any other host is kept, localhost too (as podman keeps it).
        ("localhost/x", "localhost/x", "latest"),
        ("quay.io/a/b:3", "quay.io/a/b", "3"),
    ],
)
def test_references(text, repo, tag):
    ref = parse_reference(text)
    assert (ref.repository, ref.tag) == (repo, tag)


@pytest.mark.parametrize(
    "text, full, path",
    [
        ("busybox", "docker.io/library/busybox:latest", "library/busybox"),
        ("docker.io/library/busybox", "docker.io/library/busybox:latest", "library/busybox"),
        ("user/x", "docker.io/user/x:latest", "user/x"),
        ("localhost/x:1", "localhost/x:1", "x"),
        ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "a/b"),
    ],
)
def test_reference_full_names(text, full, path):
    ref = parse_reference(text)
    assert (ref.full, ref.path) == (full, path)
    assert parse_reference(ref.full) == ref


def test_split_digest():
    digest = "sha256:" + "c" * 64
    assert split_digest("busybox") == ("busybox", None)
    assert split_digest(f"busybox@{digest}") == ("busybox", digest)
    for bad in ("x@sha256:abc", "x@md5:" + "a" * 64, "x@sha256:" + "A" * 64):
        with pytest.raises(InvalidArgumentError, match="sha256:<64 hex digits>"):
            split_digest(bad)


@pytest.mark.parametrize("text", ["", "BB:1", "bb:", "a//b", "-a", "a:b:c", "a@sha256:x", "a_", "a:-x"])
def test_bad_references(text):
    with pytest.raises(InvalidArgumentError, match="invalid reference format"):
        parse_reference(text)


def test_container_names():
    assert validate_container_name("/my_container_1") == "my_container_1"
    for bad in ("k", "_x", "a b", "a/b"):
        with pytest.raises(InvalidArgumentError):
            validate_container_name(bad)


def test_human_units_match_docker():
    assert [human_size(n) for n in (0, 999, 4096, 32768, 1234567, 103 * 10**6)] == [
        "0B",
        "999B",
        "4.1kB",
        "32.8kB",
        "1.23MB",
        "103MB",
    ]
    assert [human_duration(s) for s in (0.5, 1, 58, 90, 3600 * 3, 86400 * 90)] == [
        "Less than a second",
        "1 second",
        "58 seconds",
        "About a minute",
        "3 hours",
        "3 months",
    ]


def test_run_options_like_docker():
    opts, rest = runopts.parse(
        ["-itd", "--name=web", "-e", "A=1", "-eB=2", "--rm", "bb:1", "sh", "-c", "ls -l"], runopts.RUN_OPTIONS
    )
    assert opts["tty"] and opts["interactive"] and opts["detach"] and opts["rm"]
    assert opts["name"] == "web" and opts["env"] == ["A=1", "B=2"]
    assert rest == ["bb:1", "sh", "-c", "ls -l"]
    with pytest.raises(InvalidArgumentError, match="unknown flag: --nope"):
        runopts.parse(["--nope", "bb:1"], runopts.RUN_OPTIONS)
    with pytest.raises(InvalidArgumentError, match="needs an argument"):
        runopts.parse(["--name"], runopts.RUN_OPTIONS)


def test_rootfs_plan_is_data():
    layout = OverlayLayout(("/s/layers/b/diff", "/s/layers/a/diff"), "/s/c/upper", "/s/c/work")
    plan = rootfs_plan(layout, "/s")
    assert plan.ops[0] == OverlayMount(layout, "/s", "new")
    targets = [op.target for op in plan.ops if isinstance(op, FsMount)]
    assert targets == ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"]
    sysfs = next(op for op in plan.ops if isinstance(op, FsMount) and op.target == "/sys")
    assert sysfs.flags & 1  # MS_RDONLY
    devices = {op.target for op in plan.ops if isinstance(op, DeviceNode)}
    assert devices == {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}


def test_classic_options_are_relative_and_bounded():
    layout = OverlayLayout(
        tuple(f"/store/layers/{i:016x}/diff" for i in range(3)), "/store/c/1/upper", "/store/c/1/work"
    )
    data = classic_options(layout, "/store")
    assert data.startswith("lowerdir=layers/0000000000000000/diff:layers/0000000000000001/diff:")
    assert "upperdir=c/1/upper" in data and "/store" not in data
    wide = OverlayLayout(tuple(f"/store/layers/{i:016x}/diff" for i in range(200)), "/store/u", "/store/w")
    with pytest.raises(KernelError, match=f"at most {PAGE_SIZE}"):
        classic_options(wide, "/store")


def test_classic_options_escape_separators():
    layout = OverlayLayout(("/s/odd:name,x/diff",), "/s/u", "/s/w")
    assert classic_options(layout, "/s").startswith(r"lowerdir=odd\:name\,x/diff,")


def test_merge_env_defaults_path_and_overrides():
    env = merge_env(["A=1", "PATH=/bin"], ["A=2", "B=3"])
    assert env == ["A=2", "PATH=/bin", "B=3"]
    assert merge_env([], [])[0].startswith("PATH=/usr/local/sbin")


def test_resolve_env_reads_bare_keys_from_the_callers_environment():
    environ = {"HOME": "/root", "EMPTY": ""}
    items = ["A=1", "B=", "HOME", "EMPTY", "UNSET", "C=x=y"]
    assert resolve_env(items, environ) == ["A=1", "B=", "HOME=/root", "EMPTY=", "UNSET=", "C=x=y"]


@pytest.mark.parametrize("item", ["", "=x", "="])
def test_resolve_env_refuses_an_item_without_a_key(item):
    with pytest.raises(InvalidArgumentError, match=f'^invalid environment variable "{item}": use -e KEY=value$'):
        resolve_env(["A=1", item], {})


def test_chain_ids_follow_the_oci_rule():
    import hashlib

    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]


def test_error_lines_are_cut_in_the_middle():
    short = 'no such container: "web"'
    assert one_line(short) == short
    long = 'layer rejected: entry "' + "a" * 1_000_000 + '" leaves the layer root'
    line = one_line(long)
    assert len(line) < len("layer rejected: entry") + MAX_WORD + len(" leaves the layer root") + 2
    assert line.startswith('layer rejected: entry "aaa') and line.endswith('aaa" leaves the layer root')
    assert line.count("\u2026") == 1
    # The way out a message names stays whole: paths are words of their own.
    hint = "the catalog at /" + "p" * 150 + "/catalog.db is damaged; run overlayctl --root /" + "p" * 150
    assert one_line(hint) == hint
    assert len(one_line("word " * 1000)) == MAX_LINE
    assert one_line("a\nb\rc") == "a\\nb\\rc"


@pytest.mark.parametrize("finished", ["", "0001-01-01T00:00:00Z"])
def test_no_age_is_made_up_from_a_time_never_recorded(finished):
    from overlayctl.engine.inspect import ago, status_text
    from overlayctl.store.containers import Container

    lost = Container("ab" * 32, "ks", "cd" * 32, "bb:1", {}, "", "exited", 0, 0, None, "", finished, "")
    assert status_text(lost, now=1_800_000_000) == "Exited (unknown)"
    assert ago(finished, now=1_800_000_000) == "N/A"
    lost.finished_at, lost.exit_code = "2027-01-15T07:59:57Z", 137
    assert status_text(lost, now=1_800_000_000) == "Exited (137) 3 seconds ago"


def test_kernel_filesystems_in_a_mount_table():
    import os

    from overlayctl.layer.cptree import kernel_devices

    mountinfo = (
        "800 700 0:61 / / rw,relatime - overlay overlay rw,lowerdir=/l\n"
        "801 800 0:65 / /proc rw,nosuid - proc proc rw\n"
        "802 800 0:66 / /dev rw,nosuid - tmpfs tmpfs rw\n"
        "803 802 0:67 / /dev/pts rw - devpts devpts rw\n"
        "804 800 0:68 / /sys ro - sysfs sysfs ro\n"
        "805 800 8:1 /vol /data rw master:1 - ext4 /dev/sda1 rw\n"
    )
    assert kernel_devices(mountinfo) == {os.makedev(0, 65), os.makedev(0, 67), os.makedev(0, 68)}


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("c1:/etc/hostname", ("c1", "/etc/hostname")),
        ("c1:etc", ("c1", "etc")),
        ("c1:", ("c1", "")),
        ("-", (None, "-")),
        ("/tmp/a:b", (None, "/tmp/a:b")),  # a path that starts with / or . is the host's
        ("./a:b", (None, "./a:b")),
        ("plain", (None, "plain")),
    ],
)
def test_cp_arguments(text, parsed):
    from overlayctl.engine.copy import split_argument

    assert split_argument(text) == parsed
