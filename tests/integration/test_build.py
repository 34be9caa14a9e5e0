"""Builds on the real kernel: the cow-test walkthrough, the cache, reproducible
digests, every instruction, diff/commit/export with whiteouts, bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers import du_bytes as _du
from tests.helpers import write_file as _write


def _layer_dirs(cli) -> set[str]:
    return set(os.listdir(cli.root / "layers"))


def _history(cli, image: str) -> list[dict]:
    """History rows without CreatedSince, which moves with the clock."""
    out = cli.ok("history", "--no-trunc", "--format", "json", image)
    rows = [json.loads(line) for line in out.splitlines()]
    for row in rows:
        del row["CreatedSince"]
    return rows


def _inspect_image(cli, image: str) -> dict:
    return json.loads(cli.ok("image", "inspect", image))[0]


@pytest.fixture
def cow_test(tmp_path: Path) -> Path:
    """The source document's cow-test directory."""
    ctx = tmp_path / "cow-test"
    _write(ctx / "hello.sh", '#!/bin/sh\necho "Hello world"\n', 0o755)
    _write(ctx / "Dockerfile.base", "FROM bb:1\nCOPY . /app\n")
    _write(ctx / "Dockerfile", "FROM acme/my-base-image:1.0\nCMD /app/hello.sh\n")
    return ctx


