"""Engine API: networks (list, inspect, create, connect, disconnect,
delete, prune), over engine/networks.py as `overlayctl network` is.

The documents are `network inspect`'s. What dockerd would take but the CLI
cannot do (a second IPv4 subnet, an IP range, driver options other than
the bridge's defaults, swarm's ingress and config-only networks) is a 400
that says so, rather than a network that is not what was asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from overlayctl.api.http import ApiError, body_json, call, filters, no_content, ok, string_map
from overlayctl.errors import ConflictError

if TYPE_CHECKING:
    from overlayctl.store import Store

PREDEFINED = ("bridge", "host", "none")

# Options dockerd's bridge driver takes, at the values overlayctl's bridges
# have anyway: accepted (docker-compose and docker-py may send them).
_DEFAULT_OPTIONS = {
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
    "com.docker.network.driver.mtu": "1500",
}


def _as_dockerd(document: dict[str, Any]) -> dict[str, Any]:
    """`network inspect`'s document as dockerd shows it: the Options of a
    user-defined network are those given at its creation (none can be,
    here), not the device name overlayctl's inspect adds. docker-compose
    compares them with its file's and would ask to recreate the network."""
    if document["Name"] not in PREDEFINED:
        document["Options"] = {}
    return document


def _documents(store: Store, items: list[str], detailed: bool) -> list[dict[str, Any]]:
    """Every network the filters keep, as inspect shows it; dockerd leaves
    Containers empty in lists from API 1.28 on (`detailed` is older)."""
    from overlayctl.engine.networks import network_documents

    documents = [_as_dockerd(document) for document in network_documents(store, items)]
    if not detailed:
        for document in documents:
            document["Containers"] = {}
    return documents


async def list_networks(request: web.Request) -> web.StreamResponse:
    """GET /networks?filters=."""
    version = request.match_info.get("version")
    detailed = version is not None and tuple(int(part) for part in version.split(".")) < (1, 28)
    return ok(await call(request, _documents, filters(request), detailed))


async def inspect_network(request: web.Request) -> web.StreamResponse:
    """GET /networks/{id}[?scope=local]."""
    from overlayctl.engine.networks import inspect_networks

    name = request.match_info["id"]
    scope = request.query.get("scope", "")
    if scope not in ("", "local"):
        raise ApiError(404, f"network {name} not found")
    documents = await call(request, inspect_networks, [name])
    return ok(_as_dockerd(documents[0]))


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be a string")
    return value


def _unsupported(what: str) -> ApiError:
    return ApiError(400, f"{what} is not supported by overlayctl's bridge networks")


