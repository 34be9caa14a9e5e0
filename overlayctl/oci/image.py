"""OCI images as the outside world sees them: manifests, configs, layer blobs.

Inside the store an image is its config and a stack of unpacked layers. To
send it out (save, push) each layer needs a blob, a tar possibly compressed,
whose digest the manifest names; to take one in (load, pull) each blob is
decompressed and unpacked. A blob received from outside is kept, with the
manifest that named it, so the image leaves again with the same bytes. A
layer made here (build, commit) gets its blob from its deterministic tar,
compressed deterministically, so the same layer always gets the same digest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from overlayctl.errors import (
    DigestMismatchError,
    InvalidArgumentError,
    NotFoundError,
    OverlayctlError,
    UnsupportedMediaTypeError,
)
from overlayctl.oci.blobs import BlobStore, split_digest
from overlayctl.store.images import Image
from overlayctl.store.layers import Layer
from overlayctl.util import faults, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.util.reference import Reference

OCI_LAYOUT_VERSION = "1.0.0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
# Layer media type -> how its blob is compressed.
LAYER_COMPRESSION = {
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    DOCKER_LAYER: "none",
    DOCKER_LAYER_GZIP: "gzip",
}
COMPRESSIONS = ("none", "gzip", "zstd")
_OCI_LAYER_FOR = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
_CHUNK = 1 << 20
# Fixed so that the same layer always compresses to the same bytes; gzip 6
# is what Go's and Python's defaults are, zstd 3 what podman and zstd use.
_GZIP_LEVEL = 6
_ZSTD_LEVEL = 3


def layer_compression(media_type: str) -> str:
    """ "none", "gzip" or "zstd" for a layer media type we can unpack."""
    try:
        return LAYER_COMPRESSION[media_type]
    except KeyError:
        raise UnsupportedMediaTypeError(
            f'unsupported layer media type "{media_type}" (overlayctl reads OCI and Docker tar, tar+gzip, tar+zstd)'
        ) from None


def oci_layer_type(compression: str) -> str:
    """The OCI layer media type for a compression name."""
    if compression not in _OCI_LAYER_FOR:
        raise InvalidArgumentError(f'unknown compression "{compression}" (use one of: {", ".join(COMPRESSIONS)})')
    return _OCI_LAYER_FOR[compression]


def open_layer(raw: BinaryIO, media_type: str) -> BinaryIO:
    """The uncompressed tar of a layer blob stream of ``media_type``."""
    from overlayctl.layer.compression import open_decompressed

    layer_compression(media_type)
    # The magic bytes decide, not the label: a mislabelled blob still has to
    # give the diff_id the config promises, which every caller checks.
    return open_decompressed(raw)


@contextmanager
def open_layer_file(path: str, media_type: str, on_read: Callable[[int], None] | None = None) -> Iterator[BinaryIO]:
    """The uncompressed tar of the layer blob file at ``path``, gzip inflated
    on a second thread (layer.compression.decompressed_file)."""
    from overlayctl.layer.compression import decompressed_file

    layer_compression(media_type)
    with decompressed_file(path, on_read) as tar:
        yield tar


def descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    """An OCI content descriptor."""
    return {"mediaType": media_type, "digest": digest, "size": size}


# -- the catalog's record of blobs -------------------------------------------


def record_blob(store: Store, digest: str, diff_id: str, media_type: str, size: int, original: bool) -> None:
    """Remember that blob ``digest`` is layer ``diff_id`` as ``media_type``."""
    store.layers.record_blob(digest, diff_id, media_type, size, original)


def _blob_rows(store: Store, diff_id: str) -> list[Any]:
    blobs = BlobStore(store.paths)
    return [row for row in store.layers.blobs_of(diff_id) if blobs.has(row["digest"])]


def layer_for_blob(store: Store, digest: str) -> Layer | None:
    """The stored layer this blob unpacks to, if both are known here."""
    diff_id = store.layers.layer_of_blob(digest)
    if diff_id is None or not BlobStore(store.paths).has(digest):
        return None
    return store.layers.find(diff_id)


def image_config_bytes(store: Store, image: Image) -> bytes:
    """The image's config exactly as stored and hashed (its digest is the image ID)."""
    raw = store.images.config_bytes(image.id)
    if raw is None:
        raise NotFoundError(f"image {image.id} not found")
    return raw


