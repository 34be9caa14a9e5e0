"""Attach a container to its networks: what container start and removal call.

    plan = prepare(store, container, hostname)          # before the start
    spec.mounts += plan.mounts                          # /etc/hosts, hostname, resolv.conf
    supervisor.run(spec, on_namespaces=plan.on_namespaces)   # veths, addresses, route
    plan.release()                                      # after the container ended

A container is on every network of its model's `endpoints()`: the first
gets eth0 and the default route, the others eth1, eth2, ... (`network
connect` adds one to a running container: network.join).

`prepare` must run in the process that will supervise the container: its
leases are held by that process through a lock file
(<runroot>/containers/<id>/network.lock, flock'd for as long as the
supervisor lives). When the supervisor dies in any way, SIGKILL included,
the kernel drops the lock (and, with the container's network namespace,
the veth pairs); `release_stale` then frees every lease whose lock nobody
holds. No process, pid or namespace file has to be trusted or cleaned.

A bridge is the host's, not one store's: two --root's may share the default
bridge's device and subnet. So each leased address is also claimed
host-wide, by a file /run/overlayctl-ipam/<bridge>/<address> naming the
network.lock of the container that has it; an address whose claim names a
lock someone holds is skipped, any other claim is stale and taken over. The
MAC derives from the address (ipam.mac_for) unless --mac-address gives one.

This module imports no pyroute2: only `on_namespaces` (and the removal of a
left-over device) does, for bridge networks.
"""

from __future__ import annotations

import os

from overlayctl.container.model import Endpoint, EndpointConfig, IPAMConfig
from overlayctl.errors import ConflictError, InvalidArgumentError
from overlayctl.network import etcfiles, ipam, leases, manage
from overlayctl.runtime.spec import Mount
from overlayctl.store.networks import Lease, Network, PublishedPort

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.store import Store
    from overlayctl.store.containers import Container

# The character after "vet" in the host end of each interface's veth pair:
# "h" for eth0 (veth<id>, as before several networks), then one per ethN.
_SLOT_CHARS = "h123456789abcdefgijklmnopqrstuvwxyz"
MAX_INTERFACES = len(_SLOT_CHARS)
ALIAS_ON_DEFAULT_BRIDGE = "network-scoped alias is supported only for containers in user defined networks"


def veth_name(container_id: str, slot: int = 0) -> str:
    """The host end of the veth pair of a container's eth<slot> (15
    characters, the kernel's limit): veth<id> for eth0, vet1<id>, ... after."""
    return "vet" + _SLOT_CHARS[slot] + container_id[:11]


class Attachment:
    """A container on one bridge network: the network, its lease there,
    and the interface inside (eth<slot>)."""

    __slots__ = ("network", "lease", "slot")

    def __init__(self, network: Network, lease: Lease, slot: int) -> None:
        self.network = network
        self.lease = lease
        self.slot = slot

    def __repr__(self) -> str:
        return f"Attachment(eth{self.slot}: {self.network.name} {self.lease.address})"

    def addresses(self) -> list[str]:
        """The container's addresses here: IPv4, and IPv6 on an --ipv6 network."""
        lease, network = self.lease, self.network
        if not network.subnet6:
            return [lease.address]
        return [lease.address, ipam.address6(network.subnet6, network.subnet, lease.address)]

    def plug_request(self, container_id: str) -> dict[str, Any]:
        """What netlink.plug needs to make the bridge if needed and give the
        container its interface on it (the default route only through
        eth0): plain data, so that a plugger process can carry it out."""
        import ipaddress

        network, lease = self.network, self.lease
        subnet = ipaddress.IPv4Network(network.subnet)
        ipv6 = None
        if network.subnet6:
            prefix6 = int(network.subnet6.partition("/")[2])
            address6 = ipam.address6(network.subnet6, network.subnet, lease.address)
            ipv6 = [address6, prefix6, network.gateway6 if self.slot == 0 else None]
        return {
            "bridge": network.bridge,
            "bridge_gateway": network.gateway,
            "prefixlen": subnet.prefixlen,
            "broadcast": str(subnet.broadcast_address),
            "bridge_mac": ipam.bridge_mac(network.id),
            "internal": bool(network.options.get("internal")),
            "bridge6": [network.gateway6, int(network.subnet6.partition("/")[2])] if network.subnet6 else None,
            "veth": veth_name(container_id, self.slot),
            "address": lease.address,
            "gateway": network.gateway if self.slot == 0 else None,
            "mac": lease.mac,
            "interface": f"eth{self.slot}",
            "ipv6": ipv6,
        }


