"""Attach a container to its network: what container start and removal call.

    plan = prepare(store, container, network, ip, hostname)   # before the start
    spec.mounts += plan.mounts                                 # /etc/hosts, hostname, resolv.conf
    supervisor.run(spec, on_namespaces=plan.on_namespaces)     # veth, address, route
    plan.release()                                             # after the container ended

`prepare` must run in the process that will supervise the container: the
lease is held by that process through a lock file
(<runroot>/containers/<id>/network.lock, flock'd for as long as the
supervisor lives). When the supervisor dies in any way, SIGKILL included,
the kernel drops the lock (and, with the container's network namespace,
the veth pair); `release_stale` then frees every lease whose lock nobody
holds. No process, pid or namespace file has to be trusted or cleaned.

A bridge is the host's, not one store's: two --root's may share the default
bridge's device and subnet. So each leased address is also claimed
host-wide, by a flock'd file /run/overlayctl-ipam/<bridge>/<address> that
the same supervisor holds; an address whose claim another process holds is
skipped, a claim file nobody holds is stale and taken over. The MAC derives
from the address (ipam.mac_for), so it is unique with it.

This module imports no pyroute2: only `on_namespaces` (and the removal of a
left-over device) does, for bridge networks.
"""

from __future__ import annotations

import os

from overlayctl.container.model import Endpoint
from overlayctl.errors import ConflictError, InvalidArgumentError
from overlayctl.network import etcfiles, ipam, leases, manage
from overlayctl.runtime.spec import Mount
from overlayctl.store.networks import Lease, Network

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.containers import Container


def veth_name(container_id: str) -> str:
    """The host end of a container's veth pair (15 characters, the kernel's limit)."""
    return "veth" + container_id[:11]


class NetworkPlan:
    """One container's network for one start: mounts, host-side set-up, release."""

    def __init__(
        self,
        store: Store,
        container_id: str,
        mode: str,
        network: Network | None,
        lease: Lease | None,
        directory: str,
        mounts: list[Mount],
        settings: Endpoint,
        lock_fd: int | None,
        claim_fd: int | None = None,
    ) -> None:
        self.store = store
        self.container_id = container_id
        self.mode = mode  # "host", "none" or the network's name
        self.network = network  # None for host and none
        self.lease = lease
        self.directory = directory
        self.mounts = mounts
        self.settings = settings
        self._lock_fd = lock_fd
        self._claim_fd = claim_fd  # the host-wide claim of the lease's address
        self._released = False

    def __repr__(self) -> str:
        where = self.lease.address if self.lease is not None else "-"
        return f"NetworkPlan({self.mode}, {where}, mounts={self.mounts})"

    def on_namespaces(self, pid: int) -> None:
        """In the supervisor, once PID 1 has its own network namespace: the
        bridge (made on first use), the veth pair with eth0 inside, its
        address and the default route."""
        if self.network is None or self.lease is None:
            return
        import ipaddress

        from overlayctl.network import netlink

        network, lease = self.network, self.lease
        subnet = ipaddress.IPv4Network(network.subnet)
        broadcast = str(subnet.broadcast_address)
        with netlink.Rtnl() as rtnl:
            bridge = netlink.ensure_bridge(
                rtnl, network.bridge, network.gateway, subnet.prefixlen, broadcast, ipam.bridge_mac(network.id)
            )
            netlink.attach_container(
                rtnl,
                pid,
                bridge,
                veth_name(self.container_id),
                lease.address,
                subnet.prefixlen,
                broadcast,
                network.gateway,
                lease.mac,
            )
        self.settings.sandbox_key = f"/proc/{pid}/ns/net"
        _start_names(self.store, network)

    def release(self) -> None:
        """Free the lease and delete the generated files. Idempotent.

        The veth pair is not deleted here: once PID 1 has been reaped its
        network namespace is gone, and the kernel deletes the pair with it
        (a few milliseconds later, off this process's clock; deleting it
        ourselves would cost every run 10-20 ms of synchronize_net). A pair
        that outlives its container (something else kept the namespace
        open) is deleted by release_stale."""
        if self._released:
            return
        self._released = True
        try:
            if self.lease is not None:
                leases.networks(self.store).release(self.container_id)
                leases.leases_changed(self.store, {self.lease.network})
            etcfiles.remove_files(self.directory)
        finally:
            if self._claim_fd is not None and self.lease is not None:
                leases.unlock_and_remove(leases.lease_claim_path(self.store, self.lease), self._claim_fd)
                self._claim_fd = None
            if self._lock_fd is not None:
                leases.unlock_and_remove(self.store.paths.network_lock(self.container_id), self._lock_fd)
                self._lock_fd = None


