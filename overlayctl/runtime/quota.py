"""Project quotas: the kernel's accounting and limits for a tree of files.

On ext4 (features ``project`` and ``quota``, mounted ``-o prjquota``) and on
xfs (mounted ``-o prjquota``) every inode carries a project ID. A directory
marked ``FS_XFLAG_PROJINHERIT`` hands its ID to everything made below it,
and the kernel keeps, per ID, the blocks and inodes charged to it and the
limits past which a write fails (EDQUOT on ext4, ENOSPC on xfs). That is
what a container's size limit is built from: its upper and work dirs get
an ID of their own (the store picks which; see store/projects.py), the
limit is set on the ID, and the ID's usage is the container's size without
a walk of its tree.

This module only speaks to the kernel: the FS_IOC_FS[GS]ETXATTR ioctls and
quotactl_fd(2) through runtime/syscalls.py. Structs follow
<linux/fs.h> and <linux/dqblk_xfs.h>.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys

from overlayctl.errors import KernelError
from overlayctl.runtime import syscalls

# <linux/fs.h>: struct fsxattr and its ioctls.
FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FS_XFLAG_PROJINHERIT = 0x00000200
# struct fsxattr (28 bytes): u32 xflags, extsize, nextents, projid,
# cowextsize, then 8 bytes of padding. Packed by hand in the machine's
# order, as the other records here: the struct module would add its import
# to every run with a size limit.
_FSXATTR_SIZE = 28
_ORDER = sys.byteorder

# <linux/quota.h>, <linux/dqblk_xfs.h>: the XFS-style quotactl commands,
# which ext4 answers too (the kernel translates them for its quota files).
PRJQUOTA = 2
_Q_XGETQUOTA = 0x5803
_Q_XSETQLIM = 0x5804
_Q_XGETQSTAT = 0x5805
FS_QUOTA_PDQ_ACCT = 1 << 4
FS_QUOTA_PDQ_ENFD = 1 << 5
FS_DQUOT_VERSION = 1
FS_PROJ_QUOTA = 2
FS_DQ_BSOFT = 1 << 2
FS_DQ_BHARD = 1 << 3
# struct fs_disk_quota (112 bytes): s8 version, s8 flags, u16 fieldmask,
# u32 id, then u64 block soft and hard limits (offsets 8, 16), inode soft
# and hard limits, block and inode counts (offsets 40, 48; blocks in
# 512-byte units), timers, warnings and the realtime fields, which
# overlayctl leaves at zero.
_FS_DISK_QUOTA_SIZE = 112
_BB = 512  # the unit of every block figure in fs_disk_quota

EXT4_SUPER_MAGIC = 0xEF53
XFS_SUPER_MAGIC = 0x58465342


def _qcmd(cmd: int) -> int:
    return (cmd << 8) | PRJQUOTA


class _Record:
    """A small value of named fields, compared and shown by them. Not a
    dataclass: `run --storage-opt size=` imports this module, and
    dataclasses would bring inspect, ast, dis, re and enum with it (about
    10 ms, where a limit may add 2; tests/unit/test_run_imports.py)."""

    __slots__ = ()

    def __init__(self, *values: object) -> None:
        if len(values) != len(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {len(self.__slots__)} values, not {len(values)}")
        for name, value in zip(self.__slots__, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class ProjectUsage(_Record):
    """What the kernel charges to one project ID: bytes allocated (as
    ``du --block-size=1`` counts them), inodes, and the hard limit in bytes
    (0: none)."""

    __slots__ = ("bytes", "inodes", "limit")
    bytes: int
    inodes: int
    limit: int


class Filesystem(_Record):
    """The mount that holds a path, as /proc/self/mountinfo describes it."""

    __slots__ = ("fstype", "device", "mount_point", "options")
    fstype: str
    device: str
    mount_point: str
    options: str


def project_of(path: str) -> int:
    """The project ID of the file or directory at ``path`` (0 on a
    filesystem without project IDs)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return _get_fsxattr(fd, path)[3]
    finally:
        os.close(fd)


