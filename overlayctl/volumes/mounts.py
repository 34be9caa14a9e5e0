"""Volumes, binds and tmpfs mounts: from the command line to the runtime.

`-v`, `--mount` and `--tmpfs` are parsed into MountRequests (plain data,
checked before anything exists). At create, `prepare` turns them, plus an
anonymous volume for each VOLUME of the image that no request covers, into
the container's HostConfig.Mounts: named volumes are created on first use,
new (or empty) volumes are seeded with what the image has at the target, and
the catalog records which container uses which volume. At start,
`mounts_for` hands the runtime bind sources on the host and tmpfs options;
PID 1 resolves every target inside the container's root, so no symlink in
the image can aim a mount at the host. Volume data lives in
volumes/<name>/_data, never in the container's upper dir.

The shape stored in HostConfig.Mounts (one entry per mount, Docker's field
names; optional keys only when they apply):

    {"Type": "volume", "Source": "<volume name>", "Target": "/data",
     "ReadOnly": false, "Mode": "ro",                 # -v's mode text, as typed
     "VolumeOptions": {"NoCopy": true, "Labels": {...}}}
    {"Type": "bind", "Source": "/host/dir", "Target": "/mnt", "ReadOnly": true,
     "BindOptions": {"CreateMountpoint": true}}       # -v: create a missing host dir
    {"Type": "tmpfs", "Source": "", "Target": "/scratch", "ReadOnly": false,
     "TmpfsOptions": {"SizeBytes": 65536, "Mode": 1023, "Options": "uid=1000"}}
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError, NotFoundError
from overlayctl.runtime.spec import Mount
from overlayctl.volumes.copy import copy_targets
from overlayctl.volumes.options import MountRequest, clean_target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.container.model import Mount as ConfigMount
    from overlayctl.store import Store
    from overlayctl.store.containers import Container
    from overlayctl.store.images import Image
    from overlayctl.store.volumes import NewVolume, VolumeStore


# Parsing: pure, no store, no host access.


# Create: volumes made, seeded and recorded.


def volume_store(store: Store) -> VolumeStore:
    return store.volumes


def with_image_volumes(requests: list[MountRequest], image: Image) -> list[MountRequest]:
    """The requests, checked for duplicate targets, plus an anonymous volume
    for each VOLUME of the image that no request mounts over."""
    seen: set[str] = set()
    for request in requests:
        if request.target in seen:
            raise InvalidArgumentError(f"duplicate mount point: {request.target}")
        seen.add(request.target)
    result = list(requests)
    for path in sorted(image.container_config.get("Volumes") or {}):
        target = clean_target(path if path.startswith("/") else "/" + path, f'VOLUME "{path}" of the image')
        if target not in seen:
            seen.add(target)
            result.append(MountRequest("volume", "", target))
    return result


def prepare(store: Store, container_id: str, requests: list[MountRequest], image: Image) -> list[ConfigMount]:
    """Make what the container's mounts need, record its uses of volumes
    and return its HostConfig.Mounts.

    Named volumes that do not exist are created; anonymous ones are created
    for -v /path, --mount without source and the image's VOLUMEs. A new or
    empty volume is seeded with what the image holds at its target (files,
    owners, modes, times), unless nocopy. A bind source must exist, except
    that -v creates a missing host directory, as Docker does. All or
    nothing: on an error no volume, row or staging directory is left.
    Call it once the container's row exists: a use recorded for a container
    the catalog does not have is taken for a crash leftover and dropped.
    """
    volumes = volume_store(store)
    requests = with_image_volumes(requests, image)
    make_dirs = []
    for request in requests:
        if request.kind == "bind" and not os.path.lexists(request.source):
            if not request.create_source:
                raise NotFoundError(
                    f'invalid mount config for type "bind": bind source path does not exist: {request.source}'
                )
            make_dirs.append(request.source)
    new: dict[str, NewVolume] = {}
    seeds: list[tuple[str, str]] = []  # (target in the image, host directory to fill)
    resolved: list[MountRequest] = []
    users: list[tuple[str, str, str]] = []
    try:
        for request in requests:
            if request.kind == "volume":
                name = request.source or os.urandom(32).hex()
                if name not in new:
                    existing = volumes.find(name)
                    if existing is None:
                        staged = volumes.stage(name, anonymous=not request.source, labels=request.labels)
                        new[name] = staged
                        if not request.nocopy:
                            seeds.append((request.target, staged.data))
                    elif not request.nocopy and _is_empty(store.paths.volume_data(name)):
                        if all(dest != store.paths.volume_data(name) for _, dest in seeds):
                            seeds.append((request.target, store.paths.volume_data(name)))
                request = request.with_source(name)
                users.append((name, container_id, request.target))
            resolved.append(request)
        if seeds:
            seed_from_image(store, image, seeds)
        for path in make_dirs:
            os.makedirs(path, 0o755, exist_ok=True)
        volumes.commit(new.values(), users)
    finally:
        from overlayctl.store.staging import remove_tree

        for staged in new.values():
            if os.path.lexists(staged.stage):
                remove_tree(staged.stage)
    return [r.to_mount() for r in resolved]


def _is_empty(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except FileNotFoundError:
        return False


# Start, inspect, rm.


def _entries(container: Container) -> list[MountRequest]:
    return [MountRequest.from_mount(m) for m in container.config.host.mounts or []]


def mounts_for(store: Store, container: Container) -> list[Mount]:
    """The runtime's mounts for a start: volume data dirs and bind sources
    on the host, tmpfs data; parents before children."""
    mounts = []
    for request in _entries(container):
        if request.kind == "volume":
            data = store.paths.volume_data(request.source)
            if not os.path.isdir(data):
                raise NotFoundError(
                    f'volume "{request.source}" (mounted at {request.target}) no longer exists; recreate it with '
                    f'"overlayctl volume create {request.source}" or remove the container'
                )
            mounts.append(Mount("bind", data, request.target, request.readonly))
        elif request.kind == "bind":
            if not os.path.lexists(request.source):
                if not request.create_source:
                    raise NotFoundError(
                        f'invalid mount config for type "bind": bind source path does not exist: {request.source}'
                    )
                os.makedirs(request.source, 0o755, exist_ok=True)
            mounts.append(Mount("bind", request.source, request.target, request.readonly))
        else:
            mounts.append(Mount("tmpfs", "tmpfs", request.target, request.readonly, request.tmpfs_data()))
    # A mount at /a/b must come after one at /a, or /a would hide it.
    mounts.sort(key=lambda m: m.target.count("/"))
    return mounts


def inspect_mounts(store: Store, container: Container) -> list[dict[str, Any]]:
    """`inspect`'s Mounts, as Docker shows them."""
    result = []
    for request in _entries(container):
        item: dict[str, Any] = {"Type": request.kind}
        if request.kind == "volume":
            item["Name"] = request.source
            item["Source"] = store.paths.volume_data(request.source)
        else:
            item["Source"] = request.source
        item["Destination"] = request.target
        if request.kind == "volume":
            item["Driver"] = "local"
        item["Mode"] = request.mode
        item["RW"] = not request.readonly
        item["Propagation"] = "rprivate" if request.kind == "bind" else ""
        result.append(item)
    return result


