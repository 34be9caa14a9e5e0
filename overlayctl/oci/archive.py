"""Image archives in and out: OCI image layout tars and docker-archive tars.

An OCI archive (`podman save --format oci-archive`, skopeo) is an image
layout in a tar: ``oci-layout``, ``index.json`` naming each image with the
``org.opencontainers.image.ref.name`` annotation, and every manifest,
config and layer under ``blobs/sha256/<hex>``. A docker-archive
(`docker save`, `podman save --format docker-archive`) has ``manifest.json``
listing each image's config file, its tags and its layer tars (uncompressed,
often reached through symlinks), and ``repositories``.

Loading is all or nothing. The outer tar is unpacked into one staging
directory under <root>/tmp, every file hashed on the way; every blob is
checked against its digest, every layer unpacked into staging and checked
against the diff_id its config lists. Only when all of that has succeeded
are the layers renamed into place, the blobs moved into the BlobStore and
the images recorded. A bad archive leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from overlayctl.errors import (
    DigestMismatchError,
    InvalidArgumentError,
    KernelError,
    LayerRejectedError,
    UnsupportedMediaTypeError,
)
from overlayctl.oci import image as oci
from overlayctl.oci.blobs import BlobStore, check_digest, split_digest
from overlayctl.store import staging
from overlayctl.util import faults, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.images import Image

OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"
FORMATS = (OCI_ARCHIVE, DOCKER_ARCHIVE)
REF_NAME = "org.opencontainers.image.ref.name"
# containerd and Docker >= 25 put the full name here and only the tag in REF_NAME.
CONTAINERD_NAME = "io.containerd.image.name"
_CHUNK = 1 << 20
_JSON_LIMIT = 16 << 20  # index, manifest, config: anything larger is not one


class Progress:
    """What load and save tell the person waiting; the CLI overrides these."""

    def layer_start(self, digest: str, size: int) -> None:
        """A layer blob of ``size`` bytes starts being read."""

    def layer_advance(self, digest: str, nbytes: int) -> None:
        """``nbytes`` more of the layer were read (layers may go in parallel)."""

    def layer_done(self, digest: str, status: str) -> None:
        """The layer is done: status "Loaded", "Already exists" or "Written"."""

    def image_done(self, name: str) -> None:
        """An image was loaded (name, or its ID when it has none)."""


# -- the outer tar ----------------------------------------------------------


@dataclass
class _Member:
    """A regular file of the archive, copied into staging and hashed."""

    path: str
    digest: str
    size: int


@dataclass
class _Archive:
    """The archive's files by normalised name, and where it came from."""

    where: str
    files: dict[str, _Member] = field(default_factory=dict)

    def get(self, name: str, what: str) -> _Member:
        member = self.files.get(_normalize(name))
        if member is None:
            raise InvalidArgumentError(f"{self.where}: {what} {name} is missing from the archive")
        return member

    def read_json(self, name: str, what: str) -> tuple[Any, bytes]:
        member = self.get(name, what)
        return self.json_of(member, what), self.bytes_of(member, what)

    def bytes_of(self, member: _Member, what: str) -> bytes:
        if member.size > _JSON_LIMIT:
            raise InvalidArgumentError(f"{self.where}: {what} is {member.size} bytes, too large to be one")
        with open(member.path, "rb") as f:
            return f.read()

    def json_of(self, member: _Member, what: str) -> Any:
        raw = self.bytes_of(member, what)
        try:
            return jsonio.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgumentError(f"{self.where}: {what} is not valid JSON ({e})") from None

    def blob(self, desc: Any, what: str) -> _Member:
        """The archive's blob for an OCI descriptor, checked against it."""
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise InvalidArgumentError(f"{self.where}: a {what} descriptor has no digest")
        digest = desc["digest"]
        hex_digest = split_digest(digest)
        member = self.get(f"blobs/sha256/{hex_digest}", f"{what} blob")
        size = desc.get("size")
        check_digest(what, digest, size if isinstance(size, int) else None, member.digest, member.size)
        return member


