"""`inspect` across kinds: a name looked up as a container, an image, a
network, then a volume, as Docker looks. Apart from engine.inspect, which
the listing and filtering code below networks and volumes uses."""

from __future__ import annotations

from typing import Any

from overlayctl.engine.inspect import container_inspect, image_inspect
from overlayctl.engine.networks import inspect_networks
from overlayctl.engine.volumes import inspect_volumes
from overlayctl.errors import NotFoundError
from overlayctl.store import Store


def inspect_objects(
    store: Store, names: list[str], size: bool = False, kind: str | None = None
) -> list[dict[str, Any]]:
    """`inspect NAME...`: each name as a container or, when no container
    has it, as an image, a network, then a volume (as Docker looks); with
    `kind`, as that kind only."""

    finders = {
        "container": lambda text: container_inspect(store, store.containers.get(text), size),
        "image": lambda text: image_inspect(store.images.resolve(text)),
        "network": lambda text: inspect_networks(store, [text])[0],
        "volume": lambda text: inspect_volumes(store, [text])[0],
    }
    kinds = [kind] if kind is not None else list(finders)
    result = []
    for text in names:
        for i, name in enumerate(kinds):
            try:
                result.append(finders[name](text))
                break
            except NotFoundError:
                if kind is not None:
                    raise
                if i == len(kinds) - 1:
                    raise NotFoundError(
                        f'no such object: "{text}"; see "overlayctl ps -a" and "overlayctl images"'
                    ) from None
    return result