# -- blobs for layers made here -------------------------------------------------


class _StagedBlob:
    """A file in staging that hashes and counts what is written to it."""

    def __init__(self, tmp: str) -> None:
        self.path = os.path.join(tmp, f"blob-{os.getpid()}-{os.urandom(6).hex()}")
        self._f = open(self.path, "xb")
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self._sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    @property
    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()

    def discard(self) -> None:
        if not self._f.closed:
            self._f.close()
        if os.path.lexists(self.path):
            os.unlink(self.path)


class _HashingSink:
    """Hash the uncompressed tar on its way into a compressor."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self._out.write(data)
        return len(data)


def _compressor(compression: str, out: _StagedBlob) -> Any:
    if compression == "gzip":
        import gzip

        # mtime=0 and no file name in the header: the same tar, the same blob.
        return gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=out, mtime=0)  # type: ignore[arg-type]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(out, closefd=False)  # type: ignore[arg-type]
    return None


def _make_layer_blob(store: Store, layer: Layer, compression: str) -> dict[str, Any]:
    """Write layer's tar as a blob compressed with ``compression``, store and record it."""
    from overlayctl.layer.writer import write_layer_tar

    media_type = oci_layer_type(compression)
    staged = _StagedBlob(store.paths.tmp)
    try:
        compressor = _compressor(compression, staged)
        sink = _HashingSink(compressor if compressor is not None else staged)
        sources = _blob_rows(store, layer.diff_id)
        split = store.layers.tar_split(layer)
        if sources:
            # A received layer: its files may not give back the exact tar it
            # came as, its kept blob does.
            with BlobStore(store.paths).open(sources[0]["digest"]) as raw:
                tar = open_layer(raw, sources[0]["media_type"])
                while chunk := tar.read(_CHUNK):
                    sink.write(chunk)
        elif split is not None:
            # An imported layer: its files and the rest of the tar it was.
            from overlayctl.layer import tarsplit

            try:
                tarsplit.reassemble(split, store.layers.diff_path(layer), sink.write)
            except tarsplit.TarSplitError as e:
                raise _changed_layer(layer, str(e)) from None
        else:
            write_layer_tar(store.layers.diff_path(layer), sink)  # type: ignore[arg-type]
        if compressor is not None:
            compressor.close()
        staged.close()
        tar_digest = "sha256:" + sink.sha.hexdigest()
        if tar_digest != layer.diff_id and split is not None and not sources:
            raise _changed_layer(layer, f"its files and its tar-split give a tar with digest {tar_digest}")
        if tar_digest != layer.diff_id:
            raise OverlayctlError(
                f"cannot export layer {layer.diff_id}: its files give a tar with digest {tar_digest}, "
                "and no copy of the tar it was made from is kept; re-import or rebuild the image"
            )
        digest, size = staged.digest, staged.size
        BlobStore(store.paths).adopt(staged.path, digest)
        faults.point("blob-adopted")
    finally:
        staged.discard()
    record_blob(store, digest, layer.diff_id, media_type, size, original=False)
    return descriptor(media_type, digest, size)


def _changed_layer(layer: Layer, what: str) -> OverlayctlError:
    return OverlayctlError(
        f"cannot export layer {layer.diff_id}: {what}; a file of the layer was changed "
        "(`overlayctl system fsck --verify-content` says which): re-import the image"
    )


