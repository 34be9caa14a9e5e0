"""`pull`: an image from a registry into the store.

Order, so that a failure leaves nothing behind: the manifest (an index is
resolved to one platform first) and the config are fetched and checked
(media types included) before any layer; the missing layer blobs are
downloaded in parallel, each verified against its digest, and each is
unpacked as soon as it is complete, in a worker process; each layer must
hash to the diff_id the config lists; the image is recorded last. A failure
before that removes the blobs and layers this pull added.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from overlayctl.errors import (
    DigestMismatchError,
    InvalidArgumentError,
    RegistryError,
    UnsupportedMediaTypeError,
)
from overlayctl.layer.workers import unpack_pool, worker_count
from overlayctl.oci import image as oci_image
from overlayctl.oci.blobs import BlobStore
from overlayctl.oci.progress import Progress, short_digest
from overlayctl.oci.registry import INDEX_TYPES, MANIFEST_TYPES, RETRIES, RegistryClient, RemoteReference
from overlayctl.store.images import Image
from overlayctl.util import faults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store

PARALLEL = 3  # concurrent downloads, as Docker's max-concurrent-downloads
MAX_CONFIG = 16 * 1024 * 1024


def parse_platform(text: str | None) -> tuple[str, str | None]:
    """("linux", "arm64") from "linux/arm64"; (linux, None = this host) when unset."""
    if not text:
        return "linux", None
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgumentError(f'invalid --platform "{text}" (use OS/ARCH, e.g. linux/arm64)')
    return parts[0], parts[1]


def _media_type(body: bytes, header_type: str) -> tuple[dict[str, Any], str]:
    try:
        doc = json.loads(body)
    except ValueError:
        raise RegistryError("the registry sent a manifest that is not JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError("the registry sent a manifest that is not a JSON object")
    # The document's own mediaType wins over Content-Type, which some
    # registries set to application/json.
    media_type = doc.get("mediaType") or header_type
    if media_type not in MANIFEST_TYPES + INDEX_TYPES:
        hint = " (Docker schema 1, retired in 2019)" if "v1+" in media_type or doc.get("schemaVersion") == 1 else ""
        raise UnsupportedMediaTypeError(f'unsupported manifest media type "{media_type}"{hint}')
    return doc, media_type


def resolve_manifest(
    client: RegistryClient, ref: RemoteReference, platform: str | None
) -> tuple[bytes, dict[str, Any], str, str]:
    """(bytes, parsed, media type, digest) of the image manifest for the
    platform; an index or manifest list is resolved with select_platform.
    The digest is that of what the reference names (the index's, for an
    index), as Docker prints it and records it in RepoDigests: pulling or
    running REPO@DIGEST later finds the image by it."""
    os_, arch = parse_platform(platform)
    body, header_type, digest = client.get_manifest(ref.repository, ref.reference)
    doc, media_type = _media_type(body, header_type)
    if media_type in INDEX_TYPES:
        chosen = oci_image.select_platform(doc, os_, arch)
        body, header_type, _platform_digest = client.get_manifest(ref.repository, chosen["digest"])
        doc, media_type = _media_type(body, header_type)
        if media_type in INDEX_TYPES:
            raise UnsupportedMediaTypeError("an index that points at another index is not supported")
    if (
        doc.get("schemaVersion") != 2
        or not isinstance(doc.get("config"), dict)
        or not isinstance(doc.get("layers"), list)
    ):
        raise RegistryError(f"{ref}: malformed manifest (want schemaVersion 2 with a config and layers)")
    for layer in doc["layers"]:
        oci_image.layer_compression(layer.get("mediaType", ""))  # unsupported: fail before any download
    return body, doc, media_type, digest


def _fetch_config(client: RegistryClient, ref: RemoteReference, desc: dict[str, Any]) -> bytes:
    size = int(desc.get("size", 0))
    if size > MAX_CONFIG:
        raise RegistryError(f"{ref}: image config of {size} bytes is too large")
    response = client.open_blob(ref.repository, desc["digest"])
    try:
        data = response.raw.read(MAX_CONFIG + 1, decode_content=True)
    except (requests.exceptions.RequestException, OSError) as exc:
        raise RegistryError(f"{ref}: reading the image config failed: {exc}") from None
    finally:
        response.close()
    from overlayctl.oci.blobs import check_digest
    from overlayctl.oci.registry import sha256_digest

    check_digest("image config", desc["digest"], size, sha256_digest(data), len(data))
    return data


class _Download:
    """One layer blob into the BlobStore, retried on a dropped connection."""

    def __init__(self, client: RegistryClient, repository: str, blobs: BlobStore, progress: Progress) -> None:
        self.client, self.repository, self.blobs, self.progress = client, repository, blobs, progress

    def __call__(self, desc: dict[str, Any]) -> None:
        key = short_digest(desc["digest"])
        self.progress.status(key, "Downloading", line=False)
        for attempt in range(RETRIES + 1):
            response = self.client.open_blob(self.repository, desc["digest"])
            response.raw.decode_content = True
            try:
                self.blobs.put(response.raw, desc["digest"], int(desc["size"]), lambda n: self.progress.advance(key, n))
                break
            except DigestMismatchError:
                raise
            except (requests.exceptions.RequestException, OSError, _urllib3_errors()) as exc:
                if attempt == RETRIES:
                    raise RegistryError(f"downloading layer {desc['digest']} failed: {exc}") from None
                self.progress.advance(key, -1)
            finally:
                response.close()
        self.progress.status(key, "Download complete", line=False)


def _urllib3_errors() -> type[Exception]:
    import urllib3.exceptions

    return urllib3.exceptions.HTTPError


def pull(
    store: Store,
    ref: RemoteReference,
    client: RegistryClient,
    progress: Progress,
    platform: str | None = None,
) -> tuple[Image, str, bool]:
    """Pull ref into the store: (image, manifest digest, whether anything new was stored)."""
    body, manifest, media_type, manifest_digest = resolve_manifest(client, ref, platform)
    config_bytes = _fetch_config(client, ref, manifest["config"])
    config = oci_image.parse_config(config_bytes, f"{ref}")
    _check_platform(config, platform)
    layers = manifest["layers"]
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(layers):
        raise RegistryError(f"{ref}: the manifest has {len(layers)} layers, its config {len(diff_ids)}")

    # Leased before anything is found stored: a concurrent rmi or gc leaves
    # these layers alone until the image that uses them is recorded.
    store.layers.lease(diff_ids)
    blobs = BlobStore(store.paths)
    todo = []
    for desc, diff_id in zip(layers, diff_ids, strict=True):
        key = short_digest(desc["digest"])
        known = oci_image.layer_for_blob(store, desc["digest"])
        if known is not None:
            oci_image.check_layer_digest(diff_id, known.diff_id, desc["digest"])
            progress.add(key, "Already exists")
        else:
            progress.add(key, "Pulling fs layer", int(desc.get("size", 0)) or None)
            todo.append(desc)
    added_blobs = [d["digest"] for d in todo if not blobs.has(d["digest"])]
    from overlayctl.util import space

    space.expect(2 * sum(int(d.get("size", 0)) for d in todo))  # the blobs, and their layers unpacked
    added_layers: list[str] = []
    try:
        added_layers += _fetch_and_unpack(
            store,
            blobs,
            _Download(client, ref.repository, blobs, progress),
            _unique(todo),
            dict(zip((d["digest"] for d in layers), diff_ids, strict=True)),
            progress,
        )
        faults.point("pull-layers")
        existed = _tagged_image(store, ref)
        image = oci_image.create_image(store, config_bytes, ref.local, body, media_type)
        store.images.add_digest(image.id, ref.name, manifest_digest)
        image = store.images.get(image.id)
    except BaseException as exc:
        _roll_back(store, blobs, added_layers + getattr(exc, "added_layers", []), added_blobs)
        store.layers.release(diff_ids)
        raise
    try:
        from overlayctl.oci.push import remember_sources

        digests = [manifest["config"]["digest"]] + [d["digest"] for d in layers]
        remember_sources(store, ref.registry, ref.repository, digests)
    except OSError:
        pass  # hints for cross-repository mounts only
    return image, manifest_digest, existed != image.id or bool(todo)


def _fetch_and_unpack(
    store: Store,
    blobs: BlobStore,
    download: _Download,
    todo: list[dict[str, Any]],
    diff_ids: dict[str, str],
    progress: Progress,
) -> list[str]:
    """Download the blobs (threads) and unpack each, as soon as it is here,
    in a worker process; returns the diff_ids of the layers that were new.

    Each layer ends in a syncfs that is better waited for beside the others.
    On a failure every worker is still waited for, so that the caller can
    roll back all the layers that were made.
    """
    from concurrent.futures import Future, as_completed

    errors: list[BaseException] = []
    added: list[str] = []
    fetchers = ThreadPoolExecutor(PARALLEL)
    fetching = {fetchers.submit(download, desc): desc for desc in todo}
    with fetchers, unpack_pool(worker_count(len(todo))) as unpackers:
        unpacking: dict[Future[tuple[str, bool]], dict[str, Any]] = {}
        for done in as_completed(fetching):
            desc = fetching[done]
            try:
                done.result()
            except BaseException as exc:  # noqa: BLE001 - kept, raised once all workers are done
                errors.append(exc)
                continue
            if not errors:
                progress.status(short_digest(desc["digest"]), "Extracting", line=False)
                unpacking[unpackers.submit(_unpack, store.paths, desc)] = desc
        for unpacked in as_completed(unpacking):
            desc = unpacking[unpacked]
            try:
                diff_id, created = unpacked.result()
            except BaseException as exc:  # noqa: BLE001 - as above
                errors.append(exc)
                continue
            if created:
                added.append(diff_id)
            try:
                oci_image.check_layer_digest(diff_ids[desc["digest"]], diff_id, desc["digest"])
            except BaseException as exc:  # noqa: BLE001 - as above
                errors.append(exc)
                continue
            progress.status(short_digest(desc["digest"]), "Pull complete")
    if errors:
        first = errors[0]
        first.added_layers = added  # type: ignore[attr-defined]
        raise first
    return added


def _unpack(paths: Any, desc: dict[str, Any]) -> tuple[str, bool]:
    """In a worker process: one layer into the store (its own catalog connection)."""
    from overlayctl.store import Store

    store = Store(paths)
    try:
        path = BlobStore(paths).path(desc["digest"])
        layer, created = oci_image.import_layer_blob(store, path, desc["mediaType"], desc["digest"])
        return layer.diff_id, created
    finally:
        store.close()


def _unique(descs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    return [d for d in descs if not (d["digest"] in seen or seen.add(d["digest"]))]  # type: ignore[func-returns-value]


def _tagged_image(store: Store, ref: RemoteReference) -> str | None:
    if ref.local is None:
        return None
    return store.images.id_tagged(str(ref.local))


def _check_platform(config: dict[str, Any], platform: str | None) -> None:
    if not platform:
        return
    os_, arch = parse_platform(platform)
    got = (config.get("os"), config.get("architecture"))
    if got[0] and got[1] and got != (os_, arch):
        raise RegistryError(f"the image is for {got[0]}/{got[1]}, not the requested {platform}")


def _roll_back(store: Store, blobs: BlobStore, layers: list[str], added: list[str]) -> None:
    # Layers first (their layer_blobs rows go with them), then the blob files
    # this pull wrote; layers another image uses are left alone.
    if layers:
        store.layers.release(layers)
        store.layers.remove_unreferenced(layers)
    for digest in added:
        # A blob new to this pull that a kept layer recorded (its tar was
        # already stored, from another source) goes too: the pull failed.
        store.layers.forget_blob(digest)
        try:
            os.unlink(blobs.path(digest))
        except FileNotFoundError:
            pass
