"""Images through the Engine API: Debian's docker client (images, image
inspect, history, tag, rmi, save, load, image prune, pull, push, login)
and raw HTTP for what a client hides (the progress stream, the errors).

The registries are tests/integration/test_registry.py's (Debian's
docker-registry on 127.0.0.1, open and with htpasswd auth)."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.conftest import CLI
from tests.integration.test_registry import (  # noqa: F401 - the fixtures
    _layer_tar,
    _publish,
    basic_registry,
    fake,
    registry,
    sha,
)
from tests.unit.test_registry_client import FakeRegistry

pytestmark = pytest.mark.usefixtures("own_authfile")


@pytest.fixture
def own_authfile(cli: CLI, tmp_path: Path) -> Iterator[Path]:
    """An empty credentials file of the test's own for the service, made
    before the service starts: credentials it falls back to are never the
    host's."""
    path = tmp_path / "service-auth.json"
    cli.env["REGISTRY_AUTH_FILE"] = str(path)
    yield path


def q(data: Any) -> str:
    """A JSON query parameter, quoted."""
    return urllib.parse.quote(json.dumps(data))


def lines(body: bytes) -> list[dict[str, Any]]:
    """A streamed JSON body, one document a line."""
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def auth_header(**fields: str) -> dict[str, str]:
    return {"X-Registry-Auth": base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()}


# -- listing, inspecting, history ----------------------------------------------------


def test_docker_images_lists_with_format_filter_quiet_and_digests(api: Api, bb: str) -> None:
    api.cli.ok("tag", "bb:1", "localhost:5000/a/b:2")
    out = api.docker_ok("images", "--format", "{{.Repository}}|{{.Tag}}|{{.ID}}")
    assert sorted(out.split()) == sorted([f"bb|1|{bb[7:19]}", f"localhost:5000/a/b|2|{bb[7:19]}"])
    assert api.docker_ok("images", "-q", "--no-trunc").split() == [bb, bb]
    filtered = api.docker_ok("images", "--filter", "reference=bb", "--format", "{{.Repository}}:{{.Tag}}")
    assert filtered.split() == ["bb:1"]
    digests = api.docker_ok("images", "--digests", "--filter", "reference=bb")
    assert digests.splitlines()[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert digests.splitlines()[1].split()[:3] == ["bb", "1", "<none>"]

    listed = api.json("GET", "/v1.41/images/json", expect=200)
    assert len(listed) == 1
    (summary,) = listed
    assert summary["Id"] == bb
    assert sorted(summary["RepoTags"]) == ["bb:1", "localhost:5000/a/b:2"]
    assert summary["RepoDigests"] == []
    assert summary["ParentId"] == "" and summary["SharedSize"] == -1 and summary["Containers"] == -1
    assert isinstance(summary["Created"], int) and summary["Created"] > 1_600_000_000
    assert summary["Size"] == summary["VirtualSize"] > 500_000
    assert api.json("GET", "/images/json?filters=" + q({"reference": {"nothing*": True}}), expect=200) == []


def test_inspect_and_history_take_names_with_slashes_tags_and_ids(api: Api, bb: str) -> None:
    api.cli.ok("tag", "bb:1", "localhost:5000/a/b:1")
    assert api.docker_ok("image", "inspect", "-f", "{{.Id}} {{.Os}}", "localhost:5000/a/b:1").split() == [bb, "linux"]
    doc = api.json("GET", "/images/localhost:5000/a/b:1/json", expect=200)
    assert doc["Id"] == bb and "localhost:5000/a/b:1" in doc["RepoTags"]
    assert api.json("GET", f"/images/{bb[7:19]}/json", expect=200)["Id"] == bb

    out = api.docker_ok("history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}", "bb:1")
    assert out.splitlines()[0].startswith(f"{bb}|")
    assert "Imported from" in out
    (row,) = api.json("GET", "/images/localhost:5000/a/b:1/history", expect=200)
    assert row["Id"] == bb and sorted(row["Tags"]) == ["bb:1", "localhost:5000/a/b:1"]
    assert isinstance(row["Created"], int) and row["Size"] > 500_000 and row["Comment"].startswith("Imported from")


def test_unknown_images_are_404s_in_dockers_words(api: Api) -> None:
    for method, path in [
        ("GET", "/images/nope:1/json"),
        ("GET", "/images/nope:1/history"),
        ("DELETE", "/images/nope:1"),
        ("POST", "/images/nope:1/tag?repo=x"),
        ("GET", "/images/nope:1/get"),
    ]:
        status, headers, body = api.request(method, path)
        assert status == 404, (method, path, body)
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body) == {"message": "No such image: nope:1"}
    result = api.docker("image", "inspect", "nope:1")
    assert result.returncode == 1 and b"No such image: nope:1" in result.stderr
    result = api.docker("rmi", "nope:1")
    assert (result.returncode, result.stderr) == (1, b"Error: No such image: nope:1\n")


