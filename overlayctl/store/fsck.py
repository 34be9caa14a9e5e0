"""`system fsck`: the catalog against the directories, and what to do about it.

Every check compares what the catalog records with what is on disk and
reports each difference as a Finding. A finding carries a repair only when
the repair loses nothing that still exists: leftovers nothing refers to (a
layer, container or blob directory written before a crash kept its catalog
row from being written, staging of a dead process) are removed; a blob row
whose file is gone is dropped (save and push write the layer anew if they
can). What
is really lost (a layer or a container's upper directory that the catalog
still names) is reported with the images and containers it breaks, and left
for the user to decide: fsck never deletes an image or a container.

Entries that a running command may be between writing and recording (a
container directory or blob file created in the last GRACE seconds) are
not called leftovers yet; layer directories are checked under the layer
store's lock, volumes inside a catalog write transaction, the same ways
their commits are serialised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from overlayctl.store import staging
from overlayctl.store.catalog import transaction
from overlayctl.store.volumes import REMOVING_MARKER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store

# Seconds a directory or blob without its row is left to its writer
# (OVERLAYCTL_FSCK_GRACE: tests, and whoever knows nothing else runs).
GRACE = float(os.environ.get("OVERLAYCTL_FSCK_GRACE", "3600"))


@dataclass
class Finding:
    """One difference between the catalog and the disk."""

    problem: str  # e.g. "orphan layer directory"
    subject: str  # what it is about: a path, an ID, a name
    detail: str = ""
    repair: Callable[[], None] | None = field(default=None, repr=False)  # a repair that loses nothing
    repaired: bool = False

    def line(self) -> str:
        """One line for the report."""
        text = f"{self.problem}: {self.subject}" + (f" ({self.detail})" if self.detail else "")
        if self.repaired:
            return text + ": repaired"
        return text + (": repairable with --repair" if self.repair else "")


def _old(path: str, now: float) -> bool:
    try:
        return now - os.lstat(path).st_ctime > GRACE
    except FileNotFoundError:
        return False


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _ours(name: str, lengths: tuple[int, ...]) -> bool:
    """A name overlayctl could have given: lowercase hex of one of these lengths."""
    return len(name) in lengths and all(c in "0123456789abcdef" for c in name)


def _images_using(store: Store, diff_id: str) -> str:
    rows = store.conn.execute(
        "SELECT DISTINCT image_id FROM image_layers WHERE diff_id = ? ORDER BY image_id", (diff_id,)
    ).fetchall()
    names = []
    for row in rows:
        tags = [t[0] for t in store.conn.execute("SELECT name FROM tags WHERE image_id = ?", (row[0],))]
        names.append(", ".join(sorted(tags)) or row[0].split(":", 1)[-1][:12])
    return "; ".join(names) if names else "no image"


def check(store: Store, verify_content: bool = False) -> list[Finding]:
    """Everything that differs between the catalog and the store's
    directories; with verify_content, every layer's files are read and
    compared with the content index recorded at its commit."""
    findings: list[Finding] = []
    findings += _catalog(store)
    findings += _layers(store, verify_content)
    findings += _containers(store)
    findings += _projects(store)
    findings += _volumes(store)
    findings += _blobs(store)
    findings += _staging(store)
    findings += _runtime(store)
    return findings


# More orphan directories than this, outnumbering those the catalog names,
# is not what crashes leave (each leaves at most one or two): it is a
# catalog that lost its rows, and repair refuses.
MAX_ORPHANS = 8

_DELETES_DIRECTORY = ("orphan layer directory", "orphan container directory")


def ensure_repairable(store: Store, findings: list[Finding]) -> None:
    """Refuse, deleting nothing, unless the catalog is proven healthy.

    An orphan is garbage only if the catalog that does not name it is the
    whole truth. So repair deletes a directory only when the catalog passes
    SQLite's quick_check, has the current schema, is not empty beside a
    populated layers/ or containers/ (an emptied or replaced catalog), and
    the directories it would delete are plausible crash leftovers: at most
    MAX_ORPHANS, or fewer than those the catalog names. Otherwise the way
    back is a backup (overlayctl.store.backup), not a deletion.
    """
    from overlayctl.store import health
    from overlayctl.store.catalog import SCHEMA_VERSION

    path = store.paths.catalog
    result = "; ".join(str(r[0]) for r in store.conn.execute("PRAGMA quick_check").fetchall()[:3])
    if result != "ok":
        raise health.damaged(path, result)
    version = store.conn.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise health.damaged(path, f"schema {version}, not {SCHEMA_VERSION}")
    layers, containers = health.stored_entries(store.paths.root)
    rows = [store.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("layers", "images", "containers")]
    if (layers or containers) and not any(rows):
        raise health.lost(path, "empty", layers, containers, "repair")
    doomed = sum(1 for f in findings if f.problem in _DELETES_DIRECTORY and f.repair and not f.repaired)
    named = rows[0] + rows[2]
    if doomed > MAX_ORPHANS and doomed > named:
        raise health.lost(
            path, f"missing {doomed} of the directories on disk ({named} named)", layers, containers, "repair"
        )


def repair(store: Store, findings: list[Finding]) -> None:
    """Carry out every repair the findings carry, once the catalog is
    proven healthy (ensure_repairable)."""
    ensure_repairable(store, findings)
    if any(f.repair is not None and not f.repaired for f in findings):
        store.backup("repair")
    for finding in findings:
        if finding.repair is not None and not finding.repaired:
            try:
                finding.repair()
            except FileNotFoundError:
                pass  # gone meanwhile: what the repair was for
            finding.repaired = True


def _catalog(store: Store) -> list[Finding]:
    out = []
    result = [row[0] for row in store.conn.execute("PRAGMA integrity_check").fetchall()]
    if result != ["ok"]:
        out += [Finding("catalog damaged", store.paths.catalog, text) for text in result[:20]]
    for table, rowid, parent, _fk in store.conn.execute("PRAGMA foreign_key_check").fetchall():
        out.append(Finding("dangling reference", f"{table} row {rowid}", f"names a missing {parent} row"))
    return out


def _layers(store: Store, verify_content: bool) -> list[Finding]:
    from overlayctl.store.locks import exclusive

    out: list[Finding] = []
    with exclusive(store.paths.layers_lock, "the layer store"):
        rows = store.conn.execute("SELECT diff_id, dir, content_index FROM layers ORDER BY diff_id").fetchall()
        known = {row["dir"] for row in rows}
        for row in rows:
            if not os.path.isdir(store.paths.layer_diff(row["dir"])):
                out.append(
                    Finding(
                        "layer missing",
                        row["diff_id"],
                        f"layers/{row['dir']}/diff is gone; broken: {_images_using(store, row['diff_id'])}",
                    )
                )
        for name in _listdir(store.paths.layers):
            path = store.paths.layer_dir(name)
            if name in known:
                continue
            if _ours(name, (16, 24, 32, 64)):
                out.append(
                    Finding("orphan layer directory", path, "no layer row names it", _drop_layer_dir(store, name))
                )
            else:
                out.append(Finding("unknown entry", path, "not a name overlayctl gives a layer; kept"))
    if verify_content:
        out += _verify_layers(store, rows)
    return out


def _drop_layer_dir(store: Store, name: str) -> Callable[[], None]:
    def drop() -> None:
        from overlayctl.store.locks import exclusive

        # Checked again under the lock: a commit may have put a layer there
        # since (it replaces a leftover of the same name).
        with exclusive(store.paths.layers_lock, "the layer store"):
            if store.conn.execute("SELECT 1 FROM layers WHERE dir = ?", (name,)).fetchone() is None:
                staging.discard(store.paths.layer_dir(name), store.paths.tmp)

    return drop


def _drop_volume_dir(store: Store, name: str) -> Callable[[], None]:
    def drop() -> None:
        # In a write transaction, as volumes are placed and recorded: a
        # volume of that name made since is left alone.
        with transaction(store.conn):
            if store.conn.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone() is None:
                staging.discard(store.paths.volume_dir(name), store.paths.tmp)

    return drop


def _verify_layers(store: Store, rows: list) -> list[Finding]:  # type: ignore[type-arg]
    from overlayctl.layer import contentindex

    out = []
    for row in rows:
        layer_dir = store.paths.layer_dir(row["dir"])
        if not os.path.isdir(os.path.join(layer_dir, "diff")):
            continue  # reported as missing
        if not row["content_index"]:
            out.append(Finding("layer not verifiable", row["diff_id"], "stored before content indexes"))
            continue
        damage = contentindex.compare(layer_dir, row["content_index"])
        if damage:
            shown = "; ".join(damage[:5]) + (f"; and {len(damage) - 5} more" if len(damage) > 5 else "")
            out.append(
                Finding(
                    "layer damaged",
                    row["diff_id"],
                    f"{shown}; used by: {_images_using(store, row['diff_id'])}",
                )
            )
    return out


def _containers(store: Store) -> list[Finding]:
    out = []
    now = time.time()
    rows = store.conn.execute("SELECT id, name FROM containers ORDER BY name").fetchall()
    known = {row["id"] for row in rows}
    for row in rows:
        if not os.path.isdir(store.paths.upper(row["id"])):
            out.append(
                Finding(
                    "container layer missing",
                    row["name"],
                    f"containers/{row['id']}/upper is gone; `overlayctl rm -f {row['name']}` removes the container",
                )
            )
    mounted = _mount_points()
    for name in _listdir(store.paths.containers):
        path = store.paths.container_dir(name)
        if name in known or not _old(path, now):
            continue
        if not _ours(name, (64,)):
            out.append(Finding("unknown entry", path, "not a name overlayctl gives a container; kept"))
            continue
        busy = any(m == path or m.startswith(path + "/") for m in mounted)
        out.append(
            Finding(
                "orphan container directory",
                path,
                "no container row names it" + ("; something is mounted in it" if busy else ""),
                None if busy else lambda path=path: staging.discard(path, store.paths.tmp),
            )
        )
    return out


def _volumes(store: Store) -> list[Finding]:
    out = []
    # Inside a write transaction: volumes are renamed into place and recorded
    # in one, so nothing is half-way while this looks (a store on a
    # read-only filesystem changes under nobody, and takes no write lock).
    with _reading(store) if store.read_only else transaction(store.conn):
        rows = store.conn.execute("SELECT name FROM volumes ORDER BY name").fetchall()
        known = {row["name"] for row in rows}
        for row in rows:
            if not os.path.isdir(store.paths.volume_data(row["name"])):
                out.append(Finding("volume missing", row["name"], f"volumes/{row['name']}/_data is gone"))
            marker = os.path.join(store.paths.volume_dir(row["name"]), REMOVING_MARKER)
            if os.path.lexists(marker):
                out.append(
                    Finding(
                        "interrupted volume removal",
                        row["name"],
                        "a removal crashed before its commit; the volume is intact",
                        lambda marker=marker: os.unlink(marker),
                    )
                )
        for name in _listdir(store.paths.volumes):
            if name in known:
                continue
            path = store.paths.volume_dir(name)
            data = os.path.join(path, "_data")
            removing = os.path.lexists(os.path.join(path, REMOVING_MARKER))
            empty = not _listdir(data)
            # A volume directory with data in it may be all that is left of
            # someone's volume: reported, never deleted, unless its removal
            # had been asked for (the marker) and crashed half-way.
            if removing:
                detail = "its removal was interrupted"
            else:
                detail = "no volume row names it" + ("" if empty else "; it holds data, so it is kept")
            out.append(
                Finding(
                    "orphan volume directory",
                    path,
                    detail,
                    _drop_volume_dir(store, name) if empty or removing else None,
                )
            )
    return out


class _reading:  # noqa: N801 - used like transaction()
    """Nothing to take: the store cannot change."""

    def __init__(self, store: Store) -> None:
        self.conn = store.conn

    def __enter__(self) -> object:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        pass


def _blobs(store: Store) -> list[Finding]:
    out = []
    now = time.time()
    rows = store.conn.execute("SELECT digest FROM layer_blobs ORDER BY digest").fetchall()
    known = {row["digest"] for row in rows}
    for row in rows:
        digest = row["digest"]
        if not os.path.isfile(store.paths.blob(digest)):

            def drop(digest: str = digest) -> None:
                with transaction(store.conn):
                    store.conn.execute("DELETE FROM layer_blobs WHERE digest = ?", (digest,))

            out.append(
                Finding(
                    "blob missing",
                    digest,
                    "the tar its layer came as is gone; save and push write the layer anew where its files give "
                    "back its diff_id",
                    drop,
                )
            )
    for name in _listdir(store.paths.blobs):
        path = os.path.join(store.paths.blobs, name)
        if "sha256:" + name in known or not _old(path, now):
            continue
        out.append(Finding("orphan blob", path, "no layer claims it", lambda path=path: os.unlink(path)))
    return out


def _staging(store: Store) -> list[Finding]:
    try:
        found = staging.leftovers(store.paths.tmp)
    except FileNotFoundError:
        return []
    return [
        Finding(
            "staging leftover",
            path,
            f"its process {owner} is gone{_holding(path)}",
            lambda path=path: staging.remove_tree(path),
        )
        for path, owner in found
    ]


def _holding(path: str) -> str:
    """What project ID a staged container directory holds (until it is
    removed: the ID goes with its last inode)."""
    from overlayctl.store import projects

    held = sorted({projects.project_in(os.path.join(path, sub)) for sub in projects.TAGGED} - {0})
    return f"; it holds project ID {', '.join(map(str, held))}" if held else ""


def _projects(store: Store) -> list[Finding]:
    """Project IDs against the containers: no ID carried by two containers,
    and every container with a size (HostConfig.StorageOpt) has an ID of
    its own on its upper and work dirs, limited to that size."""
    from overlayctl.store import projects

    out: list[Finding] = []
    rows = store.conn.execute("SELECT id, name FROM containers ORDER BY created, name").fetchall()
    names = {row[0]: row[1] for row in rows}
    order = {row[0]: n for n, row in enumerate(rows)}
    for project, dirs in sorted(projects.ids_on_disk(store.paths).items()):
        owners = {os.path.basename(os.path.dirname(d)): os.path.dirname(d) for d in dirs}
        if len(owners) < 2:
            continue
        # Containers oldest first, then directories no container row names.
        placed = sorted((o for o in owners if o in names), key=order.__getitem__)
        shown = ", ".join([names[o] for o in placed] + sorted(p for o, p in owners.items() if o not in names))
        # The repair gives every container but the oldest a new ID of its
        # own (with its limit); a staged or orphan directory is removed by
        # its own repair.
        later = [c for c in placed[1:] if not store.containers.is_running(c)]
        out.append(
            Finding(
                "project ID shared",
                f"project {project}",
                f"carried by the directories of {shown}; each container needs its own, or their limits merge",
                _new_projects(store, later) if later else None,
            )
        )
    sized = store.conn.execute(
        "SELECT id, name, json_extract(config, '$.HostConfig.StorageOpt.size') AS size FROM containers "
        "WHERE json_extract(config, '$.HostConfig.StorageOpt.size') IS NOT NULL ORDER BY name"
    ).fetchall()
    if not sized:
        return out
    from overlayctl.runtime import quota

    reason = quota.why_not(store.paths.root)
    for row in sized:
        out += _sized(store, row["id"], row["name"], str(row["size"]), reason)
    return out


def _sized(store: Store, container_id: str, name: str, size: str, reason: str | None) -> list[Finding]:
    from overlayctl.runtime import quota
    from overlayctl.store import projects
    from overlayctl.store.storageopts import size_of

    upper, work = store.paths.upper(container_id), store.paths.work(container_id)
    if not os.path.isdir(upper):
        return []  # reported as missing
    limit = size_of({"size": size})
    if not limit:
        return []  # size=0: no limit, no project (as Docker)
    if reason is not None:
        return [Finding("size limit not enforced", name, f"--storage-opt size={size}, but {reason}")]
    project = projects.project_in(upper)
    running = store.containers.is_running(container_id)
    if not project or (os.path.isdir(work) and projects.project_in(work) != project):
        where = f"containers/{container_id}/upper and work"
        detail = f"--storage-opt size={size}, but {where} have no project ID of their own"
        if running:
            detail += "; stop it to repair"
        return [
            Finding(
                "container without its project ID",
                name,
                detail,
                None if running else _new_projects(store, [container_id]),
            )
        ]
    kernel = quota.usage(store.paths.root, project).limit
    if _kib(kernel) == _kib(limit):
        return []

    def set_limit() -> None:
        quota.set_limit(store.paths.root, project, limit)

    return [
        Finding(
            "container size limit differs",
            name,
            f"--storage-opt size={size} is {limit} bytes; project {project}'s limit is {kernel or 'none'}",
            set_limit,
        )
    ]


def _kib(size: int) -> int:
    # ext4's quota file keeps limits in KiB: 512-byte units come back rounded up.
    return -(-size // 1024)


def _new_projects(store: Store, container_ids: list[str]) -> Callable[[], None]:
    def renumber() -> None:
        from overlayctl.runtime import quota
        from overlayctl.store import projects
        from overlayctl.store.storageopts import size_of

        for container_id in container_ids:
            row = store.conn.execute(
                "SELECT json_extract(config, '$.HostConfig.StorageOpt.size') FROM containers WHERE id = ?",
                (container_id,),
            ).fetchone()
            trees = [store.paths.upper(container_id), store.paths.work(container_id)]
            project = projects.retag(store.paths, trees)
            size = row[0] if row else None
            quota.set_limit(store.paths.root, project, size_of({"size": str(size)}) if size else 0)

    return renumber


def stale_leases(store: Store) -> list[Finding]:
    """Lease files of layers that are not stored (a pull or build that
    failed leaves them): harmless empty files, so not problems for check(),
    but garbage for gc."""
    import fcntl

    out = []
    top = store.paths.leases
    known = {row[0].split(":", 1)[-1] for row in store.conn.execute("SELECT diff_id FROM layers")}
    for name in _listdir(top):
        if name in known:
            continue
        path = os.path.join(top, name)

        def drop(path: str = path) -> None:
            # Only while nobody holds it: a command may be leasing a layer
            # it is about to store.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(path)
            except BlockingIOError:
                pass
            finally:
                os.close(fd)

        out.append(Finding("stale lease", path, "a lease file of a layer that is not stored", drop))
    return out


def _runtime(store: Store) -> list[Finding]:
    from overlayctl.store.containers import Container

    out = []
    for row in store.conn.execute("SELECT * FROM containers ORDER BY name").fetchall():
        container = Container.from_row(row)
        if container.is_lost:
            out.append(
                Finding(
                    "container not running",
                    container.name,
                    f"recorded as {container.status}; no process of it is left",
                    # Reading it through the store records the truth (exited).
                    lambda cid=container.id: store.containers.get(cid),
                )
            )
    return out


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            field_ = line.split(b" ")[4]
            points.append(field_.decode("unicode_escape", "replace"))
    return points
