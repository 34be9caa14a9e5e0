"""COPY and ADD on the real kernel: owners by name from the image's own
/etc/passwd and /etc/group, --chmod, --exclude, --link, ADD --checksum,
symlinks named as sources, hardlinks, fifos and xattrs kept, the default
PATH, and step failures as one `Dockerfile:LINE:` line with exit code 1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.helpers import write_file as _write

# An image's accounts, as a RUN step of the Dockerfiles below writes them:
# app (1234) has primary group app (2345) and is listed in staff2 (3000).
ACCOUNTS = (
    "RUN echo 'app:x:1234:2345:app:/home/app:/bin/sh' >> /etc/passwd"
    " && echo 'app:x:2345:' >> /etc/group && echo 'staff2:x:3000:app' >> /etc/group\n"
)


def _layer_dirs(cli) -> set[str]:
    return set(os.listdir(cli.root / "layers"))


def _config(cli, image: str) -> dict:
    return json.loads(cli.ok("image", "inspect", image))[0]["Config"]


def image_tree(cli, image: str) -> dict[str, tuple]:
    """The image's file tree: its layers from `save`, applied in order
    (whiteouts and opaque directories as a container would see them).

    path -> (kind, mode, uid, gid, detail, xattrs), detail being a file's
    sha256, a symlink's target or a device's numbers; the "" key holds the
    hardlink groups. A created container is not used: create adds the
    /etc files a container gets, which are not the image's."""
    archive = cli("save", "--format", "docker-archive", image).stdout
    tree: dict[str, tuple] = {}
    links: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name in manifest[0]["Layers"]:
            layer = outer.extractfile(name).read()  # type: ignore[union-attr]
            with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
                _apply_layer(tar, tree, links)
    for name, first in links.items():
        tree[name] = tree[first]
    tree[""] = ("hardlinks", _groups(links))
    return tree


def _apply_layer(tar: tarfile.TarFile, tree: dict[str, tuple], links: dict[str, str]) -> None:
    def drop(path: str, below_only: bool = False) -> None:
        for known in [k for k in tree if k.startswith(path + "/") or (not below_only and k == path)]:
            del tree[known]
        for known in [k for k in links if k.startswith(path + "/") or (not below_only and k == path)]:
            del links[known]

    for m in tar.getmembers():
        name = m.name.removeprefix("./").rstrip("/")
        if not name or name == ".":
            continue
        parent, _, base = name.rpartition("/")
        if base == ".wh..wh..opq":
            drop(parent, below_only=True)
            continue
        if base.startswith(".wh."):
            drop(f"{parent}/{base[4:]}" if parent else base[4:])
            continue
        if not m.isdir():
            drop(name)
        xattrs = tuple(
            sorted(
                (k.removeprefix("SCHILY.xattr."), v.encode("utf-8", "surrogateescape"))
                for k, v in m.pax_headers.items()
                if k.startswith("SCHILY.xattr.")
            )
        )
        if m.islnk():
            links[name] = m.linkname.removeprefix("./")
            tree[name] = tree[links[name]]
            continue
        if m.isreg():
            detail = hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            kind = "file"
        elif m.isdir():
            kind, detail = "dir", ""
        elif m.issym():
            kind, detail = "symlink", m.linkname
        elif m.isfifo():
            kind, detail = "fifo", ""
        else:
            kind, detail = ("chardev" if m.ischr() else "blockdev"), f"{m.devmajor}:{m.devminor}"
        tree[name] = (kind, m.mode & 0o7777, m.uid, m.gid, detail, xattrs)


def dir_tree(root: Path) -> dict[str, tuple]:
    """The same as tar_tree, walking a mounted root."""
    tree: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], str] = {}
    links: dict[str, str] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            try:
                names = sorted(os.listxattr(path, follow_symlinks=False))
                xattrs = tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)
            except OSError:
                xattrs = ()
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    kind, detail = "file", hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                kind, detail = "dir", ""
            elif stat.S_ISLNK(st.st_mode):
                kind, detail = "symlink", os.readlink(path)
            elif stat.S_ISFIFO(st.st_mode):
                kind, detail = "fifo", ""
            else:
                kind = "chardev" if stat.S_ISCHR(st.st_mode) else "blockdev"
                detail = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            if kind != "dir" and st.st_nlink > 1:
                first = inodes.setdefault((st.st_dev, st.st_ino), rel)
                if first != rel:
                    links[rel] = first
            tree[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, detail, xattrs)
    tree[""] = ("hardlinks", _groups(links))
    return tree