def set_project(directory: str, project_id: int) -> None:
    """Give ``directory`` the project ID and mark it to hand the ID on to
    everything made below it. Only what is made afterwards inherits it: a
    directory tagged while empty (an upper dir at create) needs nothing more.
    A regular file given here gets the ID alone (its blocks move to it)."""
    fd = os.open(directory, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        fields = list(_get_fsxattr(fd, directory))
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            fields[0] |= FS_XFLAG_PROJINHERIT
        fields[3] = project_id
        try:
            record = b"".join(v.to_bytes(4, _ORDER) for v in fields[:5]) + bytes(_FSXATTR_SIZE - 20)
            fcntl.ioctl(fd, FS_IOC_FSSETXATTR, record)
        except OSError as e:
            raise KernelError(
                f'cannot give "{directory}" project ID {project_id} (FS_IOC_FSSETXATTR): {e.strerror}'
            ) from e
    finally:
        os.close(fd)


def _get_fsxattr(fd: int, path: str) -> list[int]:
    """xflags, extsize, nextents, projid and cowextsize of the open file."""
    buffer = bytearray(_FSXATTR_SIZE)
    try:
        fcntl.ioctl(fd, FS_IOC_FSGETXATTR, buffer)
    except OSError as e:
        raise KernelError(f'cannot read the project ID of "{path}" (FS_IOC_FSGETXATTR): {e.strerror}') from e
    return [int.from_bytes(buffer[i : i + 4], _ORDER) for i in range(0, 20, 4)]


def set_limit(path: str, project_id: int, limit: int) -> None:
    """Limit project ``project_id`` on the filesystem holding ``path`` to
    ``limit`` bytes (rounded up to 512; 0 removes the limit). Soft and hard
    limits are the same: past it a write fails at once, with no grace."""
    blocks = -(-limit // _BB)
    record = (
        bytes((FS_DQUOT_VERSION, FS_PROJ_QUOTA))
        + (FS_DQ_BSOFT | FS_DQ_BHARD).to_bytes(2, _ORDER)
        + project_id.to_bytes(4, _ORDER)
        + blocks.to_bytes(8, _ORDER) * 2
        + bytes(_FS_DISK_QUOTA_SIZE - 24)
    )
    _quotactl(path, _Q_XSETQLIM, project_id, bytearray(record), f"set the size limit of project {project_id}")


def usage(path: str, project_id: int) -> ProjectUsage:
    """What the filesystem holding ``path`` charges to ``project_id`` now.
    An ID the filesystem has never seen charges nothing."""
    buffer = bytearray(_FS_DISK_QUOTA_SIZE)
    try:
        _quotactl(path, _Q_XGETQUOTA, project_id, buffer, f"read the usage of project {project_id}")
    except KernelError as e:
        # xfs has no record for an ID no inode ever had; ext4 answers zeros.
        if syscalls.errno_of(e) == errno.ENOENT:
            return ProjectUsage(0, 0, 0)
        raise
    hard, bcount, icount = (int.from_bytes(buffer[i : i + 8], _ORDER) for i in (16, 40, 48))
    return ProjectUsage(bcount * _BB, icount, hard * _BB)


def _quotactl(path: str, cmd: int, qid: int, buffer: bytearray | None, what: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        syscalls.quotactl_fd(fd, _qcmd(cmd), qid, buffer)
    except KernelError as e:
        raise KernelError(f'cannot {what} on the filesystem of "{path}": {_reason(e)}') from e.__cause__
    finally:
        os.close(fd)


def _reason(e: KernelError) -> str:
    return os.strerror(syscalls.errno_of(e)) if syscalls.errno_of(e) else str(e)


# -- can this filesystem do it? ---------------------------------------------------


def enforced(path: str) -> bool:
    """Whether the filesystem holding ``path`` accounts and enforces
    project quotas now."""
    return _qstat_flags(path) & (FS_QUOTA_PDQ_ACCT | FS_QUOTA_PDQ_ENFD) == FS_QUOTA_PDQ_ACCT | FS_QUOTA_PDQ_ENFD


def _qstat_flags(path: str) -> int:
    """fs_quota_stat's qs_flags (0 when the filesystem has no quota on, or
    the kernel none at all)."""
    buffer = bytearray(128)  # struct fs_quota_stat is 80 bytes on every ABI
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        syscalls.quotactl_fd(fd, _qcmd(_Q_XGETQSTAT), 0, buffer)
    except KernelError:
        # ENOSYS: no quota of any kind on, or a kernel without quotactl;
        # EINVAL/ENOTTY/EOPNOTSUPP: a filesystem without quotas.
        return 0
    finally:
        os.close(fd)
    return int.from_bytes(buffer[2:4], _ORDER)


def why_not(path: str) -> str | None:
    """None when project quotas are enforced on the filesystem holding
    ``path``; else one sentence on what is missing and how to turn it on,
    naming the filesystem, its device and, when the kernel is the cause,
    the kernel option it lacks."""
    flags = _qstat_flags(path)
    if flags & FS_QUOTA_PDQ_ACCT and flags & FS_QUOTA_PDQ_ENFD:
        return None
    fs = filesystem_of(path)
    where = f"{fs.fstype} on {fs.device}, mounted at {fs.mount_point}"
    if fs.fstype == "ext4":
        if flags & FS_QUOTA_PDQ_ACCT:
            how = f"mount it with -o prjquota (mount -o remount,prjquota {fs.mount_point})"
            what = "counts project quotas but does not enforce them"
        else:
            how = (
                f'turn them on with "tune2fs -O project,quota {fs.device}" while it is unmounted, '
                f"then mount it with -o prjquota"
            )
            what = "has no project quotas on"
        missing = _kernel_lacks(("CONFIG_QUOTA", "CONFIG_QFMT_V2"))
    elif fs.fstype == "xfs":
        what = "has no project quotas on"
        how = "mount it with -o prjquota (xfs reads it only at mount, not at remount; rootflags=prjquota for /)"
        missing = _kernel_lacks(("CONFIG_XFS_QUOTA",))
    else:
        return (
            f"the store's filesystem ({where}) has no project quotas: "
            f"put the store (--root) on ext4 or xfs mounted with -o prjquota"
        )
    sentence = f"the store's filesystem ({where}) {what}: {how}"
    if missing:
        sentence += f"; this kernel cannot do it, it is built without {' and '.join(missing)}"
    return sentence


def filesystem_of(path: str) -> Filesystem:
    """The mount holding ``path``: the deepest mount point above it on
    the same device."""
    real = os.path.realpath(path)
    dev = os.stat(real).st_dev
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    best: Filesystem | None = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[2] != wanted:
                continue
            point = _unescape(fields[4])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) > len(best.mount_point)):
                best = Filesystem(fields[sep + 1], _unescape(fields[sep + 2]), point, fields[sep + 3])
    if best is None:
        return Filesystem("unknown", "an unknown device", real, "")
    return best


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _kernel_lacks(options: tuple[str, ...]) -> list[str]:
    """The kernel options of ``options`` this kernel's configuration says
    are off (empty when it does not publish its configuration)."""
    config = _kernel_config()
    if config is None:
        return []
    return [o for o in options if f"{o}=y" not in config and f"{o}=m" not in config]


def _kernel_config() -> str | None:
    import gzip

    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return f.read()
    except OSError:
        pass
    try:
        with open(f"/boot/config-{os.uname().release}", encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None
