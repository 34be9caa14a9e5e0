"""Docker-shaped descriptions of containers and images (inspect, ps, image ls)."""

from __future__ import annotations

import time
from typing import Any

from overlayctl.container.model import State
from overlayctl.store import Store
from overlayctl.store.containers import RESTARTING, RUNNING, Container
from overlayctl.store.images import Image
from overlayctl.util.humanize import human_duration, parse_rfc3339


def container_size(store: Store, container: Container) -> int:
    """The container's own bytes on disk: its upper dir, as du counts it
    (overlayctl.measure.usage, the one definition)."""
    from overlayctl.measure.usage import container_size as size

    return size(store, container)


def docker_config(container: Container) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config and HostConfig as Docker's inspect shows them, made from the
    container's model: the stored documents, less overlayctl's own
    HostConfig.Limits (the options as given; the parsed values are beside
    them), and with the short ID for a host name when none was given."""
    config = container.config.config.to_json()
    # Docker's inspect always has Labels (`{}` when none), which templates
    # such as {{.Config.Labels}} and {{index .Config.Labels "k"}} rely on.
    config = dict(config, Hostname=config.get("Hostname") or container.id[:12])
    config.setdefault("Labels", {})
    host = container.config.host.to_json()
    host.pop("Limits", None)
    return config, host


def container_inspect(store: Store, container: Container, size: bool = False) -> dict[str, Any]:
    """`docker inspect CONTAINER`."""
    image = store.images.get(container.image_id)
    argv = container.config.config.argv
    layout = store.overlay_layout(image, container)
    hc = container.config.host
    config, host = docker_config(container)
    data: dict[str, Any] = {
        "Id": container.id,
        "Created": container.created,
        "Path": argv[0] if argv else "",
        "Args": argv[1:],
        "State": container_state(container, store).to_json(),
        "Image": container.image_id,
        "LogPath": store.paths.container_log(container.id) if hc.log_driver == "json-file" else "",
        "RestartCount": container.restart_count,
        "Name": "/" + container.name,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": host,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "LowerDir": ":".join(layout.lowerdirs),
                "UpperDir": layout.upperdir,
                "WorkDir": layout.workdir,
            },
        },
        "Config": config,
    }
    if hc.mounts:
        from overlayctl.volumes import mounts as volumes

        data["Mounts"] = volumes.inspect_mounts(store, container)
    else:
        data["Mounts"] = []
    mode = hc.network
    if mode not in ("none", "host"):
        from overlayctl.network import attach

        data["NetworkSettings"] = attach.settings_for(store, container).to_json()
    else:
        data["NetworkSettings"] = {"IPAddress": "", "Networks": {mode: {}}}
    if size:
        size_rw = container_size(store, container)
        data["SizeRw"] = size_rw
        data["SizeRootFs"] = size_rw + image.size
    return data


def image_inspect(image: Image) -> dict[str, Any]:
    """`docker image inspect IMAGE`, with dockerd's fields (those of the
    build that made an image elsewhere come from its config)."""
    config = image.config
    doc: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": image.tags,
        "RepoDigests": image.digests,
        "Parent": "",
        "Comment": config.get("comment", ""),
        "Created": image.created,
        "Container": config.get("container", ""),
        "ContainerConfig": config.get("container_config") or {},
        "DockerVersion": config.get("docker_version", ""),
        "Author": config.get("author", ""),
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        "Config": image.container_config,
        "Size": image.size,
        "VirtualSize": image.size,
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"LowerDir": ":".join(layer.dir for layer in reversed(image.layers))},
        },
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "History": config.get("history", []),
    }
    if config.get("variant"):
        doc["Variant"] = config["variant"]
    return doc


def container_health(store: Store, container: Container) -> Any:
    """The container's State.Health (container.health.Health); None for one
    without a check, or that never ran one."""
    if not container.config.config.healthcheck:
        return None
    from overlayctl.container import health

    return health.load(store.paths, container.id)


def container_state(container: Container, store: Store | None = None) -> State:
    """The container's State, as inspect shows it, from the catalog's
    columns (and, given the store, its health checker's record)."""
    running = container.status == RUNNING
    health = container_health(store, container) if store is not None else None
    return State(
        state_name(container),
        running=running,
        paused=running and _paused(container),
        restarting=container.status == RESTARTING,
        oom_killed=container.oom_killed,
        pid=container.pid if running else 0,
        exit_code=_exit_code(container),
        error=container.error,
        started_at=container.started_at,
        finished_at=container.finished_at,
        supervisor_pid=container.supervisor_pid if container.is_active else 0,
        health=health.to_json() if health is not None else None,
    )


def _exit_code(container: Container) -> int:
    # Docker: 0 while it never ended, the last code after, -1 when unknown.
    if container.exit_code is not None:
        return container.exit_code
    return -1 if container.status == "exited" else 0


def _paused(container: Container) -> bool:
    from overlayctl.engine.control import is_paused

    return is_paused(container)


def state_name(container: Container) -> str:
    """State.Status: created, running, paused, restarting or exited."""
    if container.status == RUNNING and _paused(container):
        return "paused"
    return container.status


def _seconds(rfc3339: str) -> float | None:
    # A time never recorded is "" in the catalog and Docker's zero time in
    # image configs: rendered as an age it would read "56 years ago".
    seconds = parse_rfc3339(rfc3339)
    return seconds if seconds > 0 else None


def ago(rfc3339: str, now: float | None = None) -> str:
    """ "3 minutes ago" for a catalog timestamp; "N/A" (as Docker) when there is none."""
    seconds = _seconds(rfc3339)
    if seconds is None:
        return "N/A"
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - seconds)) + " ago"


