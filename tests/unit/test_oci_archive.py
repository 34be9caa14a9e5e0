"""The pure parts of save/load: platform selection, media types, names,
blob digests, and reading archives up to (not including) the store."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from overlayctl.errors import DigestMismatchError, InvalidArgumentError, NotFoundError, UnsupportedMediaTypeError
from overlayctl.oci import archive, image
from overlayctl.oci.blobs import BlobStore, split_digest
from overlayctl.paths import Paths
from tests.integration.test_save_load import _digest, _layer_tar, _members, _tar, oci_archive


def _index(*platforms: dict) -> dict:
    return {"manifests": [{"digest": f"sha256:{i:064x}", "platform": p} for i, p in enumerate(platforms)]}


def test_select_platform_prefers_exact_variant_then_none():
    index = _index(
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "windows", "architecture": "amd64"},
        {"os": "linux", "architecture": "amd64"},
    )
    assert image.select_platform(index, arch="amd64")["platform"] == {"os": "linux", "architecture": "amd64"}
    assert image.select_platform(index, arch="arm64")["platform"] == {"os": "linux", "architecture": "arm64"}
    assert image.select_platform(index, arch="arm")["platform"]["variant"] == "v6"
    with pytest.raises(NotFoundError, match="no image for linux/s390x.*linux/amd64"):
        image.select_platform(index, arch="s390x")


def test_layer_media_types():
    assert image.layer_compression("application/vnd.oci.image.layer.v1.tar+zstd") == "zstd"
    assert image.layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    assert image.layer_compression("application/vnd.oci.image.layer.v1.tar") == "none"
    with pytest.raises(UnsupportedMediaTypeError, match="unsupported layer media type"):
        image.layer_compression("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    with pytest.raises(InvalidArgumentError):
        image.oci_layer_type("bzip2")


@pytest.mark.parametrize(
    "annotations, name",
    [
        ({"org.opencontainers.image.ref.name": "localhost/bb:1"}, "localhost/bb:1"),
        ({"org.opencontainers.image.ref.name": "bb"}, "bb:latest"),
        # Docker >= 25: the tag alone in ref.name, the full name beside it.
        (
            {"org.opencontainers.image.ref.name": "1.36", "io.containerd.image.name": "docker.io/library/bb:1.36"},
            "bb:1.36",
        ),
        ({"org.opencontainers.image.ref.name": "1.36"}, None),
        ({"org.opencontainers.image.ref.name": "Not A Name"}, None),
        ({}, None),
    ],
)
def test_names_from_index_annotations(annotations, name):
    assert archive._name_of({"annotations": annotations}) == name


def test_split_digest():
    assert split_digest("sha256:" + "a" * 64) == "a" * 64
    for bad in ("sha256:abc", "sha512:" + "a" * 128, "a" * 64, "sha256:" + "A" * 64, "sha256:../" + "a" * 61):
        with pytest.raises(InvalidArgumentError):
            split_digest(bad)


def test_blob_put_verifies_and_keeps_nothing_on_mismatch(tmp_path):
    paths = Paths(str(tmp_path), str(tmp_path / "run"))
    os.mkdir(paths.tmp)
    blobs = BlobStore(paths)
    data = b"layer bytes" * 1000
    digest, size = blobs.put(io.BytesIO(data), _digest(data), len(data))
    assert (digest, size) == (_digest(data), len(data)) and blobs.has(digest)
    with blobs.open(digest) as f:
        assert f.read() == data
    with pytest.raises(DigestMismatchError, match="does not match its digest"):
        blobs.put(io.BytesIO(data + b"!"), _digest(data))
    with pytest.raises(DigestMismatchError, match="descriptor says 5"):
        blobs.put(io.BytesIO(b"123456"), None, 5)
    assert os.listdir(paths.tmp) == []
    assert os.listdir(blobs.dir) == [split_digest(digest)]


def _plan(data: bytes, tmp_path) -> list:
    stage = tmp_path / "stage"
    stage.mkdir(exist_ok=True)
    return archive._plan(archive._unpack_outer(io.BytesIO(data), str(stage), "test.tar"))


def test_plan_of_an_oci_archive(tmp_path):
    layers = [_layer_tar([("a", b"1")]), _layer_tar([("b", b"2")])]
    (plan,) = _plan(oci_archive(layers, name="x/y:2"), tmp_path)
    assert plan.names == ["x/y:2"]
    assert [layer.diff_id for layer in plan.layers] == [_digest(t) for t in layers]
    assert {layer.media_type for layer in plan.layers} == {image.OCI_LAYER_GZIP}
    assert json.loads(plan.manifest)["config"]["digest"] == _digest(plan.config)


def test_plan_of_a_docker_archive_with_symlinked_layers(tmp_path):
    layer = _layer_tar([("a", b"1")])
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}).encode()
    hex_config = _digest(config).split(":")[1]
    files = {
        f"{hex_config}.json": config,
        "abc/layer.tar": layer,
        "manifest.json": json.dumps(
            [{"Config": f"{hex_config}.json", "RepoTags": ["d:1"], "Layers": ["link/layer.tar"]}]
        ).encode(),
    }
    # A symlink to the layer, as docker save writes for a layer two images share.
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            t.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("link/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = "../abc/layer.tar"
        t.addfile(link)
    (plan,) = _plan(out.getvalue(), tmp_path)
    assert plan.names == ["d:1"] and plan.manifest is None
    assert plan.layers[0].diff_id == _digest(layer) and plan.layers[0].media_type == image.OCI_LAYER


def test_plan_refuses_a_config_that_lies_about_its_name(tmp_path):
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}}).encode()
    files = {
        "0" * 64 + ".json": config,
        "manifest.json": json.dumps([{"Config": "0" * 64 + ".json", "Layers": []}]).encode(),
    }
    with pytest.raises(DigestMismatchError):
        _plan(_tar(files), tmp_path)


def test_plan_checks_every_blob_even_unreferenced(tmp_path):
    files = _members(oci_archive([_layer_tar([("a", b"1")])]))
    files["blobs/sha256/" + "f" * 64] = b"stray"
    with pytest.raises(DigestMismatchError):
        _plan(_tar(files), tmp_path)


def test_plan_index_with_platforms(tmp_path):
    files = _members(oci_archive([_layer_tar([("a", b"1")])], name="p:1"))
    index = json.loads(files["index.json"])
    nested = {
        "schemaVersion": 2,
        "mediaType": image.OCI_INDEX,
        "manifests": [
            {**index["manifests"][0], "platform": {"os": "linux", "architecture": image.host_platform()[0]}},
            {
                "mediaType": image.OCI_MANIFEST,
                "digest": "sha256:" + "e" * 64,
                "size": 1,
                "platform": {"os": "linux", "architecture": "mips"},
            },
        ],
    }
    raw = json.dumps(nested).encode()
    files["blobs/sha256/" + _digest(raw).split(":")[1]] = raw
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": image.OCI_INDEX,
                    "digest": _digest(raw),
                    "size": len(raw),
                    "annotations": {archive.REF_NAME: "multi:1"},
                }
            ],
        }
    ).encode()
    (plan,) = _plan(_tar(files), tmp_path)
    assert plan.names == ["multi:1"] and len(plan.layers) == 1