def _ipam(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(IPv4 subnet, its gateway, IPv6 subnet) from IPAM.Config."""
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict):
        raise ApiError(400, "IPAM must be an object")
    if (ipam.get("Driver") or "default") != "default":
        raise _unsupported(f'IPAM driver "{ipam["Driver"]}"')
    if ipam.get("Options"):
        raise _unsupported("IPAM options")
    configs = ipam.get("Config") or []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise ApiError(400, "IPAM.Config must be a list of objects")
    v4: list[dict[str, Any]] = []
    v6: list[dict[str, Any]] = []
    for config in configs:
        given = _string(config, "Subnet")
        if not given:
            if _string(config, "Gateway"):
                raise ApiError(400, "a gateway needs a subnet in the same IPAM.Config entry")
            continue
        (v6 if ":" in given else v4).append(config)
        if _string(config, "IPRange") not in ("", given):
            raise _unsupported("IPAM.Config IPRange (a part of the subnet for containers)")
        if config.get("AuxiliaryAddresses"):
            raise _unsupported("IPAM.Config AuxiliaryAddresses")
    if len(v4) > 1 or len(v6) > 1:
        raise ApiError(400, "give at most one IPv4 and one IPv6 subnet")
    if v6 and _string(v6[0], "Gateway"):
        raise _unsupported("an IPv6 gateway of your choice (it is the subnet's first address)")
    subnet = _string(v4[0], "Subnet") if v4 else None
    gateway = (_string(v4[0], "Gateway") or None) if v4 else None
    return subnet, gateway, (_string(v6[0], "Subnet") if v6 else None)


async def create_network(request: web.Request) -> web.StreamResponse:
    """POST /networks/create: 201 {"Id", "Warning"}. A name in use is a 409
    whether or not CheckDuplicate is set: names are unique here."""
    from overlayctl.engine.networks import create_network as create

    body = await body_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    name = _string(body, "Name")
    if name in PREDEFINED:
        raise ApiError(403, f"operation is not permitted on predefined {name} network")
    driver = _string(body, "Driver") or "bridge"
    subnet, gateway, subnet6 = _ipam(body)
    for key, value in string_map(body, "Options").items():
        if _DEFAULT_OPTIONS.get(key) != value:
            raise _unsupported(f'network option "{key}={value}"')
    if body.get("Ingress"):
        raise _unsupported("an ingress network (swarm's)")
    if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise _unsupported("a config-only network (swarm's)")
    if (body.get("Scope") or "local") != "local":
        raise _unsupported(f'scope "{body["Scope"]}"')
    ipv6 = bool(body.get("EnableIPv6")) or subnet6 is not None
    if subnet6 is not None and not body.get("EnableIPv6"):
        raise ApiError(400, f"subnet {subnet6} is IPv6: set EnableIPv6 to make an IPv6 network")
    internal, labels = bool(body.get("Internal")), string_map(body, "Labels")
    network = await call(request, create, name, subnet, gateway, driver, ipv6, subnet6, internal, labels)
    return ok({"Id": network.id, "Warning": ""}, status=201)


def _endpoint(body: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(IPv4 address, aliases) from EndpointConfig; what the CLI's connect
    cannot give is refused."""
    config = body.get("EndpointConfig") or {}
    if not isinstance(config, dict):
        raise ApiError(400, "EndpointConfig must be an object")
    ipam = config.get("IPAMConfig") or {}
    if not isinstance(ipam, dict):
        raise ApiError(400, "EndpointConfig.IPAMConfig must be an object")
    if ipam.get("IPv6Address"):
        raise _unsupported("an IPv6 address of your choice")
    if ipam.get("LinkLocalIPs"):
        raise _unsupported("link-local addresses")
    for key in ("Links", "MacAddress", "DriverOpts"):
        if config.get(key):
            raise _unsupported(f"EndpointConfig.{key} on connect")
    aliases = config.get("Aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ApiError(400, "EndpointConfig.Aliases must be a list of strings")
    return _string(ipam, "IPv4Address") or None, aliases


async def _container_of(request: web.Request) -> tuple[dict[str, Any], str]:
    body = await body_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    container = _string(body, "Container")
    if not container:
        raise ApiError(400, "no container given: the body needs Container")
    return body, container


async def connect_network(request: web.Request) -> web.StreamResponse:
    """POST /networks/{id}/connect {Container, EndpointConfig}: 200."""
    from overlayctl.engine.networks import connect_network as connect

    body, container = await _container_of(request)
    ip, aliases = _endpoint(body)
    try:
        await call(request, connect, request.match_info["id"], container, ip, aliases)
    except ConflictError as exc:
        # Already connected: libnetwork's "endpoint with name ... already
        # exists", which dockerd answers as Forbidden.
        raise ApiError(403, exc.message) from None
    return web.Response(status=200)


async def disconnect_network(request: web.Request) -> web.StreamResponse:
    """POST /networks/{id}/disconnect {Container, Force}: 200."""
    from overlayctl.engine.networks import disconnect_network as disconnect

    body, container = await _container_of(request)
    await call(request, disconnect, request.match_info["id"], container, bool(body.get("Force")))
    return web.Response(status=200)


def _remove(store: Store, text: str) -> None:
    from overlayctl.engine.networks import inspect_networks, remove_network

    # As dockerd, the network is found first (404), then refused (403)
    # when predefined or while containers are attached.
    name = inspect_networks(store, [text])[0]["Name"]
    if name in PREDEFINED:
        raise ApiError(403, f"{name} is a pre-defined network and cannot be removed")
    try:
        remove_network(store, name)
    except ConflictError as exc:
        raise ApiError(403, f"error while removing network: {exc.message}") from None


async def delete_network(request: web.Request) -> web.StreamResponse:
    """DELETE /networks/{id}: 204."""
    await call(request, _remove, request.match_info["id"])
    return no_content()


async def prune_networks(request: web.Request) -> web.StreamResponse:
    """POST /networks/prune?filters=: {"NetworksDeleted": [names]} (null
    when none, as dockerd's)."""
    from overlayctl.engine.prune import prune_networks as prune

    names = await call(request, prune, filters(request))
    return ok({"NetworksDeleted": names or None})


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/networks", list_networks),
        ("POST", "/networks/create", create_network),
        ("POST", "/networks/prune", prune_networks),
        ("GET", "/networks/{id}", inspect_network),
        ("POST", "/networks/{id}/connect", connect_network),
        ("POST", "/networks/{id}/disconnect", disconnect_network),
        ("DELETE", "/networks/{id}", delete_network),
    ]
