"""The Store facade: one catalog connection and the three object stores."""

from __future__ import annotations

import os

from overlayctl.paths import Paths
from overlayctl.runtime.overlay import MAX_LAYERS, OverlayLayout
from overlayctl.store import catalog
from overlayctl.store.containers import Container, ContainerStore
from overlayctl.store.images import Image, ImageStore
from overlayctl.store.layers import LayerStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store.buildcache import BuildCache
    from overlayctl.store.networks import NetworkStore, PortStore
    from overlayctl.store.volumes import VolumeStore


class Store:
    """Everything under --root, opened once per command."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        for directory in (paths.root, paths.layers, paths.containers, paths.tmp):
            if not os.path.isdir(directory):
                _make_dir(directory, paths.root)
        if not os.path.isdir(paths.runroot):
            _check_place(paths.runroot, "--runroot")
        self.conn = catalog.connect(paths.catalog)
        self.layers = LayerStore(paths, self.conn)
        self.images = ImageStore(self.conn, paths)
        self.containers = ContainerStore(paths, self.conn)

    @property
    def read_only(self) -> bool:
        """Whether the store is on a read-only filesystem (only commands
        that read can work on it)."""
        try:
            return bool(os.statvfs(self.paths.root).f_flag & os.ST_RDONLY)
        except OSError:
            return False

    @property
    def build_cache(self) -> BuildCache:
        from overlayctl.store.buildcache import BuildCache

        return BuildCache(self.conn)

    @property
    def volumes(self) -> VolumeStore:
        """The volumes and which containers use them."""
        from overlayctl.store.volumes import VolumeStore

        return VolumeStore(self.paths, self.conn)

    @property
    def networks(self) -> NetworkStore:
        """The networks and their address leases."""
        from overlayctl.store.networks import NetworkStore

        return NetworkStore(self.conn, self.paths)

    @property
    def ports(self) -> PortStore:
        """The host ports running containers publish."""
        from overlayctl.store.networks import PortStore

        return PortStore(self.conn)

    def backup(self, label: str) -> str:
        """Back up the catalog into ROOT/backups (SQLite's online backup,
        safe while other commands run); the backup's path."""
        from overlayctl.store import backup

        return backup.make(self.conn, self.paths.catalog, label)

    def close(self) -> None:
        self.conn.close()

    def overlay_layout(self, image: Image, container: Container) -> OverlayLayout:
        """The directories the runtime mounts for this container: the image's
        layers top first (overlayfs order), then its own upper and work.

        A container on a network also gets the init layer on top of the
        image: empty /etc/hosts, /etc/hostname and /etc/resolv.conf for the
        generated files to be mounted on, so that making the mount targets
        never writes into the container's upper dir (as Docker's init layer).
        """
        lowerdirs = tuple(self.layers.diff_path(layer) for layer in reversed(image.layers))
        if container.config.host.network not in ("none", "host") and len(lowerdirs) < MAX_LAYERS:
            # (An image at the kernel's limit goes without: its mount targets
            # are then made in the upper dir.)
            lowerdirs = (self.init_layer(),) + lowerdirs
        return OverlayLayout(lowerdirs, self.paths.upper(container.id), self.paths.work(container.id))

    def init_layer(self) -> str:
        """The shared init layer's directory, made on first use (staged, then
        renamed into place, so a crash never leaves half of it)."""
        diff = self.paths.init_diff
        if os.path.isdir(diff):
            return diff
        from overlayctl.store import staging

        stage = staging.new_staging_dir(self.paths.tmp, "init")
        try:
            os.makedirs(os.path.join(stage, "diff", "etc"), 0o755)
            os.chmod(os.path.join(stage, "diff"), 0o755)
            for name in ("hosts", "hostname", "resolv.conf"):
                os.close(os.open(os.path.join(stage, "diff", "etc", name), os.O_WRONLY | os.O_CREAT, 0o644))
            staging.flush(stage)
            try:
                os.rename(stage, self.paths.init_layer)
            except OSError:
                if not os.path.isdir(diff):  # not another process that got there first
                    raise
        finally:
            if os.path.lexists(stage):
                staging.remove_tree(stage)
        return diff


def _check_place(path: str, option: str) -> None:
    """One line naming ``path`` when it cannot be a directory of ours: a
    file is in the way, or its parent does not exist (a missing directory
    is made, as Docker makes its root, only inside an existing one)."""
    from overlayctl.errors import StoreError

    if os.path.lexists(path) and not os.path.isdir(path):
        raise StoreError(f"{option} {path} is not a directory")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.lexists(parent) else "does not exist"
        raise StoreError(f"{option} {path}: its parent directory {parent} {what}")


def _make_dir(directory: str, root: str) -> None:
    from overlayctl.errors import StoreError

    if directory == root:
        _check_place(root, "--root")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        if e.errno == 30:  # EROFS
            raise StoreError(f"the store at {root} is on a read-only filesystem") from None
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise StoreError(f"{directory} in the store is not a directory") from None
        raise StoreError(f"cannot create {directory}: {e.strerror}") from None
