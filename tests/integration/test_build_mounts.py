"""RUN --mount on the real kernel: cache directories that outlive builds
(counted by system df, removed by builder prune), binds of the context and
of images, tmpfs, secrets that never land anywhere, and the step's layer
holding the command's changes only. RUN --network and --security too."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.helpers import du_bytes as _du
from tests.helpers import write_file as _write


def _layers(cli, image: str) -> list[Path]:
    """The diff directories of an image's layers, bottom first."""
    by_diff_id = {(d / "diff_id").read_text().strip(): d / "diff" for d in (cli.root / "layers").iterdir()}
    inspected = json.loads(cli.ok("image", "inspect", image))[0]
    return [by_diff_id[d] for d in inspected["RootFS"]["Layers"]]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _build(cli, ctx: Path, dockerfile: str, *args: str) -> str:
    _write(ctx / "Dockerfile", dockerfile)
    return cli.ok("build", "--network", "none", *args, str(ctx))


def _staging(cli) -> list[str]:
    return os.listdir(cli.root / "tmp")


CACHE_STEP = (
    "FROM bb:1\n"
    "RUN --mount=type=cache,target=/root/.cache "
    "sh -c 'echo run >> /root/.cache/runs; wc -l < /root/.cache/runs > /seen'\n"
)


def test_a_cache_mount_lives_on_between_builds_and_stays_out_of_the_layer(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _build(cli, ctx, CACHE_STEP, "-t", "c:1")
    assert cli.ok("run", "--rm", "--network", "none", "c:1", "cat", "/seen").strip() == "1"
    _build(cli, ctx, CACHE_STEP, "--no-cache", "-t", "c:2")
    assert cli.ok("run", "--rm", "--network", "none", "c:2", "cat", "/seen").strip() == "2"
    # The step's layer holds /seen only: no /root/.cache, no /root copied up for it.
    assert _tree(_layers(cli, "c:2")[-1]) == ["seen"]
    # The directory is in the store, one per id.
    (cache,) = list((cli.root / "buildcache-mounts").iterdir())
    assert (cache / "data" / "runs").read_text() == "run\nrun\n"
    assert (cache / "id").read_text() == "/root/.cache"
    # A step that has it cached does not run again.
    out = _build(cli, ctx, CACHE_STEP)
    assert "Using cache" in out and (cache / "data" / "runs").read_text() == "run\nrun\n"
    # The mount's specification is in the step's key: another id runs it again.
    out = _build(cli, ctx, CACHE_STEP.replace("target=/root/.cache", "target=/root/.cache,id=other"))
    assert "Using cache" not in out.split("Step 2/2")[1]
    assert len(list((cli.root / "buildcache-mounts").iterdir())) == 2


def test_cache_mounts_count_in_system_df_and_builder_prune_removes_them(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _build(
        cli,
        ctx,
        "FROM bb:1\nRUN --mount=type=cache,target=/c,id=big dd if=/dev/zero of=/c/blob bs=1024 count=300 2>/dev/null\n",
    )
    mounts = cli.root / "buildcache-mounts"
    rows = [json.loads(line) for line in cli.ok("system", "df", "--format", "json").splitlines()]
    cache_row = next(r for r in rows if r["Type"] == "Build Cache")
    # Exact, as du: what the cache mounts and tmp/ hold (the two
    # directories themselves are store metadata).
    staging = _du(cli.root / "tmp") - (cli.root / "tmp").lstat().st_blocks * 512
    held = _du(mounts) - mounts.lstat().st_blocks * 512
    assert cache_row["Size"] == held + staging
    assert cache_row["Size"] >= 300 * 1024 and cache_row["Reclaimable"] == held + staging
    # The catalog's WAL files stay while du and df both look (see test_df).
    conn = sqlite3.connect(cli.root / "catalog.db")
    try:
        conn.execute("SELECT COUNT(*) FROM layers").fetchone()
        verbose = json.loads(cli.ok("system", "df", "-v", "--format", "json"))
        total = _du(cli.root)
    finally:
        conn.close()
    assert verbose["Total"] == total  # still adds up to du of the store
    (entry,) = verbose["BuildCache"]["CacheMounts"]
    assert entry["ID"] == "big" and entry["Size"] == _du(next(mounts.iterdir())) and entry["InUse"] is False
    out = cli.ok("builder", "prune", "-f")
    assert "cache mount big" in out
    assert list(mounts.iterdir()) == []
    rows = [json.loads(line) for line in cli.ok("system", "df", "--format", "json").splitlines()]
    assert next(r for r in rows if r["Type"] == "Build Cache")["Size"] < 300 * 1024


def test_system_prune_removes_cache_mounts_too(cli, bb, tmp_path):
    _build(cli, tmp_path / "ctx", "FROM bb:1\nRUN --mount=type=cache,target=/c touch /c/x\n")
    assert os.listdir(cli.root / "buildcache-mounts")
    cli.ok("system", "prune", "-a", "-f")
    assert os.listdir(cli.root / "buildcache-mounts") == []


def test_cache_ids_sharing_and_first_creation_modes(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _build(
        cli,
        ctx,
        "FROM bb:1\n"
        "RUN --mount=type=cache,target=/a,id=one,mode=0700,uid=123,gid=45 touch /a/from-a\n"
        # Another target, the same id: the same directory.
        "RUN --mount=type=cache,target=/b,id=one,sharing=locked stat -c '%a %u %g' /b > /b.stat && ls /b > /b.ls\n"
        "RUN --mount=type=cache,target=/p,id=one,sharing=private,ro ls /p > /p.ls\n",
        "-t",
        "ids:1",
    )
    run = ["run", "--rm", "--network", "none", "ids:1", "cat"]
    assert cli.ok(*run, "/b.stat").strip() == "700 123 45"
    assert cli.ok(*run, "/b.ls").strip() == "from-a"
    assert cli.ok(*run, "/p.ls").strip() == "from-a"  # private, but nobody held it
    assert len(os.listdir(cli.root / "buildcache-mounts")) == 1


def test_a_bind_of_the_context_is_read_only_and_rw_writes_are_thrown_away(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "src" / "a.txt", "from the context\n")
    dockerfile = (
        "FROM bb:1\n"
        "WORKDIR /w\n"
        "RUN --mount=source=src,target=in cat in/a.txt > /copied && (touch in/new 2>/dev/null; echo $? > /ro-status)\n"
        "RUN --mount=target=/ctx,rw "
        "sh -c 'echo scribble > /ctx/src/a.txt && touch /ctx/made && cat /ctx/src/a.txt > /rw'\n"
    )
    _build(cli, ctx, dockerfile, "-t", "b:1")
    run = ["run", "--rm", "--network", "none", "b:1", "cat"]
    assert cli.ok(*run, "/copied") == "from the context\n"
    assert cli.ok(*run, "/ro-status").strip() != "0"
    assert cli.ok(*run, "/rw") == "scribble\n"
    # The context is untouched, and the layers hold no mount points.
    assert (ctx / "src" / "a.txt").read_text() == "from the context\n" and not (ctx / "made").exists()
    layers = _layers(cli, "b:1")
    # /w is the working directory, made by the step as without mounts; w/in is gone.
    assert _tree(layers[-2]) == ["copied", "ro-status", "w"]
    assert _tree(layers[-1]) == ["rw"]
    # The bind's content is in the step's key: a change runs the step again.
    _write(ctx / "src" / "a.txt", "changed\n")
    out = _build(cli, ctx, dockerfile, "-t", "b:2")
    assert "Using cache" not in out.split("Step 3/4")[1].split("Step 4/4")[0]
    assert cli.ok("run", "--rm", "--network", "none", "b:2", "cat", "/copied") == "changed\n"


def test_a_bind_of_the_context_leaves_out_what_dockerignore_ignores(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / ".dockerignore", "**/*.key\nbuild/\n")
    _write(ctx / "src" / "main.c", "int main;\n")
    _write(ctx / "src" / "dev.key", "private\n")
    _write(ctx / "build" / "out.o", "object\n")
    os.symlink("src/main.c", ctx / "link")
    _build(
        cli,
        ctx,
        "FROM bb:1\n"
        "RUN --mount=target=/c find /c | sort > /ro-listing\n"
        "RUN --mount=target=/c,rw echo changed > /c/src/main.c && cat /c/link > /rw\n",
        "-t",
        "ig:1",
    )
    run = ["run", "--rm", "--network", "none", "ig:1", "cat"]
    listing = cli.ok(*run, "/ro-listing").split()
    assert listing == ["/c", "/c/.dockerignore", "/c/Dockerfile", "/c/link", "/c/src", "/c/src/main.c"]
    assert cli.ok(*run, "/rw") == "changed\n"
    # The writes went to the step's throwaway upper dir, not through the links.
    assert (ctx / "src" / "main.c").read_text() == "int main;\n"


def test_a_bind_from_an_image_shows_its_merged_layers_read_only(cli, bb, tmp_path):
    src = tmp_path / "src"
    _build(
        cli,
        src,
        "FROM bb:1\nRUN mkdir /data && echo one > /data/one && echo gone > /data/gone\n"
        "RUN rm /data/gone && echo two > /data/two\n",
        "-t",
        "src:1",
    )
    ctx = tmp_path / "ctx"
    _build(
        cli,
        ctx,
        "FROM bb:1\n"
        "RUN --mount=from=src:1,source=/data,target=/m ls /m > /listing && (touch /m/x 2>/dev/null; echo $? > /st)\n"
        "RUN --mount=from=src:1,target=/img,rw touch /img/data/new && ls /img/data > /rw-listing\n",
        "-t",
        "m:1",
    )
    run = ["run", "--rm", "--network", "none", "m:1", "cat"]
    assert cli.ok(*run, "/listing").split() == ["one", "two"]  # the whiteout hides "gone"
    assert cli.ok(*run, "/st").strip() != "0"
    assert cli.ok(*run, "/rw-listing").split() == ["new", "one", "two"]
    layers = _layers(cli, "m:1")
    assert _tree(layers[-2]) == ["listing", "st"] and _tree(layers[-1]) == ["rw-listing"]
    # The source image is unchanged.
    assert cli.ok("run", "--rm", "--network", "none", "src:1", "ls", "/data").split() == ["one", "two"]

    # A cache mount from the image starts with what it shows, then keeps its own.
    cache_step = (
        "FROM bb:1\n"
        "RUN --mount=type=cache,target=/c,from=src:1,source=/data "
        "sh -c 'ls /c > /seen; echo x > /c/added-$(ls /c | wc -l)'\n"
    )
    _build(cli, tmp_path / "ctx2", cache_step, "-t", "cf:1")
    _build(cli, tmp_path / "ctx2", cache_step, "--no-cache", "-t", "cf:2")
    assert cli.ok(*run[:-2], "cf:1", "cat", "/seen").split() == ["one", "two"]
    assert cli.ok(*run[:-2], "cf:2", "cat", "/seen").split() == ["added-2", "one", "two"]


def test_a_tmpfs_mount_is_fresh_and_leaves_nothing(cli, bb, tmp_path):
    _build(
        cli,
        tmp_path / "ctx",
        "FROM bb:1\n"
        "RUN --mount=type=tmpfs,target=/scratch/deep,size=1m "
        "sh -c 'grep \" /scratch/deep tmpfs\" /proc/mounts > /m && echo hi > /scratch/deep/x'\n",
        "-t",
        "t:1",
    )
    assert "size=1024k" in cli.ok("run", "--rm", "--network", "none", "t:1", "cat", "/m")
    assert _tree(_layers(cli, "t:1")[-1]) == ["m"]


SECRET = "s3cr3t-value-4b1d"


def test_a_secret_never_lands_in_a_layer_the_history_the_config_or_the_cache(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    secret_file = _write(tmp_path / "token", SECRET, 0o600)
    # The steps prove they saw the secret by its digest: the Dockerfile
    # must not hold the value itself.
    dockerfile = (
        "FROM bb:1\n"
        "RUN --mount=type=secret,id=tok stat -c '%a %u' /run/secrets/tok > /perm && "
        "sha256sum < /run/secrets/tok > /file\n"
        "RUN --mount=type=secret,id=tok,env=TOKEN,uid=7,mode=0440,target=/etc/tok "
        'sh -c \'printf %s "$TOKEN" | sha256sum > /env-sum && stat -c "%a %u" /etc/tok > /env\'\n'
    )
    _build(cli, ctx, dockerfile, "--secret", f"id=tok,src={secret_file}", "-t", "s:1")
    run = ["run", "--rm", "--network", "none", "s:1", "cat"]
    assert cli.ok(*run, "/perm").strip() == "400 0"
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    assert cli.ok(*run, "/file").split()[0] == digest
    assert cli.ok(*run, "/env-sum").split()[0] == digest
    assert cli.ok(*run, "/env").strip() == "440 7"
    # The layers hold the command's files and no /run/secrets, /etc/tok.
    layers = _layers(cli, "s:1")
    assert _tree(layers[-2]) == ["file", "perm"] and _tree(layers[-1]) == ["env", "env-sum"]
    needle = SECRET.encode()
    # Not in any file of the store (layers, catalog with its history,
    # configs and build cache rows), nor in the image's exported tar.
    for path in cli.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert needle not in path.read_bytes(), path
    assert needle not in cli.ok("history", "--no-trunc", "s:1").encode()
    assert needle not in cli.ok("image", "inspect", "s:1").encode()
    tar = tmp_path / "s.tar"
    cli.ok("save", "-o", str(tar), "s:1")
    assert needle not in tar.read_bytes()
    with sqlite3.connect(cli.root / "catalog.db") as db:
        rows = db.execute("SELECT key, config FROM build_cache").fetchall()
    assert rows and all(needle not in bytes(config) and SECRET not in key for key, config in rows)
    # Nothing of the secret stays in the runroot either, nor from a build
    # that was killed (its directory goes with the next build's secrets).
    dead = cli.runroot / "build-secrets" / "secrets-999999999-0123456789ab"
    dead.mkdir(parents=True)
    (dead / "x").write_text("left")
    cli.ok("build", "--network", "none", "--no-cache", "--secret", f"id=tok,src={secret_file}", str(ctx))
    assert not dead.exists()
    assert not (cli.runroot / "build-secrets").exists() or not any((cli.runroot / "build-secrets").iterdir())
    # Another value of the secret hits the cache: the value is not in the key.
    _write(secret_file, "another-value", 0o600)
    out = cli.ok("build", "--network", "none", "--secret", f"id=tok,src={secret_file}", str(ctx))
    assert out.count("Using cache") == 2


def test_a_secret_from_the_environment(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\nENV API=image\n"
        f"RUN --mount=type=secret,id=api sha256sum /run/secrets/api | grep -q {digest}\n"
        # The secret's variable wins over the image's, and is there once.
        "RUN --mount=type=secret,id=api,env=API sh -c 'test \"$API\" != image && test $(env | grep -c ^API=) = 1'\n",
    )
    result = subprocess.run(
        cli.argv("build", "--network", "none", "--secret", "id=api,env=API_TOKEN", str(ctx)),
        capture_output=True,
        env=dict(cli.env, API_TOKEN=SECRET),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_a_missing_secret_fails_if_required_and_is_left_out_if_not(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _build(cli, ctx, "FROM bb:1\nRUN --mount=type=secret,id=nope test ! -e /run/secrets/nope\n")
    images_before = cli.ok("image", "ls", "-q")
    _write(ctx / "Dockerfile", "FROM bb:1\nRUN --mount=type=secret,id=nope,required touch /x\n")
    result = cli("build", "--network", "none", "-t", "never:1", str(ctx))
    assert result.returncode == 1
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "Dockerfile:2:" in err and 'secret "nope" is required' in err
    assert cli.ok("image", "ls", "-q") == images_before and _staging(cli) == []


@pytest.mark.parametrize(
    "flag, words",
    [
        ("--mount=type=ssh", "type=ssh is not supported"),
        ("--mount=type=cache", "needs a target"),
        ("--mount=type=bind,target=/x,source=../outside", "outside not found in the build context"),
        ("--mount=type=bind,target=/x,source=missing", "not found in the build context"),
        ("--mount=type=bind,target=/x,from=no-such-image:1", "no such stage or image"),
        ("--mount=type=cache,target=/x,source=sub", "needs from="),
        ("--mount=type=cache,target=/x,from=bb:1,source=/bin/sh", "is not a directory"),
        ("--mount=type=tmpfs,target=/a --mount=type=cache,target=/a", "two mounts have the target /a"),
        ("--security=insecure", "security.insecure entitlement"),
        ("--security=other", "sandbox or insecure"),
    ],
)
def test_bad_mounts_fail_on_their_line_and_leave_nothing(cli, bb, tmp_path, flag, words):
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", f"FROM bb:1\nRUN {flag} true\n")
    before = sorted(os.listdir(cli.root / "layers"))
    result = cli("build", "--network", "none", "-t", "bad:1", str(ctx))
    err = result.stderr.decode().strip()
    assert result.returncode == 1, err
    assert len(err.splitlines()) == 1 and "Dockerfile:2: RUN:" in err and words in err, err
    assert sorted(os.listdir(cli.root / "layers")) == before
    assert _staging(cli) == []
    assert cli("image", "inspect", "bad:1").returncode != 0
    mounts = cli.root / "buildcache-mounts"
    assert not mounts.exists() or not any(mounts.iterdir())


def test_run_network_none_and_host(cli, bb, tmp_path):
    # Other interfaces come and go on a busy host: the one of the default
    # route (or, without one, any but lo) is what the host network shows.
    with open("/proc/net/route") as f:
        routes = [line.split() for line in f.readlines()[1:]]
    uplinks = [r[0] for r in routes if r[1] == "00000000"] or [n for n in os.listdir("/sys/class/net") if n != "lo"]
    ctx = tmp_path / "ctx"
    _build(
        cli,
        ctx,
        "FROM bb:1\n"
        "RUN --network=none ls /sys/class/net > /none\n"
        "RUN --network=host ls /sys/class/net > /host\n"
        "RUN --network=default ls /sys/class/net > /default\n",
        "-t",
        "n:1",
    )
    run = ["run", "--rm", "--network", "none", "n:1", "cat"]
    assert cli.ok(*run, "/none").split() == ["lo"]
    host = cli.ok(*run, "/host").split()
    assert "lo" in host and uplinks[0] in host
    assert cli.ok(*run, "/default").split() == ["lo"]  # the build's --network none
    # The network is in the step's key.
    _write(ctx / "Dockerfile", "FROM bb:1\nRUN --network=host ls /sys/class/net > /none\n")
    assert "Using cache" not in cli.ok("build", "--network", "none", str(ctx)).split("Step 2/2")[1]


def test_mounts_on_the_bridge_network_with_its_etc_files(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(tmp_path / "token", SECRET, 0o600)
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\n"
        "RUN --mount=type=cache,target=/etc/cache --mount=type=secret,id=tok "
        "sh -c 'test -s /etc/hosts && test -s /run/secrets/tok && touch /etc/cache/x && echo ok > /ok'\n",
    )
    cli.ok("build", "--secret", f"id=tok,src={tmp_path / 'token'}", "-t", "br:1", str(ctx))
    # Neither the network's /etc files nor the mounts' targets are in the layer.
    assert _tree(_layers(cli, "br:1")[-1]) == ["ok"]


def test_locked_cache_steps_of_two_builds_never_overlap(cli, bb, tmp_path):
    # (With sharing=shared the two steps overlap: this test fails.)
    step = (
        "RUN --mount=type=cache,target=/c,id=one-at-a-time,sharing=locked "
        "sh -c '[ -e /c/busy ] && echo {name} >> /c/overlaps; "
        "touch /c/busy; sleep 1; rm /c/busy; echo {name} >> /c/ran'\n"
    )
    builds = []
    for name in ("a", "b"):
        ctx = tmp_path / name
        _write(ctx / "Dockerfile", "FROM bb:1\n" + step.format(name=name))
        builds.append(
            subprocess.Popen(
                cli.argv("build", "--network", "none", str(ctx)),
                env=cli.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    for build in builds:
        assert build.wait(timeout=120) == 0, build.stderr.read() if build.stderr else ""
        if build.stderr:
            build.stderr.close()
    (cache,) = list((cli.root / "buildcache-mounts").iterdir())
    assert sorted((cache / "data" / "ran").read_text().split()) == ["a", "b"]
    assert not (cache / "data" / "overlaps").exists()


def test_a_bind_from_an_earlier_stage_and_from_a_named_context(cli, bb, tmp_path):
    assets = tmp_path / "assets"
    _write(assets / "motd", "from the named context\n")
    ctx = tmp_path / "ctx"
    _build(
        cli,
        ctx,
        "FROM bb:1 AS tools\n"
        "RUN mkdir -p /opt/tools && echo 'echo built in tools' > /opt/tools/hello.sh\n"
        "FROM bb:1\n"
        "RUN --mount=from=tools,source=/opt/tools,target=/t sh /t/hello.sh > /out\n"
        "RUN --mount=from=assets,target=/a cat /a/motd > /motd\n",
        "--build-context",
        f"assets={assets}",
        "-t",
        "staged:1",
    )
    run = ["run", "--rm", "--network", "none", "staged:1", "cat"]
    assert cli.ok(*run, "/out") == "built in tools\n"
    assert cli.ok(*run, "/motd") == "from the named context\n"
    layers = _layers(cli, "staged:1")
    assert _tree(layers[-2]) == ["out"] and _tree(layers[-1]) == ["motd"]  # no mount target left
    # The named context's content is in the step's key: a change re-runs it.
    _write(assets / "motd", "changed\n")
    _build(
        cli,
        ctx,
        (ctx / "Dockerfile").read_text(),
        "--build-context",
        f"assets={assets}",
        "-t",
        "staged:2",
    )
    assert cli.ok("run", "--rm", "--network", "none", "staged:2", "cat", "/motd") == "changed\n"
