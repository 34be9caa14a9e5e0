"""`events`: the record of events (store.events), read back as Docker's
`events` command and its API endpoint show it: a time window, filters, the
default one-line form, JSON and templates, and following live.

Filters match as dockerd's events filter does: values of one key are
alternatives, keys must all match, except `label`, whose values must all
match. `container`, `network` and `volume` match an event of that type by
its Actor.ID (or a prefix of it) or its name; `image` matches an image
event's ID or name, and a container event's image, with or without the tag;
`event` matches the action, and `health_status`, `exec_create` and
`exec_start` also match the actions they begin.
"""

from __future__ import annotations

import time

from overlayctl.errors import InvalidArgumentError
from overlayctl.store import events as record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from overlayctl.store import Store

# Docker's keys. Those of swarm and plugins (config, daemon, node, plugin,
# secret, service) are Docker's too: accepted, and as no such event is
# ever recorded here, they match nothing.
FILTER_KEYS = (
    "config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope",
    "secret", "service", "type", "volume",
)  # fmt: skip
_FUZZY_EVENTS = ("health_status", "exec_create", "exec_start")


class Filters:
    """Parsed `--filter key=value` options (see the module's docstring)."""

    def __init__(self, items: list[str] | tuple[str, ...] = ()) -> None:
        self.by_key: dict[str, list[str]] = {}
        for item in items:
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq or not key:
                raise InvalidArgumentError(
                    f'invalid argument "{item}" for "-f, --filter" flag: bad format of filter (expected name=value)'
                )
            if key not in FILTER_KEYS:
                raise InvalidArgumentError(f"invalid filter '{key}'")
            self.by_key.setdefault(key, []).append(value)

    def _exact(self, key: str, *candidates: str) -> bool:
        wanted = self.by_key.get(key)
        return wanted is None or any(c in wanted for c in candidates)

    def _named(self, event: dict[str, Any], key: str) -> bool:
        # Docker's fuzzyMatchName: the ID or a prefix of it, or the name.
        wanted = self.by_key.get(key)
        if wanted is None:
            return True
        actor = event.get("Actor") or {}
        actor_id, name = actor.get("ID", ""), (actor.get("Attributes") or {}).get("name", "")
        return event.get("Type") == key and any(
            w and (actor_id.startswith(w) or name == w or name.startswith(w)) for w in wanted
        )

    def _event(self, action: str) -> bool:
        wanted = self.by_key.get("event")
        if wanted is None:
            return True
        if any(w in _FUZZY_EVENTS for w in wanted):
            return any(action.startswith(w) for w in wanted)
        return action in wanted

    def _image(self, event: dict[str, Any]) -> bool:
        if "image" not in self.by_key:
            return True
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        name = attributes.get("name" if event.get("Type") == "image" else "image", "")
        actor_id = actor.get("ID", "")
        return self._exact("image", actor_id, name, _strip_tag(actor_id), _strip_tag(name))

    def _labels(self, attributes: dict[str, str]) -> bool:
        for wanted in self.by_key.get("label", []):
            key, eq, value = wanted.partition("=")
            if key not in attributes or (eq and attributes[key] != value):
                return False
        return True

    def match(self, event: dict[str, Any]) -> bool:
        """Whether `event` passes every filter."""
        for key in ("config", "daemon", "node", "plugin", "secret", "service"):
            if key in self.by_key:
                return False
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        return (
            self._event(event.get("Action", ""))
            and self._exact("type", event.get("Type", ""))
            and self._exact("scope", event.get("scope", ""))
            and self._named(event, "container")
            and self._named(event, "network")
            and self._named(event, "volume")
            and self._image(event)
            and self._labels(attributes)
        )


def _strip_tag(name: str) -> str:
    """A reference without its tag or digest (registry ports kept)."""
    name = name.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def parse_window(since: str | None, until: str | None, now_ns: int | None = None) -> tuple[int, int]:
    """`--since`/`--until` in ns since the epoch (0: not given), as Docker
    takes them: a duration back from now, Unix seconds, RFC 3339."""
    from overlayctl.supervise.logs import parse_since

    now_ns = time.time_ns() if now_ns is None else now_ns
    start = parse_since(since, now_ns) if since else 0
    end = parse_since(until, now_ns) if until else 0
    if start and end and start > end:
        raise InvalidArgumentError(f"`since` time ({since}) cannot be after `until` time ({until})")
    return start, end


def stream(
    store: Store,
    since: str | None = None,
    until: str | None = None,
    filters: list[str] | tuple[str, ...] = (),
    poll: float = 0.1,
) -> Iterator[dict[str, Any]]:
    """The events that pass `filters`: those kept from `since` (when a
    window is given, as dockerd replays its buffer), then, unless `until`
    has passed, those that happen from now on, until `until` (forever
    without it). Arguments are checked before the first event."""
    matcher = Filters(filters)
    start, end = parse_window(since, until)
    live = record.follow(store.paths, poll)
    next(live)  # positioned at the end before the past is read: nothing falls between
    return (event for event in _events(store, live, matcher, start, end) if event is not None)


