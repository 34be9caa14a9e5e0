"""Where things live: the durable store and the volatile runroot, and a
container's directories in the host's cgroup trees.

Derived once from the global options (or OVERLAYCTL_ROOT / OVERLAYCTL_RUNROOT)
so that every module agrees on one layout.
"""

from __future__ import annotations

import os

DEFAULT_ROOT = "/var/lib/overlayctl"
DEFAULT_RUNROOT = "/run/overlayctl"

# A container's cgroups live outside the root and the runroot, in each cgroup
# tree of the host, under a directory of ours: <tree>/overlayctl/<id>.
CGROUP_PARENT = "overlayctl"
# Where the trees are mounted on the hosts overlayctl knows (a v1 freezer, a
# hybrid host's controller-less cgroup2, a v2 host): enough to ask whether a
# container has a cgroup without reading mountinfo.
USUAL_CGROUP_TREES = ("/sys/fs/cgroup/freezer", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def cgroup_parent_dir(tree: str, parent: str = CGROUP_PARENT) -> str:
    """The directory holding containers' cgroups in the cgroup tree mounted
    at `tree`: <tree>/overlayctl."""
    return os.path.join(tree, parent)


def cgroup_dir(tree: str, container_id: str, parent: str = CGROUP_PARENT) -> str:
    """The directory of a container's cgroup (or freezer) in the cgroup tree
    mounted at `tree`: <tree>/overlayctl/<id>. The one place it is spelt."""
    return os.path.join(cgroup_parent_dir(tree, parent), container_id)


class Paths:
    """The store root (durable) and the runroot (vanishes on reboot)."""

    __slots__ = ("root", "runroot")

    def __init__(self, root: str, runroot: str) -> None:
        self.root = root
        self.runroot = runroot

    def __repr__(self) -> str:
        return f"Paths(root={self.root!r}, runroot={self.runroot!r})"

    @classmethod
    def from_env(cls, root: str | None = None, runroot: str | None = None) -> Paths:
        """Resolve explicit options, then the environment, then the defaults."""
        root = root or os.environ.get("OVERLAYCTL_ROOT") or DEFAULT_ROOT
        runroot = runroot or os.environ.get("OVERLAYCTL_RUNROOT") or DEFAULT_RUNROOT
        return cls(os.path.abspath(root), os.path.abspath(runroot))

    @property
    def catalog(self) -> str:
        return os.path.join(self.root, "catalog.db")

    @property
    def storage_config(self) -> str:
        """The store's configuration: the default size limit of containers
        (store/storageopts.py)."""
        return os.path.join(self.root, "storage.json")

    @property
    def layers(self) -> str:
        return os.path.join(self.root, "layers")

    @property
    def containers(self) -> str:
        return os.path.join(self.root, "containers")

    @property
    def tmp(self) -> str:
        """Staging: everything is built here, fsynced, then renamed into place."""
        return os.path.join(self.root, "tmp")

    @property
    def volumes(self) -> str:
        return os.path.join(self.root, "volumes")

    @property
    def blobs_dir(self) -> str:
        """Everything about kept blobs: sha256/ and the sources file."""
        return os.path.join(self.root, "blobs")

    @property
    def blobs(self) -> str:
        """Layer tars kept as received or sent, by sha256: blobs/sha256/<hex>."""
        return os.path.join(self.blobs_dir, "sha256")

    @property
    def blob_sources(self) -> str:
        """Which registry repositories each kept blob came from (oci/push)."""
        return os.path.join(self.blobs_dir, "blob-sources.json")

    def blob(self, digest: str) -> str:
        """The file of blob ``digest`` ("sha256:<hex>"), checked by the caller."""
        return os.path.join(self.blobs, digest.split(":", 1)[-1])

    @property
    def build_mounts(self) -> str:
        """The directories of `RUN --mount=type=cache` steps, one per cache
        id (and more for sharing=private while one is in use): build cache
        that lives on between builds, counted and pruned with it."""
        return os.path.join(self.root, "buildcache-mounts")

    def build_mount_dir(self, name: str) -> str:
        return os.path.join(self.build_mounts, name)

    @property
    def seccomp_profiles(self) -> str:
        """Seccomp profiles given as text (the docker CLI sends a
        --security-opt seccomp=FILE's content), by sha256, for the
        containers whose SecurityOpt names them."""
        return os.path.join(self.root, "seccomp-profiles")

    @property
    def seccomp_cache(self) -> str:
        """Compiled seccomp filters: in the store, not the runroot, so they
        survive a reboot (the key covers the kernel and libseccomp)."""
        return os.path.join(self.root, "cache", "seccomp")

    @property
    def backups(self) -> str:
        """Backups of the catalog (store/backup.py)."""
        return os.path.join(self.root, "backups")

    def kept_after_restore(self, kind: str) -> str:
        """Where a restore moves the `kind` ("layers", "containers") the
        restored catalog does not know, rather than deleting them."""
        return os.path.join(self.root, "kept-after-restore", kind)

    def catalog_restore_tmp(self) -> str:
        """A restore's copy of the catalog, renamed over catalog.db when whole."""
        return os.path.join(self.root, f".catalog-restore-{os.getpid()}")

    @property
    def init_layer(self) -> str:
        """The shared init layer (empty mount points every container needs)."""
        return os.path.join(self.root, "init")

    @property
    def init_diff(self) -> str:
        return os.path.join(self.init_layer, "diff")

    def volume_dir(self, name: str) -> str:
        return os.path.join(self.root, "volumes", name)

    def volume_data(self, name: str) -> str:
        """What a container sees at the volume's mount point (Docker's layout)."""
        return os.path.join(self.root, "volumes", name, "_data")

    def layer_dir(self, short_id: str) -> str:
        return os.path.join(self.layers, short_id)

    def layer_diff(self, short_id: str) -> str:
        return os.path.join(self.layers, short_id, "diff")

    def layer_diff_id(self, short_id: str) -> str:
        """The layer's diff_id, written beside it: what the layer is, known
        from the disk alone (a catalog restored from an older backup)."""
        return os.path.join(self.layers, short_id, "diff_id")

    def layer_tar_split(self, short_id: str) -> str:
        """Kept for an imported layer: its tar's bytes but file contents (layer/tarsplit.py)."""
        return os.path.join(self.layers, short_id, "tar-split")

    def container_dir(self, container_id: str) -> str:
        return os.path.join(self.containers, container_id)

    def container_log(self, container_id: str) -> str:
        """The json-file driver's log, beside the container's upper dir
        (rotated copies add .1, .2 ...)."""
        return os.path.join(self.containers, container_id, f"{container_id}-json.log")

    def container_health(self, container_id: str) -> str:
        """The container's State.Health, rewritten by its health checker."""
        return os.path.join(self.containers, container_id, "health.json")

    def upper(self, container_id: str) -> str:
        return os.path.join(self.containers, container_id, "upper")

    def work(self, container_id: str) -> str:
        return os.path.join(self.containers, container_id, "work")

    @property
    def run_containers(self) -> str:
        return os.path.join(self.runroot, "containers")

    @property
    def events_dir(self) -> str:
        """The record of events (store.events): in the store, so that it
        outlives the commands and the boot that wrote it."""
        return os.path.join(self.root, "events")

    @property
    def events_log(self) -> str:
        """The current file of events, one JSON line each, Docker's message
        shape; the one before it is events.jsonl.1."""
        return os.path.join(self.root, "events", "events.jsonl")

    def run_state(self, container_id: str) -> str:
        """The live state of a running container (pids), gone on reboot."""
        return os.path.join(self.runroot, "containers", container_id + ".json")

    @property
    def api_socket(self) -> str:
        """Where `system service` serves the Engine API by default."""
        return os.path.join(self.runroot, "docker.sock")

    def attach_socket(self, container_id: str) -> str:
        """The detached supervisor's attach socket (runtime/attach.py)."""
        return os.path.join(self.runroot, "containers", container_id + ".sock")

    def run_dir(self, container_id: str) -> str:
        """A started container's volatile files: generated /etc files, the
        network lease lock."""
        return os.path.join(self.runroot, "containers", container_id)

    def network_lock(self, container_id: str) -> str:
        """Held (flock) while the container's network lease is in use."""
        return os.path.join(self.run_dir(container_id), "network.lock")

    @property
    def mountpoint(self) -> str:
        """Where each container attaches its overlay inside its own mount
        namespace before pivot_root. One directory serves every container:
        the mount never exists outside the container's private namespace."""
        return os.path.join(self.runroot, "rootfs")

    @property
    def leases(self) -> str:
        return os.path.join(self.root, "leases")

    def layer_lease(self, diff_id: str) -> str:
        """The lock file whose shared flocks keep layer ``diff_id`` stored."""
        return os.path.join(self.leases, diff_id.split(":", 1)[-1])

    @property
    def layers_lock(self) -> str:
        return os.path.join(self.root, "layers.lock")

    @property
    def projects_lock(self) -> str:
        """Held (flock) while a project ID is chosen and given to a new
        container's directories (store/projects.py)."""
        return os.path.join(self.root, "projects.lock")

    def dns_dir(self, network_id: str) -> str:
        """A user-defined network's DNS responder: its pid file (flock'd by
        the responder for its whole life) and the lock that orders starting
        it against its exit (network.dns)."""
        return os.path.join(self.runroot, "dns", network_id[:12])
