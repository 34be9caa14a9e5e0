"""Prune and gc: what Docker's prune commands remove, and the store's own garbage.

The prune commands remove things a user made and no longer uses: stopped
containers, dangling (or, with all, unused) images, unused networks, the
build cache, unused volumes. `system gc` removes what nobody made on
purpose: layers no image uses, dangling images, build cache rows whose
owner is gone, layer tars made by save or push, catalog backups beyond the
newest few, and the crash leftovers `system fsck --repair` would remove
(orphan directories and blobs, staging of dead processes). Every item is
measured before it goes, as `du` counts it, so "reclaimed" is what the
filesystem gets back.
"""

from __future__ import annotations

from dataclasses import dataclass

from overlayctl.errors import InvalidArgumentError, OverlayctlError
from overlayctl.layer.du import tree_bytes
from overlayctl.util.filters import parse_until  # noqa: F401  (its home before util.filters; kept for callers)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.images import Image


@dataclass
class Removed:
    """One item a prune or gc removes (or, in a dry run, would remove)."""

    reason: str  # "stopped container", "dangling image", "unreferenced layer", ...
    name: str
    size: int  # bytes as du counts them


def layer_bytes(store: Store, diff_id: str) -> int:
    """What removing a layer frees: its directory and the blobs it came as."""
    layer = store.layers.find(diff_id)
    if layer is None:
        return 0
    blobs = store.layers.blobs_of(diff_id)
    return tree_bytes(store.paths.layer_dir(layer.dir)) + sum(tree_bytes(store.paths.blob(b["digest"])) for b in blobs)


# -- containers ------------------------------------------------------------------


def prune_containers(store: Store, filters: list[str] | None = None) -> list[Removed]:
    """`container prune [--filter until=|label=|label!=]`: every container
    that is not running (created or exited) and that the filters select,
    with its writable layer and logs; its volumes stay, as in Docker."""
    from overlayctl.engine.containers import remove
    from overlayctl.engine.filters import CONTAINER_PRUNE_KEYS, PruneFilter

    spare = PruneFilter(filters or [], CONTAINER_PRUNE_KEYS)
    removed = []
    for container in store.containers.list(all=True):
        if container.is_active or spare.keeps(container.created, container.config.config.labels or {}):
            continue
        size = tree_bytes(store.paths.container_dir(container.id))
        try:
            remove(store, container)
        except OverlayctlError:
            continue  # started meanwhile: in use again
        removed.append(Removed("stopped container", container.id, size))
    return removed


# -- images ----------------------------------------------------------------------


def _unused_images(store: Store, all_images: bool, filters: list[str] | None = None) -> list[Image]:
    from overlayctl.engine.filters import IMAGE_PRUNE_KEYS, PruneFilter, image_labels

    spare = PruneFilter(filters or [], IMAGE_PRUNE_KEYS)
    # As Docker: dangling=false is -a, dangling=true the default.
    dangling = spare.filters.boolean("dangling")
    if dangling is not None:
        all_images = not dangling
    used = store.containers.image_ids_in_use()
    # Dangling, as Docker's: no tag and no digest (an image pulled by digest is kept).
    return [
        i
        for i in store.images.list()
        if i.id not in used
        and (all_images or not (i.tags or i.digests))
        and not spare.keeps(i.created, image_labels(i))
    ]


def _layers_freed_by(store: Store, image_ids: set[str]) -> list[str]:
    """The layers only these images use (in first-use order)."""
    return store.images.layers_only_of(image_ids)