def layer_descriptors(
    store: Store, image: Image, compression: str = "gzip", *, reuse_original: bool = True
) -> list[dict[str, Any]]:
    """One OCI descriptor per layer of ``image``, base first.

    A layer received from a pull or a load goes out as the blob it came in
    (unless ``reuse_original`` is False); otherwise as a blob compressed
    with ``compression`` ("none", "gzip", "zstd"), made once, stored in the
    BlobStore and recorded, so the same image always gives the same digests.
    """
    wanted = oci_layer_type(compression)
    out = []
    for layer in image.layers:
        rows = _blob_rows(store, layer.diff_id)
        chosen = None
        if reuse_original and rows and rows[0]["original"]:
            chosen = rows[0]
        else:
            chosen = next((r for r in rows if LAYER_COMPRESSION.get(r["media_type"]) == compression), None)
        if chosen is None:
            out.append(_make_layer_blob(store, layer, compression))
            continue
        media_type = chosen["media_type"]
        if not reuse_original or not chosen["original"]:
            media_type = wanted
        elif media_type not in _OCI_LAYER_FOR.values():
            # A Docker-typed blob in an OCI manifest: same bytes, OCI name.
            media_type = oci_layer_type(LAYER_COMPRESSION.get(media_type, "gzip"))
        out.append(descriptor(media_type, chosen["digest"], chosen["size"]))
    return out


def kept_manifest(store: Store, image: Image) -> tuple[str, bytes] | None:
    """The manifest the image was received with, if kept and all its blobs are here."""
    kept = store.images.kept_manifest(image.id)
    if kept is None:
        return None
    media_type, raw = kept
    try:
        manifest = jsonio.loads(raw)
        blobs = BlobStore(store.paths)
        if not all(blobs.has(layer["digest"]) for layer in manifest["layers"]):
            return None
    except (ValueError, KeyError, TypeError, InvalidArgumentError):
        return None
    return media_type, raw


def image_manifest(
    store: Store, image: Image, compression: str = "gzip", *, reuse_original: bool = True
) -> tuple[bytes, bytes]:
    """(manifest JSON bytes, config JSON bytes) of ``image``.

    The config bytes are exactly those the image ID is the digest of. An
    image received from outside gives back its original manifest bytes
    when they are kept (and ``reuse_original``); otherwise an OCI manifest
    is made from layer_descriptors.
    """
    config = image_config_bytes(store, image)
    if reuse_original:
        kept = kept_manifest(store, image)
        if kept is not None:
            return kept[1], config
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, image.id, len(config)),
        "layers": layer_descriptors(store, image, compression, reuse_original=reuse_original),
    }
    return jsonio.dumps(manifest).encode(), config


# -- taking layers and images in --------------------------------------------------


def import_layer_blob(store: Store, blob_path: str, media_type: str, digest: str) -> tuple[Layer, bool]:
    """Unpack a verified blob (already in the BlobStore) as a layer.

    Decompressed by its media type and unpacked through the layer store
    (whiteouts converted, unsafe entries rejected). Returns the layer and
    whether it was new; a blob whose layer is already stored is not
    unpacked again ("Already exists").
    """
    split_digest(digest)
    known = layer_for_blob(store, digest)
    if known is not None:
        return known, False
    with open_layer_file(blob_path, media_type) as tar:
        layer, created = store.layers.import_tar(tar)
    record_blob(store, digest, layer.diff_id, media_type, os.path.getsize(blob_path), original=True)
    return layer, created


class _Tee:
    """Read through, copying every byte read into a staged blob."""

    def __init__(self, src: BinaryIO, out: _StagedBlob) -> None:
        self._src = src
        self._out = out

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        if data:
            self._out.write(data)
        return data


