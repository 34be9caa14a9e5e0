"""`push`: an image from the store to a registry.

Each blob (config and layers) is first looked for in the target repository
(HEAD): a layer shared with an image pushed before is not sent again. A
blob known to be in another repository of the same registry is mounted
from there (POST ?mount=&from=) instead of uploaded, when the registry
allows it. The manifest goes last, so a registry never names a tag whose
blobs are not all there.
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from overlayctl.oci import image as oci_image
from overlayctl.oci.blobs import BlobStore
from overlayctl.oci.progress import Progress, short_digest
from overlayctl.oci.registry import RegistryClient, RemoteReference
from overlayctl.util import faults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.images import Image

PARALLEL = 3  # concurrent uploads, as Docker's max-concurrent-uploads
CHUNKED_ABOVE = 256 * 1024 * 1024  # blobs larger than this go in chunks...
DEFAULT_CHUNK = 64 * 1024 * 1024  # ...of this size, unless --chunk-size says otherwise
MAX_SOURCES = 8  # repositories remembered per blob


# -- where blobs are known to be: the hints for cross-repository mounts ---------


def _sources_path(store: Store) -> str:
    return store.paths.blob_sources


def load_sources(store: Store) -> dict[str, list[str]]:
    """digest -> ["registry/repository", ...] the blob was pulled from or pushed to."""
    try:
        with open(_sources_path(store), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remember_sources(store: Store, registry: str, repository: str, digests: list[str]) -> None:
    """Record that these blobs are in registry/repository.

    A hint only (a wrong one costs a refused mount, then an upload), so a
    plain file rewritten by rename rather than a catalog table; two
    commands writing at once may lose one's hints, never corrupt the file.
    """
    sources = load_sources(store)
    where = f"{registry}/{repository}"
    for digest in digests:
        known = [w for w in sources.get(digest, []) if w != where]
        sources[digest] = ([where] + known)[:MAX_SOURCES]
    path = _sources_path(store)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(sources, f)
    os.rename(tmp, path)


def mount_candidates(sources: dict[str, list[str]], digest: str, registry: str, repository: str) -> list[str]:
    """Other repositories of the same registry that have the blob."""
    out = []
    for where in sources.get(digest, []):
        reg, _, repo = where.partition("/")
        if reg == registry and repo and repo != repository:
            out.append(repo)
    return out


# -- the push --------------------------------------------------------------------


class _Blob:
    __slots__ = ("desc", "opener", "kind")

    def __init__(self, desc: dict[str, Any], opener: Callable[[], BinaryIO], kind: str) -> None:
        self.desc, self.opener, self.kind = desc, opener, kind


def push(
    store: Store,
    image: Image,
    ref: RemoteReference,
    client: RegistryClient,
    progress: Progress,
    chunk_size: int | None = None,
    compression: str = "gzip",
) -> tuple[str, int]:
    """Push image as ref; returns (manifest digest, manifest size)."""
    # Leased while sent: gc leaves the layer tars made for them alone.
    leased = list(dict.fromkeys(layer.diff_id for layer in image.layers))
    store.layers.lease(leased)
    try:
        return _push(store, image, ref, client, progress, chunk_size, compression)
    finally:
        store.layers.release(leased)


def _push(
    store: Store,
    image: Image,
    ref: RemoteReference,
    client: RegistryClient,
    progress: Progress,
    chunk_size: int | None,
    compression: str,
) -> tuple[str, int]:
    manifest_bytes, config_bytes = oci_image.image_manifest(store, image, compression)
    manifest = json.loads(manifest_bytes)
    blobs = BlobStore(store.paths)
    todo = [_Blob(desc, functools.partial(blobs.open, desc["digest"]), "layer") for desc in manifest["layers"]]
    todo.append(_Blob(manifest["config"], lambda: io.BytesIO(config_bytes), "config"))
    sources = load_sources(store)
    seen: set[str] = set()
    unique = [b for b in todo if not (b.desc["digest"] in seen or seen.add(b.desc["digest"]))]  # type: ignore[func-returns-value]
    for blob in unique:
        if blob.kind == "layer":
            progress.add(short_digest(blob.desc["digest"]), "Preparing", int(blob.desc["size"]))

    def send(blob: _Blob) -> None:
        _push_blob(client, ref, blob, sources, progress, chunk_size)

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(send, unique))
    media_type = manifest.get("mediaType") or oci_image.OCI_MANIFEST
    faults.point("push-blobs")
    digest = client.put_manifest(ref.repository, ref.reference, manifest_bytes, media_type)
    try:
        remember_sources(store, ref.registry, ref.repository, [b.desc["digest"] for b in unique])
    except OSError:
        pass  # hints only
    return digest, len(manifest_bytes)


def _push_blob(
    client: RegistryClient,
    ref: RemoteReference,
    blob: _Blob,
    sources: dict[str, list[str]],
    progress: Progress,
    chunk_size: int | None,
) -> None:
    digest, size = blob.desc["digest"], int(blob.desc["size"])
    key = short_digest(digest)
    # Both scopes in the first token: the mount that may follow needs push.
    scopes = (f"repository:{ref.repository}:pull,push",)
    if client.blob_size(ref.repository, digest, scopes) is not None:
        if blob.kind == "layer":
            progress.status(key, "Layer already exists")
        return
    location: str | None = None
    for source in mount_candidates(sources, digest, ref.registry, ref.repository):
        mounted = client.mount_blob(ref.repository, digest, source)
        if mounted is True:
            if blob.kind == "layer":
                progress.status(key, f"Mounted from {source}")
            return
        location = str(mounted)  # the registry opened an upload session instead
        break
    if blob.kind == "layer":
        progress.status(key, "Pushing", line=False)
    if chunk_size is None and size > CHUNKED_ABOVE:
        chunk_size = DEFAULT_CHUNK
    advance = (lambda n: progress.advance(key, n)) if blob.kind == "layer" else None
    client.upload_blob(ref.repository, digest, size, blob.opener, chunk_size, advance, location)
    if blob.kind == "layer":
        progress.status(key, "Pushed")