def _normalize(name: str) -> str:
    from overlayctl.layer.extract import normalize_parts

    parts = normalize_parts(name)
    return "/".join(parts) if parts else ""


def _unpack_outer(source: BinaryIO, stage: str, where: str) -> _Archive:
    """Copy every regular file of the archive into ``stage``, hashing it;
    symlinks and hardlinks (docker-archive uses them for shared layers)
    become aliases of the file they point at."""
    archive = _Archive(where)
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=_CHUNK) as tar:  # type: ignore[call-overload]
            count = 0
            while (info := tar.next()) is not None:
                # A stream TarFile keeps every member it read: not needed here.
                tar.members.clear()  # type: ignore[attr-defined]
                name = _normalize(info.name)
                if not name:
                    continue
                if info.issym():
                    links[name] = _normalize(os.path.join(os.path.dirname(name), info.linkname))
                elif info.islnk():
                    links[name] = _normalize(info.linkname)
                elif info.isreg():
                    count += 1
                    path = os.path.join(stage, f"f{count}")
                    src = tar.extractfile(info)
                    assert src is not None
                    archive.files[name] = _copy_hashed(src, path, info.size, where, name)
    except (tarfile.TarError, EOFError, zlib_errors()) as e:
        raise InvalidArgumentError(f"{where} is not a valid image archive: it is truncated or corrupt ({e})") from None
    for _ in range(8):  # links to links, a few levels deep at most
        for name, target in list(links.items()):
            if target in archive.files:
                archive.files[name] = archive.files[target]
                del links[name]
    return archive


def zlib_errors() -> type[Exception]:
    import zlib

    return zlib.error


def _copy_hashed(src: IO[bytes], path: str, size: int, where: str, name: str) -> _Member:
    sha = hashlib.sha256()
    copied = 0
    with open(path, "xb") as out:
        while chunk := src.read(_CHUNK):
            sha.update(chunk)
            out.write(chunk)
            copied += len(chunk)
    if copied != size:
        raise InvalidArgumentError(f"{where} is truncated: {name} has {copied} of its {size} bytes")
    return _Member(path, "sha256:" + sha.hexdigest(), size)


# -- what the archive holds -------------------------------------------------------


@dataclass
class _LayerPlan:
    member: _Member
    media_type: str
    diff_id: str


@dataclass
class _ImagePlan:
    config: bytes
    layers: list[_LayerPlan]
    names: list[str]
    manifest: bytes | None = None
    manifest_type: str | None = None


def _plan(archive: _Archive) -> list[_ImagePlan]:
    _check_blob_names(archive)
    if "index.json" in archive.files:
        return _plan_oci(archive)
    if "manifest.json" in archive.files:
        return _plan_docker(archive)
    hint = " (it has blobs: is it truncated?)" if any(n.startswith("blobs/") for n in archive.files) else ""
    raise InvalidArgumentError(
        f"{archive.where} is not an image archive: it has neither index.json (OCI) nor manifest.json "
        f"(docker-archive){hint}"
    )


def _check_blob_names(archive: _Archive) -> None:
    # Every blob is checked, referenced or not: a corrupt archive is refused
    # as a whole, not only where we happen to look.
    for name, member in archive.files.items():
        if name.startswith("blobs/sha256/") and name.count("/") == 2:
            expected = "sha256:" + name.rsplit("/", 1)[1]
            check_digest(f"{archive.where}: blob", expected, None, member.digest, member.size)


def _plan_oci(archive: _Archive) -> list[_ImagePlan]:
    where = archive.where
    if "oci-layout" in archive.files:
        layout = archive.json_of(archive.files["oci-layout"], "oci-layout")
        version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
        if version != oci.OCI_LAYOUT_VERSION:
            raise UnsupportedMediaTypeError(f'{where}: unsupported OCI image layout version "{version}"')
    index, _ = archive.read_json("index.json", "index.json")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidArgumentError(f"{where}: index.json lists no images")
    plans: dict[str, _ImagePlan] = {}
    for desc in entries:
        name = _name_of(desc)
        desc = _resolve_index(archive, desc)
        key = desc["digest"]
        if key not in plans:
            plans[key] = _plan_manifest(archive, desc)
        if name and name not in plans[key].names:
            plans[key].names.append(name)
    return list(plans.values())


