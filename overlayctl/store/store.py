"""The Store facade: one catalog connection and the three object stores."""

from __future__ import annotations

import os

from overlayctl.paths import Paths
from overlayctl.runtime.overlay import OverlayLayout
from overlayctl.store import catalog
from overlayctl.store.containers import Container, ContainerStore
from overlayctl.store.images import Image, ImageStore
from overlayctl.store.layers import LayerStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store.buildcache import BuildCache


class Store:
    """Everything under --root, opened once per command."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        for directory in (paths.root, paths.layers, paths.containers, paths.tmp):
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
        self.conn = catalog.connect(paths.catalog)
        self.layers = LayerStore(paths, self.conn)
        self.images = ImageStore(self.conn)
        self.containers = ContainerStore(paths, self.conn)

    @property
    def build_cache(self) -> BuildCache:
        from overlayctl.store.buildcache import BuildCache

        return BuildCache(self.conn)

    def close(self) -> None:
        self.conn.close()

    def overlay_layout(self, image: Image, container: Container) -> OverlayLayout:
        """The directories the runtime mounts for this container: the image's
        layers top first (overlayfs order), then its own upper and work."""
        lowerdirs = tuple(self.layers.diff_path(layer) for layer in reversed(image.layers))
        return OverlayLayout(lowerdirs, self.paths.upper(container.id), self.paths.work(container.id))
