"""Leases held by a lock: a container's lease lives as long as its
supervisor holds <runroot>/containers/<id>/network.lock, and each leased
address is claimed host-wide by a flock'd file under CLAIM_DIR (see
network.attach). `release_stale` frees what nobody holds any more.
"""

from __future__ import annotations

import os

from overlayctl.network import etcfiles
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


def take_lock(path: str, block: bool) -> int | None:
    """Take a lock file (a container's network.lock, an address's claim);
    None if another process holds it and `block` is false. The last holder
    unlinks the file, so a lock taken on a file that is no longer there is
    dropped and taken again."""
    import fcntl

    directory = os.path.dirname(path)
    while True:
        os.makedirs(directory, 0o755, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the directory went between makedirs and open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def unlock_and_remove(path: str, fd: int) -> None:
    """Let go of a lock file taken by `take_lock`, and of its directory if that
    is now empty."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.close(fd)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


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
        try:
            if container_id in publishers:
                from overlayctl.network import ports

                ports.release(store, container_id)  # before the lease: its address names the DNAT
            for lease in nets.leases(container_id=container_id):
                _remove_stale_claim(lease_claim_path(store, lease))
            nets.release(container_id)
            etcfiles.remove_files(directory)
        finally:
            unlock_and_remove(lock, fd)
    _sweep_veths(store)
    _sweep_removed(store)


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