def _start_names(store: Store, network: Network) -> None:
    """The start path's DNS step, once the bridge exists: the network's
    responder, started by its first container (network.dns)."""
    from overlayctl.network import dns

    if has_names(network):
        dns.ensure_responder(store.paths, network)


def has_names(network: Network) -> bool:
    """Whether containers on `network` resolve each other by name: every
    user-defined network, not the default bridge (as in Docker)."""
    return network.name != manage.DEFAULT_NETWORK


def restart_names(store: Store) -> list[str]:
    """For `system reconcile`: start the responder of every user-defined
    network that has leases but none (it was killed); the networks' names."""
    from overlayctl.network import dns

    started = []
    for network in leases.networks(store).list():
        if has_names(network) and leases.networks(store).leases(network=network.name):
            if dns.responder_pid(store.paths, network.id) is None:
                dns.ensure_responder(store.paths, network)
                started.append(network.name)
    return started


def check(store: Store, network: str, ip: str | None) -> None:
    """What `create` can refuse before anything exists, as Docker does: an
    unknown network, --ip with host/none or on the default bridge, an
    address outside the subnet. (Whether it is free is known only at start.)"""
    _resolve_request(store, network, ip)


def _resolve_request(store: Store, network: str, ip: str | None) -> tuple[str, Network | None]:
    mode = manage.DEFAULT_NETWORK if network in ("", "default") else network
    if mode in ("host", "none") and ip:
        raise InvalidArgumentError(f"conflicting options: --ip cannot be used with --network {mode}")
    bridge = manage.resolve(store, mode)
    if bridge is not None and ip:
        if bridge.name == manage.DEFAULT_NETWORK:
            # As Docker: the default bridge hands out addresses itself.
            raise InvalidArgumentError(
                "a fixed IP address (--ip) is supported on user-defined networks only; "
                'create one with "overlayctl network create --subnet CIDR NAME"'
            )
        ipam.choose_address(bridge.subnet, bridge.gateway, set(), ip, bridge.name)
    return mode, bridge


def prepare(store: Store, container: Container, network: str, ip: str | None, hostname: str) -> NetworkPlan:
    """Everything before the start: resolve the network, lease an address
    (`ip` if given), write /etc/hosts, /etc/hostname and /etc/resolv.conf.

    Raises NotFoundError for an unknown network, InvalidArgumentError for an
    address outside the subnet or an option that does not fit the mode,
    ConflictError for an address in use; then nothing is changed."""
    mode, bridge = _resolve_request(store, network, ip)
    if bridge is not None:
        # Loaded here, before the fork, rather than by PID 1 (which uses
        # its ipv6_off) on the start's critical path; the supervisor needs
        # it anyway. Its own import of pyroute2 stays lazy.
        from overlayctl.network import netlink  # noqa: F401
    directory = leases.network_dir(store.paths, container.id)
    lock_fd = leases.take_lock(store.paths.network_lock(container.id), block=True) if bridge is not None else None
    lease = None
    claim: list[int] = []
    try:
        if bridge is not None:
            lease = leases.networks(store).lease(
                bridge, container.id, lambda taken: _choose_and_claim(bridge, taken, ip, claim), ipam.mac_for
            )
        etcfiles.write_files(directory, _etc_contents(mode, bridge, lease, hostname, container))
        mounts = [Mount("bind", os.path.join(directory, name), "/etc/" + name) for name in etcfiles.FILES]
        settings = _settings(mode, bridge, lease, container.id, running_pid=0, fixed_ip=ip)
    except BaseException:
        if lease is not None:
            leases.networks(store).release(container.id)
        etcfiles.remove_files(directory)
        for fd in claim:
            os.close(fd)  # the file stays: a claim nobody holds is taken over
        if lock_fd is not None:
            leases.unlock_and_remove(store.paths.network_lock(container.id), lock_fd)
        raise
    return NetworkPlan(
        store,
        container.id,
        bridge.name if bridge else mode,
        bridge,
        lease,
        directory,
        mounts,
        settings,
        lock_fd,
        claim[0] if claim else None,
    )


