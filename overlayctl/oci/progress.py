"""Per-layer progress for pull, push, save and load, as Docker shows it.

On a terminal each layer has a line that is redrawn in place (status, a
bar, bytes done of total); otherwise the same events are plain lines
("a1b2c3d4e5f6: Pull complete") that a log or a test can read, and with
quiet nothing at all. Safe to call from several threads: transfers run in
parallel.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

BAR_WIDTH = 30
REDRAW_EVERY = 0.1  # seconds between redraws of the terminal view


def short_digest(digest: str) -> str:
    """The 12 hex digits Docker shows for a layer."""
    return digest.split(":", 1)[-1][:12]


def human_bytes(n: float) -> str:
    """Docker's units: 1000-based, three significant digits."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n:.3g}GB"


class _Row:
    __slots__ = ("key", "status", "done", "total")

    def __init__(self, key: str, status: str, total: int | None) -> None:
        self.key, self.status, self.done, self.total = key, status, 0, total


class Progress:
    """The progress display of one command: mode "tty", "lines" or "quiet"
    ("auto" picks tty when the stream is a terminal, else lines)."""

    def __init__(self, mode: str = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "tty" if self.stream.isatty() else "lines"
        self.mode = mode
        self._rows: dict[str, _Row] = {}
        self._order: list[str] = []
        self._drawn = 0  # lines of the live view currently on screen
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, key: str, status: str, total: int | None = None) -> None:
        """A new layer row (key: its short digest) with its first status."""
        with self._lock:
            self._rows[key] = _Row(key, status, total)
            self._order.append(key)
            self._emit(key, status, force=True)

    def status(self, key: str, status: str, line: bool = True) -> None:
        """Change a row's status; `line` False keeps it off the plain output
        (transient states such as "Downloading")."""
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = _Row(key, status, None)
                self._order.append(key)
            row.status = status
            if self.mode == "lines" and line:
                self._write(f"{key}: {status}\n")
            elif self.mode == "tty":
                self._redraw(force=True)

    def advance(self, key: str, n: int) -> None:
        """n more bytes of the row's transfer (n < 0: start it again)."""
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                return
            row.done = 0 if n < 0 else row.done + n
            if self.mode == "tty":
                self._redraw(force=False)

    def message(self, text: str, key: str | None = None) -> None:
        """A line below the rows (Digest:, Status:), never redrawn; with key,
        a line about that tag or layer ("1: Pulling from x")."""
        if key is not None:
            text = f"{key}: {text}"
        with self._lock:
            if self.mode == "quiet":
                return
            if self.mode == "tty":
                self._redraw(force=True)
                self._drawn = 0  # the rows above are final from here on
                self._order = []
            self._write(text + "\n")

    def close(self) -> None:
        """Leave the final state of the rows on the screen."""
        with self._lock:
            if self.mode == "tty":
                self._redraw(force=True)

    def _emit(self, key: str, status: str, force: bool) -> None:
        if self.mode == "lines":
            self._write(f"{key}: {status}\n")
        elif self.mode == "tty":
            self._redraw(force)

    def _line(self, row: _Row) -> str:
        if not row.total or row.status not in ("Downloading", "Pushing", "Writing", "Reading"):
            return f"{row.key}: {row.status}"
        fill = min(BAR_WIDTH, row.done * BAR_WIDTH // row.total)
        bar = "=" * fill + (">" if fill < BAR_WIDTH else "") + " " * (BAR_WIDTH - fill - 1)
        return f"{row.key}: {row.status:<11} [{bar}] {human_bytes(row.done)}/{human_bytes(row.total)}"

    def _redraw(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < REDRAW_EVERY:
            return
        self._last = now
        # Back to the first row (cursor up), then each row over its old text
        # (erase line): the view stays in place as it updates.
        out = f"\x1b[{self._drawn}A" if self._drawn else ""
        for key in self._order:
            out += "\x1b[2K" + self._line(self._rows[key]) + "\n"
        self._drawn = len(self._order)
        self._write(out)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
