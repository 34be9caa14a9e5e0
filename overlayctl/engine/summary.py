"""The Engine API's container list (GET /containers/json): Docker's
ContainerSummary for each container, made in one pass over the catalog.

`docker ps`, docker-compose and every CI runner poll this list, so it is
built from what the catalog already holds: the containers' rows, one read
of the published ports, one of the networks and their leases. Nothing
walks a filesystem or starts a process unless sizes are asked for.
"""

from __future__ import annotations

import time
from typing import Any

from overlayctl.store import Store
from overlayctl.store.containers import RUNNING, Container


def container_summaries(
    store: Store, filters: list[str] | None = None, all_: bool = False, limit: int = 0, size: bool = False
) -> list[dict[str, Any]]:
    """`GET /containers/json`: the containers `ps` would list (with
    `filters`, the CLI's --filter strings; `all_` for stopped ones too;
    `limit` for the newest N, stopped ones included, as Docker), as
    Docker's list JSON; `size` adds SizeRw and SizeRootFs."""
    from overlayctl.engine.filters import list_containers

    # Only read: the configs may be shared with earlier lists (parsed once).
    containers = list_containers(store, filters or [], all_ or limit > 0, shared_configs=True)
    if limit > 0:
        containers = containers[:limit]
    return summaries(store, containers, size)


def summaries(store: Store, containers: list[Container], size: bool = False) -> list[dict[str, Any]]:
    """Docker's ContainerSummary of each container, in order."""
    from overlayctl.engine.inspect import container_health, container_sizes, state_name, status_text
    from overlayctl.network.attach import network_entries
    from overlayctl.util.humanize import parse_rfc3339

    now = time.time()
    published: dict[str, list[Any]] = {}
    if any(c.status == RUNNING for c in containers):
        for port in store.ports.list():
            published.setdefault(port.container, []).append(port)
    networks = network_entries(store, containers)
    sizes = container_sizes(store, containers) if size else {}
    out = []
    for c in containers:
        cfg, hc = c.config.config, c.config.host
        state = state_name(c)  # (asks the freezer once)
        item: dict[str, Any] = {
            "Id": c.id,
            "Names": ["/" + c.name],
            "Image": c.image_name,
            "ImageID": c.image_id,
            "Command": " ".join(cfg.argv),
            "Created": int(parse_rfc3339(c.created)) if c.created else 0,
            "Ports": _ports(c, published.get(c.id, [])),
            "Labels": dict(cfg.labels or {}),
            "State": state,
            "Status": status_text(c, now, container_health(store, c), paused=state == "paused"),
            "HostConfig": {"NetworkMode": hc.network_mode or "none"},
            "NetworkSettings": {"Networks": networks.get(c.id, {})},
            "Mounts": _mounts(store, c),
        }
        if size:
            rw, virtual = sizes[c.id]
            item["SizeRw"], item["SizeRootFs"] = rw, virtual
        out.append(item)
    return out


def _ports(c: Container, published: list[Any]) -> list[dict[str, Any]]:
    """Docker's Ports of a running container: each binding with its host
    address and port, each exposed port that is not published without."""
    if c.status != RUNNING:
        return []
    ports: list[dict[str, Any]] = []
    bound = set()
    for p in published:
        bound.add(f"{p.container_port}/{p.protocol}")
        ports.append(
            {
                "IP": p.host_ip or "0.0.0.0",
                "PrivatePort": p.container_port,
                "PublicPort": p.host_port,
                "Type": p.protocol,
            }
        )
    for key in c.config.config.exposed_ports or {}:
        if key not in bound:
            port, _, proto = key.partition("/")
            if "-" not in port:
                ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return ports


def _mounts(store: Store, c: Container) -> list[dict[str, Any]]:
    if not c.config.host.mounts:
        return []
    from overlayctl.volumes import mounts as volumes

    return volumes.inspect_mounts(store, c)
