"""Network devices as the kernel shows them without netlink: whether one
exists, and turning IPv6 off on one (a sysctl write, also done by the
container's PID 1 in its new network namespace, so it lives here and not
in network/).
"""

from __future__ import annotations

import os


def ipv6_off(name: str) -> None:
    """No IPv6 on a device of ours, or on those made from now on in the
    caller's namespace with "default" (only --ipv6 networks turn it on
    again, on their own devices: ipv6_on): no link-local
    address, and router advertisements refused, so that a container's
    forged advertisement configures neither the host nor its neighbours
    (Docker's CVE-2020-13401). Set before the device is up, when the
    kernel would configure it. A host without IPv6 has nothing to refuse."""
    for key, value in (("accept_ra", b"0"), ("disable_ipv6", b"1")):
        try:
            fd = os.open(f"/proc/sys/net/ipv6/conf/{name}/{key}", os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            os.write(fd, value)
        finally:
            os.close(fd)


def ipv6_on(name: str) -> None:
    """IPv6 on a device of a network made with --ipv6: addresses, but still
    no router advertisements accepted (see ipv6_off)."""
    for key, value in (("accept_ra", b"0"), ("disable_ipv6", b"0")):
        fd = os.open(f"/proc/sys/net/ipv6/conf/{name}/{key}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value)
        finally:
            os.close(fd)


def link_exists(name: str) -> bool:
    """Whether the caller's network namespace has this device (no netlink needed)."""
    import socket

    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
