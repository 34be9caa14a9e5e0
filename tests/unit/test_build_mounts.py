"""RUN --mount and build --secret options read as BuildKit's frontend reads
them; the cache mount directories' sharing; what a step's mounts leave in
its upper directory."""

from __future__ import annotations

import os
import threading
import time

import pytest

from overlayctl.builder.mounts import RunMount, parse_mount, parse_secret
from overlayctl.builder.runmounts import drop_stubs
from overlayctl.errors import InvalidArgumentError
from overlayctl.paths import Paths
from overlayctl.store.cachemounts import CacheMounts


def test_defaults_follow_buildkit():
    assert parse_mount("target=/src") == RunMount("bind", target="/src", readonly=True)
    cache = parse_mount("type=cache,target=/root/.cache")
    assert (cache.id, cache.sharing, cache.readonly) == ("/root/.cache", "shared", False)
    secret = parse_mount("type=secret,id=tok")
    assert (secret.target, secret.mode, secret.readonly, secret.required) == ("/run/secrets/tok", 0o400, True, False)
    tmpfs = parse_mount("type=tmpfs,target=/t")
    assert (tmpfs.size, tmpfs.readonly) == (0, False)


def test_every_option_and_its_spellings():
    m = parse_mount("type=cache,dst=/c,id=pip,sharing=locked,mode=0700,uid=1000,gid=100,ro")
    assert (m.target, m.id, m.sharing, m.mode, m.uid, m.gid, m.readonly) == (
        "/c",
        "pip",
        "locked",
        0o700,
        1000,
        100,
        True,
    )
    m = parse_mount("type=bind,destination=/a,src=./x/../y,from=img:1,rw=true")
    assert (m.target, m.source, m.from_, m.readonly) == ("/a", "y", "img:1", False)
    assert parse_mount("type=bind,target=/a,readonly=false").readonly is False
    assert parse_mount("type=tmpfs,target=/t,size=1m").size == 1 << 20
    m = parse_mount("type=secret,id=aws,env=AWS_KEY,required")
    assert (m.env, m.target, m.required) == ("AWS_KEY", "", True)  # env only: no file
    m = parse_mount("type=secret,target=/etc/key")
    assert (m.id, m.target) == ("key", "/etc/key")  # the id from the target's name
    assert parse_mount("type=secret,id=a,env=A,target=/x").target == "/x"  # both


def test_relative_targets_are_under_the_workdir_and_values_expand():
    assert parse_mount("type=cache,target=cache", "/app").target == "/app/cache"
    m = parse_mount("type=cache,target=$D,id=$D", "/", lambda word: word.replace("$D", "/deps"))
    assert (m.target, m.id) == ("/deps", "/deps")
    assert parse_mount('"type=bind","target=/a,b"').target == "/a,b"  # CSV quoting


@pytest.mark.parametrize(
    "text, words",
    [
        ("type=nfs,target=/x", "unsupported mount type"),
        ("type=cache", "needs a target"),
        ("type=cache,target=/", "cannot mount over /"),
        ("type=cache,target=/c,sharing=all", "unsupported sharing value"),
        ("type=cache,target=/c,mode=999", "octal"),
        ("type=cache,target=/c,uid=x", "takes a number"),
        ("type=cache,target=/c,colour=red", "unexpected key 'colour'"),
        ("type=cache,target=/c,size=1m", "size is not an option of type=cache"),
        ("type=bind,target=/c,id=x", "id is not an option of type=bind"),
        ("type=tmpfs,target=/t,size=lots", "invalid size"),
        ("type=bind,target=/c,ro=maybe", "invalid value for ro"),
        ("type=bind,target=/c,required", "required is not an option of type=bind"),
        ("type=secret", "needs id="),
        ("type=tmpfs,target=/t,source=x", "source is not an option of type=tmpfs"),
        ("", "empty value"),
        ("target", "unexpected key 'target'"),
    ],
)
def test_bad_options_are_one_line_errors(text, words):
    with pytest.raises(InvalidArgumentError) as err:
        parse_mount(text)
    assert words in err.value.message and "\n" not in err.value.message


def test_the_cache_key_is_the_specification_alone():
    one = parse_mount("type=cache,target=/c,id=a")
    assert one.cache_key() == "type=cache,target=/c,id=a,sharing=shared,rw"
    assert one.cache_key() != parse_mount("type=cache,target=/c,id=b").cache_key()
    assert parse_mount("type=secret,id=tok").cache_key() == "type=secret,target=/run/secrets/tok,id=tok,mode=400,ro"


