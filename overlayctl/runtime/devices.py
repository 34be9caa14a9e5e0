"""`--device HOST[:CONTAINER[:PERMISSIONS]]`: the one way a container gets
a device node that opens.

Every writable mount a container has is nodev (see mountplan and init), so
a node made with mknod, or found in an image, a volume or a bind, opens
nothing. A granted device is instead bind-mounted from the host's node into
the container: a bind carries the host mount's own flags, so that single
node keeps its device access and nothing else gains any.

A bind cannot narrow what the node allows (the kernel's read-only mount
check is for files and directories, not device nodes), so permissions
narrower than read+write are enforced by a cgroup v2 device program
(BPF_PROG_TYPE_CGROUP_DEVICE) attached to the container's cgroup, made
only when some device asks for it. The program denies by device number,
as Docker's device cgroup does: `--device /dev/zero:/dev/z:r` makes every
node of 1:5 in the container read-only, /dev/zero included. "m" (mknod)
has nothing left to grant: a made node opens nothing anyway.

Parsing and the program are pure (unit tests check them without root).
"""

from __future__ import annotations

import os
import stat
import struct

from overlayctl.errors import InvalidArgumentError, KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from overlayctl.container import model

_MODE_LETTERS = "rwm"


class Device:
    """One --device: the host's node, where it appears, and its permissions."""

    __slots__ = ("host", "container", "permissions")

    def __init__(self, host: str, container: str, permissions: str = "rwm") -> None:
        self.host = host
        self.container = container
        self.permissions = permissions

    def __repr__(self) -> str:
        return f"Device({self.host} -> {self.container}:{self.permissions})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and (self.host, self.container, self.permissions) == (
            other.host,
            other.container,
            other.permissions,
        )

    @property
    def restricted(self) -> bool:
        """Whether reads or writes must be denied by a device program."""
        return not ("r" in self.permissions and "w" in self.permissions)

    def to_config(self) -> model.Device:
        """As the container's HostConfig.Devices holds it."""
        from overlayctl.container.model import Device as ConfigDevice

        return ConfigDevice(self.host, self.container, self.permissions)

    @classmethod
    def from_config(cls, device: model.Device) -> Device:
        return cls(device.path_on_host, device.path_in_container, device.permissions)


def _valid_mode(text: str) -> bool:
    return bool(text) and len(text) <= 3 and all(c in _MODE_LETTERS for c in text) and len(set(text)) == len(text)


def parse_device(text: str) -> Device:
    """`HOST[:CONTAINER[:PERMISSIONS]]` as Docker reads it: CONTAINER
    defaults to HOST, PERMISSIONS to rwm; `HOST:PERMISSIONS` also works."""
    parts = text.split(":")
    if not text or len(parts) > 3 or not parts[0]:
        raise InvalidArgumentError(f'invalid --device "{text}": use HOST[:CONTAINER[:rwm]]')
    host, container, mode = parts[0], parts[0], "rwm"
    if len(parts) == 2:
        if _valid_mode(parts[1]):
            mode = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, mode = parts[1], parts[2]
    if not _valid_mode(mode):
        raise InvalidArgumentError(f'invalid --device "{text}": permissions "{mode}" are not some of r, w and m')
    for path in (host, container):
        if not path.startswith("/"):
            raise InvalidArgumentError(f'invalid --device "{text}": "{path}" is not an absolute path')
    container = os.path.normpath(container)
    if container in ("/", "/dev"):
        raise InvalidArgumentError(f'invalid --device "{text}": "{container}" cannot be a device node')
    return Device(os.path.normpath(host), container, mode)


