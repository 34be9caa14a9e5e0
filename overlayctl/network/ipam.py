"""Address management, as pure functions: subnets, gateways, which address
a container gets, its MAC address, and whether a subnet clashes with
another network or with a route of the host. IPv4, and IPv6 on the
networks made with --ipv6, where a container's IPv6 address derives from
its IPv4 one (the same host number in the IPv6 subnet), so one lease holds
both.
"""

from __future__ import annotations

import ipaddress

from overlayctl.errors import ConflictError, InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

# The default bridge: Docker's docker0 uses 172.17.0.0/16 and podman's
# podman0 10.88.0.0/16; this one stays clear of both.
DEFAULT_BRIDGE_SUBNET = "10.77.0.0/16"
# `network create` without --subnet takes the first free /24 of this pool
# (podman takes its own from 10.89.0.0/16).
USER_SUBNET_POOL = "10.78.0.0/16"
USER_SUBNET_PREFIX = 24
MIN_PREFIX, MAX_PREFIX = 8, 30


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """A subnet in CIDR notation, host bits zero, between /8 and /30."""
    try:
        subnet = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgumentError(f'invalid subnet "{text}": give it in CIDR notation, e.g. 10.78.5.0/24') from None
    if "/" not in text:
        raise InvalidArgumentError(f'invalid subnet "{text}": give it in CIDR notation, e.g. {subnet}')
    if not isinstance(subnet, ipaddress.IPv4Network):
        raise InvalidArgumentError(f'subnet "{text}" is IPv6; only IPv4 networks are supported')
    if str(subnet) != text.strip():
        raise InvalidArgumentError(f'invalid subnet "{text}": it has host bits set; did you mean {subnet}?')
    if not MIN_PREFIX <= subnet.prefixlen <= MAX_PREFIX:
        raise InvalidArgumentError(
            f'subnet "{text}" has a /{subnet.prefixlen} prefix; use one between /{MIN_PREFIX} and /{MAX_PREFIX}'
        )
    return subnet