def _choose_and_claim(bridge: Network, taken: set[str], wanted: str | None, claim: list[int]) -> str:
    """The address to lease: free in this store's catalog (`taken`) and
    claimed here host-wide; its claim's descriptor is appended to `claim`.
    An address another store holds on the same bridge device is skipped
    (refused if it was asked for with --ip)."""
    for earlier in claim:
        os.close(earlier)  # an earlier try of this lease
    claim.clear()
    taken = set(taken)
    while True:
        address = ipam.choose_address(bridge.subnet, bridge.gateway, taken, wanted, bridge.name)
        held = leases.take_lock(leases.claim_path(bridge.bridge, address), block=False)
        if held is not None:
            claim.append(held)
            return address
        if wanted:
            raise ConflictError(
                f'IP address {address} is already in use on network "{bridge.name}" '
                f"(bridge {bridge.bridge}, by another overlayctl store); choose another"
            )
        taken.add(address)


def _etc_contents(
    mode: str, bridge: Network | None, lease: Lease | None, hostname: str, container: Container
) -> dict[str, str]:
    from overlayctl.network import resolvopts

    hc = container.config.host
    extra = resolvopts.host_lines(hc.extra_hosts or [], _host_gateway(bridge)) if hc.extra_hosts else []
    if mode == "host":
        # The host's own files: its loopback resolver is reachable from here.
        hosts = _read_or("/etc/hosts", etcfiles.HOSTS_PREAMBLE)
        return {
            "hosts": hosts + "".join(f"{ip}\t{name}\n" for ip, name in extra),
            "hostname": etcfiles.hostname_content(hostname),
            "resolv.conf": resolvopts.resolv_conf(etcfiles.host_resolv_conf(), hc.dns, hc.dns_search, hc.dns_options),
        }
    responder = bridge.gateway if bridge is not None and has_names(bridge) else None
    if responder is not None or hc.dns:
        base = etcfiles.host_resolv_conf()  # only its search and options lines are kept
    else:
        base = etcfiles.resolv_content(etcfiles.host_resolv_conf())
    return {
        "hosts": etcfiles.hosts_content(lease.address if lease else "", hostname, [container.name], extra),
        "hostname": etcfiles.hostname_content(hostname),
        "resolv.conf": resolvopts.resolv_conf(base, hc.dns, hc.dns_search, hc.dns_options, responder),
    }


def _host_gateway(bridge: Network | None) -> str:
    """What --add-host NAME:host-gateway means: the host's address on the
    container's own bridge; with host or none, the default bridge's gateway
    (Docker's rule: the default bridge's address, whatever the network)."""
    if bridge is not None:
        return bridge.gateway
    from overlayctl.network.ipam import gateway_for, parse_subnet

    return str(gateway_for(parse_subnet(manage.default_settings()[1]), None))


def _read_or(path: str, default: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


# -- NetworkSettings -----------------------------------------------------------


def settings_for(store: Store, container: Container) -> Endpoint:
    """`NetworkSettings` of `inspect CONTAINER`: addresses while it runs,
    empty values otherwise (and for host and none)."""
    from overlayctl.store.containers import RUNNING

    mode = manage.network_mode(container)
    running = container.status == RUNNING
    network = None
    lease = None
    if mode not in ("host", "none"):
        network = leases.networks(store).find(mode)
        if network is not None and running:
            held = leases.networks(store).leases(network=network.name, container_id=container.id)
            lease = held[0] if held else None
    fixed_ip = container.config.host.ip_address or None
    return _settings(mode, network, lease, container.id, container.pid if running else 0, fixed_ip)


def _settings(
    mode: str,
    network: Network | None,
    lease: Lease | None,
    container_id: str,
    running_pid: int,
    fixed_ip: str | None,
) -> Endpoint:
    name = network.name if network is not None else mode
    network_id = network.id if network is not None else (manage.predefined_id(mode) if mode in ("host", "none") else "")
    leased = network is not None and lease is not None
    return Endpoint(
        name,
        network_id=network_id,
        endpoint_id=manage.endpoint_id(network_id, container_id) if lease is not None or running_pid else "",
        ip_address=lease.address if lease is not None else "",
        prefix_len=network.prefixlen if leased else 0,  # type: ignore[union-attr]
        gateway=network.gateway if leased else "",  # type: ignore[union-attr]
        mac_address=lease.mac if lease is not None else "",
        fixed_ip=fixed_ip,
        sandbox_key=f"/proc/{running_pid}/ns/net" if running_pid and mode != "host" else "",
    )