def _name_of(desc: Any) -> str | None:
    annotations = desc.get("annotations") if isinstance(desc, dict) else None
    if not isinstance(annotations, dict):
        return None
    from overlayctl.util.reference import parse_reference

    full = annotations.get(CONTAINERD_NAME)
    if isinstance(full, str) and full:
        try:
            return str(parse_reference(full))
        except InvalidArgumentError:
            return None
    name = annotations.get(REF_NAME)
    # A bare tag ("latest", as Docker writes beside CONTAINERD_NAME) names no repository.
    if isinstance(name, str) and ("/" in name or ":" in name or (name and not name.replace(".", "").isdigit())):
        try:
            return str(parse_reference(name))
        except InvalidArgumentError:
            return None
    return None


def _resolve_index(archive: _Archive, desc: Any) -> dict[str, Any]:
    """Follow nested indexes down to the manifest for this host's platform."""
    for _ in range(4):
        media_type = desc.get("mediaType") if isinstance(desc, dict) else None
        if media_type in oci.MANIFEST_TYPES:
            return desc  # type: ignore[no-any-return]
        member = archive.blob(desc, "manifest")
        doc = archive.json_of(member, "manifest")
        media_type = media_type or (doc.get("mediaType") if isinstance(doc, dict) else None)
        if media_type in oci.INDEX_TYPES or (media_type is None and "manifests" in doc):
            desc = oci.select_platform(doc)
            continue
        if media_type in oci.MANIFEST_TYPES or (media_type is None and "layers" in doc):
            return {**desc, "mediaType": media_type or oci.OCI_MANIFEST}
        raise UnsupportedMediaTypeError(f'{archive.where}: unsupported manifest media type "{media_type}"')
    raise InvalidArgumentError(f"{archive.where}: image indexes nested too deeply")