def _groups(links: dict[str, str]) -> tuple:
    groups: dict[str, set[str]] = {}
    for name, first in links.items():
        groups.setdefault(first, {first}).add(name)
    return tuple(sorted(tuple(sorted(g)) for g in groups.values()))


def _has_user_xattrs(path: Path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
    except OSError:
        return False
    os.removexattr(path, "user.probe")
    return True


def _cap_net_raw() -> bytes:
    """security.capability granting cap_net_raw (permitted, effective), v2 layout."""
    import struct

    return struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


# -- names where ids are taken ----------------------------------------------


def test_chown_and_user_by_name_from_the_images_own_files(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "f.txt", "f\n")
    _write(ctx / "d" / "inner.txt", "i\n")
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\n" + ACCOUNTS + "COPY --chown=app:app f.txt /a\n"
        "COPY --chown=app f.txt /b\n"
        "COPY --chown=1234 f.txt /c\n"
        "COPY --chown=:staff2 f.txt /e\n"
        "COPY --chown=app:3000 d /d\n"
        "ARG OWNER=app\n"
        "ADD --chown=${OWNER}:staff2 f.txt /g\n"
        "USER app\n"
        "RUN id -u > /tmp/uid && id -g >> /tmp/uid\n"
        "USER app:staff2\n"
        "RUN id -g >> /tmp/uid\n",
    )
    cli.ok("build", "-t", "names:1", str(ctx))
    tree = image_tree(cli, "names:1")
    owners = {p: tree[p][2:4] for p in ("a", "b", "c", "e", "d", "d/inner.txt", "g")}
    assert owners == {
        "a": (1234, 2345),
        "b": (1234, 2345),  # a name alone: its primary group
        "c": (1234, 1234),  # a number alone: the same number as gid, as BuildKit
        "e": (0, 3000),  # ":group": root with that group
        "d": (1234, 3000),
        "d/inner.txt": (1234, 3000),
        "g": (1234, 3000),
    }
    out = cli.ok("run", "--rm", "names:1", "cat", "/tmp/uid")
    assert out == "1234\n2345\n3000\n"
    assert _config(cli, "names:1")["User"] == "app:staff2"


def test_names_never_come_from_the_host(cli, bb, tmp_path):
    """root exists on every host; an image without /etc/passwd has no names."""
    ctx = tmp_path / "ctx"
    _write(ctx / "f.txt", "f\n")
    _write(ctx / "Dockerfile", "FROM scratch\nCOPY --chown=root f.txt /f\n")
    result = cli("build", str(ctx))
    assert result.returncode == 1
    assert "Dockerfile:2: COPY: unable to find user root" in result.stderr.decode()


# -- --chmod -------------------------------------------------------------


def test_chmod_octal_and_symbolic(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "f.txt", "f\n", 0o640)
    _write(ctx / "d" / "x.sh", "#!/bin/sh\n", 0o700)
    _write(ctx / "d" / "plain", "p\n", 0o600)
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\n"
        "COPY --chmod=751 f.txt /octal\n"
        "COPY --chmod=u=rwx,go=rx f.txt /sym\n"
        "COPY --chmod=+x f.txt /plusx\n"
        "COPY --chmod=go+rX d /d\n"
        "COPY --chmod=4755 f.txt /setuid\n",
    )
    cli.ok("build", "-t", "modes:1", str(ctx))
    tree = image_tree(cli, "modes:1")
    modes = {p: oct(tree[p][1]) for p in ("octal", "sym", "plusx", "d", "d/x.sh", "d/plain", "setuid")}
    assert modes == {
        "octal": "0o751",
        "sym": "0o755",
        "plusx": "0o751",
        "d": "0o755",
        "d/x.sh": "0o755",  # X: already executable by its owner
        "d/plain": "0o644",  # X: not executable, not a directory
        "setuid": "0o4755",
    }