def prune_images(
    store: Store, all_images: bool = False, dry_run: bool = False, filters: list[str] | None = None
) -> tuple[list[str], list[Removed]]:
    """`image prune [-a] [--filter until=|label=|label!=|dangling=]`:
    dangling images (no tag, no container), or with all_images every image
    no container uses; of those, the ones the filters select. Returns
    Docker's untagged:/deleted: lines and what was removed (images, then
    layers)."""
    images = _unused_images(store, all_images, filters)
    if not images:
        return [], []
    reason = "unused image" if all_images else "dangling image"
    removed = [Removed(reason, image.id, 0) for image in images]
    layers = _layers_freed_by(store, {image.id for image in images})
    sizes = {diff_id: layer_bytes(store, diff_id) for diff_id in layers}
    if dry_run:
        return [], removed + [Removed("unreferenced layer", d, sizes[d]) for d in layers]
    lines: list[str] = []
    gone: list[str] = []
    for image in images:
        try:
            # Forced: an image in several repositories goes whole, as each
            # of its names would by `rmi NAME`. A container made from it
            # meanwhile keeps it (untagged), as `rmi -f` leaves it.
            untagged, deleted, diff_ids = store.images.remove(image.id, force=True)
        except OverlayctlError:
            continue  # removed meanwhile
        lines += [f"untagged: {name}" for name in untagged] + [f"deleted: {i}" for i in deleted]
        gone += diff_ids
    deleted_layers = store.layers.remove_unreferenced(list(dict.fromkeys(gone)))
    lines += [f"deleted: {layer.diff_id}" for layer in deleted_layers]
    removed += [Removed("unreferenced layer", layer.diff_id, sizes.get(layer.diff_id, 0)) for layer in deleted_layers]
    return lines, removed


# -- networks and build cache ------------------------------------------------------


def prune_networks(store: Store, filters: list[str] | None = None) -> list[str]:
    """`network prune [--filter until=|label=|label!=]`: user-defined
    networks no container (running or not) is connected to, and that the
    filters select; the predefined ones stay."""
    from overlayctl.engine.filters import NETWORK_PRUNE_KEYS, PruneFilter, network_labels
    from overlayctl.network.leases import networks
    from overlayctl.network.manage import DEFAULT_NETWORK, remove_network

    spare = PruneFilter(filters or [], NETWORK_PRUNE_KEYS)
    wanted = set()
    for container in store.containers.list(all=True):
        wanted |= set(container.config.endpoints())
    names = []
    for network in networks(store).list():
        if network.name == DEFAULT_NETWORK or network.name in wanted:
            continue
        if spare.keeps(network.created, network_labels(network)):
            continue
        try:
            names.append(remove_network(store, network.name))
        except OverlayctlError:
            continue
    return names


def check_system_prune_filters(filters: list[str], volumes: bool) -> None:
    """`system prune --filter`: every filter checked before anything goes.
    `until` cannot apply to volumes (they keep no creation time that
    Docker's prune reads), as Docker says."""
    from overlayctl.engine.filters import SYSTEM_PRUNE_KEYS, PruneFilter

    spare = PruneFilter(filters, SYSTEM_PRUNE_KEYS)
    if volumes and "until" in spare.filters:
        raise InvalidArgumentError('the "until" filter is not supported with "--volumes"')


def check_build_cache_filters(filters: list[str]) -> None:
    """`builder prune --filter`: refused, the build cache keeps neither
    times nor labels to select by."""
    for item in filters:
        key = item.partition("=")[0].strip().lower()
        raise InvalidArgumentError(
            f"filter '{key}' is not supported by builder prune: the build cache keeps no times or labels; "
            "prune it whole, or use image prune --filter"
        )


def prune_build_cache(store: Store, dry_run: bool = False) -> list[Removed]:
    """`builder prune`: forget every cached build step (the rows; their
    layers belong to the images the builds made and stay with them), remove
    the `RUN --mount=type=cache` directories no step holds now, and the
    staging of builds that died."""
    from overlayctl.store import staging
    from overlayctl.store.cachemounts import CacheMounts

    count = store.build_cache.count()
    removed = [Removed("build cache", f"{count} cached build steps", 0)] if count else []
    mounts = CacheMounts(store.paths)
    for mount in mounts.all():
        size = tree_bytes(mount.path)
        if dry_run:
            if not mounts.in_use(mount):
                removed.append(Removed("cache mount", f"cache mount {mount.id}", size))
        elif mounts.remove(mount):
            removed.append(Removed("cache mount", f"cache mount {mount.id}", size))
    leftovers = staging.leftovers(store.paths.tmp)
    removed += [Removed("staging leftover", path, tree_bytes(path)) for path, _ in leftovers]
    if not dry_run:
        store.build_cache.clear()
        for path, _ in leftovers:
            try:
                staging.remove_tree(path)
            except FileNotFoundError:
                pass
    # The layers of a multi-stage build's other stages: only cache rows
    # named them, and with the rows gone no image uses them (a running
    # build's are leased, and stay).
    stray = store.layers.unreferenced()
    sizes = {diff_id: layer_bytes(store, diff_id) for diff_id in stray}
    if stray and not dry_run:
        stray = [layer.diff_id for layer in store.layers.remove_unreferenced(stray)]
    removed += [Removed("build cache layer", diff_id, sizes[diff_id]) for diff_id in stray]
    return removed