def import_tar_layer(store: Store, stream: BinaryIO) -> tuple[Layer, bool]:
    """`import`: unpack an uncompressed layer tar and keep what it takes to
    give it back.

    A tar made by another tool (GNU tar, say) cannot be rebuilt from the
    unpacked files byte for byte, and its digest is the layer's diff_id:
    without it, the image could not be saved or pushed. The layer keeps its
    tar-split (the tar but its file contents) when that gives back the tar;
    otherwise the whole tar is kept as the layer's blob.
    """
    staged = _StagedBlob(store.paths.tmp)
    try:
        layer, created = store.layers.import_tar(_Tee(stream, staged))  # type: ignore[arg-type]
        staged.close()
        kept = bool(_blob_rows(store, layer.diff_id)) or store.layers.tar_split(layer) is not None
        if staged.digest == layer.diff_id and not kept and not store.layers.keep_tar_split(layer, staged.path):
            BlobStore(store.paths).adopt(staged.path, staged.digest)
            record_blob(store, staged.digest, layer.diff_id, OCI_LAYER, staged.size, original=True)
    finally:
        staged.discard()
    return layer, created


def parse_config(config_bytes: bytes, where: str) -> dict[str, Any]:
    """The image config as a dict, checked for what the store relies on."""
    try:
        config = jsonio.loads(config_bytes)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"the image config in {where} is not valid JSON ({e})") from None
    diff_ids = config.get("rootfs", {}).get("diff_ids") if isinstance(config, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidArgumentError(f"the image config in {where} has no rootfs.diff_ids list")
    for diff_id in diff_ids:
        split_digest(diff_id)
    return config


def create_image(
    store: Store,
    config_bytes: bytes,
    tag: Reference | str | None,
    manifest_bytes: bytes | None = None,
    manifest_media_type: str | None = None,
) -> Image:
    """Record the image whose config is exactly ``config_bytes`` (its layers
    must be stored), tag it, and keep the manifest it came with."""
    from overlayctl.util.reference import parse_reference

    config = parse_config(config_bytes, "the image")
    ref = parse_reference(tag) if isinstance(tag, str) else tag
    image = store.images.create(config, ref, raw=config_bytes)
    if manifest_bytes is not None:
        if manifest_media_type is None:
            manifest_media_type = jsonio.loads(manifest_bytes).get("mediaType") or OCI_MANIFEST
        store.images.keep_manifest(image.id, manifest_media_type, manifest_bytes)
    return image


def host_platform() -> tuple[str, str]:
    """(architecture, variant) of this machine as OCI indexes name them."""
    import platform

    from overlayctl.oci.platform import host_architecture

    arch = host_architecture()
    machine = platform.machine()
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(machine, "")
    return arch, variant


def select_platform(index: dict[str, Any], os_: str = "linux", arch: str | None = None) -> dict[str, Any]:
    """The manifest descriptor for os_/arch (default: this host) in an index.

    An exact variant match wins, then an entry without a variant, then any
    variant (arm64 images are often labelled v8, often not at all).
    """
    variant = ""
    if arch is None:
        arch, variant = host_platform()
    candidates = [
        m
        for m in index.get("manifests") or []
        if isinstance(m, dict)
        and (m.get("platform") or {}).get("os") == os_
        and (m.get("platform") or {}).get("architecture") == arch
    ]
    for pick in (
        lambda p: p.get("variant", "") == variant,
        lambda p: not p.get("variant"),
        lambda p: True,
    ):
        for m in candidates:
            if pick(m["platform"]):
                return m
    have = sorted(
        {
            "/".join(x for x in (p.get("os", "?"), p.get("architecture", "?"), p.get("variant", "")) if x)
            for m in index.get("manifests") or []
            if isinstance(m, dict) and isinstance(p := m.get("platform") or {}, dict)
        }
    )
    raise NotFoundError(f"no image for {os_}/{arch} in the index" + (f" (it has: {', '.join(have)})" if have else ""))


def check_layer_digest(diff_id: str, got: str, where: str) -> None:
    """A layer tar must hash to the diff_id its image config lists."""
    if got != diff_id:
        raise DigestMismatchError(
            f"layer {where} does not match its image config: its tar hashes to {got}, the config says {diff_id}"
        )
