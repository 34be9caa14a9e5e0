"""The only module that calls libc directly.

Thin wrappers for the namespace and mount syscalls Python does not expose
(3.11 has no os.unshare/os.setns), all made through syscall(2): the small C
module runtime/_kernel.c, or ctypes where it was not built (ctypes costs
every `run` about 6 ms to load). Each wrapper raises KernelError naming the
operation, its arguments and errno's meaning, so a failed mount explains
itself. Constants follow <linux/sched.h> and <linux/mount.h>; structs are
packed here, in the machine's byte order.
"""

from __future__ import annotations

import os
import sys

from overlayctl.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# Namespace flags (<linux/sched.h>).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags (<linux/mount.h>).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24

MNT_DETACH = 2

MOUNT_FLAG_NAMES = {
    MS_RDONLY: "MS_RDONLY",
    MS_NOSUID: "MS_NOSUID",
    MS_NODEV: "MS_NODEV",
    MS_NOEXEC: "MS_NOEXEC",
    MS_REMOUNT: "MS_REMOUNT",
    MS_BIND: "MS_BIND",
    MS_MOVE: "MS_MOVE",
    MS_REC: "MS_REC",
    MS_PRIVATE: "MS_PRIVATE",
    MS_SLAVE: "MS_SLAVE",
    MS_STRICTATIME: "MS_STRICTATIME",
}

# New mount API (Linux >= 5.2; "lowerdir+" for overlayfs since 6.8).
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NODEV = 0x4
AT_FDCWD = -100
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = 0o2000000
AT_RECURSIVE = 0x8000
AT_EMPTY_PATH = 0x1000

# bpf(2) (<linux/bpf.h>): a cgroup device program.
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# close_range(2) (Linux >= 5.9): the last descriptor there can be.
CLOSE_RANGE_ALL = 0xFFFFFFFF

# fanotify(7) (<linux/fanotify.h>): notification only, no permission events.
FAN_CLASS_NOTIF = 0x0
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_MARK_ADD = 0x1
FAN_MARK_MOUNT = 0x10
FAN_MODIFY = 0x2
FAN_CLOSE_WRITE = 0x8
FAN_Q_OVERFLOW = 0x4000

# openat2(2) resolve flags (<linux/openat2.h>, Linux >= 5.6).
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYSCALLS = {
    # name: (x86_64, aarch64)
    "mount": (165, 40),
    "umount2": (166, 39),
    "sethostname": (170, 161),
    "prlimit64": (302, 261),
    "socket": (41, 198),
    "ioctl": (16, 29),
    "pivot_root": (155, 41),
    "setns": (308, 268),
    "unshare": (272, 97),
    "syncfs": (306, 267),
    "open_tree": (428, 428),
    "seccomp": (317, 277),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "close_range": (436, 436),
    "mount_setattr": (442, 442),
    "bpf": (321, 280),
    "openat2": (437, 437),
    "quotactl_fd": (443, 443),
    "fanotify_init": (300, 262),
    "fanotify_mark": (301, 263),
}
_ARCH_INDEX = {"x86_64": 0, "aarch64": 1}


def _ctypes_backend() -> tuple:
    """syscall and address as runtime/_kernel.c has them, through ctypes."""
    import ctypes

    raw = ctypes.CDLL(None, use_errno=True).syscall
    raw.restype = ctypes.c_long

    def arg(value: object) -> object:
        if value is None or isinstance(value, bytes):
            return value
        if isinstance(value, int):
            return ctypes.c_ulong(value) if value > 0x7FFFFFFFFFFFFFFF else ctypes.c_long(value)
        return (ctypes.c_char * len(value)).from_buffer(value)  # type: ignore[arg-type]

    def call(nr: int, *args: object) -> int:
        result = raw(ctypes.c_long(nr), *[arg(a) for a in args])
        return -ctypes.get_errno() if result == -1 else result

    def address(buffer: bytes | bytearray) -> int:
        if isinstance(buffer, bytes):
            return ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value or 0
        return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))

    return call, address