class NetworkPlan:
    """One container's networks for one start: mounts, host-side set-up, release."""

    def __init__(
        self,
        store: Store,
        container_id: str,
        mode: str,
        attachments: list[Attachment],
        directory: str,
        mounts: list[Mount],
        settings: Endpoint | None,
        lock_fd: int | None,
    ) -> None:
        self.store = store
        self.container_id = container_id
        self.mode = mode  # "host", "none" or the primary network's name
        self.attachments = attachments
        self.directory = directory
        self.mounts = mounts
        self.settings = settings
        self._lock_fd = lock_fd
        self._released = False
        self.ports: list[PublishedPort] = []  # published at prepare (network.ports)

    def __repr__(self) -> str:
        return f"NetworkPlan({self.mode}, {self.attachments}, mounts={self.mounts})"

    @property
    def lease(self) -> Lease | None:
        """The lease of eth0's network, if the container has one."""
        return self.attachments[0].lease if self.attachments else None

    def on_namespaces(self, pid: int) -> None:
        """In the supervisor, once PID 1 has its own network namespace: for
        each network the bridge (made on first use), the veth pair with
        eth<N> inside, its address; the default route via eth0's gateway."""
        if not self.attachments:
            return
        from overlayctl.network import plugger

        rules: list[list[Any]] = []
        if self.ports:
            from overlayctl.network import ports

            rules = ports.dnat_rules(self.ports, self.attachments[0].lease.address)
        plugger.plug(pid, [a.plug_request(self.container_id) for a in self.attachments], rules)
        for attachment in self.attachments:
            start_names(self.store, attachment.network)
        if self.settings is not None:
            self.settings.sandbox_key = f"/proc/{pid}/ns/net"
        if self.ports:
            from overlayctl.network import ports

            primary = self.attachments[0]
            ports.on_bridge(primary.network.bridge, veth_name(self.container_id, primary.slot))

    def release(self) -> None:
        """Free the leases and delete the generated files. Idempotent.

        The veth pairs are not deleted here: once PID 1 has been reaped its
        network namespace is gone, and the kernel deletes the pairs with it
        (a few milliseconds later, off this process's clock; deleting them
        ourselves would cost every run 10-20 ms of synchronize_net). A pair
        that outlives its container (something else kept the namespace
        open) is deleted by release_stale."""
        if self._released:
            return
        self._released = True
        lock = self.store.paths.network_lock(self.container_id)
        freed: list[Lease] = []
        try:
            if self._lock_fd is not None:
                _release_ports(self.store, self.container_id)
                held = leases.networks(self.store).leases(container_id=self.container_id)
                for lease in held:
                    leases.unclaim(leases.lease_claim_path(self.store, lease), lock)
                freed = leases.networks(self.store).release(self.container_id)
            etcfiles.remove_files(self.directory)
        finally:
            if self._lock_fd is not None:
                leases.unlock_and_remove(lock, self._lock_fd)
                self._lock_fd = None
        if freed:
            leases.leases_changed(self.store)


def _release_ports(store: Store, container_id: str) -> None:
    """Unpublish the container's ports, if it published any (one query
    when it did not; the ports module is imported only when it did)."""
    if store.ports.list(container_id):
        from overlayctl.network import ports

        ports.release(store, container_id)


def start_names(store: Store, network: Network) -> None:
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


def check_endpoint(store: Store, network: str, endpoint: EndpointConfig) -> Network | None:
    """`check`, and aliases (user-defined networks only, as Docker) and a
    MAC address well formed. The bridge network, None for host and none."""
    mode, bridge = _resolve_request(store, network, endpoint.ip)
    if endpoint.aliases and (bridge is None or bridge.name == manage.DEFAULT_NETWORK):
        raise InvalidArgumentError(ALIAS_ON_DEFAULT_BRIDGE)
    if endpoint.mac_address:
        if mode in ("host", "none"):
            raise InvalidArgumentError(f"conflicting options: --mac-address cannot be used with --network {mode}")
        endpoint.mac_address = parse_mac(endpoint.mac_address)
    return bridge