def _plan_manifest(archive: _Archive, desc: dict[str, Any]) -> _ImagePlan:
    where = archive.where
    member = archive.blob(desc, "manifest")
    manifest = archive.json_of(member, "manifest")
    manifest_bytes = archive.bytes_of(member, "manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise InvalidArgumentError(f"{where}: manifest {desc['digest']} has no layers list")
    config_desc = manifest.get("config") or {}
    if config_desc.get("mediaType") not in oci.CONFIG_TYPES:
        raise UnsupportedMediaTypeError(
            f'{where}: unsupported image config media type "{config_desc.get("mediaType")}"'
        )
    config_bytes = archive.bytes_of(archive.blob(config_desc, "config"), "config")
    diff_ids = oci.parse_config(config_bytes, where)["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise InvalidArgumentError(
            f"{where}: manifest {desc['digest']} lists {len(manifest['layers'])} layers, its config {len(diff_ids)}"
        )
    layers = []
    for layer_desc, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        media_type = layer_desc.get("mediaType") if isinstance(layer_desc, dict) else None
        oci.layer_compression(str(media_type))
        layers.append(_LayerPlan(archive.blob(layer_desc, "layer"), str(media_type), diff_id))
    media_type = desc.get("mediaType") or manifest.get("mediaType") or oci.OCI_MANIFEST
    return _ImagePlan(config_bytes, layers, [], manifest_bytes, media_type)


def _plan_docker(archive: _Archive) -> list[_ImagePlan]:
    where = archive.where
    entries, _ = archive.read_json("manifest.json", "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise InvalidArgumentError(f"{where}: manifest.json lists no images")
    plans = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArgumentError(f"{where}: a manifest.json entry has no Config")
        config_member = archive.get(entry["Config"], "image config")
        hex_name = os.path.basename(entry["Config"]).removesuffix(".json")
        if len(hex_name) == 64:
            check_digest(f"{where}: image config", "sha256:" + hex_name, None, config_member.digest, config_member.size)
        config_bytes = archive.bytes_of(config_member, "image config")
        diff_ids = oci.parse_config(config_bytes, where)["rootfs"]["diff_ids"]
        paths = entry.get("Layers") or []
        if not isinstance(paths, list) or len(paths) != len(diff_ids):
            raise InvalidArgumentError(
                f"{where}: manifest.json lists {len(paths)} layers for {entry['Config']}, its config {len(diff_ids)}"
            )
        layers = []
        for path, diff_id in zip(paths, diff_ids, strict=True):
            member = archive.get(str(path), "layer")
            layers.append(_LayerPlan(member, _sniff_layer_type(member), diff_id))
        # Checked now: a bad name found after the layers were committed would
        # leave them behind without an image.
        tags = [_valid_name(t, where) for t in entry.get("RepoTags") or []]
        plans.append(_ImagePlan(config_bytes, layers, tags))
    return plans


def _valid_name(name: object, where: str) -> str:
    from overlayctl.util.reference import parse_reference

    try:
        return str(parse_reference(str(name)))
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{where}: {e.message}") from None


def _sniff_layer_type(member: _Member) -> str:
    # docker-archive names no media types: the layer files say what they are.
    from overlayctl.layer.compression import GZIP, ZSTD, detect_compression

    with open(member.path, "rb") as f:
        kind = detect_compression(f.read(8))
    return {None: oci.OCI_LAYER, GZIP: oci.OCI_LAYER_GZIP, ZSTD: oci.OCI_LAYER_ZSTD}.get(kind, oci.OCI_LAYER)


# -- unpacking and committing ------------------------------------------------------


class _Counting:
    """Report progress as a blob is read."""

    def __init__(self, raw: BinaryIO, progress: Progress, digest: str) -> None:
        self._raw = raw
        self._progress = progress
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._progress.layer_advance(self._digest, len(data))
        return data


@dataclass
class _Prepared:
    diff_id: str
    stage: str | None  # a staged layer directory to commit, None when stored already


def _hash_layer(member: _Member, media_type: str) -> str:
    sha = hashlib.sha256()
    with open(member.path, "rb") as raw:
        tar = oci.open_layer(raw, media_type)
        while chunk := tar.read(_CHUNK):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def _prepare_existing(store: Store, layer: _LayerPlan, progress: Progress) -> _Prepared | None:
    """A layer already stored: not unpacked again (its blob is checked)."""
    if store.layers.find(layer.diff_id) is None:
        return None
    _check_unpacked_blob(store, layer)
    progress.layer_done(layer.member.digest, "Already exists")
    return _Prepared(layer.diff_id, None)


def _check_unpacked_blob(store: Store, layer: _LayerPlan) -> None:
    """A blob that is kept without being unpacked must really be the layer
    the config says: it is what the next save sends out."""
    known = store.layers.layer_of_blob(layer.member.digest)
    got = known if known is not None else _hash_layer(layer.member, layer.media_type)
    oci.check_layer_digest(layer.diff_id, got, _short(layer))


def _short(layer: _LayerPlan) -> str:
    return layer.member.digest.split(":", 1)[1][:12]


def _unpack_blob(path: str, stage: str, counter: int) -> tuple[str, str]:
    """In a worker: unpack the layer blob at ``path`` (its compression told
    by its magic bytes) into a new staging directory, and index it while
    its files are in the page cache (the commit finds the index written).
    Returns (that directory, the diff_id); the compressed bytes read are
    added to _COUNTERS[counter]."""
    from overlayctl.layer import contentindex
    from overlayctl.layer.compression import decompressed_file
    from overlayctl.layer.extract import extract_layer

    layer_stage = staging.new_staging_dir(stage, "layer")
    diff = os.path.join(layer_stage, "diff")
    os.mkdir(diff, 0o755)

    def count(n: int) -> None:
        if counter >= 0:
            _COUNTERS[counter] += n

    with decompressed_file(path, count) as tar:
        got = extract_layer(tar, diff)
    contentindex.write_index(layer_stage)
    return layer_stage, got.diff_id


# Bytes read of each blob being unpacked, shared with the forked workers.
_COUNTERS: Any = []


def _unpack_all(layers: list[_LayerPlan], stage: str, where: str, progress: Progress) -> list[_Prepared]:
    """Unpack the layers a load needs side by side in forked workers
    (layer.workers) and check them against their diff_ids, reporting each
    one's progress from the counters the workers share. Every worker is
    done (the pool's ``with``) before the first error is raised."""
    global _COUNTERS
    from concurrent.futures import FIRST_COMPLETED, Future, wait

    from overlayctl.layer.workers import shared_counters, unpack_pool, worker_count

    for layer in layers:
        oci.layer_compression(layer.media_type)  # an unsupported type is refused before anything else
        progress.layer_start(layer.member.digest, layer.member.size)
    if len(layers) == 1:  # no fork for one layer
        layer = layers[0]
        try:
            unpacked = _unpack_blob(layer.member.path, stage, -1)
        except (LayerRejectedError, EOFError) as exc:
            raise _layer_error(where, _short(layer), exc) from None
        return [_checked(layer, *unpacked, progress)]
    _COUNTERS = shared_counters(len(layers))
    reported = [0] * len(layers)
    results: dict[int, _Prepared] = {}
    errors: list[BaseException] = []
    with unpack_pool(worker_count(len(layers))) as pool:
        pending: dict[Future[tuple[str, str]], int] = {
            pool.submit(_unpack_blob, layer.member.path, stage, i): i for i, layer in enumerate(layers)
        }
        while pending:
            done, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for i, layer in enumerate(layers):
                if _COUNTERS[i] > reported[i]:
                    progress.layer_advance(layer.member.digest, _COUNTERS[i] - reported[i])
                    reported[i] = _COUNTERS[i]
            for future in done:
                i = pending.pop(future)
                try:
                    results[i] = _checked(layers[i], *future.result(), progress)
                except BaseException as exc:  # noqa: BLE001 - raised once every worker is done
                    errors.append(_layer_error(where, _short(layers[i]), exc))
                    for other in pending:
                        other.cancel()
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(layers))]