# -- ENV PATH --------------------------------------------------------------


def test_env_path_extends_the_default_path(cli, bb, tmp_path):
    """bb:1 (an import) has no PATH: the stage gets Docker's default, which
    RUN sees and ENV PATH=...:$PATH extends, and the image config keeps."""
    default = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", "FROM bb:1\nENV PATH=/opt/bin:$PATH\nRUN echo $PATH > /path\n")
    cli.ok("build", "-t", "path:1", str(ctx))
    env = _config(cli, "path:1")["Env"]
    assert env == [f"PATH=/opt/bin:{default}"]
    assert cli.ok("run", "--rm", "path:1", "cat", "/path") == f"/opt/bin:{default}\n"
    _write(ctx / "Dockerfile", "FROM scratch\nENV PATH=$PATH:/x\n")
    cli.ok("build", "-t", "path:2", str(ctx))
    assert _config(cli, "path:2")["Env"] == [f"PATH={default}:/x"]


# -- symlinks, hardlinks, fifos, xattrs ------------------------------------


def test_symlinks_named_as_sources_are_followed(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "real.txt", "real\n")
    _write(ctx / "dir" / "inside.txt", "inside\n")
    (ctx / "dir" / "rel").symlink_to("inside.txt")
    (ctx / "link.txt").symlink_to("real.txt")
    (ctx / "dirlink").symlink_to("dir")
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\n"
        "COPY link.txt /one\n"  # a named symlink: its target's content
        "COPY link* /glob/\n"  # matched by a pattern: the same, under its own name
        "COPY dirlink /fromdir/\n"  # a symlink to a directory: its content
        "COPY dir /dir\n",  # symlinks inside a directory: copied as symlinks
    )
    cli.ok("build", "-t", "links:1", str(ctx))
    tree = image_tree(cli, "links:1")
    real = hashlib.sha256(b"real\n").hexdigest()
    assert tree["one"][0] == "file" and tree["one"][4] == real
    assert tree["glob/link.txt"][0] == "file" and tree["glob/link.txt"][4] == real
    assert tree["fromdir/inside.txt"][0] == "file"
    assert tree["fromdir/rel"][:1] == ("symlink",) and tree["fromdir/rel"][4] == "inside.txt"
    assert tree["dir/rel"][0] == "symlink" and tree["dir/rel"][4] == "inside.txt"


def test_hardlinks_fifos_devices_and_xattrs_are_kept(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "d" / "a", "a\n")
    os.link(ctx / "d" / "a", ctx / "d" / "a2")
    os.link(ctx / "d" / "a", ctx / "d" / "sub-a3")
    os.mkfifo(ctx / "d" / "fifo", 0o640)
    os.mknod(ctx / "d" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ctx / "d" / "sock"))
    sock.close()
    os.setxattr(ctx / "d" / "a", "security.capability", _cap_net_raw())
    user_xattrs = _has_user_xattrs(ctx / "d" / "a")
    if user_xattrs:
        os.setxattr(ctx / "d" / "a", "user.note", b"hello")
        os.setxattr(ctx / "d", "user.dir", b"x")
    _write(ctx / "Dockerfile", "FROM bb:1\n" + ACCOUNTS + "COPY --chown=app d /d\n")
    cli.ok("build", "-t", "special:1", str(ctx))
    tree = image_tree(cli, "special:1")
    assert ("d/a", "d/a2", "d/sub-a3") in tree[""][1]
    assert tree["d/fifo"][:4] == ("fifo", 0o640, 1234, 2345)
    assert tree["d/null"][0] == "chardev" and tree["d/null"][4] == "1:3"
    assert "d/sock" not in tree  # a socket is not content
    xattrs = dict(tree["d/a"][5])
    # After the chown, which the kernel makes drop file capabilities.
    assert xattrs["security.capability"] == _cap_net_raw()
    assert tree["d/a"][2:4] == (1234, 2345)
    if user_xattrs:
        assert xattrs["user.note"] == b"hello"
        assert dict(tree["d"][5])["user.dir"] == b"x"

    # Each of them is part of the cache key.
    def rebuilt() -> bool:
        out = cli.ok("build", "-t", "special:1", str(ctx))
        return out.count("Using cache") < 2  # unchanged: the RUN and the COPY both hit

    assert not rebuilt()
    os.removexattr(ctx / "d" / "a", "security.capability")
    assert rebuilt()
    os.unlink(ctx / "d" / "a2")
    _write(ctx / "d" / "a2", "a\n")  # same content, no longer a hardlink
    assert rebuilt()
    os.unlink(ctx / "d" / "fifo")
    os.mkfifo(ctx / "d" / "fifo", 0o600)
    assert rebuilt()
    tree = image_tree(cli, "special:1")
    assert "security.capability" not in dict(tree["d/a"][5])
    assert ("d/a", "d/a2", "d/sub-a3") not in tree[""][1]
    assert tree["d/fifo"][1] == 0o600


