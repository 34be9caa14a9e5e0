"""Leases held by a lock: a container's leases (one per network it is on)
live as long as its supervisor holds <runroot>/containers/<id>/network.lock,
and each leased address is claimed host-wide by a file under CLAIM_DIR
that names that lock (see network.attach). `release_stale` frees what
nobody holds any more. Every lease change ends in `leases_changed`.
"""

from __future__ import annotations

import os

from overlayctl.network import etcfiles
from overlayctl.network.lockfile import lock_held, take_lock, unlock_and_remove  # noqa: F401 - used here and through here
from overlayctl.store.networks import NetworkStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.paths import Paths
    from overlayctl.store import Store
    from overlayctl.store.networks import Lease


# Host-wide, not under --runroot: every store on the host sees the claims.
CLAIM_DIR = "/run/overlayctl-ipam"


def network_dir(paths: Paths, container_id: str) -> str:
    """Where a container's generated /etc files and its lease lock live."""
    return paths.run_dir(container_id)


def claim_path(bridge_device: str, address: str) -> str:
    """The host-wide claim file of an address on a bridge device."""
    return os.path.join(CLAIM_DIR, bridge_device, address)


def lease_claim_path(store: Store, lease: Lease) -> str:
    network = networks(store).find(lease.network)
    return claim_path(network.bridge if network is not None else lease.network, lease.address)


def claim(path: str, holder: str) -> bool:
    """Claim an address host-wide for the container whose network.lock is
    `holder`: the claim file names it, and is the holder's for as long as
    that lock is held, by whichever process (the supervisor holds it for a
    start and for a `network connect` alike, so nothing else has to stay
    open). False if another living holder has it. The claim file's own
    lock is taken only for the instant of the check, so two stores cannot
    both win it; one that stays held is an older overlayctl's claim (its
    supervisor held the file itself), and taken."""
    fd = _take_briefly(path)
    if fd is None:
        return False
    try:
        owner = os.pread(fd, 4096, 0).decode(errors="replace")
        if owner and owner != holder and lock_held(owner):
            return False
        data = holder.encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return True
    finally:
        os.close(fd)


def unclaim(path: str, holder: str) -> None:
    """Let go of a claim `holder` made; one another holder took over stays."""
    fd = _take_briefly(path)
    if fd is None:
        return  # held for good by another: not ours any more
    if os.pread(fd, 4096, 0).decode(errors="replace") in (holder, ""):
        unlock_and_remove(path, fd)
    else:
        os.close(fd)


def _take_briefly(path: str) -> int | None:
    """A claim file's lock, waited for as long as a check by another
    claimer can take (a few milliseconds), but not for a holder that keeps it."""
    import time

    for _ in range(50):
        fd = take_lock(path, block=False)
        if fd is not None:
            return fd
        time.sleep(0.01)
    return None


def release_stale(store: Store) -> None:
    """Free the leases nobody holds any more (their supervisor is gone, e.g.
    SIGKILLed), delete veth ends whose container is not running, and the
    generated files of containers that no longer exist. Cheap when there
    is nothing to do: a query, a directory listing or two."""
    nets = networks(store)
    publishers = store.ports.containers()
    for container_id in sorted({lease.container for lease in nets.leases()} | publishers):
        directory = network_dir(store.paths, container_id)
        lock = store.paths.network_lock(container_id)
        fd = take_lock(lock, block=False)
        if fd is None:
            continue  # its supervisor is alive: the lease is held
        freed: list[Lease] = []
        try:
            if container_id in publishers:
                from overlayctl.network import ports

                ports.release(store, container_id)  # before the lease: its address names the DNAT
            for lease in nets.leases(container_id=container_id):
                unclaim(lease_claim_path(store, lease), lock)
            freed = nets.release(container_id)
            etcfiles.remove_files(directory)
        finally:
            unlock_and_remove(lock, fd)
        if freed:
            leases_changed(store)
    _sweep_veths(store)
    _sweep_removed(store)


def leases_changed(store: Store) -> None:
    """Every place that frees leases ends here, once the catalog has it (a
    release, a sweep of stale leases, a network removed): a DNS responder
    whose network has no lease left goes now (network.dns). One listdir
    when no responder runs; every responder is looked at."""
    from overlayctl.network import dns

    dns.leases_changed(store)


def _sweep_veths(store: Store) -> None:
    """Host veth ends named after a container of this store whose lease
    nobody holds: its namespace outlived it, or the kernel is still tearing
    it down."""
    # veth<id> for eth0, vet<N><id> for eth<N> (network.attach.veth_name).
    try:
        names = [n for n in os.listdir("/sys/class/net") if len(n) == 15 and n.startswith("vet")]
    except OSError:
        return
    for name in names:
        prefix = name[4:]
        container_id = store.containers.id_with_prefix(prefix)
        if container_id is None:
            continue  # not ours (another store's, podman's, Docker's)
        lock = store.paths.network_lock(container_id)
        fd = take_lock(lock, block=False)
        if fd is None:
            continue  # starting or running
        try:
            from overlayctl.network import netlink

            netlink.delete_link(name, "veth")
        finally:
            unlock_and_remove(lock, fd)


def _sweep_removed(store: Store) -> None:
    """Generated files of containers whose catalog row is gone."""
    try:
        entries = os.listdir(store.paths.run_containers)
    except FileNotFoundError:
        return
    candidates = [e for e in entries if len(e) == 64 and os.path.isdir(os.path.join(store.paths.run_containers, e))]
    if not candidates:
        return
    known = store.containers.ids()
    for container_id in candidates:
        if container_id in known:
            continue
        directory = network_dir(store.paths, container_id)
        lock = store.paths.network_lock(container_id)
        fd = take_lock(lock, block=False)
        if fd is None:
            continue
        try:
            etcfiles.remove_files(directory)
        finally:
            unlock_and_remove(lock, fd)


def networks(store: Store) -> NetworkStore:
    """The catalog's networks and leases."""
    return store.networks
