"""The `volume` verbs: create, ls, inspect, rm, prune.

Volumes themselves (made on first use by `-v`, seeded from the image,
released by `rm -v`) are overlayctl.volumes'; the catalog's rows are
overlayctl.store.volumes'. These are what a user asks for by name.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError
from overlayctl.volumes.mounts import volume_store
from overlayctl.volumes.options import validate_volume_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.store import Store
    from overlayctl.store.volumes import Volume


def create_volume(
    store: Store,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    driver: str = "local",
    options: dict[str, str] | None = None,
) -> Volume:
    """`volume create [NAME]`: a random 64-hex name when none is given.
    Creating a volume that exists returns it unchanged, as Docker does."""
    if driver != "local":
        raise InvalidArgumentError(f'volume driver "{driver}" is not supported (only local)')
    if options:
        raise InvalidArgumentError(
            f"driver options ({', '.join(sorted(options))}) are not supported: local volumes are plain directories"
        )
    name = validate_volume_name(name) if name is not None else os.urandom(32).hex()
    volume, _new = volume_store(store).create(name, labels)
    return volume


def list_volumes(store: Store, filters: list[str] | None = None) -> list[Volume]:
    """`volume ls`, with Docker's filters dangling=true|false, name=TEXT,
    label=KEY[=VALUE], driver=local."""
    from overlayctl.engine.filters import volume_matcher

    test = volume_matcher(filters or [])
    volumes = volume_store(store)
    found = volumes.list_all()
    if not filters:
        return found
    used = volumes.in_use()
    return [v for v in found if test(v, v.name in used)]


def volume_inspect(store: Store, volume: Volume) -> dict[str, Any]:
    """`volume inspect`, Docker-shaped."""
    return {
        "CreatedAt": volume.created.split(".")[0] + "Z" if "." in volume.created else volume.created,
        "Driver": volume.driver,
        "Labels": dict(volume.labels),
        "Mountpoint": store.paths.volume_data(volume.name),
        "Name": volume.name,
        "Options": None,
        "Scope": "local",
    }


def inspect_volumes(store: Store, names: list[str]) -> list[dict[str, Any]]:
    """`volume inspect NAME...`: each volume, Docker-shaped; the first
    unknown name is an error."""
    volumes = volume_store(store)
    return [volume_inspect(store, volumes.get(name)) for name in names]


def remove_volume(store: Store, name: str, force: bool = False) -> bool:
    """`volume rm`: refused while any container uses it. With force, a
    missing volume is no error and containers that are not running lose
    their use of it (their next start fails, naming it); a running
    container still blocks. Returns whether a volume was removed."""
    volumes = volume_store(store)
    if force and volumes.find(name) is None:
        return False

    def not_running(container_id: str) -> bool:
        return force and not store.containers.is_running(container_id)

    volumes.remove(name, not_running)
    return True


def prune_volumes(store: Store, all_volumes: bool = False, filters: list[str] | None = None) -> list[tuple[str, int]]:
    """`volume prune`: remove volumes no container uses, anonymous ones only
    unless all_volumes (Docker 23+), and with `filters` (label=, label!=)
    those they select. Returns (name, bytes freed)."""
    from overlayctl.engine.filters import VOLUME_PRUNE_KEYS, volume_matcher
    from overlayctl.store.volumes import ANONYMOUS_LABEL
    from overlayctl.util.filters import parse_filters

    test = volume_matcher(filters or [], VOLUME_PRUNE_KEYS)
    # Docker 23+: all=true is -a.
    all_volumes = all_volumes or bool(parse_filters(filters or [], VOLUME_PRUNE_KEYS).boolean("all"))

    def select(volume: Volume) -> bool:
        if not all_volumes and not (volume.anonymous or ANONYMOUS_LABEL in volume.labels):
            return False
        return bool(test(volume, False))

    return volume_store(store).prune(select, _measure)


def _measure(path: str) -> int:
    from overlayctl.layer.du import tree_bytes

    return tree_bytes(path)
