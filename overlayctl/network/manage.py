"""Networks as a user manages them: the default bridge, `network create`,
`rm`, `ls` and `inspect`. The CLI prints what these return.

Three networks are predefined, as in Docker: "bridge" (the default one; its
device and subnet come from OVERLAYCTL_BRIDGE_NAME and
OVERLAYCTL_BRIDGE_SUBNET and it is recorded in the catalog on first use),
"host" and "none" (no device, no catalog row).
"""

from __future__ import annotations

import os

from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.network import ipam
from overlayctl.network.leases import networks
from overlayctl.store.networks import Network
from overlayctl.util.humanize import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.store import Store
    from overlayctl.store.containers import Container

DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE_DEVICE = "octl0"
PREDEFINED = ("bridge", "host", "none")
_RESERVED = PREDEFINED + ("default",)
_DRIVER_OF = {"host": "host", "none": "null"}
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def default_settings() -> tuple[str, str]:
    """(device, subnet) of the default bridge as the environment sets them."""
    device = os.environ.get("OVERLAYCTL_BRIDGE_NAME") or DEFAULT_BRIDGE_DEVICE
    subnet = os.environ.get("OVERLAYCTL_BRIDGE_SUBNET") or ipam.DEFAULT_BRIDGE_SUBNET
    return device, subnet


def default_network(store: Store) -> Network:
    """The default bridge, recorded on first use.

    Its device and subnet follow the environment: when they change, the
    network is readdressed once no container is attached to it (until then
    new containers join the old subnet, as they must to reach the others).
    """
    device, subnet_text = default_settings()
    if len(device) > 15 or not device or "/" in device or device.strip() != device:
        raise InvalidArgumentError(f'OVERLAYCTL_BRIDGE_NAME "{device}" is not a valid device name (1 to 15 characters)')
    nets = networks(store)
    current = nets.find(DEFAULT_NETWORK)
    if current is not None and (current.bridge, current.subnet) == (device, subnet_text):
        return current
    subnet = ipam.parse_subnet(subnet_text)
    gateway = str(ipam.gateway_for(subnet, None))
    if current is None:
        network = Network(
            DEFAULT_NETWORK, os.urandom(32).hex(), "bridge", device, str(subnet), gateway, now_rfc3339(), {}
        )
        try:
            nets.add(network, overlaps=lambda others: _overlap(subnet, others, own_device=device))
        except ConflictError:
            found = nets.find(DEFAULT_NETWORK)  # recorded by a concurrent command
            if found is None:
                raise
            return found
        return network
    if nets.leases(network=DEFAULT_NETWORK):
        return current
    others = [n for n in nets.list() if n.name != DEFAULT_NETWORK]
    why = _overlap(subnet, others, own_device=device)
    if why:
        raise InvalidArgumentError(f"OVERLAYCTL_BRIDGE_SUBNET: {why}")
    nets.readdress(DEFAULT_NETWORK, device, str(subnet), gateway)
    # The old bridge keeps the old address: drop it (the next container
    # start makes the new one).
    from overlayctl.network import netlink

    netlink.delete_link(current.bridge, "bridge")
    return nets.get(DEFAULT_NETWORK)


def _overlap(subnet: Any, others: Any, own_device: str) -> str | None:
    routes = [(dev, route) for dev, route in ipam.host_routes() if dev != own_device]
    return ipam.overlap_reason(subnet, [(n.name, n.subnet, n.bridge) for n in others], routes)


def _overlap6(options: dict[str, Any], others: Any) -> str | None:
    """Why a new network's IPv6 subnet cannot be used (another network has
    an overlapping one), or None."""
    import ipaddress

    if not options.get("ipv6_subnet"):
        return None
    mine = ipaddress.IPv6Network(options["ipv6_subnet"])
    for other in others:
        if other.subnet6 and mine.overlaps(ipaddress.IPv6Network(other.subnet6)):
            return f'subnet {mine} overlaps network "{other.name}" ({other.subnet6}); choose another with --subnet'
    return None


