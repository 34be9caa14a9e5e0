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

import errno
import os
import stat

from overlayctl.errors import InvalidArgumentError, NotFoundError
from overlayctl.runtime.spec import Mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.store import Store
    from overlayctl.store.containers import Container
    from overlayctl.store.images import Image
    from overlayctl.store.volumes import NewVolume, Volume, VolumeStore

KINDS = ("volume", "bind", "tmpfs")
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")
_PROPAGATIONS = ("rprivate", "private")  # the runtime's only propagation (open_tree clones are private)
_TMPFS_DATA_KEYS = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks")
_TMPFS_FLAGS_APPLIED = ("nosuid", "nodev")  # what the runtime always does


class MountRequest:
    """One -v, --mount or --tmpfs, parsed and checked; plain data.

    kind "volume": `source` is a volume name ("" for an anonymous volume
    until prepare names it); "bind": an absolute host path; "tmpfs": "".
    """

    __slots__ = (
        "kind",
        "source",
        "target",
        "readonly",
        "mode",
        "nocopy",
        "create_source",
        "labels",
        "tmpfs_size",
        "tmpfs_mode",
        "tmpfs_options",
    )

    def __init__(
        self,
        kind: str,
        source: str,
        target: str,
        readonly: bool = False,
        mode: str = "",
        nocopy: bool = False,
        create_source: bool = False,
        labels: dict[str, str] | None = None,
        tmpfs_size: int | None = None,
        tmpfs_mode: int | None = None,
        tmpfs_options: str = "",
    ) -> None:
        self.kind = kind
        self.source = source
        self.target = target  # absolute and clean, never "/"
        self.readonly = readonly
        self.mode = mode  # -v's third field as typed ("ro", "rw,nocopy", ...): inspect's Mode
        self.nocopy = nocopy  # volume: do not seed it from the image
        self.create_source = create_source  # bind from -v: a missing host directory is created
        self.labels = labels or {}  # volume: labels of a volume this request creates
        self.tmpfs_size = tmpfs_size  # bytes
        self.tmpfs_mode = tmpfs_mode  # permission bits of the tmpfs root
        self.tmpfs_options = tmpfs_options  # more tmpfs data from --tmpfs (uid=, gid=, nr_inodes=, ...)

    def __repr__(self) -> str:
        ro = ",ro" if self.readonly else ""
        return f"MountRequest({self.kind} {self.source or '-'} -> {self.target}{ro})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountRequest) and self.to_json() == other.to_json()

    def with_source(self, source: str) -> MountRequest:
        return MountRequest.from_json(dict(self.to_json(), Source=source))

    @property
    def anonymous(self) -> bool:
        return self.kind == "volume" and not self.source

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Type": self.kind,
            "Source": self.source,
            "Target": self.target,
            "ReadOnly": self.readonly,
        }
        if self.mode:
            out["Mode"] = self.mode
        if self.kind == "volume" and (self.nocopy or self.labels):
            options: dict[str, Any] = {}
            if self.nocopy:
                options["NoCopy"] = True
            if self.labels:
                options["Labels"] = dict(self.labels)
            out["VolumeOptions"] = options
        if self.kind == "bind" and self.create_source:
            out["BindOptions"] = {"CreateMountpoint": True}
        if self.kind == "tmpfs":
            tmpfs: dict[str, Any] = {}
            if self.tmpfs_size is not None:
                tmpfs["SizeBytes"] = self.tmpfs_size
            if self.tmpfs_mode is not None:
                tmpfs["Mode"] = self.tmpfs_mode
            if self.tmpfs_options:
                tmpfs["Options"] = self.tmpfs_options
            if tmpfs:
                out["TmpfsOptions"] = tmpfs
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MountRequest:
        volume = data.get("VolumeOptions") or {}
        tmpfs = data.get("TmpfsOptions") or {}
        return cls(
            data["Type"],
            data.get("Source") or "",
            data["Target"],
            readonly=bool(data.get("ReadOnly")),
            mode=data.get("Mode") or "",
            nocopy=bool(volume.get("NoCopy")),
            create_source=bool((data.get("BindOptions") or {}).get("CreateMountpoint")),
            labels=dict(volume.get("Labels") or {}),
            tmpfs_size=tmpfs.get("SizeBytes"),
            tmpfs_mode=tmpfs.get("Mode"),
            tmpfs_options=tmpfs.get("Options") or "",
        )

    def tmpfs_data(self) -> str:
        """The option data for mount(2) of a tmpfs."""
        parts = []
        if self.tmpfs_size is not None:
            parts.append(f"size={self.tmpfs_size}")
        if self.tmpfs_mode is not None:
            parts.append(f"mode={self.tmpfs_mode:o}")
        if self.tmpfs_options:
            parts.append(self.tmpfs_options)
        return ",".join(parts)


