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

from overlayctl.errors import ConflictError, NotFoundError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

    from overlayctl.paths import Paths
    from overlayctl.store import Store

KEEP = 5  # backups `system gc` keeps (the newest good one is kept besides)
_PREFIX = "catalog-"


def directory(root: str) -> str:
    """Where the backups of the store at ``root`` are kept: Paths.backups,
    for the callers that hold only the root (a catalog opened by path)."""
    from overlayctl.paths import Paths

    return Paths(root, runroot="").backups


def _stamp() -> str:
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def make(conn: sqlite3.Connection, catalog_path: str, reason: str) -> str:
    """Back up the catalog open on ``conn``; the backup's path."""
    import sqlite3

    from overlayctl.store import staging

    top = directory(os.path.dirname(catalog_path))
    os.makedirs(top, mode=0o700, exist_ok=True)
    final = os.path.join(top, f"{_PREFIX}{_stamp()}-{reason}.db")
    tmp = os.path.join(top, f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        copy = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.backup(copy)
            # The copy inherits WAL mode; a backup is better one file.
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        staging.fsync_dir(top)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return final


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
    from overlayctl.store.health import quick_check

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


def _running_containers(paths: Paths) -> list[str]:
    """Containers with a living process, found without the catalog (which
    may be the damaged thing): each container's supervisor carries its ID
    on its command line. (Any process naming a container ID counts: a
    restore waits rather than guess.)"""
    try:
        ids = [name for name in os.listdir(paths.containers) if len(name) == 64]
    except FileNotFoundError:
        return []
    if not ids:
        return []
    lines = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                lines.append(f.read())
        except OSError:
            continue
    return [cid for cid in ids if any(cid.encode() in line for line in lines)]


def _chosen(root: str, source: str | None) -> str:
    from overlayctl.store.health import quick_check

    if source is None:
        found = newest_good(root)
        if found is None:
            raise NotFoundError(f"no good backup of the catalog is kept in {directory(root)}; name one to restore")
        return found
    if not os.path.isfile(source) and os.path.isfile(os.path.join(directory(root), source)):
        source = os.path.join(directory(root), source)
    if not os.path.isfile(source):
        raise NotFoundError(f"no backup file at {source}")
    result = quick_check(source)
    if result != "ok":
        raise StoreError(f"the backup {source} is damaged too (SQLite: {result}); name another")
    return os.path.abspath(source)


def restore(paths: Paths, source: str | None = None) -> tuple[str, list[str]]:
    """Put backup ``source`` (default: the newest good one) in place of the
    catalog, keeping the current one aside; then reconcile it with the
    disk. Returns the backup restored and one line per thing reconciled."""
    from overlayctl.store import staging
    from overlayctl.store.locks import exclusive

    chosen = _chosen(paths.root, source)
    running = _running_containers(paths)
    if running:
        raise ConflictError(
            f"{len(running)} containers are running ({', '.join(r[:12] for r in running[:5])}); "
            "stop them before restoring the catalog"
        )
    report = []
    with exclusive(paths.layers_lock, "the layer store"):
        # Copied in full before anything is moved: a copy that fails (no
        # space) leaves the store as it was.
        tmp = paths.catalog_restore_tmp()
        try:
            _copy(chosen, tmp)
        except BaseException:
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.lexists(tmp + suffix):
                    os.unlink(tmp + suffix)
            raise
        stamp = _stamp()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(paths.catalog + suffix):
                aside = f"{paths.catalog}.damaged-{stamp}{suffix}"
                os.rename(paths.catalog + suffix, aside)
                if not suffix:
                    report.append(f"kept aside: {aside}")
        os.rename(tmp, paths.catalog)
        staging.fsync_dir(paths.root)
    from overlayctl.store import Store

    store = Store(paths)
    try:
        with exclusive(paths.layers_lock, "the layer store"):
            report += reconcile(store)
    finally:
        store.close()
    return chosen, report


def _copy(source: str, target: str) -> None:
    """A backup copied into a new catalog file, WAL mode, fsynced."""
    import sqlite3

    from overlayctl.store.health import uri

    src = sqlite3.connect(uri(source, "mode=ro"), uri=True)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = WAL")
    finally:
        src.close()
        dst.close()
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def reconcile(store: Store) -> list[str]:
    """Make a restored catalog and the disk agree without losing data.

    Layer and container directories the catalog does not name are moved to
    ROOT/kept-after-restore (fsck would call them orphans and delete them: they may
    be all that is left of images made after the backup); those it names
    that are in kept-after-restore from an earlier restore are moved back. A
    container whose directory is gone is forgotten (nothing of it is left
    to lose); a layer whose directory is gone is reported with what it
    breaks, for the user to decide.
    """
    from overlayctl.store.catalog import transaction

    paths = store.paths
    report = []
    kinds = (
        ("layers", paths.layers, {r[0] for r in store.conn.execute("SELECT dir FROM layers")}),
        ("containers", paths.containers, {r[0] for r in store.conn.execute("SELECT id FROM containers")}),
    )
    for kind, top, known in kinds:
        found = paths.kept_after_restore(kind)
        for name in sorted(_names(found)):
            if name in known and not os.path.lexists(os.path.join(top, name)):
                os.rename(os.path.join(found, name), os.path.join(top, name))
                report.append(f"put back from kept-after-restore: {kind}/{name}")
        for name in sorted(_names(top)):
            if name in known:
                continue
            os.makedirs(found, mode=0o700, exist_ok=True)
            target = os.path.join(found, name)
            if os.path.lexists(target):
                target += f".{_stamp()}"
            os.rename(os.path.join(top, name), target)
            report.append(f"not in the restored catalog, moved to {target}{_what(target)} (nothing deleted)")
    for row in store.conn.execute("SELECT diff_id, dir FROM layers ORDER BY diff_id").fetchall():
        if not os.path.isdir(paths.layer_diff(row["dir"])):
            report.append(f"layer missing: {row['diff_id']} (layers/{row['dir']} is gone); its images are broken")
    for row in store.conn.execute("SELECT id, name FROM containers ORDER BY name").fetchall():
        if not os.path.isdir(paths.container_dir(row["id"])):
            with transaction(store.conn):
                for table, column in (("volume_users", "container"), ("leases", "container"), ("containers", "id")):
                    store.conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (row["id"],))
            report.append(f"forgotten: container {row['name']} ({row['id'][:12]}): its directory is gone")
    return report


def _what(layer_dir: str) -> str:
    """The diff_id a layer directory carries beside its data, if any."""
    try:
        with open(os.path.join(layer_dir, "diff_id")) as f:
            return f" (layer {f.read().strip()})"
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _names(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
