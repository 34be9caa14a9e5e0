"""The only module that calls libc directly.

Thin ctypes wrappers for the namespace and mount syscalls Python does not
expose (3.11 has no os.unshare/os.setns). Each wrapper raises KernelError
naming the operation, its arguments and errno's meaning, so a failed mount
explains itself. Constants follow <linux/sched.h> and <linux/mount.h>.
"""

from __future__ import annotations

import ctypes
import os
import struct

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

# openat2(2) resolve flags (<linux/openat2.h>, Linux >= 5.6).
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

_SYSCALLS = {
    # name: (x86_64, aarch64)
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
}
_ARCH_INDEX = {"x86_64": 0, "aarch64": 1}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_mount = _libc.mount
_mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_umount2 = _libc.umount2
_umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_sethostname = _libc.sethostname
_sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)


_MACHINE = os.uname().machine


def _nr(name: str) -> int:
    try:
        return _SYSCALLS[name][_ARCH_INDEX[_MACHINE]]
    except KeyError:
        raise KernelError(f"overlayctl does not know the syscall numbers of {_MACHINE}") from None


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
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
    _check(_syscall(_nr("unshare"), ctypes.c_int(flags)), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace open at fd."""
    _check(_syscall(_nr("setns"), ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({nstype:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2), with an error that names source, target, type, flags and data."""
    result = _mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    if result < 0:
        detail = f"mount {source or 'none'} on {target}"
        if fstype:
            detail += f" type {fstype}"
        detail += f" (flags {flag_names(flags)}"
        detail += f", data {data!r})" if data else ")"
        _check(result, detail)


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2); pivot_root(".", ".") stacks the old root under the new one."""
    _check(
        _syscall(_nr("pivot_root"), ctypes.c_char_p(_b(new_root)), ctypes.c_char_p(_b(put_old))),
        f"pivot_root {new_root}",
    )


def sethostname(name: str) -> None:
    """Set the hostname of the caller's UTS namespace."""
    raw = os.fsencode(name)
    _check(_sethostname(raw, len(raw)), f"sethostname {name!r}")


class _Rlimit(ctypes.Structure):
    _fields_ = (("rlim_cur", ctypes.c_uint64), ("rlim_max", ctypes.c_uint64))


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) on the caller (RLIM_INFINITY is 2**64-1): inherited
    through fork and execve. Raising a hard limit needs CAP_SYS_RESOURCE."""
    limit = _Rlimit(soft, hard)
    _check(_libc.setrlimit(ctypes.c_int(resource), ctypes.byref(limit)), f"setrlimit({resource}, {soft}, {hard})")


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding fd: one call instead of an fsync per file."""
    _check(_syscall(_nr("syncfs"), ctypes.c_int(fd)), "syncfs")


def fsopen(fstype: str) -> int:
    """Open a filesystem context (new mount API); returns its fd."""
    return _check(
        _syscall(_nr("fsopen"), ctypes.c_char_p(fstype.encode()), ctypes.c_uint(FSOPEN_CLOEXEC)),
        f"fsopen {fstype}",
    )


def fsconfig_string(fd: int, key: str, value: str) -> None:
    """fsconfig(FSCONFIG_SET_STRING): one option, no page-size limit overall."""
    _check(
        _syscall(
            _nr("fsconfig"),
            ctypes.c_int(fd),
            ctypes.c_uint(FSCONFIG_SET_STRING),
            ctypes.c_char_p(key.encode()),
            ctypes.c_char_p(os.fsencode(value)),
            ctypes.c_int(0),
        ),
        f"fsconfig {key}={value}",
    )


def fsconfig_create(fd: int) -> None:
    """fsconfig(FSCONFIG_CMD_CREATE): build the superblock from the options."""
    _check(
        _syscall(_nr("fsconfig"), ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None, ctypes.c_int(0)),
        "fsconfig create",
    )


def fsmount(fd: int, attr_flags: int = 0) -> int:
    """Turn a configured context into a detached mount; returns its fd."""
    return _check(
        _syscall(_nr("fsmount"), ctypes.c_int(fd), ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(attr_flags)),
        "fsmount",
    )