# Parsing: pure, no store, no host access.


def validate_volume_name(name: str, what: str = "volume name") -> str:
    """Docker's rule for local volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]+."""
    if not (2 <= len(name) <= 255 and name[0] in _NAME_FIRST and all(ch in _NAME_REST for ch in name[1:])):
        hint = "; to mount a host directory, give its absolute path" if "/" in name or name in (".", "..") else ""
        raise InvalidArgumentError(
            f'invalid {what} "{name}": use 2 to 255 characters of [a-zA-Z0-9_.-], starting with a letter or digit{hint}'
        )
    return name


def clean_target(target: str, context: str) -> str:
    """An absolute, normalised container path; never the root itself."""
    if not target:
        raise InvalidArgumentError(f"{context}: the container path is empty")
    if "\0" in target:
        raise InvalidArgumentError(f"{context}: the container path contains a NUL byte")
    if not target.startswith("/"):
        raise InvalidArgumentError(f'{context}: container path "{target}" must be absolute')
    clean = "/" + os.path.normpath(target).lstrip("/")
    if clean == "/":
        raise InvalidArgumentError(f'{context}: cannot mount over the container\'s root "/"')
    return clean


def _host_path(path: str, context: str) -> str:
    if "\0" in path:
        raise InvalidArgumentError(f"{context}: the host path contains a NUL byte")
    if not path.startswith("/"):
        raise InvalidArgumentError(f'{context}: host path "{path}" must be absolute')
    return "/" + os.path.normpath(path).lstrip("/")


def parse_volume_option(text: str) -> MountRequest:
    """-v NAME:/path[:MODE], -v /host/path:/path[:MODE] or -v /path (anonymous).

    MODE is a comma-separated list of ro or rw, nocopy (volumes), a
    propagation (rprivate, the only one there is here) and SELinux's z/Z,
    which are accepted and ignored.
    """
    context = f'invalid volume specification "{text}"'
    parts = text.split(":")
    if len(parts) > 3 or any(not p for p in parts):
        raise InvalidArgumentError(f"{context}: use NAME:/path[:ro], /host/path:/path[:ro] or /path")
    if len(parts) == 1:
        return MountRequest("volume", "", clean_target(parts[0], context))
    source, target = parts[0], clean_target(parts[1], context)
    mode = parts[2] if len(parts) == 3 else ""
    kind = "bind" if source.startswith("/") else "volume"
    readonly, nocopy = _parse_mode(mode, kind, context)
    if kind == "bind":
        return MountRequest("bind", _host_path(source, context), target, readonly, mode, create_source=True)
    validate_volume_name(source)
    return MountRequest("volume", source, target, readonly, mode, nocopy=nocopy)


def _parse_mode(mode: str, kind: str, context: str) -> tuple[bool, bool]:
    readonly = nocopy = False
    seen: set[str] = set()
    for item in mode.split(",") if mode else []:
        group = {"ro": "rw", "rw": "rw", "nocopy": "copy", "z": "label", "Z": "label"}.get(item)
        if group is None and item in _PROPAGATIONS + ("shared", "rshared", "slave", "rslave"):
            group = "propagation"
            if item not in _PROPAGATIONS:
                raise InvalidArgumentError(f'{context}: propagation "{item}" is not supported; mounts are rprivate')
        if group is None:
            raise InvalidArgumentError(f'{context}: unknown mode "{item}" (use ro, rw, nocopy or z)')
        if group in seen:
            raise InvalidArgumentError(f'{context}: mode "{mode}" gives more than one {group} option')
        seen.add(group)
        if item == "nocopy" and kind != "volume":
            raise InvalidArgumentError(f"{context}: nocopy applies to volumes, not to a host directory")
        readonly = readonly or item == "ro"
        nocopy = nocopy or item == "nocopy"
    return readonly, nocopy


