"""Capabilities: Docker's default set, nothing more.

The calls are prctl(2), capget(2) and capset(2), through runtime.syscalls
(python-prctl's C module cost every `run` ~0.8 ms of loading in PID 1),
imported by the functions that make them: the names alone (the seccomp
cache, --cap-add checks) need no ctypes.
"""

from __future__ import annotations

from overlayctl.errors import KernelError

# Capability numbers (<linux/capability.h>): each name's index, without CAP_.
# The names end at bpf (39), as python-prctl's did when they came from
# there: checkpoint_restore (40, Linux 5.9) cannot be asked for, so that
# `--cap-add ALL` gives what it gave. Every set is still cut up to LAST_CAP.
_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
)  # fmt: skip
LAST_CAP = 40

# The capabilities Docker leaves a default container (moby's defaults).
DEFAULT_CAPABILITIES = (
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "net_bind_service",
    "net_raw",
    "sys_chroot",
    "mknod",
    "audit_write",
    "setfcap",
)


def drop_bounding(keep: tuple[str, ...] | None = DEFAULT_CAPABILITIES) -> None:
    """Shrink the bounding set to `keep` (None: leave it whole).

    First of two steps, while we are still root with every capability
    (PR_CAPBSET_DROP needs CAP_SETPCAP); the user switch comes between them
    (it needs CAP_SETUID and CAP_SETGID, which `keep` may not hold).
    """
    if keep is None:
        return
    from overlayctl.runtime import syscalls as sc

    wanted = _numbers(keep)
    # The kernel may know capabilities newer than LAST_CAP: the bounding
    # set is cut up to the kernel's own last one.
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        kernel_last = int(f.read())
    for cap in range(max(kernel_last, LAST_CAP) + 1):
        if cap not in wanted:
            try:
                sc.prctl(sc.PR_CAPBSET_DROP, cap)
            except KernelError:
                pass  # a capability this kernel does not know


def limit_sets(keep: tuple[str, ...] | None = DEFAULT_CAPABILITIES) -> None:
    """Cut effective and permitted to `keep` (None: leave them) and clear
    inheritable, and with it the ambient set: the second step, after the
    user switch (which, to a non-root user, has emptied them already)."""
    from overlayctl.runtime import syscalls as sc

    known = (1 << (LAST_CAP + 1)) - 1
    unwanted = 0
    if keep is not None:
        wanted = _numbers(keep)
        unwanted = sum(1 << cap for cap in range(LAST_CAP + 1) if cap not in wanted)
    # One capset call, from the sets as they are: effective and permitted
    # lose `unwanted`, inheritable loses every capability.
    effective, permitted, inheritable = sc.capget()
    sc.capset(effective & ~unwanted, permitted & ~unwanted, inheritable & ~known)


def drop_to(keep: tuple[str, ...] | None = DEFAULT_CAPABILITIES) -> None:
    """Both steps at once, for a process that stays root."""
    drop_bounding(keep)
    limit_sets(keep)


def _numbers(names: tuple[str, ...]) -> set[int]:
    return {_NAMES.index(name) for name in names}


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): the signal we get when our parent dies."""
    from overlayctl.runtime import syscalls as sc

    sc.prctl(sc.PR_SET_PDEATHSIG, signum)


def make_non_dumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0): only a holder of CAP_SYS_PTRACE may then
    open our /proc/<pid>/fd, exe, environ, cwd, root or mem, or ptrace us.
    Kept across fork; execve makes the new program dumpable again."""
    from overlayctl.runtime import syscalls as sc

    sc.prctl(sc.PR_SET_DUMPABLE, 0)


def known_capabilities() -> tuple[str, ...]:
    """Every capability name that can be asked for, lower-case without CAP_."""
    return tuple(sorted(_NAMES))


def _normalise(name: str) -> str:
    name = name.strip().lower()
    return name[4:] if name.startswith("cap_") else name


def resolve_capabilities(cap_add: list[str], cap_drop: list[str]) -> tuple[str, ...]:
    """Docker's default set with --cap-add and --cap-drop applied (ALL
    allowed in both; a capability both added and dropped is added, as in
    Docker). Unknown names are a one-line error."""
    from overlayctl.errors import InvalidArgumentError

    known = known_capabilities()
    adds = [_normalise(c) for c in cap_add]
    drops = [_normalise(c) for c in cap_drop]
    for name in adds + drops:
        if name != "all" and name not in known:
            raise InvalidArgumentError(f"unknown capability: {name.upper()!r}; see capabilities(7)")
    keep = [] if "all" in drops else [c for c in DEFAULT_CAPABILITIES if c not in drops]
    if "all" in adds:
        keep = list(known)
    for name in adds:
        if name != "all" and name not in keep:
            keep.append(name)
    return tuple(keep)