def move_mount(mount_fd: int, target: str) -> None:
    """Attach a detached mount (from fsmount) at target."""
    _check(
        _syscall(
            _nr("move_mount"),
            ctypes.c_int(mount_fd),
            ctypes.c_char_p(b""),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(os.fsencode(target)),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
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
            ctypes.c_int(mount_fd),
            ctypes.c_char_p(b""),
            ctypes.c_int(target_fd),
            ctypes.c_char_p(b""),
            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
        ),
        f"move_mount to {what}",
    )


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount tree at path (a bind source), as an fd:
    it can be attached later, after pivot_root, when `path` is out of reach."""
    return _check(
        _syscall(
            _nr("open_tree"),
            ctypes.c_int(AT_FDCWD),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
        ),
        f"open_tree {path}",
    )


def close_range(first: int, last: int = CLOSE_RANGE_ALL) -> None:
    """close_range(2): close every descriptor from first to last, both included."""
    _check(
        _syscall(_nr("close_range"), ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(0)),
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
# The structs of mount_setattr and bpf are packed with struct (which ctypes
# imports anyway), not declared as ctypes.Structure classes: each class
# costs `run` ~0.1 ms of import time, and few containers use them.


def mount_setattr_tree(fd: int, attr_set: int) -> None:
    """Set MOUNT_ATTR_* flags on every mount of the tree open at fd (a
    detached tree from open_tree_clone), keeping its other flags (Linux
    >= 5.12; ENOSYS before)."""
    # struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
    attr = ctypes.create_string_buffer(struct.pack("=QQQQ", attr_set, 0, 0, 0), 32)
    _check(
        _syscall(
            _nr("mount_setattr"),
            ctypes.c_int(fd),
            ctypes.c_char_p(b""),
            ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
            attr,
            ctypes.c_size_t(32),
        ),
        f"mount_setattr({attr_set:#x})",
    )


_EBPF_INSTRUCTION_SIZE = 8  # struct bpf_insn: u8 code, u8 regs, s16 off, s32 imm


def bpf_prog_load(prog_type: int, program: bytes, name: str, expected_attach_type: int = 0) -> int:
    """Load an eBPF program (an array of struct bpf_insn); returns its fd.
    A refusal names the verifier's last line."""
    if not program or len(program) % _EBPF_INSTRUCTION_SIZE:
        raise KernelError(f"bpf: a program of {len(program)} bytes is not whole instructions")
    insns = ctypes.create_string_buffer(program, len(program))
    license = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    # union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type.
    attr = ctypes.create_string_buffer(
        struct.pack(
            "=IIQQIIQII16sII",
            prog_type,
            len(program) // _EBPF_INSTRUCTION_SIZE,
            ctypes.addressof(insns),
            ctypes.addressof(license),
            1,  # log_level
            len(log),
            ctypes.addressof(log),
            0,  # kern_version
            0,  # prog_flags
            name.encode()[:15],
            0,  # prog_ifindex
            expected_attach_type,
        )
    )
    size = len(attr) - 1  # (create_string_buffer adds a NUL)
    fd = _syscall(_nr("bpf"), ctypes.c_int(BPF_PROG_LOAD), attr, ctypes.c_uint(size))
    if fd < 0:
        lines = log.value.decode(errors="replace").strip().splitlines()
        _check(fd, f"bpf(BPF_PROG_LOAD {name})" + (f" ({lines[-1]})" if lines else ""))
    return fd


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach a loaded program to the cgroup open at target_fd."""
    attr = ctypes.create_string_buffer(struct.pack("=IIII", target_fd, prog_fd, attach_type, flags), 16)
    _check(
        _syscall(_nr("bpf"), ctypes.c_int(BPF_PROG_ATTACH), attr, ctypes.c_uint(16)),
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
        how = ctypes.create_string_buffer(
            struct.pack("=QQQ", flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), 24
        )
        # EAGAIN: a rename elsewhere raced the lookup and the kernel could
        # not prove it stayed beneath; it asks for a retry.
        for _attempt in range(8):
            fd = _syscall(
                _nr("openat2"),
                ctypes.c_int(dirfd),
                ctypes.c_char_p(raw),
                how,
                ctypes.c_size_t(24),
            )
            if fd >= 0:
                _have_openat2 = True
                return fd
            err = ctypes.get_errno()
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
    how = ctypes.create_string_buffer(
        struct.pack("=QQQ", flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), 24
    )
    for _attempt in range(8):
        fd = _syscall(_nr("openat2"), ctypes.c_int(root_fd), ctypes.c_char_p(raw), how, ctypes.c_size_t(24))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
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


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


SECCOMP_SET_MODE_FILTER = 1
_BPF_INSTRUCTION_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


def seccomp_set_filter(program: bytes) -> None:
    """Install a compiled seccomp BPF program (an array of struct
    sock_filter, as libseccomp's seccomp_export_bpf writes it) on the caller.
    no_new_privs must be set first."""
    if not program or len(program) % _BPF_INSTRUCTION_SIZE:
        raise KernelError(f"seccomp: a BPF program of {len(program)} bytes is not whole instructions")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // _BPF_INSTRUCTION_SIZE, ctypes.cast(buf, ctypes.c_void_p))
    _check(
        _syscall(_nr("seccomp"), ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(0), ctypes.byref(prog)),
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


class _IfReq(ctypes.Structure):
    _fields_ = [("ifr_name", ctypes.c_char * 16), ("ifr_flags", ctypes.c_short), ("_pad", ctypes.c_char * 22)]


def loopback_up() -> None:
    """Set `lo` up in the caller's network namespace."""
    fd = _check(_libc.socket(_AF_INET, _SOCK_DGRAM | _SOCK_CLOEXEC, 0), "socket for lo")
    try:
        req = _IfReq(b"lo")
        _check(_libc.ioctl(fd, _SIOCGIFFLAGS, ctypes.byref(req)), "SIOCGIFFLAGS lo")
        req.ifr_flags |= _IFF_UP
        _check(_libc.ioctl(fd, _SIOCSIFFLAGS, ctypes.byref(req)), "SIOCSIFFLAGS lo")
    finally:
        os.close(fd)