try:
    from overlayctl.runtime import _kernel
except ImportError:  # not compiled (scripts/setup.sh warns): ctypes does it
    _syscall, _address = _ctypes_backend()
else:
    _syscall, _address = _kernel.syscall, _kernel.address


_MACHINE = os.uname().machine
_ORDER = sys.byteorder


def _u64(*values: int) -> bytes:
    """u64 fields of a struct, in the machine's order."""
    return b"".join(v.to_bytes(8, _ORDER) for v in values)


def _nr(name: str) -> int:
    try:
        return _SYSCALLS[name][_ARCH_INDEX[_MACHINE]]
    except KeyError:
        raise KernelError(f"overlayctl does not know the syscall numbers of {_MACHINE}") from None


def _check(result: int, what: str) -> int:
    """result, or KernelError for a failed call (_syscall's -errno)."""
    if result < 0:
        err = -result
        raise KernelError(f"{what}: {os.strerror(err)}", exit_code=125) from OSError(err, os.strerror(err))
    return result


def errno_of(exc: BaseException) -> int:
    """The errno behind a KernelError raised here (0 if none)."""
    cause = exc.__cause__
    return cause.errno if isinstance(cause, OSError) and cause.errno else 0


def flag_names(flags: int) -> str:
    """MS_* flags printed symbolically, e.g. "MS_BIND|MS_REC"."""
    names = [name for bit, name in MOUNT_FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(MOUNT_FLAG_NAMES)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    """Move the caller into new namespaces (CLONE_NEWPID affects children only)."""
    _check(_syscall(_nr("unshare"), flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace open at fd."""
    _check(_syscall(_nr("setns"), fd, nstype), f"setns({nstype:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2), with an error that names source, target, type, flags and data."""
    result = _syscall(_nr("mount"), _b(source), _b(target), _b(fstype), flags, _b(data))
    if result < 0:
        detail = f"mount {source or 'none'} on {target}"
        if fstype:
            detail += f" type {fstype}"
        detail += f" (flags {flag_names(flags)}"
        detail += f", data {data!r})" if data else ")"
        _check(result, detail)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_syscall(_nr("umount2"), _b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2); pivot_root(".", ".") stacks the old root under the new one."""
    _check(
        _syscall(_nr("pivot_root"), _b(new_root), _b(put_old)),
        f"pivot_root {new_root}",
    )


def sethostname(name: str) -> None:
    """Set the hostname of the caller's UTS namespace."""
    raw = os.fsencode(name)
    _check(_syscall(_nr("sethostname"), raw, len(raw)), f"sethostname {name!r}")


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) on the caller (RLIM_INFINITY is 2**64-1): inherited
    through fork and execve. Raising a hard limit needs CAP_SYS_RESOURCE."""
    # prlimit64(0, ...) is setrlimit on the caller, with 64-bit limits.
    _check(_syscall(_nr("prlimit64"), 0, resource, _u64(soft, hard), None), f"setrlimit({resource}, {soft}, {hard})")


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding fd: one call instead of an fsync per file."""
    _check(_syscall(_nr("syncfs"), fd), "syncfs")


def quotactl_fd(fd: int, cmd: int, qid: int, buffer: bytearray | None) -> None:
    """quotactl(2) on the filesystem holding ``fd`` (Linux >= 5.14): no
    block device path needed, so it works for a loop device or a device
    node this mount namespace does not have."""
    _check(_syscall(_nr("quotactl_fd"), fd, cmd, qid, buffer), f"quotactl_fd({cmd:#x}, id {qid})")


def fanotify_init(flags: int, event_f_flags: int) -> int:
    """A new fanotify group (needs CAP_SYS_ADMIN); returns its fd, which
    reads as struct fanotify_event_metadata records."""
    return _check(_syscall(_nr("fanotify_init"), flags, event_f_flags), f"fanotify_init({flags:#x})")


def fanotify_mark(fd: int, flags: int, mask: int, path: str) -> None:
    """Add (or change) a mark of the group `fd` on `path` (with
    FAN_MARK_MOUNT: on the mount that holds it)."""
    _check(_syscall(_nr("fanotify_mark"), fd, flags, mask, AT_FDCWD, _b(path)), f"fanotify_mark {path}")


def fsopen(fstype: str) -> int:
    """Open a filesystem context (new mount API); returns its fd."""
    return _check(
        _syscall(_nr("fsopen"), fstype.encode(), FSOPEN_CLOEXEC),
        f"fsopen {fstype}",
    )


def fsconfig_string(fd: int, key: str, value: str) -> None:
    """fsconfig(FSCONFIG_SET_STRING): one option, no page-size limit overall."""
    _check(
        _syscall(
            _nr("fsconfig"),
            fd,
            FSCONFIG_SET_STRING,
            key.encode(),
            os.fsencode(value),
            0,
        ),
        f"fsconfig {key}={value}",
    )


def fsconfig_create(fd: int) -> None:
    """fsconfig(FSCONFIG_CMD_CREATE): build the superblock from the options."""
    _check(
        _syscall(_nr("fsconfig"), fd, FSCONFIG_CMD_CREATE, None, None, 0),
        "fsconfig create",
    )


def fsmount(fd: int, attr_flags: int = 0) -> int:
    """Turn a configured context into a detached mount; returns its fd."""
    return _check(
        _syscall(_nr("fsmount"), fd, FSMOUNT_CLOEXEC, attr_flags),
        "fsmount",
    )


def move_mount(mount_fd: int, target: str) -> None:
    """Attach a detached mount (from fsmount) at target."""
    _check(
        _syscall(
            _nr("move_mount"),
            mount_fd,
            (b""),
            AT_FDCWD,
            os.fsencode(target),
            MOVE_MOUNT_F_EMPTY_PATH,
        ),
        f"move_mount to {target}",
    )


def move_mount_to_fd(mount_fd: int, target_fd: int, what: str) -> None:
    """Attach a detached mount on the file target_fd holds (an O_PATH fd
    found beneath a root): no path is looked up again, so nothing can be
    swapped for a symlink between finding the target and mounting on it."""
    _check(
        _syscall(
            _nr("move_mount"),
            mount_fd,
            (b""),
            target_fd,
            (b""),
            (MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
        ),
        f"move_mount to {what}",
    )


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount tree at path (a bind source), as an fd:
    it can be attached later, after pivot_root, when `path` is out of reach."""
    return _check(
        _syscall(
            _nr("open_tree"),
            AT_FDCWD,
            os.fsencode(path),
            (OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
        ),
        f"open_tree {path}",
    )


def close_range(first: int, last: int = CLOSE_RANGE_ALL) -> None:
    """close_range(2): close every descriptor from first to last, both included."""
    _check(
        _syscall(_nr("close_range"), first, last, 0),
        f"close_range({first}, {last})",
    )


def close_fds_except(keep: Iterable[int]) -> None:
    """Close every descriptor above stdio except those in `keep`: one
    close_range per gap between the kept ones, whatever their number
    (the caller cannot know what it inherited). Before Linux 5.9, each
    descriptor /proc/self/fd lists."""
    kept = sorted({fd for fd in keep if fd > 2})
    try:
        first = 3
        for fd in kept:
            if fd > first:
                close_range(first, fd - 1)
            first = fd + 1
        close_range(first)
    except KernelError as exc:
        import errno

        if errno_of(exc) != errno.ENOSYS:
            raise
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in kept:
                try:
                    os.close(fd)
                except OSError:
                    pass  # (the listing's own descriptor, closed already)


# Structs are packed by hand (_u64, int.to_bytes) where they are all u64 or
# small: the struct module is one more import on `run`'s path.


def mount_setattr_tree(fd: int, attr_set: int) -> None:
    """Set MOUNT_ATTR_* flags on every mount of the tree open at fd (a
    detached tree from open_tree_clone), keeping its other flags (Linux
    >= 5.12; ENOSYS before)."""
    # struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
    attr = _u64(attr_set, 0, 0, 0)
    _check(
        _syscall(
            _nr("mount_setattr"),
            fd,
            (b""),
            (AT_EMPTY_PATH | AT_RECURSIVE),
            attr,
            32,
        ),
        f"mount_setattr({attr_set:#x})",
    )


_EBPF_INSTRUCTION_SIZE = 8  # struct bpf_insn: u8 code, u8 regs, s16 off, s32 imm


def bpf_prog_load(prog_type: int, program: bytes, name: str, expected_attach_type: int = 0) -> int:
    """Load an eBPF program (an array of struct bpf_insn); returns its fd.
    A refusal names the verifier's last line."""
    if not program or len(program) % _EBPF_INSTRUCTION_SIZE:
        raise KernelError(f"bpf: a program of {len(program)} bytes is not whole instructions")
    import struct  # (not at the top: only device rules load programs)

    license = b"GPL\0"
    log = bytearray(4096)
    # union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type. The
    # buffers stay referenced (program, license, log) until the call returns.
    attr = struct.pack(
        "=IIQQIIQII16sII",
        prog_type,
        len(program) // _EBPF_INSTRUCTION_SIZE,
        _address(program),
        _address(license),
        1,  # log_level
        len(log),
        _address(log),
        0,  # kern_version
        0,  # prog_flags
        name.encode()[:15],
        0,  # prog_ifindex
        expected_attach_type,
    )
    fd = _syscall(_nr("bpf"), BPF_PROG_LOAD, attr, len(attr))
    if fd < 0:
        lines = bytes(log).split(b"\0", 1)[0].decode(errors="replace").strip().splitlines()
        _check(fd, f"bpf(BPF_PROG_LOAD {name})" + (f" ({lines[-1]})" if lines else ""))
    return fd


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach a loaded program to the cgroup open at target_fd."""
    attr = b"".join(v.to_bytes(4, _ORDER) for v in (target_fd, prog_fd, attach_type, flags))
    _check(
        _syscall(_nr("bpf"), BPF_PROG_ATTACH, attr, 16),
        f"bpf(BPF_PROG_ATTACH type {attach_type})",
    )


# None until the first call says whether the kernel has openat2.
_have_openat2: bool | None = None


def open_beneath(dirfd: int, path: str | bytes, flags: int) -> int:
    """Open `path` below the directory `dirfd` without following any symlink
    on the way or at its end, and without leaving dirfd's tree.

    For a tree someone else can change while it is read (a live container's
    upper dir): every component is resolved by the kernel in one call
    (openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so a directory swapped
    for a symlink between a check and the open makes the open fail (ELOOP)
    instead of reaching the host. Kernels before 5.6 get a walk of one
    O_NOFOLLOW open per component, which is as strict. O_NOFOLLOW and
    O_CLOEXEC are always added; with O_PATH a final symlink is opened itself.
    Raises OSError as os.open does, so a walker handles it with its other
    os calls.
    """
    global _have_openat2
    import errno  # (not at the top: syscalls is on `run`'s start-up path)

    raw = os.fsencode(path)
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if _have_openat2 is not False:
        # struct open_how { u64 flags, mode, resolve; }, packed as the others.
        how = _u64(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        # EAGAIN: a rename elsewhere raced the lookup and the kernel could
        # not prove it stayed beneath; it asks for a retry.
        for _attempt in range(8):
            fd = _syscall(
                _nr("openat2"),
                dirfd,
                raw,
                how,
                24,
            )
            if fd >= 0:
                _have_openat2 = True
                return fd
            err = -fd
            if err not in (errno.EAGAIN, errno.EINTR):
                break
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), raw)
        _have_openat2 = False
    return _open_by_components(dirfd, raw, flags)


def open_in_root(root_fd: int, path: str | bytes, flags: int) -> int:
    """Open `path` as if `root_fd` were "/": absolute symlinks, ".." and
    "/" in the path or in any symlink met on the way resolve inside that
    tree, never above it (openat2 RESOLVE_IN_ROOT, as a chroot would, in
    one kernel call that a concurrent rename cannot lead astray). The last
    component is followed too unless `flags` has O_NOFOLLOW. For paths a
    user gives inside a container (`cp CONTAINER:PATH`); kernels without
    openat2 (before 5.6) are refused rather than walked in userspace.
    """
    import errno

    raw = os.fsencode(path).lstrip(b"/") or b"."
    how = _u64(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    for _attempt in range(8):
        fd = _syscall(_nr("openat2"), root_fd, raw, how, 24)
        if fd >= 0:
            return fd
        err = -fd
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    if err == errno.ENOSYS:
        raise KernelError("openat2(2) is missing (Linux >= 5.6 is needed to resolve paths inside a container)")
    raise OSError(err, os.strerror(err), path)


def _open_by_components(dirfd: int, path: bytes, flags: int) -> int:
    import errno

    parts = path.split(b"/")
    if not path or b".." in parts:
        # RESOLVE_BENEATH's answer to a path that could climb out.
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), path)
    fd = dirfd
    try:
        for comp in parts[:-1]:
            if comp in (b"", b"."):
                continue
            child = os.open(comp, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            if fd != dirfd:
                os.close(fd)
            fd = child
        return os.open(parts[-1] or b".", flags, dir_fd=fd)
    finally:
        if fd != dirfd:
            os.close(fd)


SECCOMP_SET_MODE_FILTER = 1
_BPF_INSTRUCTION_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


def seccomp_set_filter(program: bytes) -> None:
    """Install a compiled seccomp BPF program (an array of struct
    sock_filter, as libseccomp's seccomp_export_bpf writes it) on the caller.
    no_new_privs must be set first."""
    if not program or len(program) % _BPF_INSTRUCTION_SIZE:
        raise KernelError(f"seccomp: a BPF program of {len(program)} bytes is not whole instructions")
    # struct sock_fprog { unsigned short len; (6 bytes of padding) struct sock_filter *filter; }
    fprog = (
        (len(program) // _BPF_INSTRUCTION_SIZE).to_bytes(2, _ORDER) + bytes(6) + _address(program).to_bytes(8, _ORDER)
    )
    _check(
        _syscall(_nr("seccomp"), SECCOMP_SET_MODE_FILTER, 0, fprog),
        "seccomp(SECCOMP_SET_MODE_FILTER)",
    )


# Bringing up loopback needs only two ioctls on a socket; pyroute2 would cost
# ~125 ms of imports on every `run`.
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_AF_INET = 2
_SOCK_DGRAM = 2
_SOCK_CLOEXEC = 0o2000000


def loopback_up() -> None:
    """Set `lo` up in the caller's network namespace."""
    fd = _check(_syscall(_nr("socket"), _AF_INET, _SOCK_DGRAM | _SOCK_CLOEXEC, 0), "socket for lo")
    try:
        # struct ifreq: char ifr_name[16]; short ifr_flags; (22 bytes of the union's rest)
        req = bytearray(b"lo".ljust(16, b"\0") + bytes(24))
        _check(_syscall(_nr("ioctl"), fd, _SIOCGIFFLAGS, req), "SIOCGIFFLAGS lo")
        flags = int.from_bytes(req[16:18], _ORDER) | _IFF_UP
        req[16:18] = flags.to_bytes(2, _ORDER)
        _check(_syscall(_nr("ioctl"), fd, _SIOCSIFFLAGS, req), "SIOCSIFFLAGS lo")
    finally:
        os.close(fd)
