"""A container's size: the one definition that `ps -s`, `inspect -s`,
`system df` and `stats` all show (docs/measurement.md).

A container's size is the bytes its upper dir holds on disk, as
``du -s --block-size=1 UPPER`` counts them: the copy-on-write layer, not its
work dir, its logs or its configuration files.
"""

from __future__ import annotations

from overlayctl.layer.du import disk_usage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.containers import Container


def container_size(store: Store, container: Container) -> int:
    """The container's size in bytes (its upper dir, as du counts it)."""
    return disk_usage(store.paths.upper(container.id)).bytes


def container_sizes(store: Store, containers: list[Container]) -> dict[str, int]:
    """container_size of each container, by container ID."""
    return {c.id: container_size(store, c) for c in containers}
