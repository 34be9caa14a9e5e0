"""The record of events, in Docker's `events` message shape.

Every change of a container, image, network or volume is appended as one
JSON line to `<root>/events/events.jsonl` by the process that made it.
dockerd keeps its events in a ring in memory, which lives as long as the
daemon; overlayctl has no daemon, so the record is a file that every later
command can read. It lives in the store, not the runroot: the containers,
images and volumes it speaks of outlive a reboot, `events --since` about
them should too, and `system df` charges its bytes like the rest of the
store (podman's file logger is the same idea, kept in its tmpdir).

Cheap and safe with many writers:
- one write(2) of one whole line to a file opened with O_APPEND, no fsync:
  the kernel serialises appends to one inode, so lines never interleave;
  an event lost to a crash is an event, not the store's consistency;
- bounded: once the file passes EVENTS_MAX_BYTES it is renamed to
  `events.jsonl.1` (dropping the generation before it), under a flock of
  the directory so that two writers crossing the limit together turn it
  over once. A writer that opened the old file just before the rename
  lands its line there, where readers still look.
- best effort: an event that cannot be written (a read-only or full store)
  never fails the operation it describes.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from overlayctl.paths import Paths

EVENTS_MAX_BYTES = 1 << 20
# Docker's message carries these deprecated fields for these types only.
_LEGACY_TYPES = ("container", "image")


def message(
    type_: str, action: str, actor_id: str, attributes: dict[str, str], ns: int | None = None
) -> dict[str, Any]:
    """One event as Docker's API and `events --format '{{json .}}'` show it."""
    import time

    if ns is None:
        ns = time.time_ns()
    event: dict[str, Any] = {}
    if type_ in _LEGACY_TYPES:
        event["status"] = action
        event["id"] = actor_id
        if type_ == "container" and "image" in attributes:
            event["from"] = attributes["image"]
    event["Type"] = type_
    event["Action"] = action
    event["Actor"] = {"ID": actor_id, "Attributes": attributes}
    event["scope"] = "local"
    event["time"] = ns // 1_000_000_000
    event["timeNano"] = ns
    return event


def record(paths: Paths, type_: str, action: str, actor_id: str, attributes: dict[str, str]) -> None:
    """Append one event; never raises for want of room or permission."""
    from overlayctl.util import jsonio

    line = (jsonio.dumps(message(type_, action, actor_id, attributes)) + "\n").encode()
    try:
        _append(paths, line)
    except OSError:
        pass


def container_attributes(name: str, image: str, labels: dict[str, str] | None, **extra: str) -> dict[str, str]:
    """A container's Actor.Attributes: its labels, then image and name (and
    the action's own, exitCode or signal), as Docker sets them."""
    attributes = dict(labels or {})
    attributes["image"] = image
    attributes["name"] = name
    attributes.update(extra)
    return attributes


def _append(paths: Paths, line: bytes) -> None:
    path = paths.events_log
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, line)
        if os.fstat(fd).st_size > EVENTS_MAX_BYTES:
            _turn_over(path, fd)
    finally:
        os.close(fd)


def _turn_over(path: str, fd: int) -> None:
    import fcntl

    lock = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return
        # Only the file this writer filled: another writer may have turned
        # it over already, and the new one is small.
        if current.st_ino == os.fstat(fd).st_ino:
            os.replace(path, path + ".1")
    finally:
        os.close(lock)


def files(paths: Paths) -> list[str]:
    """The record's files, oldest first."""
    return [paths.events_log + ".1", paths.events_log]


def read(paths: Paths) -> list[dict[str, Any]]:
    """Every event kept, oldest first (by time: concurrent writers may have
    appended a moment out of order). A torn line is left out."""
    events: list[dict[str, Any]] = []
    for path in files(paths):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        events.extend(parse_lines(data.split(b"\n")))
    events.sort(key=lambda e: e.get("timeNano", 0))
    return events


def count(paths: Paths) -> int:
    """How many events are kept (lines, without parsing them)."""
    total = 0
    for path in files(paths):
        try:
            with open(path, "rb") as f:
                total += f.read().count(b"\n")
        except FileNotFoundError:
            continue
    return total


def parse_lines(lines: list[bytes]) -> Iterator[dict[str, Any]]:
    """The events among `lines`, skipping torn or foreign ones."""
    from overlayctl.util import jsonio

    for line in lines:
        if not line:
            continue
        try:
            event = jsonio.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def follow(paths: Paths, poll: float = 0.1) -> Iterator[dict[str, Any] | None]:
    """Events appended from now on, across turn-overs, forever. Yields None
    first, once it is positioned at the end, and then whenever it has
    caught up (before it sleeps `poll`), so the caller may stop at a
    deadline."""
    import time

    path = paths.events_log
    fd = _open(path)
    if fd is not None:
        os.lseek(fd, 0, os.SEEK_END)
    pending = b""
    try:
        yield None
        while True:
            if fd is None:
                fd = _open(path)
            chunk = os.read(fd, 1 << 16) if fd is not None else b""
            if chunk:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                yield from parse_lines(lines)
                continue
            if fd is not None and _turned_over(path, fd):
                # The file we read is now events.jsonl.1 and read to its
                # end: the new one is read from its start.
                os.close(fd)
                fd, pending = _open(path), b""
                continue
            yield None
            time.sleep(poll)
    finally:
        if fd is not None:
            os.close(fd)


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _turned_over(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
