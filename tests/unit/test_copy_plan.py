"""COPY's pure parts: --chown resolved against an image's passwd and group
text, --chmod's modes, and the plan of a context (symlinks followed at the
top, hardlinks, special files, --exclude, the cache digests)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from overlayctl.builder.context import Chmod, Context
from overlayctl.builder.ignore import IgnoreRules
from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime.users import check_owner_syntax, resolve_owner, resolve_user

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/home/app:/bin/sh\n# comment\nbad:x:oops\n"
GROUP = "root:x:0:\napp:x:2345:\nstaff:x:3000:app,other\n"


@pytest.mark.parametrize(
    ("owner", "ids"),
    [
        ("app", (1234, 2345)),
        ("app:app", (1234, 2345)),
        ("app:staff", (1234, 3000)),
        ("app:77", (1234, 77)),
        ("1234", (1234, 1234)),
        ("500", (500, 500)),
        ("500:600", (500, 600)),
        (":staff", (0, 3000)),
        ("root", (0, 0)),
    ],
)
def test_resolve_owner(owner, ids):
    assert resolve_owner(owner, PASSWD, GROUP) == ids


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        ("nosuch", "unable to find user nosuch"),
        ("app:nosuch", "unable to find group nosuch"),
        ("bad", "unable to find user bad"),  # a malformed line is no entry
        ("app:", "invalid --chown"),
        (":", "invalid --chown"),
        ("a:b:c", "invalid --chown"),
        ("a b", "invalid --chown"),
    ],
)
def test_resolve_owner_errors(owner, message):
    with pytest.raises(InvalidArgumentError, match=message):
        resolve_owner(owner, PASSWD, GROUP)


def test_owner_syntax_needs_no_files():
    check_owner_syntax("anyone:anygroup")
    with pytest.raises(InvalidArgumentError):
        check_owner_syntax("")


def test_user_and_owner_share_the_lookup():
    """USER keeps its own rules for a bare number (gid 0) but finds names alike."""
    who = resolve_user("app", PASSWD, GROUP)
    assert (who.uid, who.gid, who.groups) == (1234, 2345, [3000])
    assert resolve_user("500", PASSWD, GROUP).gid == 0
    assert resolve_owner("500", PASSWD, GROUP) == (500, 500)


@pytest.mark.parametrize(
    ("text", "mode", "is_dir", "expected"),
    [
        ("755", 0o600, False, 0o755),
        ("0644", 0o777, True, 0o644),
        ("4755", 0o600, False, 0o4755),
        ("u=rwx,go=rx", 0o600, False, 0o755),
        ("+x", 0o644, False, 0o755),
        ("a-w", 0o666, False, 0o444),
        ("go-rwx", 0o755, True, 0o700),
        ("go+rX", 0o700, False, 0o755),
        ("go+rX", 0o600, False, 0o644),
        ("go+rX", 0o700, True, 0o755),
        ("g+s,o=", 0o775, True, 0o2770),
        ("u+s", 0o755, False, 0o4755),
        ("=r", 0o777, False, 0o444),
    ],
)
def test_chmod(text, mode, is_dir, expected):
    assert oct(Chmod(text).apply(mode, is_dir)) == oct(expected)


@pytest.mark.parametrize("text", ["", "99", "12345", "u+q", "x+r", "u=rwx;go=rx", "u rwx"])
def test_chmod_rejects(text):
    with pytest.raises(InvalidArgumentError, match="invalid --chmod"):
        Chmod(text)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "a").write_text("a\n")
    os.link(root / "d" / "a", root / "d" / "sub" / "a2")
    (root / "d" / "rel").symlink_to("a")
    os.mkfifo(root / "d" / "fifo")
    (root / "top.txt").write_text("t\n")
    (root / "toplink").symlink_to("top.txt")
    (root / "dirlink").symlink_to("d")
    (root / "escape").symlink_to("/etc/passwd")
    return root


def _summary(plan) -> list[tuple[str, str, str, str]]:
    return [(e.dest, e.kind, e.src, e.link) for e in plan.entries]


def test_plan_keeps_hardlinks_fifos_and_inner_symlinks(ctx):
    plan = Context(str(ctx)).plan(["d"], "/x", "COPY")
    assert _summary(plan) == [
        ("/x", "dir", "d", ""),
        ("/x/a", "file", "d/a", ""),
        ("/x/fifo", "fifo", "d/fifo", ""),
        ("/x/rel", "symlink", "d/rel", "a"),
        ("/x/sub", "dir", "d/sub", ""),
        ("/x/sub/a2", "hardlink", "d/sub/a2", "/x/a"),
    ]


def test_plan_follows_symlinks_named_as_sources(ctx):
    c = Context(str(ctx))
    plan = c.plan(["toplink"], "/f", "COPY")
    assert _summary(plan) == [("/f", "file", "top.txt", "")]
    assert plan.entries[0].into_dir == "toplink"
    plan = c.plan(["top*"], "/g/", "COPY")
    assert _summary(plan) == [("/g/top.txt", "file", "top.txt", ""), ("/g/toplink", "file", "top.txt", "")]
    plan = c.plan(["dirlink"], "/y", "COPY")
    assert _summary(plan)[:2] == [("/y", "dir", "d", ""), ("/y/a", "file", "d/a", "")]
    with pytest.raises(InvalidArgumentError, match="outside the build context"):
        c.plan(["escape"], "/z", "COPY")


def test_plan_exclude(ctx):
    c = Context(str(ctx))
    plan = c.plan(["d"], "/x/", "COPY", exclude=IgnoreRules.from_lines(["sub", "f*"]))
    assert [e.dest for e in plan.entries] == ["/x", "/x/a", "/x/rel"]
    plan = c.plan(["top*"], "/g/", "COPY", exclude=IgnoreRules.from_lines(["*.txt"]))
    assert [e.dest for e in plan.entries] == ["/g/toplink"]


def test_digests_see_links_fifos_and_xattrs(ctx):
    c = Context(str(ctx))

    def digests() -> tuple[str, str]:
        plan = c.plan(["d"], "/x", "COPY")
        return c.digest(plan), c.stat_digest(plan)

    first = digests()
    assert digests() == first
    os.unlink(ctx / "d" / "sub" / "a2")
    (ctx / "d" / "sub" / "a2").write_text("a\n")  # same bytes, no longer the same file
    second = digests()
    assert second[0] != first[0] and second[1] != first[1]
    os.unlink(ctx / "d" / "fifo")
    (ctx / "d" / "fifo").write_text("")
    third = digests()
    assert third[0] != second[0]
    try:
        os.setxattr(ctx / "d" / "a", "user.x", b"1")
    except OSError:
        pytest.skip("no user xattrs on this filesystem")
    assert digests()[0] != third[0]
    assert c.plan(["d"], "/x", "COPY").entries[1].xattrs == (("user.x", b"1"),)


def test_plan_skips_sockets(ctx):
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(ctx / "d" / "sock"))
    s.close()
    plan = Context(str(ctx)).plan(["d"], "/x", "COPY")
    assert "/x/sock" not in [e.dest for e in plan.entries]
    assert stat.S_ISSOCK(os.lstat(ctx / "d" / "sock").st_mode)
    with pytest.raises(InvalidArgumentError, match="socket"):
        Context(str(ctx)).plan(["d/sock"], "/x", "COPY")
