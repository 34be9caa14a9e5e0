"""Multi-stage builds and ONBUILD on the real kernel: stages built at the
same time, COPY --from a stage, an index, an image or a named context,
--target, ARG scoping, the cache in every stage, and failures that leave
nothing behind."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tests.integration import test_network

# A private default bridge, every device the test made deleted afterwards.
net = test_network.net


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _layers(cli) -> set[str]:
    return set(os.listdir(cli.root / "layers"))


def _cache_rows(cli) -> int:
    with sqlite3.connect(cli.root / "catalog.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM build_cache").fetchone()[0])


def _tags(cli) -> list[str]:
    rows = [json.loads(line) for line in cli.ok("image", "ls", "--format", "json").splitlines()]
    return sorted(f"{row['Repository']}:{row['Tag']}" for row in rows)


def _cat(cli, image: str, *paths: str) -> str:
    return cli.ok("run", "--rm", "--network", "none", image, "cat", *paths)


# Each independent stage notes when its RUN started and ended (the kernel's
# uptime, the same clock for every namespace) and sleeps in between.
PARALLEL = """\
FROM bb:1 AS one
RUN cat /proc/uptime > /one-start; echo out-of-one; sleep 2; echo one > /one; cat /proc/uptime > /one-end
FROM bb:1 AS two
RUN cat /proc/uptime > /two-start; echo out-of-two; sleep 2; echo two > /two; cat /proc/uptime > /two-end
FROM bb:1
COPY --from=one /one /one-start /one-end /r/
COPY --from=two /two /two-start /two-end /r/
"""


@pytest.mark.slow
def test_independent_stages_run_at_once_and_a_rebuild_hits_the_cache_in_every_stage(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", PARALLEL)
    layers_before = _layers(cli)
    out = cli.ok("build", "--network", "none", "-t", "par:1", str(ctx))
    starts = {s: float(_cat(cli, "par:1", f"/r/{s}-start").split()[0]) for s in ("one", "two")}
    ends = {s: float(_cat(cli, "par:1", f"/r/{s}-end").split()[0]) for s in ("one", "two")}
    # Each RUN sleeps 2 s: run one after the other, one would start after the other ended.
    assert starts["one"] < ends["two"] and starts["two"] < ends["one"], (starts, ends)
    assert _cat(cli, "par:1", "/r/one", "/r/two") == "one\ntwo\n"
    # Output stays readable: every line of a stage built beside another
    # carries its name, the RUN's own output included.
    lines = out.splitlines()
    assert "[one] out-of-one" in lines and "[two] out-of-two" in lines
    assert "[one] Step 2/7 : " + PARALLEL.splitlines()[1] in lines
    assert not any(line.startswith("[one]") and "two" in line.split("]", 1)[1] for line in lines)
    assert "Step 5/7 : FROM bb:1" in lines  # the last stage, alone, as a one-stage build prints
    # Intermediate stages leave no image.
    assert _tags(cli) == ["bb:1", "par:1"]
    image_id = json.loads(cli.ok("image", "inspect", "par:1"))[0]["Id"]
    layers = _layers(cli)
    again = cli.ok("build", "--network", "none", "-t", "par:1", str(ctx))
    # Both RUNs, both COPYs: every step with something to do hits.
    assert again.count("Using cache") == 4, again
    assert "Running in" not in again
    assert json.loads(cli.ok("image", "inspect", "par:1"))[0]["Id"] == image_id
    assert _layers(cli) == layers
    # The stages' layers, which only the image's cache rows name, go with it.
    assert len(layers - layers_before) == 4  # two RUNs, two COPYs
    cli.ok("rmi", "par:1")
    assert _layers(cli) == layers_before and _cache_rows(cli) == 0


@pytest.mark.slow
def test_a_failing_stage_leaves_no_layer_image_cache_or_staging_of_any_stage(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        "FROM bb:1 AS good\nRUN echo $$ > /made\n"
        "FROM bb:1 AS bad\nRUN sleep 1; exit 7\n"
        "FROM bb:1\nCOPY --from=good /made /\nCOPY --from=bad /etc/passwd /\n",
    )
    layers = _layers(cli)
    result = cli("build", "--network", "none", "-t", "broken:1", str(ctx))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert len(err.strip().splitlines()) == 1, err
    assert "Dockerfile:4: RUN: the command '/bin/sh -c sleep 1; exit 7' returned a non-zero code: 7" in err
    assert "[good] Step 2/7" in result.stdout.decode()  # the good stage did build, beside it
    assert _layers(cli) == layers
    assert _cache_rows(cli) == 0
    assert _tags(cli) == ["bb:1"]
    assert os.listdir(cli.root / "tmp") == []


def test_target_builds_only_the_stages_it_needs(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        "FROM bb:1 AS base\nRUN echo base > /base\n"
        "FROM base AS Dev\nRUN echo dev > /dev-only\n"
        "FROM bb:1 AS broken\nRUN exit 9\n"
        "FROM base\nRUN exit 9\n",
    )
    out = cli.ok("build", "--network", "none", "--target", "dev", "-t", "dev:1", str(ctx))
    assert "exit 9" not in out
    assert _cat(cli, "dev:1", "/base", "/dev-only") == "base\ndev\n"
    result = cli("build", "--target", "nope", str(ctx))
    assert result.returncode == 1
    assert result.stderr.decode().strip().endswith('Dockerfile: target stage "nope" could not be found')
    assert len(result.stderr.decode().strip().splitlines()) == 1


def test_arg_scoping_as_docker(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        "ARG BASE=none:0\nARG V=global\n"
        "FROM ${BASE} AS first\n"
        'RUN echo "V=[$V]" > /unset\n'  # a global ARG is not in a stage until declared there
        "ARG V\n"
        'RUN echo "V=[$V]" > /declared\n'
        "ARG LOCAL=first-only\n"
        "FROM $BASE\n"
        'RUN echo "LOCAL=[$LOCAL]" > /other\n'  # each stage its own scope
        "COPY --from=first /unset /declared /\n",
    )
    out = cli.ok("build", "--network", "none", "--build-arg", "BASE=bb:1", "-t", "args:1", str(ctx))
    assert "not consumed" not in out
    assert _cat(cli, "args:1", "/unset", "/declared", "/other") == "V=[]\nV=[global]\nLOCAL=[]\n"
    cli.ok("build", "--network", "none", "--build-arg", "BASE=bb:1", "--build-arg", "V=cli", "-t", "args:2", str(ctx))
    assert _cat(cli, "args:2", "/declared") == "V=[cli]\n"


def test_copy_from_an_index_an_image_a_stage_base_and_a_named_context(cli, bb, tmp_path):
    extra = tmp_path / "extra"
    _write(extra / "sub" / "x.txt", "from the named context\n")
    _write(extra / ".dockerignore", "sub/ignored\n")
    _write(extra / "sub" / "ignored", "no\n")
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\nRUN mkdir -p /deep/dir && echo zero > /deep/dir/z\n"
        "FROM 0 AS child\n"  # FROM takes stage names, not indexes: this is an image
        "FROM scratch AS files\n"
        "COPY --from=0 /deep /d\n"
        "COPY --from=bb:1 /bin/busybox /bin/busybox\n"
        "COPY --from=extra sub /named/\n"
        "FROM files\n"
        "COPY --from=FILES /d/dir/z /again\n",
    )
    # "FROM 0": an image called 0, which does not exist (and only matters
    # when the target needs it).
    result = cli("build", "--network", "none", "--target", "child", str(ctx))
    assert result.returncode == 1 and 'Dockerfile:3: FROM: base image "0" not found' in result.stderr.decode()
    text = (ctx / "Dockerfile").read_text().replace("FROM 0 AS child\n", "")
    _write(ctx / "Dockerfile", text)
    cli.ok("build", "--network", "none", "--build-context", f"extra={extra}", "-t", "from:1", str(ctx))
    image = json.loads(cli.ok("image", "inspect", "from:1"))[0]
    assert len(image["RootFS"]["Layers"]) == 4  # three COPYs in "files", one after FROM files
    out = cli.ok(
        "run",
        "--rm",
        "--network",
        "none",
        "from:1",
        "/bin/busybox",
        "sh",
        "-c",
        "cat /d/dir/z /again /named/x.txt; ls /named",
    )
    assert out == "zero\nzero\nfrom the named context\nx.txt\n"  # .dockerignore of the named context holds
    result = cli("build", "--network", "none", str(ctx))
    assert result.returncode == 1
    assert 'Dockerfile:6: COPY: --from image "extra" not found locally' in result.stderr.decode()


def test_from_an_earlier_stage_and_a_docker_image_context(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        "FROM base AS builder\nENV STAGE=builder\nRUN echo built > /built\nFROM Builder\nRUN echo $STAGE > /seen\n",
    )
    cli.ok("build", "--network", "none", "--build-context", "base=docker-image://bb:1", "-t", "fs:1", str(ctx))
    assert _cat(cli, "fs:1", "/built", "/seen") == "built\nbuilder\n"
    # A directory stands for an image of its files (one layer on scratch).
    rootfs = tmp_path / "rootfs"
    _write(rootfs / "hello", "from the directory\n")
    _write(
        ctx / "Dockerfile",
        'FROM base\nCOPY --from=tools /bin/busybox /bin/busybox\nRUN ["/bin/busybox", "cat", "/hello"]\n',
    )
    contexts = ["--build-context", f"base={rootfs}", "--build-context", "tools=docker-image://bb:1"]
    out = cli.ok("build", "--network", "none", *contexts, "-t", "fromdir:1", str(ctx))
    assert "from the directory" in out
    layers = json.loads(cli.ok("image", "inspect", "fromdir:1"))[0]["RootFS"]["Layers"]
    assert len(layers) == 3  # the directory, the COPY, the RUN


def test_onbuild_is_recorded_runs_at_from_and_is_not_inherited(cli, bb, tmp_path):
    base = tmp_path / "base"
    _write(
        base / "Dockerfile",
        "FROM bb:1\nONBUILD COPY greeting /greeting\nONBUILD RUN cat /greeting > /seen-by-trigger\n",
    )
    cli.ok("build", "--network", "none", "-t", "onbase:1", str(base))
    config = json.loads(cli.ok("image", "inspect", "onbase:1"))[0]["Config"]
    assert config["OnBuild"] == ["COPY greeting /greeting", "RUN cat /greeting > /seen-by-trigger"]
    child = tmp_path / "child"
    _write(child / "greeting", "hello from the child's context\n")
    _write(child / "Dockerfile", "FROM onbase:1\nRUN cat /seen-by-trigger\n")
    out = cli.ok("build", "--network", "none", "-t", "onchild:1", str(child))
    assert "# Executing 2 build triggers" in out
    assert "hello from the child's context" in out  # the step after FROM sees what the triggers made
    assert not json.loads(cli.ok("image", "inspect", "onchild:1"))[0]["Config"].get("OnBuild")
    # A grandchild runs no trigger: they are not passed on.
    grand = tmp_path / "grand"
    _write(grand / "Dockerfile", "FROM onchild:1\nRUN true\n")
    assert "build trigger" not in cli.ok("build", "--network", "none", str(grand))
    # A loaded image's triggers run too.
    for fmt in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"onbase.{fmt}.tar"
        cli.ok("save", "--format", fmt, "-o", str(archive), "onbase:1")
        cli.ok("rmi", "onbase:1", "onchild:1")
        cli.ok("image", "prune", "-f")
        cli.ok("load", "-i", str(archive))
        out = cli.ok("build", "--network", "none", "-t", "onchild:1", str(child))
        assert "# Executing 2 build triggers" in out and "hello from the child's context" in out


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("ONBUILD ONBUILD RUN true", "Dockerfile:2: ONBUILD: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM bb:1", "Dockerfile:2: ONBUILD: FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD MAINTAINER me", "Dockerfile:2: ONBUILD: MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD FROOM x", "Dockerfile:2: ONBUILD: trigger 'FROOM x'"),
    ],
)
def test_bad_onbuild_fails_before_any_step(cli, bb, tmp_path, line, needle):
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", f"FROM bb:1\n{line}\nRUN echo should-not-run\n")
    layers = _layers(cli)
    result = cli("build", str(ctx))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert "should-not-run" not in result.stdout.decode()
    assert _layers(cli) == layers and _cache_rows(cli) == 0


@pytest.mark.parametrize(
    ("dockerfile", "needle"),
    [
        ("FROM bb:1 AS a\nFROM bb:1 AS A\n", 'Dockerfile:2: FROM: duplicate stage name "a"'),
        ("FROM bb:1\nCOPY --from=1 /x /\nFROM bb:1\n", "Dockerfile:2: COPY: stage index 1 is not an earlier stage"),
        ("FROM bb:1 AS a\nCOPY --from=a /x /\n", 'Dockerfile:2: COPY: --from image "a" not found'),
        ("FROM bb:1 AS a\nFROM bb:1\nCOPY --from=a /nothing /x\n", "Dockerfile:3: COPY: "),
    ],
)
def test_bad_stage_references(cli, bb, tmp_path, dockerfile, needle):
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", dockerfile)
    layers = _layers(cli)
    result = cli("build", "--network", "none", str(ctx))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert _layers(cli) == layers and os.listdir(cli.root / "tmp") == []


def test_a_stage_layer_another_image_still_caches_stays_when_one_image_goes(cli, bb, tmp_path):
    shared = "FROM bb:1 AS tool\nRUN echo made > /tool\n"
    first, second = tmp_path / "first", tmp_path / "second"
    _write(first / "Dockerfile", shared + "FROM bb:1\nCOPY --from=tool /tool /first\n")
    _write(second / "Dockerfile", shared + "FROM bb:1\nCOPY --from=tool /tool /second\n")
    cli.ok("build", "--network", "none", "-t", "first:1", str(first))
    out = cli.ok("build", "--network", "none", "-t", "second:1", str(second))
    assert out.count("Using cache") == 1  # the tool stage's RUN
    cli.ok("rmi", "first:1")
    again = cli.ok("build", "--network", "none", "-t", "second:2", str(second))
    assert again.count("Using cache") == 2, again  # the RUN's layer stayed for second:1's rows
    assert _cat(cli, "second:2", "/second") == "made\n"


def test_copy_from_resolves_the_sources_symlinks_inside_the_source(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        # /d/bin points at the source's own /bin, absolutely: on the host it would be the host's.
        "FROM bb:1 AS src\nRUN mkdir /d && ln -s /bin /d/bin && echo mine > /bin/marker"
        " && ln -s /bin/marker /abs && mkdir /in && ln -s ../abs /in/link\n"
        "FROM bb:1\nCOPY --from=src /d/bin/marker /marker\nCOPY --from=src /abs /abs\nCOPY --from=src /in /in\n",
    )
    cli.ok("build", "--network", "none", "-t", "links:1", str(ctx))
    # A symlink given as the source is followed (in the source), as Docker
    # does; one inside a copied directory stays a symlink.
    assert _cat(cli, "links:1", "/marker", "/abs") == "mine\nmine\n"
    assert cli.ok("run", "--rm", "--network", "none", "links:1", "readlink", "/in/link") == "../abs\n"
    _write(ctx / "Dockerfile", "FROM bb:1 AS src\nFROM bb:1\nCOPY --from=src /nothing /x\n")
    result = cli("build", "--network", "none", str(ctx))
    assert result.returncode == 1
    assert 'Dockerfile:3: COPY: COPY failed: nothing not found in "src"' in result.stderr.decode()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("https://example.invalid/x.tar", "only a local directory or docker-image://IMAGE"),
        ("/no/such/dir", "--build-context x=/no/such/dir: not a directory"),
    ],
)
def test_build_contexts_other_than_a_directory_or_a_local_image_are_refused(cli, bb, tmp_path, value, needle):
    _write(tmp_path / "Dockerfile", "FROM bb:1\n")
    result = cli("build", "--build-context", f"x={value}", str(tmp_path))
    assert result.returncode != 0
    assert needle in result.stderr.decode() and len(result.stderr.decode().strip().splitlines()) == 1


def test_quiet_prints_only_the_image_id_with_stages_built_at_once(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        "FROM bb:1 AS x\nRUN echo noisy-x > /x\nFROM bb:1 AS y\nRUN echo noisy-y > /y\n"
        "FROM bb:1\nCOPY --from=x /x /\nCOPY --from=y /y /\n",
    )
    out = cli.ok("build", "-q", "--network", "none", "-t", "quiet:1", str(ctx))
    assert out.startswith("sha256:") and out.count("\n") == 1, out
    assert _cat(cli, "quiet:1", "/x", "/y") == "noisy-x\nnoisy-y\n"


def test_a_stages_errors_go_to_standard_error_with_its_name(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(
        ctx / "Dockerfile",
        "FROM bb:1 AS x\nRUN echo to-out-x; echo to-err-x >&2\nFROM bb:1 AS y\nRUN echo to-err-y >&2\n"
        "FROM bb:1\nCOPY --from=x /bin/sh /x\nCOPY --from=y /bin/sh /y\n",
    )
    result = cli("build", "--network", "none", str(ctx))
    assert result.returncode == 0, result.stderr
    out, err = result.stdout.decode().splitlines(), result.stderr.decode().splitlines()
    assert "[x] to-out-x" in out and "[x] to-err-x" in err and "[y] to-err-y" in err
    assert "[x] to-err-x" not in out and "[y] to-err-y" not in out and "[x] to-out-x" not in err
    assert not any("waiting for another" in line for line in err)  # a sibling stage is no other process


def test_builder_prune_takes_the_other_stages_layers(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", "FROM bb:1 AS tool\nRUN echo made > /tool\nFROM bb:1\nCOPY --from=tool /tool /copied\n")
    layers = _layers(cli)
    cli.ok("build", "--network", "none", "-t", "pruned:1", str(ctx))
    assert len(_layers(cli) - layers) == 2  # the tool stage's RUN, the COPY
    # gc keeps what the cache still names: it is not garbage.
    assert "unreferenced layer" not in cli.ok("system", "gc")
    assert len(_layers(cli) - layers) == 2
    assert "Using cache" in cli.ok("build", "--network", "none", "-t", "pruned:1", str(ctx))
    out = cli.ok("builder", "prune", "-f")
    assert "cached build steps" in out and len(_layers(cli) - layers) == 1  # the image keeps its COPY
    assert _cat(cli, "pruned:1", "/copied") == "made\n"
    assert "Using cache" not in cli.ok("build", "--network", "none", "-t", "pruned:1", str(ctx))


def test_stages_built_at_once_each_run_on_the_bridge_with_its_own_address(net, tmp_path):
    cli = net.cli
    ctx = tmp_path / "ctx"
    step = "RUN ip -o -4 addr show eth0 | awk '{print $4}' > /addr; cat /etc/hostname > /name; sleep 1"
    _write(
        ctx / "Dockerfile",
        f"FROM bb:1 AS p\n{step}\nFROM bb:1 AS q\n{step}\n"
        "FROM bb:1\nCOPY --from=p /addr /name /p/\nCOPY --from=q /addr /name /q/\n",
    )
    cli.ok("build", "-t", "bridged:1", str(ctx))  # the default network: the bridge
    p, q = (_cat(cli, "bridged:1", f"/{s}/addr", f"/{s}/name").split() for s in ("p", "q"))
    assert p[0] != q[0] and p[1] != q[1]  # two steps, two addresses, two hostnames
    assert all(addr.count(".") == 3 and "/" in addr for addr in (p[0], q[0]))
