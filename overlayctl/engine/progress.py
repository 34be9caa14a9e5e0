"""What a person waiting on a pull, push, save or load sees: the per-layer
display (oci.progress.Progress, handed out here) and the reporter that
draws the archive code's events on it.

A front end makes the display (quiet, one line per event, or live rows on
a terminal) and hands it in; the engine reports to it and never prints.
"""

from __future__ import annotations

import time
from typing import Any

from overlayctl.oci.progress import Progress, human_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from overlayctl.oci.archive import Progress as ArchiveProgress

__all__ = ["Events", "Progress", "archive_reporter"]

# Byte counts of a transfer are sent at most this often per layer (and
# always when it ends): a client redraws its bar no faster than that.
EVENT_EVERY = 0.1


class Events(Progress):
    """A display that draws nothing: each change of a row or message is
    handed to sink as data, in Docker's progress form, for a front end that
    sends them on (the Engine API's streamed JSON):

    - {"status": "Pulling fs layer", "progressDetail": {}, "id": "a1b2c3d4e5f6"}
    - {"status": "Downloading", "progressDetail": {"current": 1024, "total": 4096},
      "progress": "[====>   ] 1.02kB/4.1kB", "id": "a1b2c3d4e5f6"}
    - {"status": "Digest: sha256:..."} for a message, with "id" when it has a key.

    sink is called from the transfer threads, one call at a time."""

    def __init__(self, sink: Callable[[dict[str, Any]], None]) -> None:
        super().__init__("quiet")
        self.mode = "events"
        self._sink = sink
        self._states: dict[str, list[Any]] = {}  # key: [status, done, total, last sent]

    def add(self, key: str, status: str, total: int | None = None) -> None:
        with self._lock:
            self._states[key] = [status, 0, total, 0.0]
            self._sink({"status": status, "progressDetail": {}, "id": key})

    def status(self, key: str, status: str, line: bool = True) -> None:
        with self._lock:
            self._states.setdefault(key, [status, 0, None, 0.0])[0] = status
            self._sink({"status": status, "progressDetail": {}, "id": key})

    def advance(self, key: str, n: int) -> None:
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return
            status, done, total, last = state
            state[1] = done = 0 if n < 0 else done + n
            now = time.monotonic()
            if now - last < EVENT_EVERY and done != total:
                return
            state[3] = now
            detail: dict[str, Any] = {"current": done}
            event: dict[str, Any] = {"status": status, "progressDetail": detail, "id": key}
            if total:
                detail["total"] = total
                event["progress"] = progress_bar(done, total)
            self._sink(event)

    def message(self, text: str, key: str | None = None) -> None:
        with self._lock:
            self._sink({"status": text} if key is None else {"status": text, "id": key})

    def close(self) -> None:
        pass


def progress_bar(done: int, total: int, width: int = 50) -> str:
    """Docker's progress text: "[=====>      ]  1.2MB/3.4MB"."""
    fill = min(width, done * width // total) if total else 0
    bar = "=" * fill + (">" if fill < width else "") + " " * max(0, width - fill - 1)
    return f"[{bar}] {human_bytes(done):>8}/{human_bytes(total)}"


def archive_reporter(display: Progress, verb: str) -> ArchiveProgress:
    """The events of a save or a load (verb), drawn on display."""
    from overlayctl.oci.archive import Progress as ArchiveProgress
    from overlayctl.oci.progress import short_digest

    # On a terminal the row carries a bar, which the display draws only for
    # its transfer statuses; a log gets Docker's words.
    busy = {"load": "Extracting", "save": "Writing"}[verb] if display.mode == "tty" else "Loading layer"

    class _Shown(ArchiveProgress):
        def layer_start(self, digest: str, size: int) -> None:
            display.add(short_digest(digest), busy, size)

        def layer_advance(self, digest: str, nbytes: int) -> None:
            display.advance(short_digest(digest), nbytes)

        def layer_done(self, digest: str, status: str) -> None:
            key = short_digest(digest)
            if status == "Already exists":
                display.add(key, status)
            else:
                display.status(key, status, line=verb == "save")

        def image_done(self, name: str) -> None:
            display.message(f"Loaded image ID: {name}" if name.startswith("sha256:") else f"Loaded image: {name}")

    return _Shown()