# -- BuildKit's COPY flags -------------------------------------------------


def test_exclude_link_and_checksum(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    for name in ("home.txt", "homework.md", "homer.py"):
        _write(ctx / name, name + "\n")
    _write(ctx / "src" / "keep.py", "k\n")
    _write(ctx / "src" / "drop.txt", "d\n")
    _write(ctx / "src" / "deep" / "also.txt", "a\n")
    _write(ctx / "src" / "deep" / "keep.txt", "k\n")
    digest = hashlib.sha256(b"home.txt\n").hexdigest()
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\n"
        "COPY --exclude=*.txt --exclude=*.md hom* /top/\n"
        "COPY --link --exclude=*.txt --exclude=**/also.txt --exclude=!deep/keep.txt src /src\n"
        f"ADD --checksum=sha256:{digest} home.txt /checked\n",
    )
    cli.ok("build", "-t", "flags:1", str(ctx))
    tree = image_tree(cli, "flags:1")
    assert sorted(p for p in tree if p.startswith("top/")) == ["top/homer.py"]
    assert sorted(p for p in tree if p.startswith("src/")) == ["src/deep", "src/deep/keep.txt", "src/keep.py"]
    assert tree["checked"][4] == digest

    # --exclude is in the cache key: another pattern, another layer.
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\nCOPY --exclude=*.md hom* /top/\n",
    )
    cli.ok("build", "-t", "flags:2", str(ctx))
    tree = image_tree(cli, "flags:2")
    assert sorted(p for p in tree if p.startswith("top/")) == ["top/home.txt", "top/homer.py"]


# -- failures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        ("COPY --chown=nosuch f.txt /x", "Dockerfile:3: COPY: unable to find user nosuch"),
        ("COPY --chown=app:nosuch f.txt /x", "Dockerfile:3: COPY: unable to find group nosuch"),
        ("COPY --chown=app: f.txt /x", 'Dockerfile:3: COPY: invalid --chown "app:"'),
        ("ADD --chown=nosuch f.txt /x", "Dockerfile:3: ADD: unable to find user nosuch"),
        ("USER nosuch\nRUN true", "Dockerfile:4: RUN: unable to find user nosuch"),
        ("COPY --chmod=u+q f.txt /x", 'Dockerfile:3: COPY: invalid --chmod "u+q"'),
        ("COPY dangling /x", "Dockerfile:3: COPY: COPY failed: dangling is a symlink to nowhere"),
        ("COPY f.txt /bin/sh/x", "Dockerfile:3: COPY: cannot create directory /bin/sh in the image"),
        ("COPY --exclude=f.* f.txt /x", "Dockerfile:3: COPY: COPY failed: every source is excluded"),
        ("ADD --checksum=sha256:" + "0" * 64 + " f.txt /x", "Dockerfile:3: ADD: checksum mismatch"),
        ("ADD --checksum=md5:00 f.txt /x", 'Dockerfile:3: ADD: invalid --checksum "md5:00"'),
        ("ADD https://example.com/x /x", "Dockerfile:3: ADD: sources from URLs"),
        ("COPY --parents f.txt /x/", "Dockerfile:3: COPY: --parents is not supported"),
        ("RUN nosuchcommand", "Dockerfile:3: RUN: the command '/bin/sh -c nosuchcommand' returned a non-zero code"),
    ],
)
def test_a_failed_step_is_one_line_with_exit_code_1(cli, bb, tmp_path, step, needle):
    ctx = tmp_path / "ctx"
    _write(ctx / "f.txt", "f\n")
    (ctx / "dangling").symlink_to("nowhere")
    _write(ctx / "Dockerfile", "FROM bb:1\n" + ACCOUNTS + step + "\n")
    layers_before = _layer_dirs(cli)
    result = cli("build", "-t", "bad:1", str(ctx))
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert needle in err, err
    lines = [line for line in err.splitlines() if line.startswith("overlayctl:")]
    assert len(lines) == 1 and lines[0] == err.strip().splitlines()[-1], err
    assert [line for line in cli.ok("image", "ls").splitlines() if line.split()[0] == "bad"] == []
    assert _layer_dirs(cli) == layers_before
    assert os.listdir(cli.root / "tmp") == []