def test_secret_sources_as_buildx_reads_them():
    assert parse_secret("id=tok,src=/tmp/t") == parse_secret("id=tok,source=/tmp/t")
    assert parse_secret("id=tok,src=/tmp/t").src == "/tmp/t"
    assert parse_secret("id=aws,env=AWS_KEY").env == "AWS_KEY"
    assert parse_secret("type=env,id=AWS_KEY") == parse_secret("id=AWS_KEY,env=AWS_KEY")
    assert parse_secret("id=HOME", {"HOME": "/root"}).env == "HOME"  # id alone: the variable if set
    assert parse_secret("id=./file", {}).src == "./file"  # else the file
    assert parse_secret("src=/run/keys/api").id == "api"
    for bad in ("id=x,src=/a,env=B", "id=x,type=ssh", "colour=red", "", "id=x,src"):
        with pytest.raises(InvalidArgumentError):
            parse_secret(bad)


# -- the store's cache directories -------------------------------------------------


@pytest.fixture
def mounts(tmp_path):
    return CacheMounts(Paths(str(tmp_path / "root"), str(tmp_path / "run")))


def test_shared_users_share_and_private_ones_get_their_own(mounts):
    with mounts.acquire("a", "shared") as one, mounts.acquire("a", "shared") as two:
        assert one.data == two.data and one.created and not two.created
        with mounts.acquire("a", "private") as three:
            assert three.data != one.data  # in use: a directory of its own
            assert mounts.in_use(three.mount)
    with mounts.acquire("a", "private") as four:
        assert four.data == one.data  # free again: the first one
    assert [m.id for m in mounts.all()] == ["a", "a"]  # the extra one stays, as BuildKit's


def test_locked_users_wait_for_each_other(mounts):
    held = mounts.acquire("a", "locked")
    got: list[float] = []

    def second() -> None:
        with mounts.acquire("a", "locked"):
            got.append(time.monotonic())

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert not got  # still waiting
    released = time.monotonic()
    held.release()
    thread.join(5)
    assert got and got[0] >= released


def test_the_first_user_sets_mode_and_owner_and_prune_skips_what_is_in_use(mounts):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    with mounts.acquire("m", "shared", 0o750, 1000, 100) as lease:
        st = os.stat(lease.data)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, 1000, 100)
        assert not mounts.remove(lease.mount)
        assert os.path.isdir(lease.data)
    with mounts.acquire("m", "shared", 0o700) as again:
        assert os.stat(again.data).st_mode & 0o7777 == 0o750  # only the first time
    assert mounts.remove(again.mount) and mounts.all() == []


# -- stubs ---------------------------------------------------------------------------


def test_mount_stubs_leave_the_upper_dir_but_the_commands_files_stay(tmp_path):
    lower = tmp_path / "lower"
    (lower / "root").mkdir(parents=True, mode=0o700)
    os.chmod(lower / "root", 0o700)
    upper = tmp_path / "upper"
    # Made to mount on: /root copied up, /root/.cache, /run/secrets/tok.
    (upper / "root" / ".cache").mkdir(parents=True)
    os.chmod(upper / "root", 0o700)
    (upper / "run" / "secrets").mkdir(parents=True)
    (upper / "run" / "secrets" / "tok").write_bytes(b"")
    # The command's own work beside a mount target stays.
    (upper / "app" / "cache").mkdir(parents=True)
    (upper / "app" / "built").write_text("x")
    drop_stubs(str(upper), (str(lower),), ["/root/.cache", "/run/secrets/tok", "/app/cache"])
    assert sorted(os.listdir(upper)) == ["app"]
    assert sorted(os.listdir(upper / "app")) == ["built"]


def test_a_parent_the_command_changed_stays(tmp_path):
    lower = tmp_path / "lower"
    (lower / "root").mkdir(parents=True)
    os.chmod(lower / "root", 0o755)
    upper = tmp_path / "upper"
    (upper / "root" / ".cache").mkdir(parents=True)
    os.chmod(upper / "root", 0o700)  # the command's chmod: its result
    drop_stubs(str(upper), (str(lower),), ["/root/.cache"])
    assert os.listdir(upper / "root") == []


def test_the_working_directory_stays(tmp_path):
    upper = tmp_path / "upper"
    (upper / "w" / "in").mkdir(parents=True)
    drop_stubs(str(upper), (), ["/w/in"], "/w")
    assert _tree_of(upper) == ["w"]


def _tree_of(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