def _checked(layer: _LayerPlan, layer_stage: str, diff_id: str, progress: Progress) -> _Prepared:
    oci.check_layer_digest(layer.diff_id, diff_id, _short(layer))
    progress.layer_done(layer.member.digest, "Loaded")
    return _Prepared(layer.diff_id, layer_stage)


def _layer_error(where: str, short: str, exc: BaseException) -> BaseException:
    if isinstance(exc, LayerRejectedError):
        return LayerRejectedError(f"{where}: layer {short}: {exc}")
    if isinstance(exc, EOFError):
        return LayerRejectedError(f"{where}: layer {short}: layer rejected: truncated compressed data")
    return exc


def load_archive(store: Store, source: BinaryIO, where: str, progress: Progress | None = None) -> list[Image]:
    """Load every image of an OCI or docker-archive tar read from ``source``.

    ``source`` is read once, forwards (stdin works). Returns the images,
    tagged with the names the archive gives them. Any bad blob, digest,
    media type or layer raises an OverlayctlError and stores nothing.
    """
    progress = progress or Progress()
    leased: list[str] = []
    with staging.staging(store.paths.tmp, "load") as stage:
        try:
            archive = _unpack_outer(source, stage, where)
            plans = _plan(archive)
            # Leased before anything is found stored (see LayerStore).
            leased += [layer.diff_id for plan in plans for layer in plan.layers]
            store.layers.lease(leased)
            prepared: dict[str, _Prepared] = {}
            new: dict[str, _LayerPlan] = {}
            seen: dict[str, str] = {}  # diff_id -> the blob digest handled for it
            for plan in plans:
                for layer in plan.layers:
                    if layer.diff_id in seen:
                        if seen[layer.diff_id] != layer.member.digest:
                            # The same layer as another blob (another compression).
                            _check_unpacked_blob(store, layer)
                        continue
                    seen[layer.diff_id] = layer.member.digest
                    existing = _prepare_existing(store, layer, progress)
                    if existing is None:
                        new[layer.diff_id] = layer
                    else:
                        prepared[layer.diff_id] = existing
            for done in _unpack_all(list(new.values()), stage, where, progress):
                prepared[done.diff_id] = done
            # One flush for the blobs; each layer's commit flushes again.
            staging.flush(stage)
            faults.point("load-staged")
        except OSError as e:
            store.layers.release(leased)
            raise KernelError(
                f"cannot load {where}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else "")
            ) from e
        except BaseException:
            store.layers.release(leased)
            raise
        return _commit(store, plans, prepared, progress)