def host_node(path: str) -> tuple[str, int, int]:
    """("c" or "b", major, minor) of the host's device node at path
    (symlinks followed, as Docker does); a one-line error otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgumentError(f"--device {path}: {os.strerror(exc.errno or 0).lower()} on the host") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgumentError(f"--device {path}: not a character or block device on the host")
    return kind, os.major(st.st_rdev), os.minor(st.st_rdev)


# --- the cgroup v2 device program ---------------------------------------------

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }:
# access_type is the device type (low 16 bits) and the access (high 16).
_DEVCG_DEV_BLOCK, _DEVCG_DEV_CHAR = 1, 2
_DEVCG_ACC = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes (<linux/bpf_common.h>, <linux/bpf.h>).
_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_MOV64_REG = 0xBF  # BPF_ALU64 | BPF_MOV | BPF_X
_MOV64_IMM = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_AND64_IMM = 0x57  # BPF_ALU64 | BPF_AND | BPF_K
_RSH64_IMM = 0x77  # BPF_ALU64 | BPF_RSH | BPF_K
_JNE_IMM = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_JSET_IMM = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_EXIT = 0x95  # BPF_JMP | BPF_EXIT


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def device_program(rules: list[tuple[str, int, int, str]]) -> bytes:
    """A BPF_PROG_TYPE_CGROUP_DEVICE program: deny an access a rule's
    device does not allow (rules are (kind, major, minor, permissions));
    allow everything else, which nodev mounts already keep from opening."""
    # r2 = access, r3 = type, r4 = major, r5 = minor; r1 is the context.
    head = [
        _insn(_LDX_W, dst=2, src=1, off=0),
        _insn(_MOV64_REG, dst=3, src=2),
        _insn(_AND64_IMM, dst=3, imm=0xFFFF),
        _insn(_RSH64_IMM, dst=2, imm=16),
        _insn(_LDX_W, dst=4, src=1, off=4),
        _insn(_LDX_W, dst=5, src=1, off=8),
    ]
    checks: list[tuple[int, int, int, int]] = []
    for kind, major, minor, permissions in rules:
        denied = sum(bit for letter, bit in _DEVCG_ACC.items() if letter not in permissions and letter != "m")
        if denied:
            checks.append((_DEVCG_DEV_CHAR if kind == "c" else _DEVCG_DEV_BLOCK, major, minor, denied))
    out = list(head)
    for i, (dev_type, major, minor, denied) in enumerate(checks):
        # Each JNE skips the rest of this check; a matching device with a
        # denied access bit jumps over the later checks (4 instructions
        # each) and the 2 of "allow", to "deny".
        out += [
            _insn(_JNE_IMM, dst=3, off=3, imm=dev_type),
            _insn(_JNE_IMM, dst=4, off=2, imm=major),
            _insn(_JNE_IMM, dst=5, off=1, imm=minor),
            _insn(_JSET_IMM, dst=2, off=4 * (len(checks) - i - 1) + 2, imm=denied),
        ]
    out += [_insn(_MOV64_IMM, dst=0, imm=1), _insn(_EXIT)]
    out += [_insn(_MOV64_IMM, dst=0, imm=0), _insn(_EXIT)]
    return b"".join(out)


def restrict(cgroup_dir: str, rules: list[tuple[str, int, int, str]]) -> None:
    """Load the device program and attach it to the cgroup2 directory
    (it stays attached until the cgroup is removed)."""
    from overlayctl.runtime import syscalls as sc

    prog = sc.bpf_prog_load(sc.BPF_PROG_TYPE_CGROUP_DEVICE, device_program(rules), "overlayctl_dev")
    try:
        try:
            target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise KernelError(f"open cgroup {cgroup_dir}: {os.strerror(exc.errno or 0)}") from None
        try:
            sc.bpf_prog_attach(target, prog, sc.BPF_CGROUP_DEVICE, sc.BPF_F_ALLOW_MULTI)
        finally:
            os.close(target)
    finally:
        os.close(prog)


def rules_for(devices: Iterable[model.Device]) -> list[tuple[str, int, int, str]]:
    """The device program's rules for HostConfig.Devices: only the
    restricted ones, their numbers read from the host's nodes now."""
    rules = []
    for given in devices:
        device = Device.from_config(given)
        if device.restricted:
            kind, major, minor = host_node(device.host)
            rules.append((kind, major, minor, device.permissions))
    return rules


def needs_program(devices: Iterable[model.Device]) -> bool:
    """Whether a start must make a cgroup for a device program
    (HostConfig.Devices asks for narrower permissions than rw)."""
    return any(Device.from_config(d).restricted for d in devices)