# -- tag, rmi, prune -----------------------------------------------------------------


def test_tag_and_rmi_and_the_409_of_an_image_in_use(api: Api, bb: str) -> None:
    assert api.docker_ok("tag", "bb:1", "other/bb:2") == ""
    assert api.cli.ok("images", "-q", "--filter", "reference=other/bb").split() == [bb[7:19]]
    status, _, body = api.request("POST", "/images/bb:1/tag?repo=third&tag=3")
    assert (status, body) == (201, b"")

    assert api.docker_ok("rmi", "third:3").splitlines() == ["Untagged: third:3"]
    container = api.cli.ok("create", "bb:1", "true").strip()
    refused = api.docker("rmi", "bb:1", "other/bb:2")
    assert refused.returncode == 1
    # The first untag is allowed (another name is left), the last refused.
    assert b"Untagged: bb:1" in refused.stdout
    assert (
        f'Error response from daemon: conflict: unable to remove repository reference "other/bb:2" (must force) - '
        f"container {container[:12]} is using its referenced image {bb[7:19]}"
    ).encode() in refused.stderr
    status, _, body = api.request("DELETE", "/images/other/bb:2")
    assert status == 409
    assert json.loads(body)["message"] == (
        f'conflict: unable to remove repository reference "other/bb:2" (must force) - container {container[:12]} '
        f"is using its referenced image {bb[7:19]}"
    )
    status, _, body = api.request("DELETE", f"/images/{bb[7:19]}")
    assert status == 409
    assert json.loads(body)["message"] == (
        f"conflict: unable to delete {bb[7:19]} (must be forced) - image is being used by stopped container "
        f"{container[:12]}"
    )
    api.cli.ok("rm", container)
    api.cli.ok("tag", "other/bb:2", "bb:1")
    status, _, body = api.request("DELETE", f"/images/{bb[7:19]}")
    assert status == 409
    assert json.loads(body)["message"] == (
        f"conflict: unable to delete {bb[7:19]} (must be forced) - image is referenced in multiple repositories"
    )
    assert api.docker_ok("rmi", "bb:1") == "Untagged: bb:1\n"
    removed = api.json("DELETE", "/images/other/bb:2?force=1", expect=200)
    assert removed[0] == {"Untagged": "other/bb:2"}
    assert {"Deleted": bb} in removed and len(removed) >= 3  # the image, then its layer
    assert api.cli.ok("images", "-q") == ""


def _import_dangling(api: Api, busybox_tar: Path) -> str:
    status, headers, body = api.request("POST", "/images/create?fromSrc=-", busybox_tar.read_bytes())
    assert status == 200 and headers["content-type"] == "application/json", body
    (event,) = lines(body)
    return str(event["status"])