def feed(
    store: Store,
    since: str | None = None,
    until: str | None = None,
    filters: list[str] | tuple[str, ...] = (),
) -> Iterator[dict[str, Any] | None]:
    """The same events as stream(), for a caller that must never block
    (the Engine API's event loop): it yields None whenever it has caught
    up with the record and never sleeps, so the caller waits its own way
    between calls and can stop at any of them. It ends when `until` has
    passed; close() it to stop earlier. Arguments are checked now."""
    matcher = Filters(filters)
    start, end = parse_window(since, until)
    live = record.follow(store.paths, 0.0)
    next(live)
    return _events(store, live, matcher, start, end)


def _events(
    store: Store, live: Iterator[dict[str, Any] | None], matcher: Filters, start: int, end: int
) -> Iterator[dict[str, Any] | None]:
    # None when caught up with the record (stream() drops them; feed()'s
    # caller waits on them).
    seen: set[tuple[Any, ...]] = set()
    try:
        if start or end:
            for event in record.read(store.paths):
                ns = event.get("timeNano", 0)
                if ns < start or (end and ns > end):
                    continue
                seen.add(_key(event))
                if matcher.match(event):
                    yield event
        if end and time.time_ns() > end:
            return
        for arrived in live:
            if arrived is None:
                if end and time.time_ns() > end:
                    return
                yield None
                continue
            ns = arrived.get("timeNano", 0)
            if ns < start or (end and ns > end) or _key(arrived) in seen:
                continue
            if matcher.match(arrived):
                yield arrived
    finally:
        live.close()  # type: ignore[attr-defined]


def _key(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event.get("timeNano"), event.get("Type"), event.get("Action"), (event.get("Actor") or {}).get("ID"))


# --- output --------------------------------------------------------------------------


def line(event: dict[str, Any]) -> str:
    """Docker's default line: time (local, nanoseconds), type, action, actor
    ID, then the attributes sorted by key in parentheses."""
    ns = int(event.get("timeNano") or int(event.get("time") or 0) * 1_000_000_000)
    actor = event.get("Actor") or {}
    text = f"{_rfc3339_nano_fixed(ns)} {event.get('Type', '')} {event.get('Action', '')} {actor.get('ID', '')}"
    attributes = actor.get("Attributes") or {}
    if attributes:
        text += " (" + ", ".join(f"{k}={attributes[k]}" for k in sorted(attributes)) + ")"
    return text


def _rfc3339_nano_fixed(ns: int) -> str:
    # Go's "2006-01-02T15:04:05.000000000Z07:00" in local time: "Z" for UTC.
    seconds, frac = divmod(ns, 1_000_000_000)
    local = time.localtime(seconds)
    offset = local.tm_gmtoff or 0
    zone = (
        "Z" if offset == 0 else f"{'+' if offset > 0 else '-'}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    )
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{frac:09d}" + zone


def is_json_format(fmt: str) -> bool:
    """`--format json` and `{{json .}}`: the message as the API sends it."""
    return fmt.strip() in ("json", "{{json .}}", "{{ json . }}")


def template_data(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a template sees it: Go's field names of events.Message."""
    actor = event.get("Actor") or {}
    return {
        "Status": event.get("status", ""),
        "ID": event.get("id", ""),
        "From": event.get("from", ""),
        "Type": event.get("Type", ""),
        "Action": event.get("Action", ""),
        "Actor": {"ID": actor.get("ID", ""), "Attributes": actor.get("Attributes") or {}},
        "Scope": event.get("scope", ""),
        "Time": event.get("time", 0),
        "TimeNano": event.get("timeNano", 0),
    }


def formatter(fmt: str | None) -> Any:
    """A function from an event to its output line, for `--format` (None:
    Docker's default line). Checked before anything is read."""
    if not fmt:
        return line
    if is_json_format(fmt):
        from overlayctl.util import jsonio

        return jsonio.dumps
    from overlayctl.util.gotemplate import Template

    template = Template(fmt)
    return lambda event: template.execute(template_data(event))


def last_exit_code(store: Store, container_id: str) -> int | None:
    """The exit code of a container's last `die` event (None without
    one): what is left of a container's end once it has been removed, as
    an AutoRemove container is the moment it ends."""
    for event in reversed(record.read(store.paths)):
        if event.get("Type") != "container" or event.get("Action") != "die":
            continue
        actor = event.get("Actor") or {}
        if actor.get("ID") == container_id:
            try:
                return int((actor.get("Attributes") or {}).get("exitCode", ""))
            except ValueError:
                return None
    return None