def test_cow_walkthrough(cli, bb, cow_test):
    out = cli.ok("build", "-t", "acme/my-base-image:1.0", "-f", str(cow_test / "Dockerfile.base"), str(cow_test))
    assert "Step 2/2 : COPY . /app" in out
    layers_after_base = _layer_dirs(cli)
    store_after_base = _du(cli.root / "layers")
    out = cli.ok("build", "-t", "acme/my-final-image:1.0", "-f", str(cow_test / "Dockerfile"), str(cow_test))
    assert "Step 2/2 : CMD /app/hello.sh" in out
    assert "Successfully tagged acme/my-final-image:1.0" in out
    # CMD adds no layer: the layer store did not grow at all.
    assert _layer_dirs(cli) == layers_after_base
    assert _du(cli.root / "layers") == store_after_base

    listing = cli.ok("image", "ls")
    assert "acme/my-base-image" in listing and "acme/my-final-image" in listing

    base = _history(cli, "acme/my-base-image:1.0")
    final = _history(cli, "acme/my-final-image:1.0")
    assert len(final) == len(base) + 1
    # Every layer but the top is the base's, with the same IDs.
    assert final[1:] == base
    top = final[0]
    assert top["Size"] == "0B"
    assert top["CreatedBy"] == '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "/app/hello.sh"]'
    assert top["ID"] == _inspect_image(cli, "acme/my-final-image:1.0")["Id"]
    assert base[0]["CreatedBy"].startswith("/bin/sh -c #(nop) COPY dir:")
    assert base[0]["ID"] == _inspect_image(cli, "acme/my-base-image:1.0")["Id"]
    assert base[1]["ID"] == bb  # the imported base is known here
    base_layers = _inspect_image(cli, "acme/my-base-image:1.0")["RootFS"]["Layers"]
    assert _inspect_image(cli, "acme/my-final-image:1.0")["RootFS"]["Layers"] == base_layers

    assert cli.ok("run", "--rm", "acme/my-final-image:1.0") == "Hello world\n"
    # The table form truncates IDs to 12 characters and sizes like Docker.
    table = cli.ok("history", "acme/my-final-image:1.0").splitlines()
    assert table[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert table[1].split()[0] == top["ID"].split(":")[1][:12]


def test_rebuild_uses_cache_and_a_changed_file_invalidates_from_its_copy(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "a" / "one.txt", "one\n")
    _write(ctx / "b" / "two.txt", "two\n")
    _write(
        ctx / "Dockerfile",
        "FROM bb:1\nENV X=1\nCOPY a /a\nRUN echo ran > /ran\nCOPY b /b\nCMD [\"cat\", \"/b/two.txt\"]\n",
    )
    first = cli.ok("build", "-q", "-t", "t:1", str(ctx)).strip()
    out = cli.ok("build", "-t", "t:1", str(ctx))
    assert out.count(" ---> Using cache") == 5
    assert "Running in" not in out
    assert f"Successfully built {first.split(':')[1][:12]}" in out

    _write(ctx / "b" / "two.txt", "TWO\n")
    out = cli.ok("build", "-t", "t:2", str(ctx))
    steps = out.split("Step ")[1:]
    assert [" ---> Using cache" in s for s in steps] == [False, True, True, True, False, False]
    assert cli.ok("run", "--rm", "t:2") == "TWO\n"
    assert cli.ok("run", "--rm", "t:1") == "two\n"

    # Touching a file (mtime only) keeps the cache, as with Docker.
    os.utime(ctx / "a" / "one.txt", (1, 1))
    assert cli.ok("build", "-q", "-t", "t:2", str(ctx)).strip() == _inspect_image(cli, "t:2")["Id"]
    # --no-cache runs every step again.
    out = cli.ok("build", "--no-cache", "-t", "t:3", str(ctx))
    assert "Using cache" not in out and "Running in" in out

    # Removing the images removes their cache rows: nothing to reuse.
    cli.ok("rmi", "t:1", "t:2", "t:3")
    out = cli.ok("build", "-t", "t:4", str(ctx))
    assert "Using cache" not in out


def test_same_context_with_source_date_epoch_gives_the_same_image_id(cli, bb, busybox_tar, tmp_path):
    ctx = tmp_path / "ctx"
    for i in range(20):
        _write(ctx / "files" / f"f{i}", f"{i}\n" * i)
    _write(
        ctx / "Dockerfile",
        'FROM bb:1\nCOPY files /files\nRUN echo stamp > /stamp && mkdir -p /var/x && touch /etc/passwd\nCMD ["sh"]\n',
    )
    plain_env = cli.env
    cli.env = dict(plain_env, SOURCE_DATE_EPOCH="1700000000")
    first = cli.ok("build", "--no-cache", "-q", str(ctx)).strip()
    second = cli.ok("build", "--no-cache", "-q", str(ctx)).strip()
    cli.env = plain_env
    assert first == second
    # A second, separate store (another machine) agrees.
    from tests.conftest import CLI  # noqa: PLC0415 - the same runner, another root

    other = CLI(tmp_path / "root2", tmp_path / "run2")
    other.ok("import", str(busybox_tar), "bb:1")
    theirs = other.ok("build", "--no-cache", "-q", "--timestamp", "1700000000", str(ctx)).strip()
    # Each store imported bb:1 at its own time, so the base configs differ;
    # every layer the build made is the same.
    layers = _inspect_image(cli, first)["RootFS"]["Layers"]
    assert json.loads(other.ok("image", "inspect", theirs))[0]["RootFS"]["Layers"] == layers
    # From scratch, the whole image ID is the same in both stores.
    scratch = tmp_path / "scratch"
    _write(scratch / "Dockerfile", "FROM scratch\nCOPY files /files\nENV A=1\nCMD [\"/files/f1\"]\n")
    shutil.copytree(ctx / "files", scratch / "files")
    ids = {c.ok("build", "--no-cache", "-q", "--timestamp", "1700000000", str(scratch)).strip() for c in (cli, other)}
    assert len(ids) == 1
    created = _inspect_image(cli, first)["Created"]
    assert created == "2023-11-14T22:13:20Z"
    # Without a timestamp two builds differ (the times differ).
    assert cli.ok("build", "--no-cache", "-q", str(ctx)).strip() != first


def test_every_instruction(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "app" / "main.sh", "#!/bin/sh\necho main \"$@\"\n", 0o755)
    _write(ctx / "app" / "secret.key", "do not copy\n")
    _write(ctx / "app" / "notes.md", "ignored\n")
    _write(ctx / ".dockerignore", "# comment\n**/*.md\napp/secret.key\n")
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as tar:
        data = b"from the archive\n"
        info = tarfile.TarInfo("unpacked/inside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (ctx / "bundle.tar.gz").write_bytes(payload.getvalue())
    _write(
        ctx / "Dockerfile",
        "# escape=`\n"
        "ARG BASE=bb:1\n"
        "FROM ${BASE}\n"
        "ARG GREETING=hello\n"
        "LABEL org.example.name=\"demo app\" version=1\n"
        "ENV APP_HOME=/srv/app `\n"
        "    MODE=test\n"
        "WORKDIR $APP_HOME\n"
        "COPY --chown=1000:1000 app/ ./\n"
        "ADD bundle.tar.gz /opt/\n"
        "RUN [\"/bin/sh\", \"-c\", \"echo $GREETING > /greeting; id -u > /who\"]\n"
        "SHELL [\"/bin/sh\", \"-ec\"]\n"
        "RUN test \"$(pwd)\" = /srv/app && echo shell-ok > /shell\n"
        "EXPOSE 8080 53/udp\n"
        "VOLUME /data\n"
        "USER 1000:1000\n"
        "ENTRYPOINT [\"/srv/app/main.sh\"]\n"
        "CMD [\"default-arg\"]\n",
    )
    out = cli.ok("build", "--build-arg", "GREETING=bonjour", "-t", "every:1", str(ctx))
    assert "Step 16/16 : CMD [\"default-arg\"]" in out
    cfg = _inspect_image(cli, "every:1")["Config"]
    assert cfg["Labels"] == {"org.example.name": "demo app", "version": "1"}
    assert "APP_HOME=/srv/app" in cfg["Env"] and "MODE=test" in cfg["Env"]
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["User"] == "1000:1000"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["Entrypoint"] == ["/srv/app/main.sh"] and cfg["Cmd"] == ["default-arg"]
    assert not any(e.startswith("GREETING=") for e in cfg["Env"])  # build args are not kept
    assert cli.ok("run", "--rm", "every:1") == "main default-arg\n"
    check = cli.ok(
        "run", "--rm", "--user", "0", "--entrypoint", "sh", "every:1", "-c",
        "cat /greeting /who /shell /opt/unpacked/inside.txt; ls -n /srv/app | awk 'NR>1{print $3,$4,$9}'",
    )
    assert check.splitlines() == [
        "bonjour", "0", "shell-ok", "from the archive", "1000 1000 main.sh",
    ]


def test_diff_commit_export_round_trip_whiteouts_and_opaque_dirs(cli, bb, tmp_path):
    cli.ok(
        "run", "--name", "c1", "bb:1", "sh", "-c",
        "rm /etc/group; rm -rf /usr; mkdir -p /usr/new; echo n > /usr/new/file; echo a > /added",
    )
    diff = cli.ok("diff", "c1").splitlines()
    assert "D /etc/group" in diff and "C /etc" in diff
    assert "A /added" in diff and "A /usr/new/file" in diff
    # /usr was removed and made again: overlayfs made it opaque, which
    # replaces what was below it.
    assert "C /usr" in diff and "D /usr/bin" in diff
    assert diff == sorted(diff, key=lambda line: line[2:])

    image_id = cli.ok("commit", "-m", "snapshot", "-c", "CMD [\"cat\", \"/added\"]", "c1", "snap:1").strip()
    assert cli.ok("run", "--rm", "snap:1") == "a\n"
    seen = cli.ok("run", "--rm", "snap:1", "sh", "-c", "ls /usr; test -e /etc/group || echo gone; cat /usr/new/file")
    assert seen.split() == ["new", "gone", "n"]
    hist = _history(cli, image_id)
    assert hist[0]["Comment"] == "snapshot"

    assert hist[1]["ID"] == bb  # the image the container ran
    # As a layer tar, the commit carries OCI whiteouts: a .wh. file for the
    # deleted file and the opaque marker for the replaced directory.
    diff_id = _inspect_image(cli, "snap:1")["RootFS"]["Layers"][-1]
    layer_dir = cli.root / "layers" / diff_id.split(":")[1][:16] / "diff"
    from overlayctl.layer.writer import write_layer_tar

    buf = io.BytesIO()
    assert write_layer_tar(str(layer_dir), buf).diff_id == diff_id
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = set(tar.getnames())
    assert {"etc/.wh.group", "usr/.wh..wh..opq", "usr/new/file", "added"} <= names

    cli.ok("export", "-o", str(tmp_path / "c1.tar"), "c1")
    with tarfile.open(tmp_path / "c1.tar") as tar:
        names = set(tar.getnames())
    assert "added" in names and "usr/new/file" in names and "bin/busybox" in names
    assert "etc/group" not in names and "usr/bin" not in names
    assert not any(".wh." in n for n in names)


@pytest.mark.parametrize(
    ("dockerfile", "needle"),
    [
        ("FROM bb:1\nFROOM x\n", "Dockerfile:2: unknown instruction: FROOM"),
        ("FROM bb:1\nCOPY missing.txt /x\n", "missing.txt not found"),
        ("FROM bb:1\nCOPY ../outside /x\n", "outside the build context"),
        ("FROM bb:1\nCOPY /etc/passwd /x\n", "absolute path"),
        ("FROM bb:1\nCOPY link /x\n", "leads outside the build context"),
        ("FROM bb:1\nCOPY f.txt /f\nRUN exit 3\n", "returned a non-zero code: 3"),
        ("FROM no/such:image\nRUN true\n", 'base image "no/such:image" not found'),
    ],
)
def test_bad_input_leaves_nothing_behind(cli, bb, tmp_path, dockerfile, needle):
    ctx = tmp_path / "ctx"
    _write(ctx / "f.txt", "f\n")
    _write(ctx / "Dockerfile", dockerfile)
    (ctx / "link").symlink_to("/etc/passwd")
    layers_before = _layer_dirs(cli)
    result = cli("build", "-t", "bad:1", str(ctx))
    assert result.returncode != 0
    err = result.stderr.decode()
    assert needle in err, err
    assert len(err.strip().splitlines()) == 1, err  # one line
    assert [line for line in cli.ok("image", "ls").splitlines() if line.split()[0] == "bad"] == []
    assert _layer_dirs(cli) == layers_before  # no orphan layer
    assert os.listdir(cli.root / "tmp") == []  # staging cleaned
    if "non-zero" in needle:
        assert result.returncode == 1


def test_build_from_scratch_and_quiet(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "hello.txt", "hi\n")
    _write(ctx / "Dockerfile", "FROM scratch\nCOPY hello.txt /\n")
    out = cli.ok("build", "-q", "-t", "s:1", str(ctx))
    assert out.startswith("sha256:") and len(out.strip()) == 71 and "\n" == out[-1] and out.count("\n") == 1
    layers = _inspect_image(cli, "s:1")["RootFS"]["Layers"]
    assert len(layers) == 1
    # FROM scratch + RUN: there is no shell to run.
    _write(ctx / "Dockerfile", "FROM scratch\nRUN true\n")
    result = cli("build", str(ctx))
    assert result.returncode == 1 and b"empty image" in result.stderr


def test_the_same_layer_twice_in_an_image_mounts_and_runs(cli, bb, tmp_path):
    # Three RUN steps that change nothing make three identical (empty)
    # layers, stored once: the stack names one directory three times, which
    # overlayfs refuses (ELOOP) unless the repeats are dropped.
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", "FROM bb:1\nRUN true\nRUN true\nRUN true\nRUN echo hi > /x\nRUN true\n")
    cli.ok("build", "--network", "none", "--no-cache", "-t", "dup:1", str(ctx))
    layers = _inspect_image(cli, "dup:1")["RootFS"]["Layers"]
    assert len(layers) > len(set(layers))  # the same diff_id more than once
    assert cli.ok("run", "--rm", "--network", "none", "dup:1", "cat", "/x") == "hi\n"
    assert cli.ok("run", "--rm", "dup:1", "cat", "/x") == "hi\n"  # with the init layer on top


def test_untouched_context_hits_without_reading_and_a_same_size_edit_misses(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    target = _write(ctx / "data.txt", "aaaa\n")
    _write(ctx / "Dockerfile", "FROM bb:1\nCOPY data.txt /data.txt\n")
    first = cli.ok("build", "-q", str(ctx)).strip()
    stat = target.stat()
    # Same size, same mtime, new content: the stat stamp (ctime) still differs.
    target.write_text("bbbb\n")
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    out = cli.ok("build", str(ctx))
    assert "Using cache" not in out.split("Step 2/2")[1]
    assert cli.ok("run", "--rm", out.split("Successfully built ")[1].strip(), "cat", "/data.txt") == "bbbb\n"
    # Back to the old content: the content key finds the first build.
    target.write_text("aaaa\n")
    assert cli.ok("build", "-q", str(ctx)).strip() == first


def test_history_shows_missing_where_the_image_below_is_gone(cli, bb, cow_test):
    cli.ok("build", "-t", "acme/my-base-image:1.0", "-f", str(cow_test / "Dockerfile.base"), str(cow_test))
    cli.ok("build", "-t", "acme/my-final-image:1.0", "-f", str(cow_test / "Dockerfile"), str(cow_test))
    cli.ok("rmi", "acme/my-base-image:1.0", "bb:1")
    rows = _history(cli, "acme/my-final-image:1.0")
    assert rows[0]["ID"] == _inspect_image(cli, "acme/my-final-image:1.0")["Id"]
    assert [r["ID"] for r in rows[1:]] == ["<missing>", "<missing>"]
    # The layers stay: the final image still uses them.
    assert cli.ok("run", "--rm", "acme/my-final-image:1.0") == "Hello world\n"


def test_a_crashed_builds_staging_is_swept_by_the_next_build(cli, bb, tmp_path):
    ctx = tmp_path / "ctx"
    _write(ctx / "Dockerfile", "FROM bb:1\nRUN touch /x\n")
    cli.ok("build", "-q", str(ctx))
    # What a build killed mid-step leaves: a staging dir named after a dead process.
    proc = subprocess.Popen(["true"])
    proc.wait()
    leftover = cli.root / "tmp" / f"build-{proc.pid}-0123456789ab"
    (leftover / "diff" / "etc").mkdir(parents=True)
    (leftover / "diff" / "etc" / "file").write_text("half written\n")
    cli.ok("build", "-q", "--no-cache", str(ctx))
    assert not leftover.exists()
