"""`--filter` for every listing and prune, as Docker's daemon applies them.

The parsing and the matching rules are overlayctl.util.filters'; this
module knows what each kind of object offers to match (a container's name,
state, image, mounts, networks, ports; an image's tags and labels; ...).
The CLI and the Engine API both call these, with the raw `KEY=VALUE`
strings, so that one filter means the same in both. Every filter is checked
before anything is listed or removed: a bad one changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from overlayctl.errors import InvalidArgumentError, NotFoundError
from overlayctl.store import Store
from overlayctl.store.containers import RUNNING, Container
from overlayctl.store.images import Image
from overlayctl.util.filters import Filters, invalid_filter, parse_filters, parse_until, port_filter, reference_match
from overlayctl.util.humanize import parse_rfc3339

PS_KEYS = (
    "id", "name", "label", "status", "exited", "ancestor", "before", "since",
    "volume", "network", "health", "publish", "expose",
)  # fmt: skip
IMAGE_KEYS = ("dangling", "label", "before", "since", "reference", "until")
VOLUME_KEYS = ("dangling", "name", "label", "driver")
NETWORK_KEYS = ("dangling", "name", "label", "driver", "id", "type", "scope")
# The prune commands: `label!` keeps what carries the label.
CONTAINER_PRUNE_KEYS = ("until", "label", "label!")
IMAGE_PRUNE_KEYS = ("until", "label", "label!", "dangling")
NETWORK_PRUNE_KEYS = ("until", "label", "label!")
VOLUME_PRUNE_KEYS = ("label", "label!", "all")  # all=true: named volumes too (-a)
SYSTEM_PRUNE_KEYS = ("until", "label", "label!")

_STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
_HEALTH = ("starting", "healthy", "unhealthy", "none")


def _seconds(text: str) -> float:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return 0.0


# -- containers -------------------------------------------------------------------


def list_containers(
    store: Store, items: Iterable[str] = (), all_: bool = False, shared_configs: bool = False
) -> list[Container]:
    """`ps [-a] [--filter ...]`: containers newest first. A `status` filter
    lists stopped ones too, as Docker's; the others filter what -a (or its
    absence) lists. `shared_configs`: see ContainerStore.list (the
    containers are then only to be read)."""
    f = parse_filters(items, PS_KEYS)
    exited = _ints("exited", f.values("exited"))
    for value in f.values("status"):
        if value not in _STATES:
            raise invalid_filter("status", value)
    for value in f.values("health"):
        if value not in _HEALTH:
            raise InvalidArgumentError(f"Unrecognised filter value for health: {value}")
    publish = set().union(*(port_filter("publish", v) for v in f.values("publish")))
    expose = set().union(*(port_filter("expose", v) for v in f.values("expose")))
    containers = store.containers.list(all=True, shared_configs=shared_configs)
    before = [store.containers.get(v) for v in f.values("before")]
    since = [store.containers.get(v) for v in f.values("since")]
    images = _ancestors(store, f.values("ancestor")) if "ancestor" in f else None
    network_ids = _network_ids(store) if "network" in f else {}
    listed = all_ or "status" in f
    from overlayctl.engine.inspect import container_health, state_name

    kept = []
    for c in containers:
        if any(c.created >= b.created for b in before) or any(c.created <= s.created for s in since):
            continue
        if not listed and not c.is_active:  # a restarting container is listed, as Docker's
            continue
        if not (f.match("name", "/" + c.name, c.name) and f.match("id", c.id)):
            continue
        if not f.labels(c.config.config.labels or {}):
            continue
        if exited and not (not c.is_active and c.started_at and c.exit_code in exited):
            continue
        if "status" in f and not f.exact("status", state_name(c)):  # (a paused check: only when asked)
            continue
        if "health" in f:
            health = container_health(store, c)
            if not f.exact("health", health.status if health is not None else "none"):
                continue
        if "volume" in f and not _has_volume(c, f.values("volume")):
            continue
        if images is not None and c.image_id not in images:
            continue
        if "network" in f and not _on_network(c, f.values("network"), network_ids):
            continue
        if (publish or expose) and not _has_port(store, c, publish, expose):
            continue
        kept.append(c)
    return kept


def _ints(key: str, values: list[str]) -> set[int]:
    codes = set()
    for value in values:
        try:
            codes.add(int(value))
        except ValueError:
            raise invalid_filter(key, value) from None
    return codes


def _ancestors(store: Store, values: list[str]) -> set[str]:
    """The IDs of the images named and of every image built on one of them
    (its layers begin with theirs). A name that is no image matches nothing."""
    roots: list[Image] = []
    for value in values:
        try:
            roots.append(store.images.resolve(value))
        except NotFoundError:
            continue
    ids = {image.id for image in roots}
    bases = [[layer.diff_id for layer in image.layers] for image in roots]
    bases = [b for b in bases if b]
    if bases:
        for image in store.images.list():
            chain = [layer.diff_id for layer in image.layers]
            if any(chain[: len(b)] == b for b in bases):
                ids.add(image.id)
    return ids


def _has_volume(c: Container, values: list[str]) -> bool:
    """A volume's name, a bind's host path, or any mount's target."""
    for mount in c.config.host.mounts or []:
        if mount.target in values or (mount.source and mount.source in values):
            return True
    return False


