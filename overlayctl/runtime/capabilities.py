"""Capabilities through python-prctl: Docker's default set, nothing more."""

from __future__ import annotations

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
    (it needs CAP_SETUID and CAP_SETGID, which `keep` may not hold). This
    uses python-prctl's C layer, _prctl: the `prctl` module builds a
    property per capability when imported, which costs every `run` more
    than the calls themselves.
    """
    import _prctl

    if keep is None:
        return
    wanted = _numbers(keep)
    # The kernel may know capabilities newer than python-prctl: the
    # bounding set is cut up to the kernel's own last one.
    with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
        kernel_last = int(f.read())
    for cap in range(max(kernel_last, _prctl.CAP_LAST_CAP) + 1):
        if cap not in wanted:
            try:
                _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
            except (OSError, ValueError):
                pass  # a capability this kernel does not know


def limit_sets(keep: tuple[str, ...] | None = DEFAULT_CAPABILITIES) -> None:
    """Cut effective and permitted to `keep` (None: leave them) and clear
    inheritable, and with it the ambient set: the second step, after the
    user switch (which, to a non-root user, has emptied them already)."""
    import _prctl

    known = range(_prctl.CAP_LAST_CAP + 1)
    unwanted = [] if keep is None else [cap for cap in known if cap not in _numbers(keep)]
    # One capset call: (raise effective, permitted, inheritable; lower
    # effective, permitted, inheritable).
    _prctl.set_caps([], [], [], unwanted, unwanted, list(known))


def drop_to(keep: tuple[str, ...] | None = DEFAULT_CAPABILITIES) -> None:
    """Both steps at once, for a process that stays root."""
    drop_bounding(keep)
    limit_sets(keep)


def _numbers(names: tuple[str, ...]) -> set[int]:
    import _prctl

    return {getattr(_prctl, "CAP_" + name.upper()) for name in names}


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): the signal we get when our parent dies."""
    import _prctl

    _prctl.prctl(_prctl.PR_SET_PDEATHSIG, signum)


def make_non_dumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0): only a holder of CAP_SYS_PTRACE may then
    open our /proc/<pid>/fd, exe, environ, cwd, root or mem, or ptrace us.
    Kept across fork; execve makes the new program dumpable again."""
    import _prctl

    _prctl.prctl(_prctl.PR_SET_DUMPABLE, 0)


def known_capabilities() -> tuple[str, ...]:
    """Every capability name python-prctl knows, lower-case without CAP_."""
    import _prctl

    flags = {"CAP_EFFECTIVE", "CAP_INHERITABLE", "CAP_PERMITTED", "CAP_LAST_CAP"}
    return tuple(sorted(n[4:].lower() for n in dir(_prctl) if n.startswith("CAP_") and n not in flags))


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