def test_import_and_prune(api: Api, bb: str, busybox_tar: Path) -> None:
    status, _, body = api.request(
        "POST", "/images/create?fromSrc=-&repo=imported&tag=7&message=from+http", busybox_tar.read_bytes()
    )
    assert status == 200
    image_id = lines(body)[0]["status"]
    assert image_id.startswith("sha256:")
    assert api.docker_ok("history", "--format", "{{.Comment}}", "imported:7").strip() == "from http"

    # An import with no name is a dangling image; prune takes it, and only it.
    api.cli.ok("tag", "bb:1", "keep:1")
    api.cli.ok("rmi", "imported:7")
    dangling = _import_dangling(api, busybox_tar)
    assert api.docker_ok("images", "-q", "--no-trunc", "--filter", "dangling=true").split() == [dangling]
    out = api.docker_ok("image", "prune", "-f")
    assert f"deleted: {dangling}" in out and "Total reclaimed space:" in out
    assert api.cli.ok("images", "-q", "--no-trunc").split() == [bb]
    pruned = api.json("POST", "/images/prune", expect=200)
    assert pruned == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    everything = api.json("POST", "/images/prune?filters=" + q({"dangling": ["false"]}), expect=200)
    assert {"Deleted": bb} in everything["ImagesDeleted"] and everything["SpaceReclaimed"] > 500_000


def test_a_bad_import_is_a_400(api: Api) -> None:
    status, _, body = api.request("POST", "/images/create?fromSrc=http://example.com/x.tar")
    assert status == 400 and "send the tar as the body" in json.loads(body)["message"]
    status, _, body = api.request("POST", "/images/create")
    assert (status, json.loads(body)) == (400, {"message": "fromImage or fromSrc is required"})


# -- save and load ---------------------------------------------------------------------


def test_docker_save_and_load_round_trip(api: Api, bb: str, tmp_path: Path) -> None:
    archive = tmp_path / "bb.tar"
    api.docker_ok("save", "-o", str(archive), "bb:1")
    assert archive.stat().st_size > 500_000
    api.docker_ok("rmi", "bb:1")
    assert api.cli.ok("images", "-q") == ""
    out = api.docker_ok("load", "-i", str(archive))
    assert out.strip() == "Loaded image: bb:1"
    assert api.docker_ok("image", "inspect", "-f", "{{.Id}}", "bb:1").strip() == bb

    # docker save | docker load
    piped = api.docker("save", "bb:1")
    assert piped.returncode == 0 and piped.stdout[257:262] == b"ustar", piped.stderr
    api.docker_ok("rmi", "bb:1")
    assert api.docker_ok("load", input=piped.stdout).strip() == "Loaded image: bb:1"
    assert api.docker_ok("images", "-q", "--no-trunc").split() == [bb]

    # Raw: /images/get?names= and the streamed answer of a load.
    status, headers, tar = api.request("GET", "/images/get?names=bb:1")
    assert status == 200 and headers["content-type"] == "application/x-tar" and tar[257:262] == b"ustar"
    api.docker_ok("rmi", "bb:1")
    status, headers, body = api.request("POST", "/images/load?quiet=1", tar)
    assert status == 200 and headers["content-type"] == "application/json"
    assert lines(body) == [{"stream": "Loaded image: bb:1\n"}]
    status, _, body = api.request("POST", "/images/load", tar)
    events = lines(body)
    assert events[-1] == {"stream": "Loaded image: bb:1\n"}
    assert any(e.get("status") == "Already exists" or "progressDetail" in e for e in events[:-1])


