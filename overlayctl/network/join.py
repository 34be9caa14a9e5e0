"""Joining and leaving networks: `network connect` and `network disconnect`.

A container's networks are its model's `endpoints()`; these verbs change
them. On a stopped container only the stored configuration changes (the
next start uses it). On a running one the change is made at once as well:

- connect leases an address (claimed host-wide for the container's
  network.lock, which its supervisor holds: the lease lives and dies with
  the supervisor, as a start's do), plugs a veth pair with eth<N> into the
  container's network namespace, and adds a line to its /etc/hosts;
- disconnect deletes that pair (the interface goes from inside), frees the
  lease and its claim, and drops the line.

Either is all or nothing: a failure undoes what was made, and the stored
configuration changes last.
"""

from __future__ import annotations

import os

from overlayctl.errors import ConflictError, InvalidArgumentError, OverlayctlError
from overlayctl.network import attach, etcfiles, leases, manage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.container.model import EndpointConfig
    from overlayctl.store import Store
    from overlayctl.store.containers import Container
    from overlayctl.store.networks import Network

# Docker's wording (its runconfig errors).
HOST_NETWORK_CONFLICT = "container cannot be disconnected from host network or connected to host network"
NONE_NETWORK_CONFLICT = (
    "container cannot be connected to multiple networks with one of the networks in private (none) mode"
)


def connect(store: Store, network_text: str, container_text: str, ip: str | None, aliases: list[str]) -> None:
    """`network connect [--ip IP] [--alias NAME]... NETWORK CONTAINER`."""
    container = store.containers.get(container_text)
    network = _bridge(store, network_text)
    mode = manage.network_mode(container)
    if mode == "host":
        raise InvalidArgumentError(HOST_NETWORK_CONFLICT)
    if mode == "none":
        raise InvalidArgumentError(NONE_NETWORK_CONFLICT)
    endpoint = attach.endpoint_request(ip, aliases, None)
    attach.check_endpoint(store, network.name, endpoint)
    endpoints = _endpoints(container)
    if network.name in endpoints:
        raise ConflictError(f"endpoint with name {container.name} already exists in network {network.name}")
    if len(endpoints) >= attach.MAX_INTERFACES:
        raise InvalidArgumentError(f"a container can be on at most {attach.MAX_INTERFACES} networks")
    pid = _running_pid(store, container)
    if pid:
        _plug(store, container, network, endpoint, pid)
    endpoints[network.name] = endpoint
    try:
        _record(store, container, endpoints)
    except BaseException:
        if pid:
            _unplug(store, container, network)
        raise
    if pid:
        leases.leases_changed(store)
        attach.start_names(store, network)  # its first container may be this one


def disconnect(store: Store, network_text: str, container_text: str, force: bool = False) -> None:
    """`network disconnect [-f] NETWORK CONTAINER`. With -f, a network that
    no longer exists is still taken out of the container's configuration."""
    container = store.containers.get(container_text)
    if network_text == "host" or manage.network_mode(container) == "host":
        raise InvalidArgumentError(HOST_NETWORK_CONFLICT)
    endpoints = _endpoints(container)
    try:
        network: Network | None = _bridge(store, network_text)
    except OverlayctlError:
        if not (force and network_text in endpoints):
            raise
        network = None
    name = network.name if network is not None else network_text
    if name not in endpoints:
        raise InvalidArgumentError(f"container {container.name} is not connected to network {name}")
    pid = _running_pid(store, container)
    if pid and network is not None:
        _unplug(store, container, network)
    del endpoints[name]
    _record(store, container, endpoints)
    if pid:
        leases.leases_changed(store)


def _bridge(store: Store, text: str) -> Network:
    """The bridge network `text` names (name, ID or ID prefix)."""
    if text in ("host", "none"):
        raise InvalidArgumentError(HOST_NETWORK_CONFLICT if text == "host" else NONE_NETWORK_CONFLICT)
    network = manage.resolve(store, text)
    assert network is not None
    return network


def _endpoints(container: Container) -> dict[str, EndpointConfig]:
    """The container's networks by their names ("default" read as the default bridge)."""
    return {
        (manage.DEFAULT_NETWORK if name == "default" else name): endpoint
        for name, endpoint in container.config.endpoints().items()
    }


def _record(store: Store, container: Container, endpoints: dict[str, EndpointConfig]) -> None:
    container.config.set_endpoints(endpoints)
    store.containers.update_config(container.id, container.config)


def _running_pid(store: Store, container: Container) -> int:
    """PID 1 of the container while its supervisor holds its leases; 0 when
    it does not run (then only the stored configuration changes)."""
    from overlayctl.store.containers import RUNNING

    if container.status != RUNNING or not container.pid:
        return 0
    leases.release_stale(store)
    if not leases.lock_held(store.paths.network_lock(container.id)):
        return 0  # its supervisor is gone: reconcile records the end
    return container.pid


def _plug(store: Store, container: Container, network: Network, endpoint: EndpointConfig, pid: int) -> None:
    """Lease, claim, veth pair and /etc/hosts line for a running container."""
    from overlayctl.network import netlink

    lock = store.paths.network_lock(container.id)
    lease = attach.lease_on(store, network, container.id, endpoint, lock)
    slot = _free_slot(container.id)
    made = False
    try:
        with netlink.Rtnl() as rtnl:
            made = True
            netlink.plug(rtnl, pid, attach.Attachment(network, lease, slot).plug_request(container.id))
        hostname = container.config.config.hostname or container.id[:12]
        for address in attach.Attachment(network, lease, slot).addresses():
            etcfiles.edit_hosts(
                leases.network_dir(store.paths, container.id),
                add=etcfiles.hosts_line(address, hostname, [container.name]),
            )
    except BaseException:
        if made:
            netlink.delete_link(attach.veth_name(container.id, slot), "veth")
        leases.unclaim(leases.claim_path(network.bridge, lease.address), lock)
        leases.networks(store).release(container.id, network.name)
        raise


def _unplug(store: Store, container: Container, network: Network) -> None:
    """Undo _plug (or a start's attachment to `network`)."""
    from overlayctl.network import netlink

    slot = _slot_on(container.id, network.bridge)
    if slot is not None:
        netlink.delete_link(attach.veth_name(container.id, slot), "veth")
    lock = store.paths.network_lock(container.id)
    for lease in leases.networks(store).release(container.id, network.name):
        leases.unclaim(leases.claim_path(network.bridge, lease.address), lock)
        for address in attach.Attachment(network, lease, slot or 0).addresses():
            etcfiles.edit_hosts(leases.network_dir(store.paths, container.id), drop_address=address)


def _free_slot(container_id: str) -> int:
    """The lowest eth<N> the container does not use (its veth's host end is absent)."""
    from overlayctl.runtime.netdev import link_exists

    for slot in range(attach.MAX_INTERFACES):
        if not link_exists(attach.veth_name(container_id, slot)):
            return slot
    raise InvalidArgumentError(f"a container can be on at most {attach.MAX_INTERFACES} networks")


def _slot_on(container_id: str, bridge: str) -> int | None:
    """Which eth<N> of the container is on `bridge` (its host end's master)."""
    for slot in range(attach.MAX_INTERFACES):
        try:
            master = os.readlink(f"/sys/class/net/{attach.veth_name(container_id, slot)}/master")
        except OSError:
            continue
        if os.path.basename(master) == bridge:
            return slot
    return None