def resolve(store: Store, name: str) -> Network | None:
    """The bridge network a container joins; None for "host" and "none"."""
    if name in ("host", "none"):
        return None
    if name in (DEFAULT_NETWORK, "default", ""):
        return default_network(store)
    if name.startswith("container:"):
        raise InvalidArgumentError(f'network mode "{name}" is not supported; use bridge, host, none or a network name')
    network = networks(store).find(name)
    if network is None:
        raise NotFoundError(f'network "{name}" not found; see "overlayctl network ls"')
    if network.name == DEFAULT_NETWORK:
        return default_network(store)
    return network


def validate_name(name: str) -> str:
    if not name or not name[0].isalnum() or not set(name) <= _NAME_CHARS or len(name) > 128:
        raise InvalidArgumentError(
            f'invalid network name "{name}": use letters, digits, "_", "." and "-", starting with a letter or digit'
        )
    if name in _RESERVED:
        raise ConflictError(f"{name} is a pre-defined network and cannot be created")
    return name


def create_network(
    store: Store,
    name: str,
    subnet: str | None,
    gateway: str | None,
    driver: str = "bridge",
    ipv6: bool = False,
    subnet6: str | None = None,
    internal: bool = False,
    labels: dict[str, str] | None = None,
) -> Network:
    """`network create`: record the network, then make its bridge device.

    `internal` (kept in the network's options) gives it no way out: no
    masquerade, and nothing forwarded from or to anything but its bridge.

    Every check (name, subnet, gateway, overlap with the other networks and
    with the host's routes) comes first; if the device cannot be made, the
    row goes again: on any error nothing is left. With `ipv6` the network
    also gets an IPv6 subnet (`subnet6`, or a random unique local /64)."""
    validate_name(name)
    if subnet6 and not ipv6:
        raise InvalidArgumentError(f"subnet {subnet6} is IPv6: add --ipv6 to make an IPv6 network")
    if driver != "bridge":
        raise InvalidArgumentError(f'network driver "{driver}" is not supported; use bridge')
    nets = networks(store)
    if gateway and not subnet:
        raise InvalidArgumentError("--gateway needs --subnet")
    network_id = os.urandom(32).hex()
    device = "br-" + network_id[:12]
    if subnet:
        net = ipam.parse_subnet(subnet)
    else:
        net = ipam.free_subnet([(n.name, n.subnet, n.bridge) for n in nets.list()], ipam.host_routes())
    gw = ipam.gateway_for(net, gateway)
    options: dict[str, Any] = {}
    if ipv6:
        net6 = ipam.parse_subnet6(subnet6, net) if subnet6 else ipam.random_ula_subnet()
        options = {"ipv6_subnet": str(net6), "ipv6_gateway": ipam.address6(str(net6), str(net), str(gw))}
    if internal:
        options["internal"] = True
    if labels:
        options["labels"] = dict(labels)
    network = Network(name, network_id, driver, device, str(net), str(gw), now_rfc3339(), options)
    nets.add(network, overlaps=lambda others: _overlap(net, others, own_device=device) or _overlap6(options, others))
    from overlayctl.network import netlink
    from overlayctl.runtime.netdev import link_exists

    existed = link_exists(device)
    try:
        with netlink.Rtnl() as rtnl:
            netlink.ensure_bridge(
                rtnl,
                device,
                str(gw),
                net.prefixlen,
                str(net.broadcast_address),
                ipam.bridge_mac(network_id),
                internal=is_internal(network),
            )
            if network.subnet6:
                netlink.ensure_bridge6(rtnl, device, network.gateway6, int(network.subnet6.partition("/")[2]))
    except BaseException:
        nets.remove(name)
        if not existed:
            netlink.delete_link(device, "bridge")
        raise
    return network


def remove_network(store: Store, name: str) -> str:
    """`network rm`: refused for predefined networks and while a container
    is attached. The row goes first, then the device."""
    from overlayctl.network.leases import release_stale

    if name in PREDEFINED:
        raise ConflictError(f"{name} is a pre-defined network and cannot be removed")
    nets = networks(store)
    network = nets.get(name)
    if network.name == DEFAULT_NETWORK:
        raise ConflictError(f"{network.name} is a pre-defined network and cannot be removed")
    release_stale(store)
    nets.remove(network.name)
    from overlayctl.network import netlink
    from overlayctl.network.leases import leases_changed

    # Its DNS responder (if still looking) goes before its address does, so
    # a network made at once on the same subnet can bind port 53 again.
    leases_changed(store)

    netlink.delete_link(network.bridge, "bridge")
    return network.name