# -- side by side with podman build ------------------------------------------------
#
# The same context built by us and by `podman build` (Debian's podman, whose
# builder is buildah) on the same busybox base: config fields, layer count
# and the whole file tree must agree, except for the differences listed with
# each context and the reason for each.

CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes")


def _podman_fixture():
    from tests.integration.test_save_load import podman

    return podman


podman = _podman_fixture()


def _owners_context(ctx: Path) -> None:
    _write(ctx / "f.txt", "f\n")
    _write(ctx / "app" / "main.sh", "#!/bin/sh\necho main\n", 0o755)
    _write(ctx / "app" / "data" / "x.txt", "x\n", 0o600)
    _write(
        ctx / "Dockerfile",
        "FROM {base}\n" + ACCOUNTS + "COPY --chown=app:app app /srv/app\n"
        "COPY --chown=app f.txt /home/app/f\n"
        "COPY --chown=1234 f.txt /numeric\n"
        "COPY --chown=app:staff2 --chmod=750 f.txt /mode\n"
        "WORKDIR /srv/app\n"
        "USER app\n"
        "RUN touch mine && mkdir made\n"
        "LABEL org.example.kind=owners\n"
        "EXPOSE 8080 53/udp\n"
        "VOLUME /data\n"
        'ENTRYPOINT ["/srv/app/main.sh"]\n'
        'CMD ["--serve"]\n',
    )


def _links_context(ctx: Path) -> None:
    _write(ctx / "real.txt", "real\n")
    (ctx / "link.txt").symlink_to("real.txt")
    _write(ctx / "tree" / "a", "a\n")
    os.link(ctx / "tree" / "a", ctx / "tree" / "b")
    (ctx / "tree" / "deep").mkdir()
    os.link(ctx / "tree" / "a", ctx / "tree" / "deep" / "c")
    (ctx / "tree" / "rel").symlink_to("a")
    (ctx / "tree" / "abs").symlink_to("/etc/passwd")
    (ctx / "tree" / "broken").symlink_to("nowhere")
    (ctx / "treelink").symlink_to("tree")
    _write(
        ctx / "Dockerfile",
        "FROM {base}\n"
        "COPY link.txt /named\n"
        "COPY link* /globbed/\n"
        "COPY tree /tree\n"
        "COPY treelink /viatreelink/\n"
        "COPY tree/a tree/b /pair/\n",
    )


def _special_context(ctx: Path) -> None:
    _write(ctx / "s" / "cap", "c\n", 0o755)
    os.setxattr(ctx / "s" / "cap", "security.capability", _cap_net_raw())
    _write(ctx / "s" / "noted", "n\n")
    if _has_user_xattrs(ctx / "s" / "noted"):
        os.setxattr(ctx / "s" / "noted", "user.note", b"hello")
        os.setxattr(ctx / "s", "user.dir", b"d")
    os.mkfifo(ctx / "s" / "fifo", 0o620)
    os.link(ctx / "s" / "noted", ctx / "s" / "noted2")
    os.mknod(ctx / "s" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(ctx / "s" / "sock"))
    sock.close()
    _write(ctx / "Dockerfile", "FROM {base}\n" + ACCOUNTS + "COPY s /s\nCOPY --chown=app:app s /owned\n")


