"""The `network` verbs: ls, create, rm, inspect.

The networks themselves (the default bridge, subnets, devices, leases) are
overlayctl.network's; these are the entry points a front end calls.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.network.manage import Listed
    from overlayctl.store import Store
    from overlayctl.store.networks import Network


def list_networks(store: Store, filters: list[str] | None = None) -> list[Listed]:
    """`network ls [--filter ...]`: every network (the predefined ones
    included) the filters keep, by name."""
    from overlayctl.engine.filters import filter_networks

    return filter_networks(store, filters or [])


def network_documents(store: Store, filters: list[str] | None = None) -> list[dict[str, Any]]:
    """Every network the filters keep (as list_networks), each as `network
    inspect` shows it, in one pass (the Engine API's GET /networks)."""
    from overlayctl.network import manage

    return [manage.network_document(store, row) for row in list_networks(store, filters)]


def create_network(
    store: Store,
    name: str,
    subnet: str | None,
    gateway: str | None,
    driver: str,
    ipv6: bool = False,
    subnet6: str | None = None,
    internal: bool = False,
    labels: dict[str, str] | None = None,
) -> Network:
    """`network create`: a bridge with its own device and subnet (and with
    `ipv6` an IPv6 subnet too; `internal`: with no way beyond it; `labels`
    shown by inspect and matched by filters)."""
    from overlayctl.network import manage

    return manage.create_network(store, name, subnet, gateway, driver, ipv6, subnet6, internal=internal, labels=labels)


def remove_network(store: Store, name: str) -> str:
    """`network rm`: one network and its device; returns the name as given."""
    from overlayctl.network import manage

    return manage.remove_network(store, name)


def inspect_networks(store: Store, names: list[str]) -> list[dict[str, Any]]:
    """`network inspect NAME...`, Docker-shaped, after leases nobody holds
    are released (so Containers lists only living ones)."""
    from overlayctl.network import manage
    from overlayctl.network.leases import release_stale

    release_stale(store)
    return [manage.inspect_network(store, name) for name in names]


def connect_network(store: Store, network: str, container: str, ip: str | None, aliases: list[str]) -> None:
    """`network connect`: a running container gets an interface at once, a
    stopped one at its next start."""
    from overlayctl.network import join

    join.connect(store, network, container, ip, aliases)


def disconnect_network(store: Store, network: str, container: str, force: bool) -> None:
    """`network disconnect`: the interface goes at once from a running container."""
    from overlayctl.network import join

    join.disconnect(store, network, container, force)