def predefined_id(name: str) -> str:
    import hashlib

    return hashlib.sha256(f"overlayctl predefined network {name}".encode()).hexdigest()


class Listed:
    """One row of `network ls`."""

    __slots__ = ("id", "name", "driver", "created", "network")

    def __init__(self, id: str, name: str, driver: str, created: str, network: Network | None) -> None:
        self.id = id
        self.name = name
        self.driver = driver
        self.created = created
        self.network = network


def list_networks(store: Store) -> list[Listed]:
    """Every network, predefined ones included, by name."""
    from overlayctl.network.leases import release_stale

    release_stale(store)
    default_network(store)
    rows = [Listed(n.id, n.name, n.driver, n.created, n) for n in networks(store).list()]
    rows += [Listed(predefined_id(name), name, _DRIVER_OF[name], "", None) for name in ("host", "none")]
    return sorted(rows, key=lambda r: r.name)


def find_listed(store: Store, text: str) -> Listed:
    for row in list_networks(store):
        if text in (row.name, row.id) or (len(text) >= 1 and row.id.startswith(text) and text.isalnum()):
            return row
    raise NotFoundError(f'network "{text}" not found; see "overlayctl network ls"')


def inspect_network(store: Store, text: str) -> dict[str, Any]:
    """`network inspect`: Docker's shape."""
    return network_document(store, find_listed(store, text))


def network_document(store: Store, row: Listed) -> dict[str, Any]:
    """One listed network in Docker's shape (inspect's, and the Engine API's lists)."""
    network = row.network
    containers: dict[str, Any] = {}
    if network is not None:
        for lease in networks(store).leases(network=network.name):
            address6 = ipam.address6(network.subnet6, network.subnet, lease.address) if network.subnet6 else ""
            containers[lease.container] = {
                "Name": _container_name(store, lease.container),
                "EndpointID": endpoint_id(network.id, lease.container),
                "MacAddress": lease.mac,
                "IPv4Address": f"{lease.address}/{network.prefixlen}",
                "IPv6Address": f"{address6}/{network.subnet6.partition('/')[2]}" if address6 else "",
            }
    else:
        for container in store.containers.list():
            if network_mode(container) == row.name:
                containers[container.id] = {
                    "Name": container.name,
                    "EndpointID": endpoint_id(row.id, container.id),
                    "MacAddress": "",
                    "IPv4Address": "",
                    "IPv6Address": "",
                }
    options: dict[str, str] = {}
    if network is not None:
        options["com.docker.network.bridge.name"] = network.bridge
        if network.name == DEFAULT_NETWORK:
            options["com.docker.network.bridge.default_bridge"] = "true"
    return {
        "Name": row.name,
        "Id": row.id,
        "Created": row.created or "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": row.driver,
        "EnableIPv6": network is not None and bool(network.subnet6),
        "IPAM": {
            "Driver": "default",
            "Options": None,
            "Config": _ipam_config(network),
        },
        "Internal": network is not None and is_internal(network),
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": options,
        "Labels": dict(network.options.get("labels") or {}) if network is not None else {},
    }


def is_internal(network: Network) -> bool:
    """Whether the network was made with --internal (no way out)."""
    return bool(network.options.get("internal"))


def _ipam_config(network: Network | None) -> list[dict[str, str]]:
    if network is None:
        return []
    config = [{"Subnet": network.subnet, "Gateway": network.gateway}]
    if network.subnet6:
        config.append({"Subnet": network.subnet6, "Gateway": network.gateway6})
    return config


def _container_name(store: Store, container_id: str) -> str:
    return store.containers.name_of(container_id) or ""


def endpoint_id(network_id: str, container_id: str) -> str:
    """A stable ID for one container's attachment to one network, 64 hex
    digits as Docker's (no hash: hashlib costs `run` 5 ms to import)."""
    return network_id[:32] + container_id[:32]


def network_mode(container: Container) -> str:
    """The container's --network: "bridge", "host", "none" or a network name.
    A container recorded before networks existed has none."""
    mode = container.config.host.network
    return DEFAULT_NETWORK if mode == "default" else mode