def _commit(store: Store, plans: list[_ImagePlan], prepared: dict[str, _Prepared], progress: Progress) -> list[Image]:
    blobs = BlobStore(store.paths)
    for p in prepared.values():
        if p.stage is not None:
            store.layers.commit_staged(p.stage, p.diff_id)
    images = []
    for plan in plans:
        for layer in plan.layers:
            if not blobs.has(layer.member.digest):
                blobs.adopt(layer.member.path, layer.member.digest)
            oci.record_blob(store, layer.member.digest, layer.diff_id, layer.media_type, layer.member.size, True)
        names: list[str | None] = list(plan.names) or [None]
        image = oci.create_image(store, plan.config, names[0], plan.manifest, plan.manifest_type)
        for name in names[1:]:
            from overlayctl.util.reference import parse_reference

            store.images.tag(image, parse_reference(name))  # type: ignore[arg-type]
        for name in plan.names:
            progress.image_done(name)
        if not plan.names:
            progress.image_done(image.id)
        images.append(store.images.get(image.id))
    return images


# -- saving ---------------------------------------------------------------------


@dataclass
class _Entry:
    name: str
    data: bytes | None = None
    blob: str | None = None  # a BlobStore digest
    size: int = 0


def _name_for(store: Store, text: str, image: Image) -> str | None:
    """The tag to write for IMAGE as the user named it (none for an ID)."""
    from overlayctl.util.reference import parse_reference

    try:
        name = str(parse_reference(text))
    except InvalidArgumentError:
        return None
    return name if name in image.tags else None


def _oci_entries(store: Store, named: list[tuple[Image, str | None]], compression: str | None) -> list[_Entry]:
    blobs: dict[str, _Entry] = {}
    index = []
    for image, name in named:
        manifest, config = oci.image_manifest(store, image, compression or "gzip", reuse_original=compression is None)
        doc = jsonio.loads(manifest)
        for layer in doc["layers"]:
            blobs.setdefault(
                layer["digest"], _Entry(_blob_name(layer["digest"]), blob=layer["digest"], size=layer["size"])
            )
        config_digest = doc["config"]["digest"]
        blobs.setdefault(config_digest, _Entry(_blob_name(config_digest), data=config))
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        blobs.setdefault(manifest_digest, _Entry(_blob_name(manifest_digest), data=manifest))
        desc = oci.descriptor(doc.get("mediaType") or oci.OCI_MANIFEST, manifest_digest, len(manifest))
        if name is not None:
            desc["annotations"] = {REF_NAME: name}
        index.append(desc)
    layout = jsonio.dumps({"imageLayoutVersion": oci.OCI_LAYOUT_VERSION}).encode()
    index_doc = jsonio.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": index}).encode()
    return [_Entry("oci-layout", data=layout), *blobs.values(), _Entry("index.json", data=index_doc)]


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + split_digest(digest)


def _docker_entries(store: Store, named: list[tuple[Image, str | None]]) -> list[_Entry]:
    entries: dict[str, _Entry] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for image, name in named:
        config = oci.image_config_bytes(store, image)
        config_name = split_digest(image.id) + ".json"
        entries.setdefault(config_name, _Entry(config_name, data=config))
        # docker-archive layers are uncompressed tars: the blob whose
        # digest is the diff_id, made once and kept.
        layers = oci.layer_descriptors(store, image, "none", reuse_original=False)
        paths = []
        for layer in layers:
            path = split_digest(layer["digest"]) + ".tar"
            entries.setdefault(path, _Entry(path, blob=layer["digest"], size=layer["size"]))
            paths.append(path)
        tags = [name] if name else []
        manifest.append({"Config": config_name, "RepoTags": tags, "Layers": paths})
        if name and paths:
            repo, _, tag = name.rpartition(":")
            repositories.setdefault(repo, {})[tag] = paths[-1].removesuffix(".tar")
    out = list(entries.values())
    out.append(_Entry("manifest.json", data=jsonio.dumps(manifest).encode()))
    out.append(_Entry("repositories", data=jsonio.dumps(repositories).encode()))
    return out


