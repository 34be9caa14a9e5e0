"""Restoring the catalog from a backup (`system restore`), then making the
restored catalog and the disk agree without losing data.
"""

from __future__ import annotations

import os

from overlayctl.errors import ConflictError, NotFoundError, StoreError
from overlayctl.store.backup import directory, newest_good, stamp
from overlayctl.store.integrity import quick_check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.paths import Paths
    from overlayctl.store import Store


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
        moment = stamp()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(paths.catalog + suffix):
                aside = f"{paths.catalog}.damaged-{moment}{suffix}"
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

    from overlayctl.store.backup import copy_database
    from overlayctl.store.integrity import uri

    src = sqlite3.connect(uri(source, "mode=ro"), uri=True)
    try:
        copy_database(src, target, "WAL")
    finally:
        src.close()


def _lost_found(paths: Paths, kind: str) -> str:
    return paths.kept_after_restore(kind)


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
        found = _lost_found(paths, kind)
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
                target += f".{stamp()}"
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