def parse_mount_option(text: str) -> MountRequest:
    """--mount type=volume|bind|tmpfs,source=..,target=..[,readonly][,...]

    Keys as Docker's: type (default volume), source/src, target/destination/
    dst, readonly/ro[=true|false], volume-nocopy, volume-label=K=V,
    volume-driver=local, bind-propagation=rprivate, tmpfs-size, tmpfs-mode;
    consistency is accepted and ignored. Values may be double-quoted, as in
    CSV, to hold a comma.
    """
    import csv

    context = f'invalid --mount "{text}"'
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise InvalidArgumentError(f"{context}: use type=volume|bind|tmpfs,source=...,target=...") from None
    kind, source, target = "volume", None, None
    readonly = nocopy = False
    labels: dict[str, str] = {}
    size: int | None = None
    tmode: int | None = None
    bind_keys: list[str] = []
    volume_keys: list[str] = []
    tmpfs_keys: list[str] = []
    for field in fields:
        key, sep, value = field.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro", "volume-nocopy") and not sep:
            value, sep = "true", "="
        if not sep:
            raise InvalidArgumentError(f'{context}: field "{field}" must be a key=value pair')
        if key == "type":
            if value not in KINDS:
                raise InvalidArgumentError(f'{context}: unknown mount type "{value}" (use volume, bind or tmpfs)')
            kind = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "destination", "dst"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(value, key, context)
        elif key == "volume-nocopy":
            nocopy = _parse_bool(value, key, context)
            volume_keys.append(key)
        elif key == "volume-label":
            label_key, _, label_value = value.partition("=")
            if not label_key:
                raise InvalidArgumentError(f"{context}: volume-label takes KEY=VALUE")
            labels[label_key] = label_value
            volume_keys.append(key)
        elif key == "volume-driver":
            if value != "local":
                raise InvalidArgumentError(f'{context}: volume driver "{value}" is not supported (only local)')
            volume_keys.append(key)
        elif key == "bind-propagation":
            if value not in _PROPAGATIONS:
                raise InvalidArgumentError(f'{context}: propagation "{value}" is not supported; mounts are rprivate')
            bind_keys.append(key)
        elif key == "tmpfs-size":
            size = _tmpfs_size(value, "--mount tmpfs-size", context)
            tmpfs_keys.append(key)
        elif key == "tmpfs-mode":
            tmode = _parse_octal(value, key, context)
            tmpfs_keys.append(key)
        elif key == "consistency":
            pass  # a macOS file-sharing hint; meaningless on Linux, accepted as Docker does
        else:
            raise InvalidArgumentError(f'{context}: unknown key "{key}"')
    for prefix, keys in (("bind", bind_keys), ("volume", volume_keys), ("tmpfs", tmpfs_keys)):
        if keys and kind != prefix:
            raise InvalidArgumentError(f"{context}: {', '.join(keys)} cannot be used with type={kind}")
    if not target:
        raise InvalidArgumentError(f"{context}: target is required")
    target = clean_target(target, context)
    if kind == "bind":
        if not source:
            raise InvalidArgumentError(f"{context}: a bind mount needs source=/host/path")
        return MountRequest("bind", _host_path(source, context), target, readonly)
    if kind == "tmpfs":
        if source:
            raise InvalidArgumentError(f"{context}: a tmpfs mount takes no source")
        return MountRequest("tmpfs", "", target, readonly, tmpfs_size=size, tmpfs_mode=tmode)
    if source:
        validate_volume_name(source)
    return MountRequest("volume", source or "", target, readonly, nocopy=nocopy, labels=labels)


def parse_tmpfs_option(text: str) -> MountRequest:
    """--tmpfs /path[:OPTIONS]: OPTIONS as mount(8) takes them for tmpfs
    (size=64m, mode=1777, uid=, gid=, nr_inodes=, nr_blocks=, ro, rw)."""
    context = f'invalid --tmpfs "{text}"'
    path, _, options = text.partition(":")
    target = clean_target(path, context)
    readonly = False
    size: int | None = None
    tmode: int | None = None
    data = []
    for item in options.split(",") if options else []:
        key, sep, value = item.partition("=")
        if item in ("ro", "rw"):
            readonly = item == "ro"
        elif item in _TMPFS_FLAGS_APPLIED:
            pass  # the runtime mounts every tmpfs nosuid,nodev
        elif item in ("exec", "noexec"):
            data.append(item)  # the runtime turns these into mount flags
        elif item in ("suid", "dev"):
            raise InvalidArgumentError(f'{context}: the "{item}" option is not supported yet for tmpfs mounts')
        elif key == "size" and sep and value.endswith("%"):
            if not value[:-1].isdigit():
                raise InvalidArgumentError(f'{context}: bad size "{value}"')
            data.append(item)  # a share of RAM: the kernel computes it
        elif key == "size" and sep:
            size = _tmpfs_size(value, "--tmpfs size", context)
        elif key == "mode" and sep:
            tmode = _parse_octal(value, key, context)
        elif key in _TMPFS_DATA_KEYS and sep:
            if not value.isdigit():
                raise InvalidArgumentError(f'{context}: {key} takes a number, not "{value}"')
            data.append(f"{key}={int(value)}")
        else:
            raise InvalidArgumentError(
                f'{context}: unknown option "{item}" (use size=, mode=, uid=, gid=, nr_inodes=, ro or rw)'
            )
    if "exec" not in data and "noexec" not in data:
        data.append("noexec")  # Docker's --tmpfs default: noexec,nosuid,nodev
    return MountRequest("tmpfs", "", target, readonly, tmpfs_size=size, tmpfs_mode=tmode, tmpfs_options=",".join(data))


