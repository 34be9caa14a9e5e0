"""The build cache: which image config a build step produced from which.

A step is identified by the image it starts from and a key (the sha256 of
its instruction, the build args it sees and, for COPY/ADD, the content and
metadata of its sources). Rows are written only when a build succeeds, all
owned by the image it produced, and vanish with that image.
"""

from __future__ import annotations

from overlayctl.store.catalog import transaction

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3


class CacheEntry:
    """One step: (parent, key) gave the image `result` with `config`."""

    __slots__ = ("parent", "key", "result", "config")

    def __init__(self, parent: str, key: str, result: str, config: bytes) -> None:
        self.parent = parent
        self.key = key
        self.result = result
        self.config = config


class BuildCache:
    """Look up and record build steps."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def lookup(self, parent: str, key: str) -> bytes | None:
        """The config bytes a cached step produced, or None on a miss."""
        row = self.conn.execute(
            "SELECT config FROM build_cache WHERE parent = ? AND key = ? LIMIT 1", (parent, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def record(self, owner: str, entries: list[CacheEntry]) -> None:
        """Keep the steps of a finished build, owned by its image."""
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT OR IGNORE INTO build_cache (parent, key, result, config, owner) VALUES (?, ?, ?, ?, ?)",
                [(e.parent, e.key, e.result, e.config, owner) for e in entries],
            )

    def parent_of(self, image_id: str) -> str | None:
        """The image a known build step started from ("" for scratch)."""
        row = self.conn.execute("SELECT parent FROM build_cache WHERE result = ? LIMIT 1", (image_id,)).fetchone()
        return None if row is None else str(row[0])

    def known(self, image_id: str) -> bool:
        """Whether a build step here produced this image ID."""
        row = self.conn.execute("SELECT 1 FROM build_cache WHERE result = ? LIMIT 1", (image_id,)).fetchone()
        return row is not None

    def named_layers(self) -> set[str]:
        """diff_ids the cached configs name: with multi-stage builds, also
        layers of stages that no image holds."""
        from overlayctl.util import jsonio

        found: set[str] = set()
        for (config,) in self.conn.execute("SELECT DISTINCT config FROM build_cache"):
            found.update(jsonio.loads(bytes(config))["rootfs"]["diff_ids"])
        return found

    def count(self) -> int:
        """How many build steps are cached."""
        return int(self.conn.execute("SELECT COUNT(*) FROM build_cache").fetchone()[0])

    def clear(self) -> None:
        """Forget every cached build step (their layers stay with the images
        the builds made)."""
        with transaction(self.conn):
            self.conn.execute("DELETE FROM build_cache")

    def orphaned_count(self) -> int:
        """How many cached steps belong to an image that is gone (the
        catalog cascades normally; one that lost its foreign keys may
        keep them)."""
        row = self.conn.execute("SELECT COUNT(*) FROM build_cache WHERE owner NOT IN (SELECT id FROM images)")
        return int(row.fetchone()[0])

    def remove_orphaned(self) -> None:
        """Forget the cached steps whose owning image is gone."""
        with transaction(self.conn):
            self.conn.execute("DELETE FROM build_cache WHERE owner NOT IN (SELECT id FROM images)")
