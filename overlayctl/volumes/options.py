"""`-v`, `--mount` and `--tmpfs` parsed into MountRequests: plain data,
checked before anything exists (the shape they are stored in is described
in volumes.mounts).
"""

from __future__ import annotations

import os

from overlayctl.container.model import BindOptions, Mount, TmpfsOptions, VolumeOptions
from overlayctl.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
        mount = self.to_mount()
        mount.source = source
        return MountRequest.from_mount(mount)

    @property
    def anonymous(self) -> bool:
        return self.kind == "volume" and not self.source

    def to_mount(self) -> Mount:
        """The entry of HostConfig.Mounts (optional parts only when they apply)."""
        volume = bind = tmpfs = None
        if self.kind == "volume" and (self.nocopy or self.labels):
            volume = VolumeOptions(self.nocopy, dict(self.labels) if self.labels else None)
        if self.kind == "bind" and self.create_source:
            bind = BindOptions(create_mountpoint=True)
        if self.kind == "tmpfs" and (self.tmpfs_size, self.tmpfs_mode, self.tmpfs_options) != (None, None, ""):
            tmpfs = TmpfsOptions(self.tmpfs_size, self.tmpfs_mode, self.tmpfs_options or None)
        return Mount(self.kind, self.source, self.target, self.readonly, self.mode or None, volume, bind, tmpfs)

    @classmethod
    def from_mount(cls, mount: Mount) -> MountRequest:
        """The request an entry of HostConfig.Mounts was made from."""
        volume, tmpfs = mount.volume_options, mount.tmpfs_options
        return cls(
            mount.type,
            mount.source or "",
            mount.target,
            readonly=bool(mount.read_only),
            mode=mount.mode or "",
            nocopy=bool(volume is not None and volume.no_copy),
            create_source=bool(mount.bind_options is not None and mount.bind_options.create_mountpoint),
            labels=dict((volume.labels if volume is not None else None) or {}),
            tmpfs_size=tmpfs.size_bytes if tmpfs is not None else None,
            tmpfs_mode=tmpfs.mode if tmpfs is not None else None,
            tmpfs_options=(tmpfs.options if tmpfs is not None else None) or "",
        )

    def to_json(self) -> dict[str, Any]:
        """The entry of HostConfig.Mounts as JSON."""
        return self.to_mount().to_json()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MountRequest:
        return cls.from_mount(Mount.from_json(data))

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