def parse_address(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgumentError(f'invalid {what} "{text}": give an IPv4 address such as 10.78.5.10') from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise InvalidArgumentError(f'{what} "{text}" is IPv6; only IPv4 networks are supported')
    return address


def gateway_for(subnet: ipaddress.IPv4Network, text: str | None) -> ipaddress.IPv4Address:
    """The gateway asked for (checked), or the subnet's first host address."""
    if not text:
        return subnet.network_address + 1
    gateway = parse_address(text, "gateway")
    if not _is_host_address(gateway, subnet):
        raise InvalidArgumentError(f"gateway {gateway} is not a host address of subnet {subnet}")
    return gateway


def _is_host_address(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> bool:
    return address in subnet and address not in (subnet.network_address, subnet.broadcast_address)


def choose_address(subnet: str, gateway: str, taken: set[str], wanted: str | None, network: str) -> str:
    """The address a container gets: `wanted` if it is free and usable,
    else the lowest free host address of the subnet."""
    net = ipaddress.IPv4Network(subnet)
    if wanted:
        address = parse_address(wanted, "IP address")
        if not _is_host_address(address, net):
            raise InvalidArgumentError(f'IP address {address} is not a host address of network "{network}" ({net})')
        if str(address) == gateway:
            raise ConflictError(f'IP address {address} is the gateway of network "{network}"; choose another')
        if str(address) in taken:
            raise ConflictError(f'IP address {address} is already in use on network "{network}"')
        return str(address)
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    skip = taken | {gateway}
    for value in range(first, last + 1):
        candidate = str(ipaddress.IPv4Address(value))
        if candidate not in skip:
            return candidate
    raise ConflictError(f'no free address left on network "{network}" ({net}); remove a container from it')


def mac_for(address: str) -> str:
    """02:42 and the four bytes of the address, as Docker has long made them:
    locally administered, unique on the network, stable across restarts."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def bridge_mac(network_id: str) -> str:
    """A fixed, locally administered address for a bridge device."""
    return "02:" + ":".join(network_id[i : i + 2] for i in range(0, 10, 2))


def parse_proc_route(text: str) -> list[tuple[str, ipaddress.IPv4Network]]:
    """(device, destination) of each route in /proc/net/route, the default
    route left out. Addresses there are little-endian hex."""
    routes = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        device, destination, mask = fields[0], int(fields[1], 16), int(fields[7], 16)
        if mask == 0:
            continue  # the default route: every subnet is "inside" it
        to_ip = ipaddress.IPv4Address(int.from_bytes(destination.to_bytes(4, "little"), "big"))
        prefix = bin(mask).count("1")
        routes.append((device, ipaddress.IPv4Network(f"{to_ip}/{prefix}", strict=False)))
    return routes


def host_routes() -> list[tuple[str, ipaddress.IPv4Network]]:
    """The IPv4 routes of the main table of the caller's network namespace."""
    try:
        with open("/proc/net/route") as f:
            return parse_proc_route(f.read())
    except OSError:
        return []


def overlap_reason(
    subnet: ipaddress.IPv4Network,
    networks: Iterable[tuple[str, str, str]],
    routes: Iterable[tuple[str, ipaddress.IPv4Network]],
) -> str | None:
    """Why `subnet` cannot be used, or None.

    `networks` are (name, subnet, bridge device) of the networks already
    recorded; `routes` are the host's routes. A route through one of those
    bridges belongs to its network and is judged with it."""
    ours = {}
    for name, other_text, bridge in networks:
        other = ipaddress.IPv4Network(other_text)
        ours[bridge] = name
        if subnet.overlaps(other):
            return f'subnet {subnet} overlaps network "{name}" ({other}); choose another with --subnet'
    for device, route in routes:
        if device in ours:
            continue
        if subnet.overlaps(route):
            return f"subnet {subnet} overlaps the host's route to {route} on {device}; choose another with --subnet"
    return None


def free_subnet(
    networks: Iterable[tuple[str, str, str]],
    routes: Iterable[tuple[str, ipaddress.IPv4Network]],
    pool: str = USER_SUBNET_POOL,
    prefixlen: int = USER_SUBNET_PREFIX,
) -> ipaddress.IPv4Network:
    """The first subnet of the pool that clashes with nothing."""
    networks, routes = list(networks), list(routes)
    for candidate in ipaddress.IPv4Network(pool).subnets(new_prefix=prefixlen):
        if overlap_reason(candidate, networks, routes) is None:
            return candidate
    raise ConflictError(f"every /{prefixlen} of {pool} is taken; give a subnet with --subnet")


# -- IPv6, by choice only ------------------------------------------------------

IPV6_MIN_PREFIX, IPV6_MAX_PREFIX = 48, 120


def parse_subnet6(text: str, subnet4: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    """An IPv6 subnet in CIDR notation, host bits zero, with room for every
    host number of the network's IPv4 subnet."""
    try:
        subnet = ipaddress.IPv6Network(text, strict=False)
    except ValueError:
        raise InvalidArgumentError(
            f'invalid IPv6 subnet "{text}": give it in CIDR notation, e.g. fd00:1::/64'
        ) from None
    if "/" not in text:
        raise InvalidArgumentError(f'invalid IPv6 subnet "{text}": give it in CIDR notation, e.g. {subnet}')
    if ipaddress.IPv6Interface(text).ip != subnet.network_address:
        raise InvalidArgumentError(f'invalid subnet "{text}": it has host bits set; did you mean {subnet}?')
    if not IPV6_MIN_PREFIX <= subnet.prefixlen <= IPV6_MAX_PREFIX:
        raise InvalidArgumentError(
            f'subnet "{text}" has a /{subnet.prefixlen} prefix; '
            f"use one between /{IPV6_MIN_PREFIX} and /{IPV6_MAX_PREFIX}"
        )
    if 128 - subnet.prefixlen < 32 - subnet4.prefixlen:
        raise InvalidArgumentError(
            f"IPv6 subnet {subnet} is smaller than the network's IPv4 subnet {subnet4}; give a larger one"
        )
    return subnet


def random_ula_subnet() -> ipaddress.IPv6Network:
    """A /64 of a random unique local /48 (RFC 4193: fd and 40 random bits)."""
    import os

    prefix = (0xFD << 120) | (int.from_bytes(os.urandom(5), "big") << 80)
    return ipaddress.IPv6Network((prefix, 64))


def address6(subnet6: str, subnet4: str, address4: str) -> str:
    """The IPv6 address with the same host number as `address4` has in its subnet."""
    offset = int(ipaddress.IPv4Address(address4)) - int(ipaddress.IPv4Network(subnet4).network_address)
    return str(ipaddress.IPv6Network(subnet6).network_address + offset)