def parse_mac(text: str) -> str:
    """A unicast MAC address in the kernel's spelling; Docker's wording otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
        raise InvalidArgumentError(f"{text} is not a valid mac address")
    if int(parts[0], 16) & 1:
        raise InvalidArgumentError(f"{text} is not a valid mac address: it is a multicast address")
    return ":".join(parts).lower()


def endpoint_request(ip: str | None, aliases: list[str] | None, mac: str | None) -> EndpointConfig:
    """What a container asks for on one network (--ip, aliases, --mac-address)."""
    return EndpointConfig(IPAMConfig(ip) if ip else None, list(aliases) if aliases else None, mac or "")


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


def prepare(
    store: Store, container: Container, hostname: str, endpoints: dict[str, EndpointConfig] | None = None
) -> NetworkPlan:
    """Everything before the start: resolve the networks (`endpoints`, by
    default every network the container is connected to), lease an address
    on each (the one asked for, if any), write /etc/hosts, /etc/hostname
    and /etc/resolv.conf.

    Raises NotFoundError for an unknown network, InvalidArgumentError for an
    address outside the subnet or an option that does not fit the mode,
    ConflictError for an address in use; then nothing is changed."""
    wanted = container.config.endpoints() if endpoints is None else endpoints
    mode = manage.network_mode(container)
    checked = [(check_endpoint(store, name, ep), ep) for name, ep in wanted.items()]
    bridges = [(bridge, ep) for bridge, ep in checked if bridge is not None]
    if len(bridges) > MAX_INTERFACES:
        raise InvalidArgumentError(f"a container can be on at most {MAX_INTERFACES} networks")
    if bridges:
        # Loaded here, before the fork, rather than by PID 1 (which uses
        # its ipv6_off) on the start's critical path; the supervisor needs
        # it anyway. Its own import of pyroute2 stays lazy.
        from overlayctl.network import netlink  # noqa: F401
    directory = leases.network_dir(store.paths, container.id)
    lock = store.paths.network_lock(container.id)
    # Held even on no bridge network (all disconnected): a later `network
    # connect` leases for the holder of this lock.
    lock_fd = leases.take_lock(lock, block=True) if mode not in ("host", "none") else None
    attachments: list[Attachment] = []
    published: list[PublishedPort] = []
    try:
        for slot, (bridge, ep) in enumerate(bridges):
            attachments.append(Attachment(bridge, lease_on(store, bridge, container.id, ep, lock), slot))
        # As Docker: ports are published on the primary network (eth0), and
        # nothing from an --internal network, which has no way in or out.
        hc = container.config.host
        primary = attachments[0] if attachments else None
        if (hc.port_bindings or hc.publish_all_ports) and primary is not None:
            if not primary.network.options.get("internal"):
                from overlayctl.network import ports

                published = ports.publish(store, container, primary.lease.address)
        addresses = [address for a in attachments for address in a.addresses()]
        contents = _etc_contents(mode, primary.network if primary else None, addresses, hostname, container)
        etcfiles.write_files(directory, contents)
        mounts = [Mount("bind", os.path.join(directory, name), "/etc/" + name) for name in etcfiles.FILES]
        first = attachments[0] if attachments else None
        primary_ip = wanted[first.network.name].ip if first is not None else None
        settings = _settings(
            first.network.name if first else mode,
            first.network if first else None,
            first.lease if first else None,
            container.id,
            running_pid=0,
            fixed_ip=primary_ip,
        )
    except BaseException:
        if published:
            _release_ports(store, container.id)
        for attachment in attachments:
            leases.unclaim(leases.claim_path(attachment.network.bridge, attachment.lease.address), lock)
            leases.networks(store).release(container.id, attachment.network.name)
        etcfiles.remove_files(directory)
        if lock_fd is not None:
            leases.unlock_and_remove(lock, lock_fd)
        raise
    if attachments:
        leases.leases_changed(store)
    plan = NetworkPlan(store, container.id, mode, attachments, directory, mounts, settings, lock_fd)
    plan.ports = published
    return plan


def lease_on(store: Store, bridge: Network, container_id: str, endpoint: EndpointConfig, lock: str) -> Lease:
    """Lease an address on one network for a container whose network.lock
    (`lock`) is held, with its host-wide claim, its MAC and its aliases."""
    claimed: list[str] = []
    try:
        return leases.networks(store).lease(
            bridge,
            container_id,
            lambda taken: _choose_and_claim(bridge, taken, endpoint.ip, lock, claimed),
            lambda address: endpoint.mac_address or ipam.mac_for(address),
            aliases=endpoint.aliases,
        )
    except BaseException:
        for path in claimed:
            leases.unclaim(path, lock)
        raise


def _choose_and_claim(bridge: Network, taken: set[str], wanted: str | None, lock: str, claimed: list[str]) -> str:
    """The address to lease: free in this store's catalog (`taken`) and
    claimed here host-wide for the holder of `lock`; its claim's path is
    appended to `claimed`. An address another store holds on the same
    bridge device is skipped (refused if it was asked for with --ip)."""
    for earlier in claimed:
        leases.unclaim(earlier, lock)  # an earlier try of this lease
    claimed.clear()
    taken = set(taken)
    while True:
        address = ipam.choose_address(bridge.subnet, bridge.gateway, taken, wanted, bridge.name)
        path = leases.claim_path(bridge.bridge, address)
        if leases.claim(path, lock):
            claimed.append(path)
            return address
        if wanted:
            raise ConflictError(
                f'IP address {address} is already in use on network "{bridge.name}" '
                f"(bridge {bridge.bridge}, by another overlayctl store); choose another"
            )
        taken.add(address)


def _etc_contents(
    mode: str, bridge: Network | None, addresses: list[str], hostname: str, container: Container
) -> dict[str, str]:
    """/etc/hosts, hostname and resolv.conf of a container whose primary
    network (eth0's) is `bridge` and whose addresses are `addresses`."""
    from overlayctl.network import resolvopts

    hc = container.config.host
    extra = resolvopts.host_lines(hc.extra_hosts or [], _host_gateway(bridge)) if hc.extra_hosts else []
    if mode == "host":
        # The host's own files: its loopback resolver is reachable from here.
        hosts = _read_or("/etc/hosts", etcfiles.HOSTS_PREAMBLE)
        return {
            "hosts": hosts + etcfiles.extra_lines(extra),
            "hostname": etcfiles.hostname_content(hostname),
            "resolv.conf": resolvopts.resolv_conf(etcfiles.host_resolv_conf(), hc.dns, hc.dns_search, hc.dns_options),
        }
    responder = bridge.gateway if bridge is not None and has_names(bridge) else None
    if responder is not None or hc.dns:
        base = etcfiles.host_resolv_conf()  # only its search and options lines are kept
    else:
        base = etcfiles.resolv_content(etcfiles.host_resolv_conf())
    return {
        "hosts": etcfiles.hosts_content(addresses, hostname, [container.name], extra),
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
    """`NetworkSettings` of `inspect CONTAINER`: one entry per network the
    container is connected to, with addresses while it runs (empty values
    otherwise, and for host and none)."""
    from overlayctl.store.containers import RUNNING

    nets = leases.networks(store)
    running = container.status == RUNNING
    pid = container.pid if running else 0
    held = {lease.network: lease for lease in nets.leases(container_id=container.id)} if running else {}
    entries = []
    for name, endpoint in container.config.endpoints().items():
        name = manage.DEFAULT_NETWORK if name == "default" else name
        network = nets.find(name) if name not in ("host", "none") else None
        lease = held.get(network.name) if network is not None else None
        entries.append(_settings(name, network, lease, container.id, pid, endpoint.ip, endpoint.aliases))
    if not entries:
        return Endpoint("", sandbox_key=f"/proc/{pid}/ns/net" if pid else "")
    entries[0].others = entries[1:]
    if running and (container.config.config.exposed_ports or store.ports.list(container.id)):
        from overlayctl.network import ports

        entries[0].ports = ports.network_settings_ports(store, container)
    return entries[0]


def _settings(
    mode: str,
    network: Network | None,
    lease: Lease | None,
    container_id: str,
    running_pid: int,
    fixed_ip: str | None,
    aliases: list[str] | None = None,
) -> Endpoint:
    name = network.name if network is not None else mode
    network_id = network.id if network is not None else (manage.predefined_id(mode) if mode in ("host", "none") else "")
    leased = network is not None and lease is not None
    address6 = ""
    if network is not None and lease is not None and network.subnet6:
        address6 = ipam.address6(network.subnet6, network.subnet, lease.address)
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
        aliases=aliases,
        ipv6_address=address6,
        ipv6_prefix_len=int(network.subnet6.partition("/")[2]) if address6 else 0,  # type: ignore[union-attr]
        ipv6_gateway=network.gateway6 if address6 else "",  # type: ignore[union-attr]
    )


def network_entries(store: Store, containers: list[Container]) -> dict[str, dict[str, Any]]:
    """NetworkSettings.Networks of many containers at once, by container ID,
    as the Engine API's container list shows them: one read of the
    networks and one of the leases for all of them (settings_for, per
    container, is inspect's)."""
    from overlayctl.store.containers import RUNNING

    nets = leases.networks(store)
    by_name = {network.name: network for network in nets.list()}
    held: dict[tuple[str, str], Lease] = {}
    if any(c.status == RUNNING for c in containers):
        held = {(lease.container, lease.network): lease for lease in nets.leases()}
    out = {}
    for container in containers:
        running = container.status == RUNNING
        pid = container.pid if running else 0
        entries = {}
        for name, endpoint in container.config.endpoints().items():
            name = manage.DEFAULT_NETWORK if name == "default" else name
            network = by_name.get(name) if name not in ("host", "none") else None
            lease = held.get((container.id, network.name)) if network is not None and running else None
            entry = _settings(name, network, lease, container.id, pid, endpoint.ip, endpoint.aliases)
            entries[entry.network] = entry.entry_json()
        out[container.id] = entries
    return out
