"""Backups of the catalog, and bringing one back.

A backup is a copy made through SQLite's online backup API (a consistent
snapshot even while other processes write), in rollback-journal mode so it
is one self-contained file: ROOT/backups/catalog-<UTC time>-<reason>.db,
written under a temporary name, fsynced and renamed into place. One is made
before each schema upgrade, before `system fsck --repair`, and by `system
backup`; `system gc` keeps the newest KEEP.

`system restore` puts one back and reconciles it with the disk: what the
backup does not know is moved to ROOT/kept-after-restore, never deleted, and put
back by a later restore of a catalog that names it again.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3


KEEP = 5  # backups `system gc` keeps (the newest good one is kept besides)
_PREFIX = "catalog-"


def directory(root: str) -> str:
    """Where the backups of the store at ``root`` are kept: Paths.backups,
    for the callers that hold only the root (a catalog opened by path)."""
    from overlayctl.paths import Paths

    return Paths(root, runroot="").backups


def stamp() -> str:
    """Now, as backup and kept-aside file names carry it."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def make(conn: sqlite3.Connection, catalog_path: str, reason: str) -> str:
    """Back up the catalog open on ``conn``; the backup's path."""

    from overlayctl.store import staging

    top = directory(os.path.dirname(catalog_path))
    os.makedirs(top, mode=0o700, exist_ok=True)
    final = os.path.join(top, f"{_PREFIX}{stamp()}-{reason}.db")
    tmp = os.path.join(top, f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        # A backup is better one file: no WAL beside it.
        copy_database(conn, tmp, "DELETE")
        os.rename(tmp, final)
        staging.fsync_dir(top)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return final


def copy_database(source: sqlite3.Connection, target: str, journal_mode: str) -> None:
    """Every page of ``source`` into a new database file at ``target``
    (SQLite's online backup: consistent while others write), in
    ``journal_mode``, fsynced."""
    import sqlite3

    copy = sqlite3.connect(target, isolation_level=None)
    try:
        source.backup(copy)
        copy.execute(f"PRAGMA journal_mode = {journal_mode}")
    finally:
        copy.close()
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def listing(root: str) -> list[str]:
    """Every backup's path, newest first."""
    try:
        names = os.listdir(directory(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [n for n in names if n.startswith(_PREFIX) and n.endswith(".db")]
    return [os.path.join(directory(root), n) for n in sorted(found, reverse=True)]


def newest_good(root: str) -> str | None:
    """The newest backup whose quick_check passes."""
    from overlayctl.store.integrity import quick_check

    return next((path for path in listing(root) if quick_check(path) == "ok"), None)


def prune(root: str, keep: int = KEEP, dry_run: bool = False) -> list[str]:
    """Remove all but the newest ``keep`` backups, never the newest good
    one; the paths removed."""
    kept = listing(root)[:keep]
    good = newest_good(root)
    gone = [path for path in listing(root)[keep:] if path != good]
    if dry_run:
        return gone
    for path in gone:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if gone and kept:
        from overlayctl.store import staging

        staging.fsync_dir(directory(root))
    return gone