def test_a_truncated_load_stores_nothing(api: Api, bb: str) -> None:
    status, _, tar = api.request("GET", f"/images/{bb}/get")
    assert status == 200
    api.docker_ok("rmi", "bb:1")
    status, _, body = api.request("POST", "/images/load?quiet=1", tar[: len(tar) // 2])
    assert status == 400, body
    assert "truncated or corrupt" in json.loads(body)["message"]
    assert api.cli.ok("images", "-q") == ""


# -- registries ------------------------------------------------------------------------


@pytest.mark.slow
def test_docker_push_and_pull_and_the_progress_stream(api: Api, bb: str, registry: str) -> None:  # noqa: F811
    name = f"{registry}/api/bb"
    api.docker_ok("tag", "bb:1", f"{name}:1")
    out = api.docker_ok("push", f"{name}:1")
    assert f"The push refers to repository [{name}]" in out
    assert "Pushed" in out or "Layer already exists" in out
    assert "1: digest: sha256:" in out
    api.docker_ok("rmi", f"{name}:1", "bb:1")
    assert api.cli.ok("images", "-q") == ""

    # The stream as dockerd writes it.
    status, headers, body = api.request("POST", f"/images/create?fromImage={name}&tag=1", headers=auth_header())
    assert status == 200 and headers["content-type"] == "application/json"
    events = lines(body)
    assert events[0] == {"status": "Pulling from api/bb", "id": "1"}
    layer = events[1]["id"]
    assert events[1] == {"status": "Pulling fs layer", "progressDetail": {}, "id": layer}
    downloading = [e for e in events if e.get("status") == "Downloading"]
    assert downloading and set(downloading[-1]["progressDetail"]) == {"current", "total"}
    assert downloading[-1]["progressDetail"]["current"] == downloading[-1]["progressDetail"]["total"]
    assert downloading[-1]["progress"].startswith("[==")
    assert {"status": "Pull complete", "progressDetail": {}, "id": layer} in events
    digest = events[-2]["status"].removeprefix("Digest: ")
    assert digest.startswith("sha256:")
    assert events[-1] == {"status": f"Status: Downloaded newer image for {name}:1"}
    assert api.json("GET", f"/images/{name}:1/json", expect=200)["RepoDigests"] == [f"{name}@{digest}"]
    again = lines(api.request("POST", f"/images/create?fromImage={name}:1")[2])
    assert again[-1] == {"status": f"Status: Image is up to date for {name}:1"}

    # The service lives on: a pulled layer must not stay leased past the rmi.
    removed = api.json("DELETE", f"/images/{name}:1", expect=200)
    assert removed == [{"Untagged": f"{name}:1"}, {"Untagged": f"{name}@{digest}"}, {"Deleted": bb}, *removed[3:]]
    assert len(removed) == 4 and removed[3]["Deleted"].startswith("sha256:")

    # By digest: the tag parameter may be one, and a name may carry one.
    events = lines(api.request("POST", f"/images/create?fromImage={name}&tag={digest}")[2])
    assert events[-1] == {"status": f"Status: Downloaded newer image for {name}@{digest}"}
    assert api.json("GET", f"/images/{name}@{digest}/json", expect=200)["Id"] == bb
    api.json("DELETE", f"/images/{name}@{digest}", expect=200)

    out = api.docker_ok("pull", f"{name}:1")
    assert "1: Pulling from api/bb" in out and "Pull complete" in out
    assert f"Digest: {digest}" in out and f"Status: Downloaded newer image for {name}:1" in out
    assert out.strip().endswith(f"{name}:1")
    assert api.docker_ok("image", "inspect", "-f", "{{.Id}}", f"{name}:1").strip() == bb
    assert api.docker_ok("images", "--digests", "--format", "{{.Digest}}", name).strip() == digest

    # A push's last line carries the digest as data.
    status, _, body = api.request("POST", f"/images/{name}/push?tag=1", headers=auth_header())
    events = lines(body)
    assert status == 200 and events[0] == {"status": f"The push refers to repository [{name}]"}
    assert events[-2] == {"status": f"1: digest: {digest} size: {events[-1]['aux']['Size']}"}
    assert events[-1] == {
        "progressDetail": {},
        "aux": {"Tag": "1", "Digest": digest, "Size": events[-1]["aux"]["Size"]},
    }


@pytest.mark.slow
def test_pull_of_an_unknown_image_is_a_404_before_any_stream(api: Api, registry: str) -> None:  # noqa: F811
    status, headers, body = api.request("POST", f"/images/create?fromImage={registry}/no/such&tag=1")
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert "manifest unknown" in json.loads(body)["message"]
    result = api.docker("pull", f"{registry}/no/such:1")
    assert result.returncode == 1 and b"Error response from daemon:" in result.stderr
    assert b"manifest unknown" in result.stderr
    status, _, body = api.request("POST", f"/images/{registry}/no/such/push?tag=1")
    assert (status, json.loads(body)) == (
        404,
        {"message": f"An image does not exist locally with the tag: {registry}/no/such"},
    )


def test_a_pull_that_fails_midway_ends_its_stream_with_dockers_error_line(api: Api, fake: FakeRegistry) -> None:  # noqa: F811
    blobs, _ = _publish(fake, "x", "1", [_layer_tar({"a": b"a" * 5000}), _layer_tar({"b": b"b"})])
    fake.corrupt.add(sha(blobs[1]))
    status, _, body = api.request("POST", f"/images/create?fromImage={fake.host}/x&tag=1")
    events = lines(body)
    assert status == 200 and events[0] == {"status": "Pulling from x", "id": "1"}
    assert {"status": "Pulling fs layer", "progressDetail": {}, "id": sha(blobs[1])[7:19]} in events
    last = events[-1]
    assert set(last) == {"errorDetail", "error"} and "does not match its digest" in last["error"]
    assert last["errorDetail"] == {"message": last["error"]}
    result = api.docker("pull", f"{fake.host}/x:1")
    assert result.returncode == 1 and b"does not match its digest" in result.stderr
    assert api.json("GET", "/images/json", expect=200) == []


def test_a_bad_registry_auth_header_is_a_400(api: Api) -> None:
    for header in ["%%%not base64", base64.urlsafe_b64encode(b"[1, 2]").decode(), "e30K-not-json"]:
        status, _, body = api.request("POST", "/images/create?fromImage=x&tag=1", headers={"X-Registry-Auth": header})
        assert status == 400, (header, body)
        message = json.loads(body)["message"]
        assert message.startswith("invalid X-Registry-Auth header") and "\n" not in message
    status, _, body = api.request("POST", "/images/x/push?tag=1", headers={"X-Registry-Auth": "%%%"})
    assert status == 400


@pytest.mark.slow
def test_docker_login_then_push_and_pull_with_auth(api: Api, bb: str, basic_registry: str, own_authfile: Path) -> None:  # noqa: F811
    name = f"{basic_registry}/private/bb:1"
    api.docker_ok("tag", "bb:1", name)

    # Without credentials the push starts, then fails: dockerd's last line.
    status, _, body = api.request("POST", f"/images/{basic_registry}/private/bb/push?tag=1")
    events = lines(body)
    assert status == 200 and events[0]["status"].startswith("The push refers to repository")
    assert set(events[-1]) == {"errorDetail", "error"} and events[-1]["error"] == events[-1]["errorDetail"]["message"]
    result = api.docker("push", name)
    assert result.returncode == 1 and b"unauthorized" in result.stderr

    bad = api.docker("login", "-u", "alice", "--password-stdin", basic_registry, input=b"wrong\n")
    assert bad.returncode == 1 and b"Error response from daemon" in bad.stderr
    status, _, body = api.request(
        "POST", "/auth", {"username": "alice", "password": "wrong", "serveraddress": basic_registry}
    )
    assert status == 401 and "\n" not in json.loads(body)["message"]

    out = api.docker_ok("login", "-u", "alice", "--password-stdin", basic_registry, input=b"s3cret\n")
    assert "Login Succeeded" in out
    config = json.loads((Path(api.env["DOCKER_CONFIG"]) / "config.json").read_text())
    assert basic_registry in config["auths"]
    assert not own_authfile.exists()  # the client keeps the credentials; the service none
    out = api.docker_ok("push", name)
    assert "1: digest: sha256:" in out
    api.docker_ok("rmi", name)
    out = api.docker_ok("pull", name)
    assert f"Status: Downloaded newer image for {name}" in out
    assert api.json(
        "POST", "/auth", {"username": "alice", "password": "s3cret", "serveraddress": f"http://{basic_registry}/"}
    ) == {"IdentityToken": "", "Status": "Login Succeeded"}

    # docker-py sends its X-Registry-Auth its own way.
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=api.host, version="1.41")
    try:
        client.images.remove(name)
        pulled = client.images.pull(
            f"{basic_registry}/private/bb", tag="1", auth_config={"username": "alice", "password": "s3cret"}
        )
        assert pulled.id == bb
        with pytest.raises(docker.errors.APIError, match="unauthorized"):
            client.images.pull(
                f"{basic_registry}/private/bb", tag="1", auth_config={"username": "alice", "password": "no"}
            )
    finally:
        client.close()
    assert not own_authfile.exists()


def test_clients_that_leave_a_save_midway_cost_the_service_nothing(api: Api, tmp_path: Path) -> None:
    # A layer larger than what the socket and the chunks in flight hold.
    big = io.BytesIO()
    with tarfile.open(fileobj=big, mode="w") as tar:
        info = tarfile.TarInfo("big")
        info.size = 16 << 20
        tar.addfile(info, io.BytesIO(os.urandom(info.size)))
    status, _, body = api.request("POST", "/images/create?fromSrc=-&repo=big&tag=1", big.getvalue())
    assert status == 200, body
    # More aborted saves than the service has worker threads: a worker left
    # waiting on a gone client would starve every later request.
    for _ in range(10):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(api.sock))
        sock.sendall(b"GET /v1.41/images/big:1/get HTTP/1.1\r\nHost: docker\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
    status, _, tar_bytes = api.request("GET", "/images/big:1/get", timeout=30)
    assert status == 200 and len(tar_bytes) > 16 << 20
    assert api.json("GET", "/images/json", expect=200)[0]["RepoTags"] == ["big:1"]


def test_progress_events_are_dockers_messages_as_data_and_bars_are_throttled() -> None:
    from overlayctl.engine.progress import Events

    got: list[dict[str, Any]] = []
    events = Events(got.append)
    events.message("Pulling from x", key="1")
    events.add("a1b2c3d4e5f6", "Pulling fs layer", 1000)
    events.status("a1b2c3d4e5f6", "Downloading", line=False)
    for _ in range(100):
        events.advance("a1b2c3d4e5f6", 10)
    events.status("a1b2c3d4e5f6", "Pull complete")
    events.message("Digest: sha256:0")
    assert got[:3] == [
        {"status": "Pulling from x", "id": "1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "a1b2c3d4e5f6"},
        {"status": "Downloading", "progressDetail": {}, "id": "a1b2c3d4e5f6"},
    ]
    bars = got[3:-2]
    # The first and the last of a hundred advances, not every one.
    assert 2 <= len(bars) < 10
    assert bars[-1]["progressDetail"] == {"current": 1000, "total": 1000}
    assert bars[-1]["progress"].startswith("[" + "=" * 50 + "]")
    assert got[-2:] == [
        {"status": "Pull complete", "progressDetail": {}, "id": "a1b2c3d4e5f6"},
        {"status": "Digest: sha256:0"},
    ]


def test_docker_py_images(api: Api, bb: str, busybox_tar: Path) -> None:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=api.host, version="1.41")
    try:
        (image,) = client.images.list()
        assert image.id == bb and image.tags == ["bb:1"]
        assert image.tag("py/bb", "2") is True
        assert sorted(client.images.get("py/bb:2").tags) == ["bb:1", "py/bb:2"]
        assert client.images.get(bb[7:19]).history()[0]["Id"] == bb
        archive = b"".join(client.images.get("bb:1").save(named=True))
        client.images.remove("bb:1")
        client.images.remove("py/bb:2")
        assert client.images.list() == []
        (loaded,) = client.images.load(archive)
        assert loaded.id == bb and loaded.tags == ["bb:1"]
        with pytest.raises(docker.errors.ImageNotFound, match="No such image: nope:1"):
            client.images.get("nope:1")
        client.api.import_image_from_data(busybox_tar.read_bytes(), repository="imported", tag="3")
        assert client.images.get("imported:3").attrs["Os"] == "linux"
        client.images.remove("imported:3")
        pruned = client.images.prune(filters={"dangling": False})
        assert pruned["ImagesDeleted"][:2] == [{"Untagged": "bb:1"}, {"Deleted": bb}]
        assert pruned["SpaceReclaimed"] > 500_000 and client.images.list() == []
    finally:
        client.close()
