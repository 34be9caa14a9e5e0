"""Image names through the CLI as a script uses them: tag, rmi of one tag,
Docker's normalised names (busybox = docker.io/library/busybox:latest) and
RepoDigests after pull and push."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.integration.test_registry import registry  # noqa: F401 - the fixture


def _inspect(cli: CLI, name: str) -> dict:
    return json.loads(cli.ok("image", "inspect", name))[0]


def _ls(cli: CLI, *args: str) -> list[list[str]]:
    return [line.split() for line in cli.ok("images", *args).splitlines()[1:]]


# -- tag and rmi --------------------------------------------------------------------


def test_tag_names_the_same_image_and_rmi_of_one_tag_only_untags(cli, bb):
    assert cli.ok("tag", "bb:1", "copy:2") == ""
    cli.ok("image", "tag", bb[7:19], "acme/third")
    assert _inspect(cli, "copy:2")["Id"] == bb
    assert _inspect(cli, "acme/third:latest")["RepoTags"] == ["acme/third:latest", "bb:1", "copy:2"]
    assert sorted(row[0] + ":" + row[1] for row in _ls(cli)) == ["acme/third:latest", "bb:1", "copy:2"]
    # One tag of several: only that name goes.
    assert cli.ok("rmi", "copy:2") == "Untagged: copy:2\n"
    assert cli.ok("rmi", "acme/third") == "Untagged: acme/third:latest\n"
    assert _inspect(cli, "bb:1")["RepoTags"] == ["bb:1"]
    # The last one takes the image (and its layer) along.
    out = cli.ok("rmi", "bb:1").splitlines()
    assert out[:2] == ["Untagged: bb:1", f"Deleted: {bb}"] and out[2].startswith("Deleted: sha256:")
    assert cli.ok("images", "-q") == ""


def test_tag_over_an_existing_tag_moves_it(cli, bb):
    cli.ok("import", "-", "other:1", input=_tar("other"))
    other = _inspect(cli, "other:1")["Id"]
    cli.ok("tag", "other:1", "bb:1")
    assert _inspect(cli, "bb:1")["Id"] == other
    # The image that lost its name stays, untagged (dangling), as Docker's does.
    assert _inspect(cli, bb)["RepoTags"] == []
    assert ["<none>", "<none>", bb[7:19]] in [row[:3] for row in _ls(cli)]


@pytest.mark.parametrize(
    "args, words",
    [
        (("tag", "ghost:1", "x:1"), 'image "ghost:1" not found'),
        (("tag", "bb:1", "Bad:Name"), "invalid reference format"),
        (("tag", "bb:1", "x@sha256:" + "a" * 64), "refusing to create a tag with a digest reference"),
        (("tag", "bb:1"), "Missing argument"),
    ],
)
def test_tag_errors_are_one_line_and_change_nothing(cli, bb, args, words):
    result = cli(*args)
    err = result.stderr.decode()
    assert result.returncode == 125 and err.count("\n") == 1 and words in err, err
    assert _inspect(cli, "bb:1")["RepoTags"] == ["bb:1"]


def test_rmi_of_the_last_tag_of_an_image_a_container_uses(cli, bb):
    cli.ok("tag", "bb:1", "second:1")
    cli.ok("create", "--name", "user1", "bb:1", "true")
    # Not the last name: untagged at once, as Docker does.
    assert cli.ok("rmi", "second:1") == "Untagged: second:1\n"
    result = cli("rmi", "bb:1")
    assert result.returncode == 125 and "user1" in result.stderr.decode()
    assert _inspect(cli, "bb:1")["Id"] == bb  # refused: nothing changed
    # -f untags; the image stays for its container.
    assert cli.ok("rmi", "-f", "bb:1") == "Untagged: bb:1\n"
    assert _inspect(cli, bb)["RepoTags"] == []
    assert cli.ok("start", "-a", "user1") == ""
    cli.ok("rm", "user1")
    out = cli.ok("rmi", bb[7:19])
    assert out.startswith(f"Deleted: {bb}\n")
    assert cli.ok("images", "-q") == ""


def test_rmi_by_id_of_an_image_in_two_repositories_needs_force(cli, bb):
    cli.ok("tag", "bb:1", "bb:2")
    cli.ok("tag", "bb:1", "other:1")
    result = cli("rmi", bb[7:19])
    err = result.stderr.decode()
    assert result.returncode == 125 and "must be forced" in err and err.count("\n") == 1
    assert _inspect(cli, bb)["RepoTags"] == ["bb:1", "bb:2", "other:1"]
    out = cli.ok("rmi", "-f", bb[7:19]).splitlines()
    assert out[:4] == ["Untagged: bb:1", "Untagged: bb:2", "Untagged: other:1", f"Deleted: {bb}"]


def test_rmi_by_id_of_an_image_in_one_repository(cli, bb):
    cli.ok("tag", "bb:1", "bb:2")
    out = cli.ok("rmi", bb).splitlines()
    assert out[:3] == ["Untagged: bb:1", "Untagged: bb:2", f"Deleted: {bb}"]


# -- Docker's normalised names ---------------------------------------------------------


def test_the_spellings_of_one_name_find_the_same_tag(cli, bb):
    cli.ok("tag", "bb:1", "docker.io/library/busybox:latest")
    cli.ok("tag", "bb:1", "docker.io/acme/x")
    cli.ok("tag", "bb:1", "localhost/y")
    tags = _inspect(cli, "bb:1")["RepoTags"]
    assert tags == ["acme/x:latest", "bb:1", "busybox:latest", "localhost/y:latest"]
    for name in (
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
        "acme/x",
        "docker.io/acme/x:latest",
        "localhost/y",
        "localhost/y:latest",
        "docker.io/library/bb:1",
    ):
        assert _inspect(cli, name)["Id"] == bb, name
    # localhost/ is a host of its own: the bare name is another repository.
    assert cli("image", "inspect", "y").returncode == 125
    # `images` shows Docker's short form.
    assert sorted(row[0] for row in _ls(cli)) == ["acme/x", "bb", "busybox", "localhost/y"]
    assert cli.ok("run", "--rm", "--network", "none", "docker.io/library/busybox", "echo", "ok") == "ok\n"
    assert cli.ok("rmi", "docker.io/library/busybox:latest") == "Untagged: busybox:latest\n"


def _docker_archive(cli: CLI, tmp_path: Path, source: str, repo_tags: list[str]) -> Path:
    """Save source as a docker-archive whose manifest names repo_tags."""
    saved = tmp_path / "saved.tar"
    cli.ok("save", "--format", "docker-archive", "-o", str(saved), source)
    out = tmp_path / "named.tar"
    with tarfile.open(saved) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "manifest.json":
                manifest = json.loads(data)
                manifest[0]["RepoTags"] = repo_tags
                data = json.dumps(manifest).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def test_an_image_loaded_as_docker_io_library_x_runs_as_x(cli, bb, tmp_path):
    archive = _docker_archive(cli, tmp_path, "bb:1", ["docker.io/library/x:1", "docker.io/acme/y:2"])
    cli.ok("rmi", "bb:1")
    cli.ok("load", "-i", str(archive))
    assert _inspect(cli, "x:1")["RepoTags"] == ["acme/y:2", "x:1"]
    assert sorted(row[0] + ":" + row[1] for row in _ls(cli)) == ["acme/y:2", "x:1"]
    assert cli.ok("run", "--rm", "--network", "none", "x:1", "echo", "hello") == "hello\n"
    assert cli.ok("run", "--rm", "--network", "none", "docker.io/acme/y:2", "echo", "hi") == "hi\n"


def test_an_old_store_s_docker_io_tags_answer_to_their_short_names(cli, bb):
    """A store written before the names were normalised kept the full
    spelling; opening it moves those tags to the familiar form."""
    db = sqlite3.connect(cli.root / "catalog.db")
    db.execute("UPDATE tags SET name = 'docker.io/library/old:1'")
    db.execute("DROP TABLE repo_digests")
    db.execute("PRAGMA user_version = 7")
    db.commit()
    db.close()
    assert _inspect(cli, "old:1")["Id"] == bb
    assert _ls(cli)[0][:2] == ["old", "1"]


def _tar(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(name)
        tar.addfile(info, io.BytesIO(name.encode()))
    return buf.getvalue()


# -- RepoDigests after push and pull -----------------------------------------------------


def test_repo_digests_after_push_and_pull(cli, bb, registry):  # noqa: F811 - the fixture imported above
    from tests.integration.test_registry import _pushed_digest

    repo = f"{registry}/names-dg"
    cli.ok("tag", "bb:1", f"{repo}:1")
    digest = _pushed_digest(cli.ok("push", f"{repo}:1"))
    assert _inspect(cli, "bb:1")["RepoDigests"] == [f"{repo}@{digest}"]
    rows = {(row[0], row[1]): row[2] for row in _ls(cli, "--digests")}
    assert rows == {("bb", "1"): "<none>", (repo, "1"): digest}
    listed = [json.loads(line) for line in cli.ok("images", "--format", "json").splitlines()]
    assert {(i["Repository"], i["Digest"]) for i in listed} == {("bb", "<none>"), (repo, digest)}
    # A push under another name (podman's `push SRC DEST`) leaves the names alone.
    cli.ok("push", "bb:1", f"{registry}/names-other:1")
    assert _inspect(cli, "bb:1")["RepoDigests"] == [f"{repo}@{digest}"]
    # The repository's last tag takes its digest along; the image stays for bb:1.
    assert cli.ok("rmi", f"{repo}:1") == f"Untagged: {repo}:1\nUntagged: {repo}@{digest}\n"
    assert _inspect(cli, "bb:1")["RepoDigests"] == []
    # A pull records the digest it pulled; the digest reference resolves.
    out = cli.ok("pull", f"{repo}:1")
    assert f"Digest: {digest}" in out
    assert _inspect(cli, f"{repo}:1")["RepoDigests"] == [f"{repo}@{digest}"]
    assert _inspect(cli, f"{repo}@{digest}")["Id"] == bb
    assert _inspect(cli, f"{repo}:9@{digest}")["Id"] == bb  # the tag beside a digest is ignored, as Docker does
    run = cli.ok("run", "--rm", "--network", "none", f"{repo}@{digest}", "echo", "by-digest")
    assert run == "by-digest\n"
    # An image known by a digest only is listed under its repository, tag <none>.
    cli.ok("rmi", "bb:1")
    cli.ok("tag", f"{repo}:1", "keep:1")
    cli.ok("rmi", f"{repo}:1")
    assert _inspect(cli, "keep:1")["RepoDigests"] == []
    cli.ok("pull", f"{repo}@{digest}")
    assert _inspect(cli, "keep:1")["RepoDigests"] == [f"{repo}@{digest}"]
    assert [repo, "<none>", digest] in [row[:3] for row in _ls(cli, "--digests")]
    # Its last tag goes; named by its digest still, it stays, and is not dangling: prune keeps it.
    assert cli.ok("rmi", "keep:1") == "Untagged: keep:1\n"
    cli.ok("image", "prune", "-f")
    assert _inspect(cli, f"{repo}@{digest}")["Id"] == bb
    out = cli.ok("rmi", f"{repo}@{digest}").splitlines()
    assert out[:2] == [f"Untagged: {repo}@{digest}", f"Deleted: {bb}"]
    bad = cli("image", "inspect", f"{repo}@sha256:abc")
    assert bad.returncode == 125 and "sha256:<64 hex digits>" in bad.stderr.decode()
