"""Leases held by a lock: a container's lease lives as long as its
supervisor holds <runroot>/containers/<id>/network.lock, and each leased
address is claimed host-wide by a flock'd file under CLAIM_DIR (see
network.attach). `release_stale` frees what nobody holds any more.
"""

from __future__ import annotations

import os

from overlayctl.network import etcfiles
from overlayctl.network.lockfile import take_lock, unlock_and_remove  # noqa: F401 - used here and through here
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


def release_stale(store: Store) -> None:
    """Free the leases nobody holds any more (their supervisor is gone, e.g.
    SIGKILLed), delete veth ends whose container is not running, and the
    generated files of containers that no longer exist. Cheap when there
    is nothing to do: a query, a directory listing or two."""
    nets = networks(store)
    freed = False
    for container_id in sorted({lease.container for lease in nets.leases()}):
        directory = network_dir(store.paths, container_id)
        lock = store.paths.network_lock(container_id)
        fd = take_lock(lock, block=False)
        if fd is None:
            continue  # its supervisor is alive: the lease is held
        try:
            for lease in nets.leases(container_id=container_id):
                _remove_stale_claim(lease_claim_path(store, lease))
            freed = True
            nets.release(container_id)
            etcfiles.remove_files(directory)
        finally:
            unlock_and_remove(lock, fd)
    _sweep_veths(store)
    _sweep_removed(store)
    if freed:
        leases_changed(store, set())


def leases_changed(store: Store, network_names: set[str]) -> None:
    """Every place that frees leases ends here, once the catalog has it (a
    release, a sweep of stale leases, a network removed): a DNS responder
    whose network has no lease left goes now (network.dns). One listdir
    when no responder runs. (`network_names`: the networks changed, where
    known; every responder is looked at anyway.)"""
    from overlayctl.network import dns

    dns.leases_changed(store)


def _remove_stale_claim(path: str) -> None:
    """A claim file its holder left behind; one that is held (the address
    was taken over by another store meanwhile) stays."""
    fd = take_lock(path, block=False)
    if fd is not None:
        unlock_and_remove(path, fd)


def _sweep_veths(store: Store) -> None:
    """Host veth ends named after a container of this store whose lease
    nobody holds: its namespace outlived it, or the kernel is still tearing
    it down."""
    try:
        names = [n for n in os.listdir("/sys/class/net") if len(n) == 15 and n.startswith("veth")]
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