def _network_ids(store: Store) -> dict[str, str]:
    from overlayctl.network.manage import predefined_id

    ids = {n.name: n.id for n in store.networks.list()}
    ids.update({name: predefined_id(name) for name in ("host", "none") if name not in ids})
    return ids


def _on_network(c: Container, values: list[str], ids: dict[str, str]) -> bool:
    names = set(c.config.endpoints())
    for value in values:
        if value in names or any(ids.get(n, "").startswith(value) for n in names if value):
            return True
    return False


def _has_port(store: Store, c: Container, publish: set[str], expose: set[str]) -> bool:
    """Docker's ports of a running container: each published one by its
    host port (publish=) and container port (expose=), each port exposed
    and not published by its container port (expose=)."""
    if c.status != RUNNING:
        return False
    bound = set()
    for p in store.ports.list(c.id):
        bound.add(f"{p.container_port}/{p.protocol}")
        if f"{p.host_port}/{p.protocol}" in publish or f"{p.container_port}/{p.protocol}" in expose:
            return True
    return any(key in expose for key in c.config.config.exposed_ports or {} if key not in bound)


# -- images -------------------------------------------------------------------------


def filter_images(store: Store, items: Iterable[str] = ()) -> list[tuple[Image, list[str]]]:
    """`images --filter ...`: each image kept, newest first, with the tags
    to show (with `reference=`, only the tags it matches; an untagged image
    then shows not at all)."""
    f = parse_filters(items, IMAGE_KEYS)
    dangling = f.boolean("dangling")
    now = time.time()
    until = [parse_until(v, now) for v in f.values("until")]
    before = [store.images.resolve(v) for v in f.values("before")]
    since = [store.images.resolve(v) for v in f.values("since")]
    kept = []
    for image in store.images.list():
        created = _seconds(image.created)
        if dangling is not None and bool(image.tags or image.digests) == dangling:
            continue
        if not f.labels(image_labels(image)):
            continue
        if any(created >= _seconds(b.created) or image.id == b.id for b in before):
            continue
        if any(created <= _seconds(s.created) or image.id == s.id for s in since):
            continue
        if any(created >= u for u in until):
            continue
        tags = list(image.tags)
        if "reference" in f:
            tags = [
                t
                for t in tags
                if any(reference_match(p, _familiar(t)) or reference_match(p, t) for p in f.values("reference"))
            ]
            if not tags:
                continue
        kept.append((image, tags))
    return kept


def image_labels(image: Image) -> dict[str, str]:
    """The image's labels (its config's Labels)."""
    return dict(image.container_config.get("Labels") or {})


def _familiar(name: str) -> str:
    """Docker's short form of a stored name (`docker.io/library/x:1` is `x:1`)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


# -- volumes and networks ----------------------------------------------------------


def volume_matcher(items: Iterable[str], keys: tuple[str, ...] = VOLUME_KEYS) -> Any:
    """A test `(volume, in_use) -> bool` for `volume ls` (or, with
    VOLUME_PRUNE_KEYS, `volume prune`, whose `all` is prune_volumes'),
    checked now."""
    f = parse_filters(items, keys)
    dangling = f.boolean("dangling")
    prune = "label!" in keys

    def test(volume: Any, in_use: bool) -> bool:
        if dangling is not None and in_use == dangling:
            return False
        if not (f.match("name", volume.name) and f.exact("driver", volume.driver)):
            return False
        return f.prune_labels(volume.labels) if prune else f.labels(volume.labels)

    return test


def network_labels(network: Any) -> dict[str, str]:
    """A network's labels (kept in its options, as `network create --label` set them)."""
    return dict((network.options.get("labels") or {}) if network is not None else {})


def filter_networks(store: Store, items: Iterable[str] = ()) -> list[Any]:
    """`network ls --filter ...`: the listed rows (overlayctl.network.manage.Listed) kept."""
    from overlayctl.network.manage import PREDEFINED
    from overlayctl.network.manage import list_networks as all_networks

    f = parse_filters(items, NETWORK_KEYS)
    dangling = f.boolean("dangling")
    for value in f.values("type"):
        if value not in ("custom", "builtin"):
            raise invalid_filter("type", value)
    rows = all_networks(store)
    used: set[str] = set()
    if dangling is not None:
        for c in store.containers.list(all=True):
            used |= set(c.config.endpoints())
    kept = []
    for row in rows:
        builtin = row.name in PREDEFINED or row.network is None
        if dangling is not None and (builtin or row.name in used) == dangling:
            continue
        if not (f.match("name", row.name) and f.match("id", row.id) and f.exact("driver", row.driver)):
            continue
        if not (f.exact("scope", "local") and f.exact("type", "builtin" if builtin else "custom")):
            continue
        if not f.labels(network_labels(row.network)):
            continue
        kept.append(row)
    return kept


# -- prune --------------------------------------------------------------------------


class PruneFilter:
    """The filters of a prune command: `until` (created before it) and
    `label`/`label!`, checked when made."""

    def __init__(self, items: Iterable[str], keys: tuple[str, ...]) -> None:
        self.filters: Filters = parse_filters(items, keys)
        now = time.time()
        self.until = [parse_until(v, now) for v in self.filters.values("until")]

    def __bool__(self) -> bool:
        return bool(self.filters)

    def keeps(self, created: str, labels: dict[str, str]) -> bool:
        """Whether an object made at `created` with `labels` is spared."""
        seconds = _seconds(created)
        if any(seconds >= u for u in self.until):
            return True
        return not self.filters.prune_labels(labels)
