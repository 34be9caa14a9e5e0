"""Container events, as Docker's `events` stream shows them.

overlayctl has no daemon to hold Docker's in-memory ring of events, so they
are appended, one JSON object a line in Docker's message shape, to
`<runroot>/events.jsonl`: volatile like Docker's, and kept small by
turning the file over once it passes EVENTS_MAX_BYTES (the one before it
stays as `events.jsonl.1`). Each event is one write(2) to a file opened
with O_APPEND, so writers in several processes never interleave.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.paths import Paths

EVENTS_MAX_BYTES = 1 << 20


def record(paths: Paths, container_id: str, name: str, image: str, action: str) -> None:
    """Append one container event (`action`: "health_status: healthy"...)."""
    import time

    from overlayctl.util import jsonio

    ns = time.time_ns()
    event = {
        "status": action,
        "id": container_id,
        "from": image,
        "Type": "container",
        "Action": action,
        "Actor": {"ID": container_id, "Attributes": {"image": image, "name": name}},
        "scope": "local",
        "time": ns // 1_000_000_000,
        "timeNano": ns,
    }
    path = paths.events_log
    try:
        if os.stat(path).st_size > EVENTS_MAX_BYTES:
            os.replace(path, path + ".1")
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (jsonio.dumps(event) + "\n").encode())
    finally:
        os.close(fd)


def read(paths: Paths) -> list[dict[str, Any]]:
    """Every event kept, oldest first (a torn last line is left out)."""
    from overlayctl.util import jsonio

    events = []
    for path in (paths.events_log + ".1", paths.events_log):
        try:
            with open(path, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                events.append(jsonio.loads(line))
            except ValueError:
                pass
    return events
