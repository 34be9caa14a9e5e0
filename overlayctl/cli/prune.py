"""Prune commands, as Docker's: container, image, network, builder and
system prune; and `system gc [--dry-run]`, the store's own garbage."""

from __future__ import annotations

import click

from overlayctl.cli.common import open_store
from overlayctl.cli.output import filter_option

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.engine.prune import Removed

FORCE = click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
FILTER = filter_option("until=TIME, label=KEY[=VALUE], label!=KEY[=VALUE]", short=False)


def _confirm(force: bool, what: list[str], filters: list[str] | None = None) -> bool:
    if force:
        return True
    click.echo("WARNING! This will remove:")
    for line in what:
        click.echo(f"  - {line}")
    if filters:
        click.echo("\n  Items to be pruned will be filtered with:")
        for item in filters:
            click.echo(f"  - {item}")
    return click.confirm("Are you sure you want to continue?", default=False)


def _total(removed: list[Removed]) -> None:
    from overlayctl.util.humanize import human_size

    click.echo(f"Total reclaimed space: {human_size(sum(r.size for r in removed))}")


@click.command("prune")
@FILTER
@FORCE
@click.pass_obj
def container_prune(obj: dict, filters: tuple[str, ...], force: bool) -> None:
    """Remove all stopped containers (created or exited) and their writable layers."""
    from overlayctl.engine.filters import CONTAINER_PRUNE_KEYS, PruneFilter
    from overlayctl.engine.prune import prune_containers

    PruneFilter(filters, CONTAINER_PRUNE_KEYS)  # a bad filter fails before the question
    if not _confirm(force, ["all stopped containers"]):
        return
    removed = prune_containers(open_store(obj), list(filters))
    if removed:
        click.echo("Deleted Containers:")
        for item in removed:
            click.echo(item.name)
        click.echo("")
    _total(removed)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="every image no container uses, not only dangling ones")
@filter_option("until=TIME, label=, label!=, dangling=false (-a)", short=False)
@FORCE
@click.pass_obj
def image_prune(obj: dict, all_: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove dangling images (no tag, no container), and the layers only they use."""
    from overlayctl.engine.filters import IMAGE_PRUNE_KEYS, PruneFilter
    from overlayctl.engine.prune import prune_images

    PruneFilter(filters, IMAGE_PRUNE_KEYS)
    if not _confirm(force, ["all images without at least one container" if all_ else "all dangling images"]):
        return
    lines, removed = prune_images(open_store(obj), all_, filters=list(filters))
    if lines:
        click.echo("Deleted Images:")
        for line in lines:
            click.echo(line)
        click.echo("")
    _total(removed)


@click.command("prune")
@FILTER
@FORCE
@click.pass_obj
def network_prune(obj: dict, filters: tuple[str, ...], force: bool) -> None:
    """Remove user-defined networks no container is connected to (the
    predefined ones stay)."""
    from overlayctl.engine.filters import NETWORK_PRUNE_KEYS, PruneFilter
    from overlayctl.engine.prune import prune_networks

    PruneFilter(filters, NETWORK_PRUNE_KEYS)
    store = open_store(obj)
    if not force:
        # Docker's own prompt for this one.
        click.echo("WARNING! This will remove all custom networks not used by at least one container.")
        if not click.confirm("Are you sure you want to continue?", default=False):
            return
    names = prune_networks(store, list(filters))
    if names:
        click.echo("Deleted Networks:\n" + "".join(name + "\n" for name in names))


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="accepted for Docker's sake: the whole cache goes either way")
@filter_option("refused: the cache keeps no times or labels", short=False)
@FORCE
@click.pass_obj
def builder_prune(obj: dict, all_: bool, filters: tuple[str, ...], force: bool) -> None:
    """Forget the build cache (cached steps; their layers stay with the
    images that use them) and remove the staging of builds that died."""
    from overlayctl.engine.prune import check_build_cache_filters, prune_build_cache

    check_build_cache_filters(list(filters))
    if not _confirm(force, ["all build cache"]):
        return
    removed = prune_build_cache(open_store(obj))
    for item in removed:
        click.echo(f"Deleted: {item.name}")
    _total(removed)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="every unused image, not only dangling ones")
@click.option("--volumes", is_flag=True, help="also anonymous volumes no container uses")
@FILTER
@FORCE
@click.pass_obj
def system_prune(obj: dict, all_: bool, volumes: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove stopped containers, unused networks, dangling (with -a:
    unused) images, the build cache, and with --volumes unused anonymous
    volumes. With --filter, only what the filters select, and the build
    cache (which keeps no times or labels) stays."""
    from overlayctl.engine.prune import (
        Removed,
        check_system_prune_filters,
        prune_build_cache,
        prune_containers,
        prune_images,
        prune_networks,
    )
    from overlayctl.engine.volumes import prune_volumes

    given = list(filters)
    check_system_prune_filters(given, volumes)

    what = ["all stopped containers", "all networks not used by at least one container"]
    if volumes:
        what.append("all anonymous volumes not used by at least one container")
    what += ["all images without at least one container" if all_ else "all dangling images"]
    # With filters the build cache stays: it keeps no times or labels to filter by.
    what += [] if given else ["all build cache"]
    if not _confirm(force, what, given):
        return
    store = open_store(obj)
    removed = prune_containers(store, given)
    if removed:
        click.echo("Deleted Containers:\n" + "\n".join(r.name for r in removed) + "\n")
    networks = prune_networks(store, given)
    if networks:
        click.echo("Deleted Networks:\n" + "\n".join(networks) + "\n")
    if volumes:
        gone = prune_volumes(store, filters=given)
        if gone:
            click.echo("Deleted Volumes:\n" + "\n".join(name for name, _ in gone) + "\n")
        removed += [Removed("unused volume", name, size) for name, size in gone]
    lines, images = prune_images(store, all_, filters=given)
    if lines:
        click.echo("Deleted Images:\n" + "\n".join(lines) + "\n")
    removed += images
    cache = prune_build_cache(store) if not given else []
    if cache:
        click.echo("Deleted build cache objects:\n" + "\n".join(r.name for r in cache) + "\n")
    removed += cache
    _total(removed)


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="list what would be removed, and why, and remove nothing")
@click.pass_obj
def system_gc(obj: dict, dry_run: bool) -> None:
    """Remove the store's garbage: dangling images, layers no image uses,
    stale build cache rows, layer tars made by save and push, catalog
    backups beyond the newest five, and crash leftovers (orphan directories
    and blobs, staging of dead processes). Each item is listed with its reason
    and the bytes it frees."""
    from overlayctl.cli.output import table
    from overlayctl.engine.prune import gc
    from overlayctl.util.humanize import human_size

    removed = gc(open_store(obj), dry_run)
    if removed:
        rows = [[r.reason, r.name, human_size(r.size)] for r in removed]
        table(["REASON", "ITEM", "SIZE"], rows)
    total = human_size(sum(r.size for r in removed))
    if dry_run:
        click.echo(f"Would remove {len(removed)} items, freeing {total}")
    else:
        click.echo(f"Removed {len(removed)} items. Total reclaimed space: {total}")


def register(cli: click.Group) -> None:
    """Attach the prune commands to their groups, and `builder`."""

    @cli.group("builder")
    def builder() -> None:
        """Manage the build cache."""

    builder.add_command(builder_prune)
    for group, command in (
        ("container", container_prune),
        ("image", image_prune),
        ("network", network_prune),
        ("system", system_prune),
        ("system", system_gc),
    ):
        cli.commands[group].add_command(command)  # type: ignore[attr-defined]