# -- gc ----------------------------------------------------------------------------------

# fsck's findings that are garbage (when they carry a repair), as gc names them.
_GARBAGE = {
    "orphan layer directory": "orphan directory",
    "orphan container directory": "orphan directory",
    "orphan volume directory": "orphan directory",
    "orphan blob": "orphan blob",
    "staging leftover": "staging leftover",
    "stale lease": "stale lease",
}


def gc(store: Store, dry_run: bool = False) -> list[Removed]:
    """`system gc`: the store's garbage, each item with its reason and size."""
    from overlayctl.store import fsck

    # Nothing goes on the word of a catalog that is damaged or lost (and
    # a dry run says so too).
    fsck.ensure_repairable(store, [])
    removed: list[Removed] = []
    # Dangling images, and the layers only they use.
    removed += prune_images(store, all_images=False, dry_run=dry_run)[1]
    # Layers no image uses (a crash between an image's removal and its
    # layers'), but for the other stages of multi-stage builds, which the
    # cache rows of their final image still name.
    cached = store.build_cache.named_layers()
    stray = [d for d in store.layers.unreferenced() if d not in cached]
    sizes = {d: layer_bytes(store, d) for d in stray}
    if stray and not dry_run:
        stray = [layer.diff_id for layer in store.layers.remove_unreferenced(stray)]
    removed += [Removed("unreferenced layer", d, sizes[d]) for d in stray]
    # Build cache rows whose owner is gone (the catalog cascades normally;
    # a catalog that lost its foreign keys may keep them).
    stale = store.build_cache.orphaned_count()
    if stale:
        removed.append(Removed("stale cache entry", f"{stale} build steps of removed images", 0))
        if not dry_run:
            store.build_cache.remove_orphaned()
    # Crash leftovers, as fsck finds them.
    findings = [f for f in fsck.check(store) + fsck.stale_leases(store) if f.problem in _GARBAGE and f.repair]
    for finding in findings:
        path = finding.subject
        size = tree_bytes(path)
        removed.append(Removed(_GARBAGE[finding.problem], path, size))
    if dry_run:
        fsck.ensure_repairable(store, findings)
    else:
        fsck.repair(store, findings)
    removed += _made_blobs(store, dry_run)
    removed += _old_backups(store, dry_run)
    return removed


def _made_blobs(store: Store, dry_run: bool) -> list[Removed]:
    """The layer tars save and push made: kept, each `save` would grow the
    store for good; made again (the same bytes, so the same digests) by the
    next save or push that needs them."""
    removed = []
    for digest, diff_id in store.layers.made_blobs():
        size = tree_bytes(store.paths.blob(digest))
        if dry_run or store.layers.drop_made_blob(digest, diff_id):
            removed.append(Removed("exported blob", digest, size))
    return removed


def _old_backups(store: Store, dry_run: bool) -> list[Removed]:
    """Catalog backups beyond the newest few (overlayctl.store.backup.KEEP)."""
    from overlayctl.store import backup

    doomed = backup.prune(store.paths.root, dry_run=True)
    sizes = {path: tree_bytes(path) for path in doomed}
    if not dry_run:
        doomed = backup.prune(store.paths.root)
    return [Removed("old catalog backup", path, sizes.get(path, 0)) for path in doomed]
