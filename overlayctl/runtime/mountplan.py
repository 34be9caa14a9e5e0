"""The container's root filesystem as a plan: an ordered list of small
operations built by pure functions (inspectable and testable without root),
then executed in one place inside the container's mount namespace.
"""

from __future__ import annotations

import os
import stat

from overlayctl.errors import KernelError
from overlayctl.runtime import syscalls as sc
from overlayctl.runtime.overlay import OverlayLayout, check_layer_count, classic_options


class MountOp:
    """One step of the root filesystem set-up: data first, executed later."""

    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def execute(self, root: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _inside(root: str, path: str) -> str:
    """Resolve an absolute container path under root without following a
    symlink out of it: every existing component must be a real directory."""
    current = root
    for part in path.strip("/").split("/"):
        if not part:
            continue
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise KernelError(f"mount target {path} is a symlink inside the image; refusing to follow it")
    return current


class OverlayMount(MountOp):
    """The image layers plus the container's upper dir, attached at root.
    A layout without an upper dir is a read-only view of the layers (what
    a build reads another stage or image through)."""

    __slots__ = ("layout", "classic_base", "api", "nodev")

    def __init__(self, layout: OverlayLayout, classic_base: str, api: str = "new", nodev: bool = True) -> None:
        self.layout = layout
        self.classic_base = classic_base  # chdir here for classic mount(2): keeps options short
        self.api = api  # "new" (fsconfig lowerdir+) or "classic" (mount(2))
        # Device nodes in the image, or made with mknod (CAP_MKNOD is in
        # Docker's default set), must not open host devices: Docker stops
        # that with the devices cgroup, we with nodev on every writable mount.
        self.nodev = nodev

    def execute(self, root: str) -> None:
        check_layer_count(self.layout)
        if self.api == "new":
            if _mount_new_api(self.layout, root, self.nodev):
                return
        _mount_classic(self.layout, self.classic_base, root, self.nodev)


def _mount_new_api(layout: OverlayLayout, target: str, nodev: bool = True) -> bool:
    """Mount with fsopen/fsconfig/fsmount/move_mount; False if the kernel
    lacks the API or "lowerdir+" (before 6.8), or refuses the mount with
    EINVAL, so the caller falls back to mount(2)."""
    try:
        fs_fd = sc.fsopen("overlay")
    except KernelError as exc:
        if sc.errno_of(exc) in (38, 22):  # ENOSYS, EINVAL
            return False
        raise
    try:
        try:
            for lower in layout.lowerdirs:
                sc.fsconfig_string(fs_fd, "lowerdir+", lower)
            if layout.upperdir:
                sc.fsconfig_string(fs_fd, "upperdir", layout.upperdir)
                sc.fsconfig_string(fs_fd, "workdir", layout.workdir)
            sc.fsconfig_create(fs_fd)
        except KernelError as exc:
            # EINVAL: before 6.8 there is no "lowerdir+". Before 6.5 overlayfs
            # had no fsconfig parser of its own: the kernel's legacy one takes
            # any key into one page of options, refusing only once the page
            # is full, and the overlay refuses "lowerdir+" only at create.
            # mount(2) then says what, if anything, is really wrong.
            if sc.errno_of(exc) == 22:
                return False
            raise
        attrs = (sc.MOUNT_ATTR_NODEV if nodev else 0) | (0 if layout.upperdir else sc.MOUNT_ATTR_RDONLY)
        mnt_fd = sc.fsmount(fs_fd, attrs)
        try:
            sc.move_mount(mnt_fd, target)
        finally:
            os.close(mnt_fd)
    finally:
        os.close(fs_fd)
    return True


def overlay_tree(layout: OverlayLayout, readonly: bool, nodev: bool = True) -> int:
    """A detached overlay mount (an fd for move_mount), for a mount inside a
    container rather than its root: an image's layers bound read-only into
    a build step, or a directory whose writes land in a throwaway upper dir.
    With no upperdir the overlay is read-only by itself (it needs two lowers
    then). Needs the new mount API with "lowerdir+" (Linux >= 6.8)."""
    fs_fd = sc.fsopen("overlay")
    try:
        try:
            for lower in layout.lowerdirs:
                sc.fsconfig_string(fs_fd, "lowerdir+", lower)
        except KernelError as exc:
            if sc.errno_of(exc) == 22:
                raise KernelError("mounting layers inside a build step needs Linux 6.8 or later (lowerdir+)") from None
            raise
        if layout.upperdir:
            sc.fsconfig_string(fs_fd, "upperdir", layout.upperdir)
            sc.fsconfig_string(fs_fd, "workdir", layout.workdir)
        sc.fsconfig_create(fs_fd)
        attrs = (sc.MOUNT_ATTR_NODEV if nodev else 0) | (sc.MOUNT_ATTR_RDONLY if readonly else 0)
        return sc.fsmount(fs_fd, attrs)
    finally:
        os.close(fs_fd)


def _mount_classic(layout: OverlayLayout, base: str, target: str, nodev: bool = True) -> None:
    data = classic_options(layout, base)
    cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.chdir(base)
        flags = (sc.MS_NODEV if nodev else 0) | (0 if layout.upperdir else sc.MS_RDONLY)
        sc.mount("overlay", target, "overlay", flags, data)
    finally:
        os.fchdir(cwd)
        os.close(cwd)


class FsMount(MountOp):
    """A pseudo filesystem (proc, sysfs, tmpfs, devpts) at a container path."""

    __slots__ = ("fstype", "target", "flags", "data")

    def __init__(self, fstype: str, target: str, flags: int = 0, data: str | None = None) -> None:
        self.fstype = fstype
        self.target = target
        self.flags = flags
        self.data = data

    def execute(self, root: str) -> None:
        path = _inside(root, self.target)
        if not os.path.isdir(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
        sc.mount(self.fstype, path, self.fstype, self.flags, self.data)


class DeviceNode(MountOp):
    """One of the host's character devices, bind-mounted into the
    container's /dev (a nodev tmpfs: a node made there opens nothing)."""

    __slots__ = ("target", "major", "minor", "mode")

    def __init__(self, target: str, major: int, minor: int, mode: int = 0o666) -> None:
        self.target = target
        self.major = major
        self.minor = minor
        self.mode = mode

    def execute(self, root: str) -> None:
        path = _inside(root, self.target)
        host = self.target  # the same name in the host's /dev
        st = os.stat(host)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(self.major, self.minor):
            raise KernelError(f"the host's {host} is not the character device {self.major}:{self.minor}")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        sc.mount(host, path, None, sc.MS_BIND)


class GrantedDevice(MountOp):
    """A --device: the host's node bind-mounted at a container path. The
    bind keeps the host mount's flags, so this node opens although every
    writable mount around it is nodev; it may replace a default one."""

    __slots__ = ("host", "target")

    def __init__(self, host: str, target: str) -> None:
        self.host = host
        self.target = target

    def execute(self, root: str) -> None:
        st = os.stat(self.host)
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise KernelError(f"--device {self.host}: not a character or block device on the host")
        path = _inside(root, self.target)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if not os.path.lexists(path):  # (a default node, e.g. /dev/null, is mounted over)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        sc.mount(self.host, path, None, sc.MS_BIND)


class HostDevices(MountOp):
    """--privileged: every device node of the host's /dev made again in
    the container's /dev (not nodev for a privileged container), as Docker
    does; names the container's /dev already has are left as they are."""

    __slots__ = ("skip",)

    # Mounts of their own in the container, or the host's console.
    SKIP = ("pts", "shm", "mqueue", "console")

    def __init__(self, skip: tuple[str, ...] = SKIP) -> None:
        self.skip = skip

    def execute(self, root: str) -> None:
        self._copy("/dev", _inside(root, "/dev"), top=True)

    def _copy(self, host_dir: str, dest: str, top: bool = False) -> None:
        with os.scandir(host_dir) as entries:
            for entry in entries:
                if top and entry.name in self.skip:
                    continue
                target = os.path.join(dest, entry.name)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if os.path.lexists(target) and not os.path.isdir(target):
                        continue
                    os.makedirs(target, mode=stat.S_IMODE(st.st_mode), exist_ok=True)
                    self._copy(entry.path, target)
                elif (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and not os.path.lexists(target):
                    os.mknod(target, st.st_mode, st.st_rdev)
                    os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
                    os.chmod(target, stat.S_IMODE(st.st_mode), follow_symlinks=False)


class Symlink(MountOp):
    """A symlink in the container's /dev."""

    __slots__ = ("target", "points_to")

    def __init__(self, target: str, points_to: str) -> None:
        self.target = target
        self.points_to = points_to

    def execute(self, root: str) -> None:
        os.symlink(self.points_to, _inside(root, self.target))


class Directory(MountOp):
    """A directory to mount on, made if the image lacks it."""

    __slots__ = ("target", "mode")

    def __init__(self, target: str, mode: int = 0o755) -> None:
        self.target = target
        self.mode = mode

    def execute(self, root: str) -> None:
        os.makedirs(_inside(root, self.target), mode=self.mode, exist_ok=True)


# Docker's minimal /dev: the devices every program expects, nothing else.
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/core", "/proc/kcore"),
)


# Docker's defaults for every unprivileged container (moby's
# daemon/pkg/oci/defaults.go): kernel interfaces that leak host information
# or let root poke the kernel. /proc/interrupts and powercap's energy
# counters show what the host's other tenants do, to the point of reading
# their keys by timing (GHSA-6fw5-f8r9-fgfm, GHSA-jq35-85cj-fj4p).
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def thermal_throttle_paths() -> tuple[str, ...]:
    """Each CPU's thermal_throttle directory that this kernel has, masked
    by Docker too: its counters are the same side channel as
    /proc/interrupts. The container's sysfs is the host's, so what exists
    here exists there."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            cpus = _cpu_list(f.read())
    except OSError:
        return ()
    paths = (f"/sys/devices/system/cpu/cpu{cpu}/thermal_throttle" for cpu in cpus)
    return tuple(path for path in paths if os.path.exists(path))


def _cpu_list(text: str) -> list[int]:
    """The kernel's CPU list format: "0-3,8,10-11"."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


class MaskedPath(MountOp):
    """Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target

    def execute(self, root: str) -> None:
        path = _inside(root, self.target)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing to hide on this kernel
        if stat.S_ISDIR(st.st_mode):
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, "size=0")
        else:
            sc.mount(_inside(root, "/dev/null"), path, None, sc.MS_BIND)


class ReadonlyPath(MountOp):
    """Bind a path onto itself and make that bind read-only."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target

    def execute(self, root: str) -> None:
        path = _inside(root, self.target)
        if not os.path.lexists(path):
            return
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
        locked = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC  # kept from /proc's own mount
        sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | locked)


class RootfsPlan:
    """Everything mounted, in order, before pivot_root."""

    def __init__(self, ops: list[MountOp]) -> None:
        self.ops = ops

    def execute(self, root: str) -> None:
        for op in self.ops:
            op.execute(root)


def rootfs_plan(
    layout: OverlayLayout,
    classic_base: str,
    api: str = "new",
    privileged: bool = False,
    masked: tuple[str, ...] = MASKED_PATHS,
    devices: list[tuple[str, str]] | None = None,
    shm: str | None = "mode=1777,size=65536k",
) -> RootfsPlan:
    """The default root filesystem: overlay, /proc, read-only /sys and a
    minimal /dev with its own devpts instance and /dev/shm; the --device
    nodes (host, container path); then the `masked` and read-only paths
    (not for a privileged container, whose /sys is writable too, and which
    gets every device node of the host's /dev).

    Every writable mount here is nodev unless privileged: a node made with
    mknod (CAP_MKNOD is in the default set) or shipped in the image opens
    nothing. Only the binds of host nodes keep device access.

    `shm` is /dev/shm's tmpfs data (--shm-size); None leaves /dev/shm out
    (--ipc none, or one the container shares, attached later)."""
    nosuid_nodev_noexec = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    nodev = 0 if privileged else sc.MS_NODEV
    ops: list[MountOp] = [
        OverlayMount(layout, classic_base, api, nodev=not privileged),
        FsMount("proc", "/proc", nosuid_nodev_noexec),
        FsMount("sysfs", "/sys", nosuid_nodev_noexec | (0 if privileged else sc.MS_RDONLY)),
        FsMount("tmpfs", "/dev", sc.MS_NOSUID | sc.MS_STRICTATIME | nodev, "mode=755,size=65536k"),
    ]
    ops += [DeviceNode(f"/dev/{name}", major, minor) for name, major, minor in _DEVICES]
    ops += [
        Directory("/dev/pts"),
        # A private devpts instance: the container sees only its own ptys.
        FsMount("devpts", "/dev/pts", sc.MS_NOSUID | sc.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ]
    if shm is not None:
        ops += [Directory("/dev/shm", 0o1777), FsMount("tmpfs", "/dev/shm", nosuid_nodev_noexec, shm)]
    ops += [Symlink(path, to) for path, to in _DEV_LINKS]
    ops += [GrantedDevice(host, target) for host, target in devices or []]
    if privileged:
        ops.append(HostDevices())
    else:
        ops += [MaskedPath(path) for path in masked]
        ops += [ReadonlyPath(path) for path in READONLY_PATHS]
    return RootfsPlan(ops)
