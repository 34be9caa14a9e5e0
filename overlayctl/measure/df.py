"""`system df`: what the store holds on disk, by kind, adding up to ``du``.

Every byte under the store root is charged to exactly one place, so that
the rows plus the catalog equal ``du -s --block-size=1 ROOT``:

- Images: ``layers/``, every layer directory, and ``blobs/`` (layer tars
  kept as received or sent, for save and push). A layer's files were
  measured at commit and are never walked again; only its directory entry
  and anything beside ``diff/`` are looked at. A layer shared by many
  images is charged once; the images' SHARED and UNIQUE sizes say how it
  divides.
- Containers: each ``containers/<id>/`` (upper dir, work dir, its files)
  except its logs, measured now with the one measuring function.
- Logs: the json-file logs, rotated files included.
- Events: ``events/``, the record of events (store.events), bounded: its
  current file and the one before it. Nothing of it is reclaimable by
  hand; it turns itself over.
- Local Volumes: ``volumes/`` and each volume.
- Build Cache: the build cache's entries (rows of the catalog pointing at
  layers the images own: no bytes of their own), the directories of
  ``RUN --mount=type=cache`` (``buildcache-mounts/``, each one an entry,
  active while a step holds it) and ``tmp/``, where builds, imports and
  commits stage their work.
- Catalog: the root directory itself, the catalog database with its WAL,
  the locks, the shared init layer, compiled seccomp filters and anything
  else at the top of the store (named in ``Other``).

Hard links never cross these places (layers, uppers and volumes are
separate trees), which is what lets per-place sums equal ``du``'s total.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from overlayctl.layer.du import entry_bytes, tree_bytes
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
    """One container: its directory (upper, work) without logs, and its logs."""

    container: Container
    size: int
    logs: int
    volumes: int


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
    cache_mounts_size: int = 0  # buildcache-mounts/ as a whole
    catalog: int = 0
    other: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(kind.size for kind in self.kinds) + self.catalog


def _layer_dirs(store: Store) -> tuple[dict[str, int], int]:
    """Bytes of each layer by diff_id (the stored size of its files plus its
    directory and anything beside diff/), and of layer directories the
    catalog does not know (walked)."""
    known = {layer.dir: (layer.diff_id, layer.size) for layer in store.layers.all_layers()}
    sizes: dict[str, int] = {}
    unknown = 0
    try:
        names = os.listdir(store.paths.layers)
    except FileNotFoundError:
        names = []
    for name in names:
        path = store.paths.layer_dir(name)
        if name not in known:
            unknown += tree_bytes(path)
            continue
        diff_id, diff_size = known[name]
        size = entry_bytes(path) + diff_size
        with os.scandir(path) as it:
            for entry in it:
                if entry.name != "diff":
                    size += tree_bytes(entry.path)
        sizes[diff_id] = size
    return sizes, unknown


def _blobs(store: Store) -> tuple[int, int]:
    """Bytes of ``blobs/`` (the layer tars kept as received or sent, for
    save and push), and of the blob files no layer claims any more."""
    top = store.paths.blobs_dir
    if not os.path.isdir(top):
        return 0, 0
    total = tree_bytes(top)
    claimed = store.layers.blob_digests()
    orphans = 0
    sha256 = os.path.join(top, "sha256")
    if os.path.isdir(sha256):
        with os.scandir(sha256) as it:
            for entry in it:
                if "sha256:" + entry.name not in claimed and entry.is_file(follow_symlinks=False):
                    orphans += entry.stat(follow_symlinks=False).st_blocks * _STAT_BLOCK
    return total, orphans


def measure(store: Store) -> Report:
    """Measure the whole store (see the module's docstring for who pays what)."""
    report = Report()
    root = store.paths.root

    # Images and their layers.
    layer_sizes, orphan_layers = _layer_dirs(store)
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
        diff_ids = {layer.diff_id for layer in image.layers}
        shared = sum(layer_sizes.get(d, 0) for d in diff_ids if layer_images[d] > 1)
        unique = sum(layer_sizes.get(d, 0) for d in diff_ids if layer_images[d] == 1)
        report.images.append(
            ImageUsage(image.id, image.tags, image.created, shared + unique, shared, unique, users.get(image.id, 0))
        )
    in_use = {d for image in images if users.get(image.id) for d in (layer.diff_id for layer in image.layers)}
    blobs, orphan_blobs = _blobs(store)
    images_size = entry_bytes(store.paths.layers) + sum(layer_sizes.values()) + orphan_layers + blobs
    images_reclaimable = (
        images_size
        - entry_bytes(store.paths.layers)
        - sum(layer_sizes[d] for d in in_use if d in layer_sizes)
        - (blobs - orphan_blobs)
    )
    report.kinds.append(
        Kind("Images", len(images), sum(1 for i in images if users.get(i.id)), images_size, images_reclaimable)
    )

    # Containers, and their logs.
    volume_counts = store.volumes.volume_counts()
    by_id = {c.id: c for c in containers}
    orphan_containers = 0
    try:
        names = os.listdir(store.paths.containers)
    except FileNotFoundError:
        names = []
    for name in names:
        path = store.paths.container_dir(name)
        if name not in by_id:
            orphan_containers += tree_bytes(path)
            continue
        logs = 0
        with os.scandir(path) as it:
            for entry in it:
                if _LOG_SUFFIX in entry.name and entry.is_file(follow_symlinks=False):
                    logs += entry.stat(follow_symlinks=False).st_blocks * _STAT_BLOCK
        report.containers.append(ContainerUsage(by_id[name], tree_bytes(path) - logs, logs, volume_counts.get(name, 0)))
    active = [u for u in report.containers if u.container.is_active]
    containers_size = entry_bytes(store.paths.containers) + orphan_containers + sum(u.size for u in report.containers)
    report.kinds.append(
        Kind(
            "Containers",
            len(report.containers),
            len(active),
            containers_size,
            containers_size - entry_bytes(store.paths.containers) - sum(u.size for u in active),
        )
    )

    # Local volumes.
    volume_users = store.volumes.user_counts()
    volumes_dir = store.paths.volumes
    volumes_size = 0
    if os.path.isdir(volumes_dir):
        volumes_size = entry_bytes(volumes_dir)
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
    report.staging = tree_bytes(store.paths.tmp) if os.path.isdir(store.paths.tmp) else 0
    mounts = CacheMounts(store.paths)
    for mount in mounts.all():
        report.cache_mounts.append((mount.id, tree_bytes(mount.path), mounts.in_use(mount)))
    mounts_dir = entry_bytes(store.paths.build_mounts)
    report.cache_mounts_size = mounts_dir + sum(size for _, size, _ in report.cache_mounts)
    report.kinds.append(
        Kind(
            "Build Cache",
            report.build_cache_entries + len(report.cache_mounts),
            sum(1 for _, _, used in report.cache_mounts if used),
            report.staging + report.cache_mounts_size,
            report.staging
            - entry_bytes(store.paths.tmp)
            + sum(size for _, size, used in report.cache_mounts if not used),
        )
    )

    # The catalog and everything else at the top of the store.
    charged = {"layers", "blobs", "containers", "volumes", "tmp", "buildcache-mounts", "events"}
    report.catalog = entry_bytes(root)
    with os.scandir(root) as it:
        for entry in it:
            if entry.name in charged:
                continue
            size = tree_bytes(entry.path)
            report.catalog += size
            if not entry.name.startswith("catalog.db") and entry.name != "layers.lock":
                report.other[entry.name] = size
    return report