def status_text(container: Container, now: float | None = None, health: Any = None, paused: bool | None = None) -> str:
    """The STATUS column of `docker ps` (with no age when its time is
    unknown); `health` (container_health) adds "(healthy)" and the like;
    `paused`, when the caller has asked already (state_name)."""
    now = time.time() if now is None else now
    if container.status == RUNNING:
        started = _seconds(container.started_at)
        up = "Up" if started is None else "Up " + human_duration(max(0.0, now - started))
        if _paused(container) if paused is None else paused:
            return up + " (Paused)"
        from overlayctl.container.health import status_suffix

        return up + status_suffix(health)
    if container.status in (RESTARTING, "exited"):
        code = "unknown" if container.exit_code is None else str(container.exit_code)
        word = "Restarting" if container.status == RESTARTING else "Exited"
        when = "" if _seconds(container.finished_at) is None else " " + ago(container.finished_at, now)
        return f"{word} ({code}){when}"
    return "Created"


def command_text(container: Container, width: int = 20) -> str:
    """The COMMAND column: quoted, cut with an ellipsis like Docker's."""
    text = " ".join(container.config.config.argv)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return f'"{text}"'


def container_sizes(store: Store, containers: list[Container]) -> dict[str, tuple[int, int]]:
    """`ps -s`: each container's own bytes and its virtual bytes (its own
    plus its image's), by container ID."""
    from overlayctl.measure.usage import container_sizes as own_sizes

    image_sizes: dict[str, int] = {}
    sizes = {}
    own = own_sizes(store, containers)
    for c in containers:
        if c.image_id not in image_sizes:
            image_sizes[c.image_id] = store.images.get(c.image_id).size
        rw = own[c.id]
        sizes[c.id] = (rw, rw + image_sizes[c.image_id])
    return sizes


def port_mappings(store: Store, container: Container) -> list[tuple[str, str, int]]:
    """`port CONTAINER`: (container port "80/tcp", host address, host port)
    for each port the running container publishes; [] when it is not running."""
    if container.status != RUNNING:
        return []
    return [
        (f"{p.container_port}/{p.protocol}", p.host_ip or "0.0.0.0", p.host_port)
        for p in store.ports.list(container.id)
    ]


def ports_text(store: Store, containers: list[Container]) -> dict[str, str]:
    """The PORTS column of `ps` by container ID: `0.0.0.0:8080->80/tcp`,
    consecutive ports as ranges (`0.0.0.0:8000-8001->80-81/tcp`), and an
    exposed port that is not published as `80/tcp`; empty unless running."""
    running = {c.id: c for c in containers if c.status == RUNNING}
    published: dict[str, list[Any]] = {}
    if running:
        for p in store.ports.list():
            if p.container in running:
                published.setdefault(p.container, []).append(p)
    out = {}
    for cid, c in running.items():
        rows = published.get(cid, [])
        bound = {f"{p.container_port}/{p.protocol}" for p in rows}
        items: list[tuple[str, str, int, int]] = [
            (p.protocol, p.host_ip or "0.0.0.0", p.container_port, p.host_port) for p in rows
        ]
        for key in c.config.config.exposed_ports or {}:
            if key not in bound:
                port, _sep, proto = key.partition("/")
                items.append((proto, "", int(port), 0))
        out[cid] = ", ".join(_port_groups(sorted(items, key=lambda i: (i[1] != "", i[1], i[0], i[2]))))
    return out


def _port_groups(items: list[tuple[str, str, int, int]]) -> list[str]:
    """Runs of consecutive ports (same protocol and address) as one entry."""
    groups: list[list[tuple[str, str, int, int]]] = []
    for item in items:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and last[:2] == item[:2]
            and item[2] == last[2] + 1
            and (item[3] == last[3] + 1 if item[3] else not last[3])
        ):
            groups[-1].append(item)
        else:
            groups.append([item])
    texts = []
    for group in groups:
        proto, ip, first, last = group[0][0], group[0][1], group[0], group[-1]
        inner = str(first[2]) if first is last else f"{first[2]}-{last[2]}"
        if not ip:
            texts.append(f"{inner}/{proto}")
            continue
        outer = str(first[3]) if first is last else f"{first[3]}-{last[3]}"
        texts.append(f"{ip}:{outer}->{inner}/{proto}")
    return texts
