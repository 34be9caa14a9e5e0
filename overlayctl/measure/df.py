"""`system df`: what the store holds on disk, by kind, adding up to ``du``.

Each row is the sum of the one figure its objects show everywhere else
(docs/measurement.md): Images the layers' sizes (``diff/`` as du counts it,
measured at commit), each layer once; Containers their sizes
(measure.usage.container_size, the upper dir); Local Volumes each volume's
directory; Logs the json-file logs, rotated files included; Events
``events/``; Build Cache the directories of ``RUN --mount=type=cache`` and
what ``tmp/`` holds, where builds, imports and commits stage their work.

What no row's figure covers is the store's metadata, charged by name so
that the rows plus it equal ``du -s --block-size=1 ROOT``:

- catalog: the root directory itself, the catalog database with its WAL,
  and the locks;
- layers: ``layers/`` and each layer directory beside its ``diff/`` (the
  tar-split and content index kept for save and push, the diff_id file),
  and layer directories the catalog does not know;
- blobs: ``blobs/``, the layer tars kept as received or sent;
- containers: ``containers/`` and each container's directory beside its
  upper dir and logs (its overlay work dir, the directory itself), and
  container directories the catalog does not know;
- volumes: ``volumes/`` itself;
- build cache: ``tmp/`` and ``buildcache-mounts/`` themselves;
- anything else at the top of the store (the shared init layer, compiled
  seccomp filters, leases...), by its name.

A layer's files were measured at commit and are never walked again; a
container's upper dir is measured only by measure.usage (which may read a
project quota instead of walking). Hard links never cross these places
(layers, uppers and volumes are separate trees), which is what lets
per-place sums equal ``du``'s total.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from overlayctl.layer.du import entry_bytes, tree_bytes
from overlayctl.measure.usage import container_sizes
from overlayctl.store import Store, events
from overlayctl.store.cachemounts import CacheMounts
from overlayctl.store.containers import Container

_STAT_BLOCK = 512
_LOG_SUFFIX = "-json.log"


@dataclass
class ImageUsage:
    """One image: its total, what it shares with other images and what only it has."""

    id: str
    tags: list[str]
    created: str
    size: int
    shared: int
    unique: int
    containers: int


@dataclass
class ContainerUsage:
    """One container: its size (the upper dir, measure.usage), its logs, and
    the rest of its directory (work dir, the directory itself: metadata)."""

    container: Container
    size: int
    logs: int
    volumes: int
    other: int = 0


@dataclass
class VolumeUsage:
    """One volume: its directory and how many containers use it."""

    name: str
    links: int
    size: int


@dataclass
class Kind:
    """One row of the summary table."""

    type: str
    total: int
    active: int
    size: int
    reclaimable: int


@dataclass
class Report:
    """Everything `system df` prints; ``total`` equals du of the root."""

    images: list[ImageUsage] = field(default_factory=list)
    containers: list[ContainerUsage] = field(default_factory=list)
    volumes: list[VolumeUsage] = field(default_factory=list)
    kinds: list[Kind] = field(default_factory=list)
    build_cache_entries: int = 0
    staging: int = 0
    cache_mounts: list[tuple[str, int, bool]] = field(default_factory=list)  # (id, bytes, in use)
    cache_mounts_size: int = 0  # the cache mounts together
    # Bytes no row covers, by name: catalog, layers, blobs, containers,
    # volumes, then other entries at the top of the store.
    metadata: dict[str, int] = field(default_factory=dict)

    @property
    def metadata_size(self) -> int:
        return sum(self.metadata.values())

    @property
    def total(self) -> int:
        return sum(kind.size for kind in self.kinds) + self.metadata_size


def _layers(store: Store) -> tuple[dict[str, int], int]:
    """Each layer's size by diff_id (its diff/, measured at commit), and the
    metadata of the layers: ``layers/``, each layer directory beside its
    diff/, and layer directories the catalog does not know (walked)."""
    known = {layer.dir: (layer.diff_id, layer.size) for layer in store.layers.all_layers()}
    sizes: dict[str, int] = {}
    metadata = entry_bytes(store.paths.layers)
    try:
        names = os.listdir(store.paths.layers)
    except FileNotFoundError:
        names = []
    for name in names:
        path = store.paths.layer_dir(name)
        if name not in known:
            metadata += tree_bytes(path)
            continue
        diff_id, sizes[diff_id] = known[name]
        metadata += entry_bytes(path)
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.name != "diff":
                        metadata += tree_bytes(entry.path)
        except FileNotFoundError:
            pass  # removed since listed
    return sizes, metadata


def _containers(store: Store, containers: list[Container]) -> tuple[list[ContainerUsage], int]:
    """Each container's usage, and the metadata of the containers:
    ``containers/`` and directories the catalog does not know (each
    container's own beside its upper dir and logs is in its ``other``)."""
    volume_counts = store.volumes.volume_counts()
    by_id = {c.id: c for c in containers}
    metadata = entry_bytes(store.paths.containers)
    try:
        names = os.listdir(store.paths.containers)
    except FileNotFoundError:
        names = []
    listed = [by_id[name] for name in names if name in by_id]
    sizes = container_sizes(store, listed)
    usages = []
    for name in names:
        path = store.paths.container_dir(name)
        if name not in by_id:
            metadata += tree_bytes(path)
            continue
        logs = other = 0
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.name == "upper":
                        continue  # the container's size: measure.usage's alone
                    if _LOG_SUFFIX in entry.name and entry.is_file(follow_symlinks=False):
                        logs += entry.stat(follow_symlinks=False).st_blocks * _STAT_BLOCK
                    else:
                        other += tree_bytes(entry.path)
        except FileNotFoundError:
            pass  # removed since listed
        other += entry_bytes(path)
        usages.append(ContainerUsage(by_id[name], sizes[name], logs, volume_counts.get(name, 0), other))
    return usages, metadata


def measure(store: Store) -> Report:
    """Measure the whole store (see the module's docstring for who pays what)."""
    report = Report()
    root = store.paths.root

    # Images and their layers.
    layer_sizes, report.metadata["layers"] = _layers(store)
    images = store.images.list()
    containers = store.containers.list(all=True)
    users: dict[str, int] = {}
    for c in containers:
        users[c.image_id] = users.get(c.image_id, 0) + 1
    layer_images: dict[str, int] = {}
    for image in images:
        for diff_id in {layer.diff_id for layer in image.layers}:
            layer_images[diff_id] = layer_images.get(diff_id, 0) + 1
    for image in images:
        # The image's size is Image.size (image ls, inspect, ps -s): each of
        # its layers' stored size, a layer it holds twice counted twice.
        shared = sum(layer.size for layer in image.layers if layer_images[layer.diff_id] > 1)
        report.images.append(
            ImageUsage(
                image.id, image.tags, image.created, image.size, shared, image.size - shared, users.get(image.id, 0)
            )
        )
    in_use = {d for image in images if users.get(image.id) for d in (layer.diff_id for layer in image.layers)}
    images_size = sum(layer_sizes.values())
    report.kinds.append(
        Kind(
            "Images",
            len(images),
            sum(1 for i in images if users.get(i.id)),
            images_size,
            images_size - sum(layer_sizes[d] for d in in_use if d in layer_sizes),
        )
    )
    blobs_dir = store.paths.blobs_dir
    report.metadata["blobs"] = tree_bytes(blobs_dir) if os.path.isdir(blobs_dir) else 0

    # Containers, and their logs.
    report.containers, report.metadata["containers"] = _containers(store, containers)
    report.metadata["containers"] += sum(u.other for u in report.containers)
    active = [u for u in report.containers if u.container.is_active]
    containers_size = sum(u.size for u in report.containers)
    report.kinds.append(
        Kind(
            "Containers",
            len(report.containers),
            len(active),
            containers_size,
            containers_size - sum(u.size for u in active),
        )
    )

    # Local volumes.
    volume_users = store.volumes.user_counts()
    volumes_dir = store.paths.volumes
    volumes_size = 0
    report.metadata["volumes"] = entry_bytes(volumes_dir)
    if os.path.isdir(volumes_dir):
        for name in sorted(os.listdir(volumes_dir)):
            usage = VolumeUsage(name, volume_users.get(name, 0), tree_bytes(os.path.join(volumes_dir, name)))
            report.volumes.append(usage)
            volumes_size += usage.size
    report.kinds.append(
        Kind(
            "Local Volumes",
            len(report.volumes),
            sum(1 for v in report.volumes if v.links),
            volumes_size,
            sum(v.size for v in report.volumes if not v.links),
        )
    )

    # Logs.
    logs = [u for u in report.containers if u.logs]
    report.kinds.append(
        Kind(
            "Logs",
            len(logs),
            sum(1 for u in logs if u.container.is_active),
            sum(u.logs for u in logs),
            sum(u.logs for u in logs if not u.container.is_active),
        )
    )

    report.kinds.append(Kind("Events", events.count(store.paths), 0, tree_bytes(store.paths.events_dir), 0))

    # Build cache: catalog rows, cache mount directories, and the staging area.
    report.build_cache_entries = store.build_cache.count()
    # What is staged and cached; the two directories holding them are metadata.
    tmp_dir = entry_bytes(store.paths.tmp)
    report.staging = tree_bytes(store.paths.tmp) - tmp_dir if os.path.isdir(store.paths.tmp) else 0
    mounts = CacheMounts(store.paths)
    for mount in mounts.all():
        report.cache_mounts.append((mount.id, tree_bytes(mount.path), mounts.in_use(mount)))
    report.cache_mounts_size = sum(size for _, size, _ in report.cache_mounts)
    report.metadata["build cache"] = tmp_dir + entry_bytes(store.paths.build_mounts)
    report.kinds.append(
        Kind(
            "Build Cache",
            report.build_cache_entries + len(report.cache_mounts),
            sum(1 for _, _, used in report.cache_mounts if used),
            report.staging + report.cache_mounts_size,
            report.staging + sum(size for _, size, used in report.cache_mounts if not used),
        )
    )

    # The catalog and everything else at the top of the store.
    charged = {"layers", "blobs", "containers", "volumes", "tmp", "buildcache-mounts", "events"}
    catalog = entry_bytes(root)
    other: dict[str, int] = {}
    with os.scandir(root) as it:
        for entry in it:
            if entry.name in charged:
                continue
            size = tree_bytes(entry.path)
            if entry.name.startswith("catalog.db") or entry.name == "layers.lock":
                catalog += size
            else:
                other[entry.name] = size
    report.metadata = {"catalog": catalog, **report.metadata, **dict(sorted(other.items()))}
    return report