def save_archive(
    store: Store,
    texts: list[str],
    out: BinaryIO,
    fmt: str = OCI_ARCHIVE,
    compression: str | None = None,
    progress: Progress | None = None,
) -> None:
    """Write the images named by ``texts`` to ``out`` as one archive.

    oci-archive: each layer goes out as the blob it was received as, or,
    for a layer made here, as a gzip blob (what `podman save` writes);
    ``compression`` ("none", "gzip", "zstd") makes every layer that one.
    docker-archive: uncompressed layer tars, as `docker save` writes.
    The tar's own entries have fixed owners and times, so the same images
    always give the same archive.
    """
    if fmt not in FORMATS:
        raise InvalidArgumentError(f'unknown archive format "{fmt}" (use {" or ".join(FORMATS)})')
    if compression is not None:
        oci.oci_layer_type(compression)
        if fmt == DOCKER_ARCHIVE:
            raise InvalidArgumentError(
                "--compression applies to oci-archive only; docker-archive layers are plain tars"
            )
    progress = progress or Progress()
    named = []
    for text in texts:
        image = store.images.resolve(text)
        named.append((image, _name_for(store, text, image)))
    # Leased while written: gc leaves the blobs made for them alone.
    leased = list(dict.fromkeys(layer.diff_id for image, _ in named for layer in image.layers))
    store.layers.lease(leased)
    try:
        entries = _oci_entries(store, named, compression) if fmt == OCI_ARCHIVE else _docker_entries(store, named)
        _write_tar(store, entries, out, progress)
    finally:
        store.layers.release(leased)


def _write_tar(store: Store, entries: list[_Entry], out: BinaryIO, progress: Progress) -> None:
    import io

    blobs = BlobStore(store.paths)
    dirs_done: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_CHUNK) as tar:  # type: ignore[call-overload]
        for entry in entries:
            parts = entry.name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                directory = "/".join(parts[:i])
                if directory not in dirs_done:
                    tar.addfile(_info(directory, 0, tarfile.DIRTYPE))
                    dirs_done.add(directory)
            if entry.data is not None:
                tar.addfile(_info(entry.name, len(entry.data)), io.BytesIO(entry.data))
                continue
            assert entry.blob is not None
            progress.layer_start(entry.blob, entry.size)
            with blobs.open(entry.blob) as f:
                size = os.fstat(f.fileno()).st_size
                if size != entry.size:
                    raise DigestMismatchError(f"blob {entry.blob} in the store has {size} bytes, not {entry.size}")
                tar.addfile(_info(entry.name, size), _Counting(f, progress, entry.blob))  # type: ignore[arg-type]
            progress.layer_done(entry.blob, "Written")


def _info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def open_source(path: str | None) -> tuple[BinaryIO, str, Callable[[], None]]:
    """The archive to load: a file, or stdin; returns (stream, name for messages, close)."""
    import sys

    if path is None or path == "-":
        if sys.stdin.isatty():
            raise InvalidArgumentError('no archive given: use -i FILE, or pipe it in ("overlayctl load < x.tar")')
        return sys.stdin.buffer, "stdin", lambda: None
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InvalidArgumentError(f"cannot open {path}: {e.strerror}") from None
    from overlayctl.util import space

    # Staged as it is, then unpacked: twice its size at most (compressed
    # layers unpack to more, layers already stored to nothing).
    space.expect(2 * os.fstat(f.fileno()).st_size)
    return f, path, f.close
