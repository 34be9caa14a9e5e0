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


def drop_to(keep: tuple[str, ...] = DEFAULT_CAPABILITIES) -> None:
    """Shrink the bounding set to `keep`; clear inheritable and ambient.

    Effective and permitted are cut to the same set by limit(); a later
    setuid to a non-root user clears them entirely, as for any process.
    """
    import prctl

    wanted = [getattr(prctl, "CAP_" + name.upper()) for name in keep]
    for name in dir(prctl):
        if name.startswith("CAP_") and getattr(prctl, name) not in wanted:
            try:
                prctl.capbset.drop(getattr(prctl, name))
            except (OSError, ValueError):
                pass  # a capability this kernel does not know
    # Effective must stay a subset of permitted at every step: cut it first.
    prctl.cap_effective.limit(*wanted)
    prctl.cap_permitted.limit(*wanted)
    prctl.cap_inheritable.limit()