def _parse_bool(value: str, key: str, context: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", ""):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidArgumentError(f'{context}: {key} takes true or false, not "{value}"')


def _parse_octal(value: str, key: str, context: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise InvalidArgumentError(f'{context}: {key} takes octal permission bits, e.g. 1777, not "{value}"') from None
    if not 0 <= mode <= 0o7777:
        raise InvalidArgumentError(f'{context}: {key} "{value}" is out of range')
    return mode


def _tmpfs_size(value: str, what: str, context: str) -> int:
    """A tmpfs size in Docker's syntax; 0 is refused, as it would mean no limit at all."""
    from overlayctl.util.sizes import parse_size

    size = parse_size(value, what)
    if size <= 0:
        raise InvalidArgumentError(f'{context}: bad size "{value}": a tmpfs needs at least 1 byte')
    return size


# Create: volumes made, seeded and recorded.


def volume_store(store: Store) -> VolumeStore:
    from overlayctl.store.volumes import VolumeStore

    return VolumeStore(store.paths, store.conn)


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


def prepare(store: Store, container_id: str, requests: list[MountRequest], image: Image) -> list[dict[str, Any]]:
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
    return [r.to_json() for r in resolved]


def _is_empty(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except FileNotFoundError:
        return False


# Start, inspect, rm.


def _entries(container: Container) -> list[MountRequest]:
    return [MountRequest.from_json(e) for e in container.config.get("HostConfig", {}).get("Mounts") or []]


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


# The `volume` commands.


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
    volumes = volume_store(store)
    checks = [_parse_filter(f) for f in filters or []]
    found = volumes.list_all()
    if not checks:
        return found
    used = volumes.in_use()
    return [v for v in found if all(check(v, v.name in used) for check in checks)]


def _parse_filter(text: str):  # type: ignore[no-untyped-def]
    key, sep, value = text.partition("=")
    if not sep:
        raise InvalidArgumentError(f'bad filter "{text}": use KEY=VALUE')
    if key == "dangling":
        if value not in ("true", "false", "1", "0"):
            raise InvalidArgumentError(f'bad filter "{text}": dangling takes true or false')
        want = value in ("true", "1")
        return lambda v, used: (not used) == want
    if key == "name":
        return lambda v, used: value in v.name
    if key == "driver":
        return lambda v, used: v.driver == value
    if key == "label":
        label, has_value, label_value = value.partition("=")
        return lambda v, used: label in v.labels and (not has_value or v.labels[label] == label_value)
    raise InvalidArgumentError(f'bad filter "{text}": use dangling=, name=, label= or driver=')


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


def remove_volume(store: Store, name: str, force: bool = False) -> bool:
    """`volume rm`: refused while any container uses it. With force, a
    missing volume is no error and containers that are not running lose
    their use of it (their next start fails, naming it); a running
    container still blocks. Returns whether a volume was removed."""
    volumes = volume_store(store)
    if force and volumes.find(name) is None:
        return False

    def not_running(container_id: str) -> bool:
        return force and not _is_running(store, container_id)

    volumes.remove(name, not_running)
    return True


def _is_running(store: Store, container_id: str) -> bool:
    # Read-only (no reconciling write): remove() asks inside its transaction.
    from overlayctl.store.containers import RUNNING, process_start_time

    row = store.conn.execute("SELECT status, pid, pid_start FROM containers WHERE id = ?", (container_id,)).fetchone()
    return row is not None and row["status"] == RUNNING and process_start_time(row["pid"]) == row["pid_start"]


def prune_volumes(store: Store, all_volumes: bool = False, filters: list[str] | None = None) -> list[tuple[str, int]]:
    """`volume prune`: remove volumes no container uses, anonymous ones only
    unless all_volumes (Docker 23+). Returns (name, bytes freed)."""
    from overlayctl.store.volumes import ANONYMOUS_LABEL

    checks = [_parse_filter(f) for f in filters or []]
    if any(f.partition("=")[0] == "dangling" for f in filters or []):
        raise InvalidArgumentError("prune removes unused volumes only; the dangling filter does not apply")

    def select(volume: Volume) -> bool:
        if not all_volumes and not (volume.anonymous or ANONYMOUS_LABEL in volume.labels):
            return False
        return all(check(volume, False) for check in checks)

    return volume_store(store).prune(select, _measure)


def _measure(path: str) -> int:
    from overlayctl.measure.du import tree_bytes

    return tree_bytes(path)


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


def copy_targets(jobs: list[tuple[str, int]]) -> None:
    """For each (path, directory fd): copy the directory at path (resolved
    from the current root) into the fd's directory, and give that directory
    the owner, mode and times of the source. A missing path, or one that is
    not a directory, seeds nothing."""
    for path, dest_fd in jobs:
        try:
            src_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            copy_tree(src_fd, dest_fd)
        finally:
            os.close(src_fd)


def copy_tree(src_fd: int, dest_fd: int) -> None:
    """Copy a directory's content and metadata between two open directories.

    Entries already present in the destination are left alone (two
    containers seeding one empty volume at once give the same result).
    Hard links inside the tree stay hard links. Every name is created
    relative to its parent's fd, exclusively, and never followed, so a
    symlink in the destination cannot redirect the copy.
    """
    links: dict[tuple[int, int], tuple[tuple[str, ...], str]] = {}
    # Modes are given at creation (mknod has no fd to fchmod, and chmod by
    # name would follow a symlink swapped in meanwhile): no umask may cut them.
    umask = os.umask(0)
    try:
        _copy_entries(src_fd, dest_fd, dest_fd, (), links)
        _copy_metadata(src_fd, dest_fd, os.fstat(src_fd))
    finally:
        os.umask(umask)


def _copy_entries(
    src_fd: int,
    dest_fd: int,
    root_fd: int,
    rel: tuple[str, ...],
    links: dict[tuple[int, int], tuple[tuple[str, ...], str]],
) -> None:
    with os.scandir(src_fd) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        st = os.lstat(name, dir_fd=src_fd)
        mode = st.st_mode
        try:
            if stat.S_ISDIR(mode):
                os.mkdir(name, 0o700, dir_fd=dest_fd)
                sub_src = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
                try:
                    sub_dest = os.open(
                        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dest_fd
                    )
                    try:
                        _copy_entries(sub_src, sub_dest, root_fd, rel + (name,), links)
                        _copy_metadata(sub_src, sub_dest, st)
                    finally:
                        os.close(sub_dest)
                finally:
                    os.close(sub_src)
                continue
            if st.st_nlink > 1:
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    _link_beneath(root_fd, first, dest_fd, name)
                    continue
                links[(st.st_dev, st.st_ino)] = (rel, name)
            if stat.S_ISREG(mode):
                _copy_file(src_fd, dest_fd, name, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dest_fd)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dest_fd, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dest_fd, follow_symlinks=False)
            else:  # devices, fifos, sockets
                os.mknod(name, mode, st.st_rdev, dir_fd=dest_fd)
                os.chown(name, st.st_uid, st.st_gid, dir_fd=dest_fd, follow_symlinks=False)
                os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dest_fd, follow_symlinks=False)
        except FileExistsError:
            continue


def _link_beneath(root_fd: int, first: tuple[tuple[str, ...], str], dest_fd: int, name: str) -> None:
    """Hard-link name to the first copy of its inode, reaching that copy's
    directory one component at a time without following symlinks: a path
    string would follow one planted in a volume that is in use."""
    parents, first_name = first
    fd = os.dup(root_fd)
    try:
        for part in parents:
            sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.link(first_name, name, src_dir_fd=fd, dst_dir_fd=dest_fd, follow_symlinks=False)
    finally:
        os.close(fd)


def _copy_file(src_dir: int, dest_dir: int, name: str, st: os.stat_result) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dest = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dest_dir
        )
        try:
            _copy_data(src, dest)
            _copy_metadata(src, dest, st)
        finally:
            os.close(dest)
    finally:
        os.close(src)


def _copy_data(src: int, dest: int) -> None:
    try:
        while os.sendfile(dest, src, None, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            raise
    while chunk := os.read(src, 1 << 20):
        os.write(dest, chunk)


def _copy_metadata(src: int, dest: int, st: os.stat_result) -> None:
    """Owner, then mode (chown clears set-id bits), then extended attributes
    (chown also clears security.capability), then times, last of all."""
    os.fchown(dest, st.st_uid, st.st_gid)
    os.fchmod(dest, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src)
    except OSError:
        names = []
    for attr in names:
        try:
            os.setxattr(dest, attr, os.getxattr(src, attr))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.ENODATA):
                raise
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