def release(store: Store, container: Container, remove_anonymous: bool) -> None:
    """At `rm`: forget the container's uses of volumes; with
    remove_anonymous (`rm -v`, `run --rm`), remove its anonymous volumes
    that no other container uses. Named volumes always stay."""
    volume_store(store).release(container.id, remove_anonymous)


# Seeding a volume from the image.


def seed_from_image(store: Store, image: Image, seeds: list[tuple[str, str]]) -> None:
    """Copy what the image holds at each target into its host directory.

    The image's overlay is mounted in a private mount namespace (over a
    throwaway upper dir) and the copying runs chrooted in it, so a target
    and every symlink on the way resolve inside the image, as in the
    container: an image with /evil -> /etc seeds /evil/x from its own
    /etc/x, never the host's. The destinations are opened before the
    chroot and written only through those fds, never by path.
    """
    # Resolution starts at the root: a path whose first component no layer
    # has cannot exist in the image, and needs no mount to find that out.
    diffs = [store.layers.diff_path(layer) for layer in image.layers]
    seeds = [
        (target, dest)
        for target, dest in seeds
        if any(os.path.lexists(os.path.join(diff, target.split("/")[1])) for diff in diffs)
    ]
    if not seeds:
        return
    from overlayctl.runtime.overlay import OverlayLayout
    from overlayctl.runtime.rootfs import in_rootfs
    from overlayctl.store.staging import staging

    lowers = tuple(reversed(diffs))
    with staging(store.paths.tmp, "seed") as stage:
        upper, work = os.path.join(stage, "upper"), os.path.join(stage, "work")
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
        fds: list[tuple[str, int]] = []
        try:
            for target, dest in seeds:
                fds.append((target, os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)))
            in_rootfs(
                OverlayLayout(lowers, upper, work),
                store.paths.root,
                store.paths.mountpoint,
                lambda: copy_targets(fds),
                os.environ.get("OVERLAYCTL_OVERLAY_API", "new"),
                keep_fds=[fd for _, fd in fds],
            )
        finally:
            for _, fd in fds:
                os.close(fd)