def _path_context(ctx: Path) -> None:
    _write(
        ctx / "Dockerfile",
        "FROM {base}\n"
        "ENV PATH=/opt/bin:$PATH GREETING=hi\n"
        "RUN mkdir -p /opt/bin && echo $PATH > /path && printf '#!/bin/sh\\necho tool\\n' > /opt/bin/tool"
        " && chmod 755 /opt/bin/tool\n"
        "RUN tool > /tool.out\n"
        'CMD echo "$GREETING"\n',
    )


# Differences that are podman's (buildah 1.28's), not ours, per context.
KNOWN_CONFIG_DIFFERENCES = {
    # buildah labels every image it builds with its own version.
    "Labels": lambda ours, theirs: {k: v for k, v in (theirs or {}).items() if k != "io.buildah.version"} or None,
}


# Files podman's image has and ours has not, with the reason.
KNOWN_TREE_ONLY_THEIRS = {
    # buildah leaves behind the empty file a RUN step bound the container's
    # hostname onto; BuildKit does not, and neither do we (_drop_placeholders).
    "etc/hostname": "buildah's RUN placeholder",
}
# Entries that differ, with the reason: (ours, theirs) as the test sees them.
KNOWN_TREE_DIFFERENCES = {
    # buildah 1.28 does not carry the xattrs of a source directory itself to
    # the destination directory (those of its content it does); BuildKit's
    # copy gives the destination the source directory's metadata, xattrs
    # included, and so do we.
    "s": "the source directory's own xattrs",
    "owned": "the source directory's own xattrs",
}


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.parametrize(
    "make",
    [_owners_context, _links_context, _special_context, _path_context],
    ids=["owners", "links", "special", "path"],
)
def test_same_result_as_podman_build(cli, bb, busybox_tar, podman, tmp_path, make):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    make(ctx)
    template = (ctx / "Dockerfile").read_text()
    (ctx / "Dockerfile").write_text(template.replace("{base}", "bb:1"))
    (ctx / "Dockerfile.podman").write_text(template.replace("{base}", "localhost/copycmp-bb:1"))
    tag = f"localhost/copycmp-{make.__name__.strip('_')}:1"
    podman("import", str(busybox_tar), "localhost/copycmp-bb:1")
    try:
        podman("build", "--network=none", "--layers", "-f", str(ctx / "Dockerfile.podman"), "-t", tag, str(ctx))
        cli.ok("build", "--network", "none", "-t", "ours:1", str(ctx))

        theirs_image = json.loads(podman("image", "inspect", tag).stdout)[0]
        ours_image = json.loads(cli.ok("image", "inspect", "ours:1"))[0]
        for field in CONFIG_FIELDS:
            ours = ours_image["Config"].get(field) or None
            theirs = theirs_image["Config"].get(field) or None
            if field in KNOWN_CONFIG_DIFFERENCES:
                theirs = KNOWN_CONFIG_DIFFERENCES[field](ours, theirs)
            assert ours == theirs, (field, ours, theirs)
        assert len(ours_image["RootFS"]["Layers"]) == len(theirs_image["RootFS"]["Layers"])

        mounted = Path(podman("image", "mount", tag).stdout.decode().strip())
        try:
            theirs_tree = dir_tree(mounted)
        finally:
            podman("image", "unmount", tag, check=False)
        ours_tree = image_tree(cli, "ours:1")
        for path in KNOWN_TREE_ONLY_THEIRS:
            theirs_tree.pop(path, None)
        only_ours = sorted(set(ours_tree) - set(theirs_tree))
        only_theirs = sorted(set(theirs_tree) - set(ours_tree))
        assert (only_ours, only_theirs) == ([], [])
        different = {p: (ours_tree[p], theirs_tree[p]) for p in ours_tree if ours_tree[p] != theirs_tree[p]}
        if "" in different:
            ours_groups, theirs_groups = set(ours_tree[""][1]), set(theirs_tree[""][1])
            different[""] = (sorted(ours_groups - theirs_groups), sorted(theirs_groups - ours_groups))
        for path in KNOWN_TREE_DIFFERENCES:
            if path in different:
                ours_entry, theirs_entry = different.pop(path)
                assert ours_entry[:5] == theirs_entry[:5] and theirs_entry[5] == ()
        assert different == {}
    finally:
        podman("rmi", "-f", tag, "localhost/copycmp-bb:1", check=False)
