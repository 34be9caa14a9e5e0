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


def drop_to(keep: tuple[str, ...] | None = DEFAULT_CAPABILITIES) -> None:
    """Shrink the bounding set to `keep`; cut effective and permitted to it;
    clear inheritable (and with it the ambient set).

    A later setuid to a non-root user clears effective and permitted
    entirely, as for any process. This uses python-prctl's C layer, _prctl:
    the `prctl` module builds a property per capability when imported,
    which costs every `run` more than the calls themselves.
    """
    import _prctl

    if keep is None:  # privileged: everything stays, only inheritable is cleared
        _prctl.set_caps([], [], [], [], [], list(range(_prctl.CAP_LAST_CAP + 1)))
        return
    wanted = {getattr(_prctl, "CAP_" + name.upper()) for name in keep}
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
    known = range(_prctl.CAP_LAST_CAP + 1)
    unwanted = [cap for cap in known if cap not in wanted]
    # One capset call: (raise effective, permitted, inheritable; lower
    # effective, permitted, inheritable).
    _prctl.set_caps([], [], [], unwanted, unwanted, list(known))


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG): the signal we get when our parent dies."""
    import _prctl

    _prctl.prctl(_prctl.PR_SET_PDEATHSIG, signum)
