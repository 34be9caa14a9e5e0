"""Volumes in the catalog: which exist, and which containers use them.

A volume is a directory, volumes/<name>/_data, that containers bind-mount.
It is made in staging (and seeded there, when it is new), renamed into place
and recorded in one transaction; the rows that say which container uses it
at which target are written in that same transaction, so `volume prune`
can never see a new volume before its first user. Removal commits first and
deletes after, as everywhere in the store.

This module holds the transactional primitives only; the policy (what
`-f` may override, which volumes `rm -v` takes along) is overlayctl.volumes.mounts'.
"""

from __future__ import annotations

import os

from overlayctl.errors import ConflictError, NotFoundError
from overlayctl.paths import Paths
from overlayctl.store import events, staging
from overlayctl.store.catalog import transaction
from overlayctl.util import faults, jsonio
from overlayctl.util.humanize import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Iterable

DRIVER = "local"
# Docker 23+ marks anonymous volumes with this label; `volume prune` without
# --all removes only volumes that carry it.
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


# Beside _data in a volume directory whose removal has begun (see _mark_removing).
REMOVING_MARKER = "removing"

class Volume:
    """A volume as the catalog knows it."""

    __slots__ = ("name", "driver", "anonymous", "created", "labels")

    def __init__(self, name: str, driver: str, anonymous: bool, created: str, labels: dict[str, str]) -> None:
        self.name = name
        self.driver = driver
        self.anonymous = anonymous
        self.created = created
        self.labels = labels

    def __repr__(self) -> str:
        kind = "anonymous" if self.anonymous else "named"
        return f"Volume({self.name!r}, {kind})"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Volume:
        return cls(row["name"], row["driver"], bool(row["anonymous"]), row["created"], jsonio.loads(row["labels"]))


class NewVolume:
    """A volume staged (and perhaps seeded) under tmp/, not yet recorded."""

    __slots__ = ("name", "stage", "anonymous", "labels")

    def __init__(self, name: str, stage: str, anonymous: bool, labels: dict[str, str]) -> None:
        self.name = name
        self.stage = stage  # tmp/volume-<pid>-<rand>, holding _data/
        self.anonymous = anonymous
        self.labels = labels

    @property
    def data(self) -> str:
        return os.path.join(self.stage, "_data")


class VolumeStore:
    """Create, find, use, release and remove volumes."""

    def __init__(self, paths: Paths, conn: sqlite3.Connection) -> None:
        self.paths = paths
        self.conn = conn

    # Reading.

    def find(self, name: str) -> Volume | None:
        row = self.conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return Volume.from_row(row) if row is not None else None

    def get(self, name: str) -> Volume:
        volume = self.find(name)
        if volume is None:
            raise NotFoundError(f'volume "{name}" not found; see "overlayctl volume ls"')
        return volume

    def list_all(self) -> list[Volume]:
        return [Volume.from_row(r) for r in self.conn.execute("SELECT * FROM volumes ORDER BY name")]

    def users(self, name: str) -> list[str]:
        """IDs of the containers that use the volume (running or not)."""
        rows = self.conn.execute(
            "SELECT DISTINCT container FROM volume_users WHERE volume = ? ORDER BY container", (name,)
        )
        return [r[0] for r in rows]

    def used_by(self, container_id: str) -> list[tuple[str, str]]:
        """(volume, target) pairs a container uses."""
        rows = self.conn.execute(
            "SELECT volume, target FROM volume_users WHERE container = ? ORDER BY target", (container_id,)
        )
        return [(r[0], r[1]) for r in rows]

    def in_use(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT DISTINCT volume FROM volume_users")}

    def volume_counts(self) -> dict[str, int]:
        """How many volumes each container that uses any uses."""
        rows = self.conn.execute("SELECT container, COUNT(DISTINCT volume) FROM volume_users GROUP BY container")
        return {r[0]: r[1] for r in rows}

    def user_counts(self) -> dict[str, int]:
        """How many containers use each volume that is in use."""
        rows = self.conn.execute("SELECT volume, COUNT(DISTINCT container) FROM volume_users GROUP BY volume")
        return {r[0]: r[1] for r in rows}

    # Creating.

    def stage(self, name: str, anonymous: bool = False, labels: dict[str, str] | None = None) -> NewVolume:
        """An empty volume in staging: <stage>/_data, owned by root, 0755 as Docker's."""
        path = staging.new_staging_dir(self.paths.tmp, "volume")
        os.mkdir(os.path.join(path, "_data"), 0o755)
        os.chmod(os.path.join(path, "_data"), 0o755)  # whatever the umask
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        return NewVolume(name, path, anonymous, labels)

    def commit(self, new: Iterable[NewVolume], users: Iterable[tuple[str, str, str]] = ()) -> list[str]:
        """Rename staged volumes into place and record them with their users,
        (volume, container, target), in one transaction.

        A staged volume whose name got recorded meanwhile (two commands
        creating the same named volume at once) is dropped in favour of the
        recorded one; its name is returned so the caller knows its staged
        content was not used. Every used volume must exist, or nothing is
        recorded. A directory under volumes/ with no row is a leftover of a
        crash between rename and commit (or commit and deletion) and is
        replaced.
        """
        new = list(new)
        users = list(users)
        lost: list[str] = []
        placed: list[str] = []
        if not os.path.isdir(self.paths.volumes):
            os.makedirs(self.paths.volumes, 0o700, exist_ok=True)
        try:
            for volume in new:
                staging.flush(volume.stage)  # before the write lock: syncfs can take a while
            with transaction(self.conn):
                staged = {v.name for v in new}
                for name, _container, _target in users:
                    if name not in staged and self.find(name) is None:
                        raise NotFoundError(f'volume "{name}" was removed while the container was being created')
                created = now_rfc3339()
                for volume in new:
                    if self.find(volume.name) is not None:
                        lost.append(volume.name)
                        continue
                    target = self.paths.volume_dir(volume.name)
                    if os.path.lexists(target):
                        staging.discard(target, self.paths.tmp)
                    os.rename(volume.stage, target)
                    placed.append(target)
                    self.conn.execute(
                        "INSERT INTO volumes (name, driver, anonymous, created, labels) VALUES (?, ?, ?, ?, ?)",
                        (volume.name, DRIVER, int(volume.anonymous), created, jsonio.dumps(volume.labels)),
                    )
                self.conn.executemany(
                    "INSERT OR IGNORE INTO volume_users (volume, container, target) VALUES (?, ?, ?)", users
                )
        except BaseException:
            # The transaction rolled back: nothing recorded may stay placed.
            for target in placed:
                staging.discard(target, self.paths.tmp)
            raise
        finally:
            for volume in new:
                if os.path.lexists(volume.stage):
                    staging.remove_tree(volume.stage)
        if placed:
            staging.fsync_dir(self.paths.volumes)
        for volume in new:
            if volume.name not in lost:
                self._record("create", volume.name, volume.labels)
        return lost

    def _record(self, action: str, name: str, labels: dict[str, str] | None = None) -> None:
        """Append a volume event (store.events): Actor.ID is the name, as Docker's."""
        attributes = dict(labels or {})
        attributes["driver"] = DRIVER
        events.record(self.paths, "volume", action, name, attributes)

    def create(self, name: str, labels: dict[str, str] | None = None, anonymous: bool = False) -> tuple[Volume, bool]:
        """`volume create`: the volume, and whether it is new (an existing
        one is returned as it is, as Docker does)."""
        existing = self.find(name)
        if existing is not None:
            return existing, False
        lost = self.commit([self.stage(name, anonymous, labels)])
        return self.get(name), not lost

    # Releasing and removing.

    def release(self, container_id: str, remove_anonymous: bool) -> list[str]:
        """Forget a container's uses; with remove_anonymous, also remove the
        anonymous volumes it used that nothing else uses. Returns those."""
        with transaction(self.conn):
            names = [
                r[0]
                for r in self.conn.execute(
                    "SELECT DISTINCT volume FROM volume_users WHERE container = ?", (container_id,)
                )
            ]
            self.conn.execute("DELETE FROM volume_users WHERE container = ?", (container_id,))
            doomed: list[str] = []
            if remove_anonymous:
                for name in names:
                    volume = self.find(name)
                    if volume is not None and volume.anonymous and not self.users(name):
                        self.conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
                        doomed.append(name)
        self._delete_dirs(doomed)
        return doomed

    def remove(self, name: str, may_drop: Callable[[str], bool] = lambda _container: False) -> None:
        """Remove a volume nothing uses. A user for which may_drop(container
        ID) is true (`volume rm -f`, for containers that are not running)
        loses its use instead of blocking the removal."""
        with transaction(self.conn):
            self.get(name)
            self._forget_stale_users()
            users = self.users(name)
            blocking = [c for c in users if not may_drop(c)]
            if blocking:
                raise ConflictError(f"remove {name}: volume is in use - [{', '.join(blocking)}]")
            self._mark_removing([name])
            self.conn.execute("DELETE FROM volume_users WHERE volume = ?", (name,))
            self.conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        faults.point("volume-forgotten")
        self._delete_dirs([name])

    def prune(
        self, select: Callable[[Volume], bool], measure: Callable[[str], int] | None = None
    ) -> list[tuple[str, int]]:
        """Remove every unused volume for which select(volume) is true;
        returns (name, bytes) of each, measured after the commit, before
        the data is deleted."""
        with transaction(self.conn):
            self._forget_stale_users()
            used = self.in_use()
            doomed = [v.name for v in self.list_all() if v.name not in used and select(v)]
            self._mark_removing(doomed)
            for name in doomed:
                self.conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        sizes = [(name, measure(self.paths.volume_data(name)) if measure else 0) for name in doomed]
        self._delete_dirs(doomed)
        return sizes

    def _forget_stale_users(self) -> None:
        # Uses are recorded after the container's row exists and released
        # after it is deleted: a use without a container is a leftover of a
        # crash between the two, and must not keep a volume forever.
        self.conn.execute("DELETE FROM volume_users WHERE container NOT IN (SELECT id FROM containers)")

    def _mark_removing(self, names: list[str]) -> None:
        """Before the rows go: a marker beside each volume's _data saying its
        removal was asked for, so that a crash between the catalog and the
        directory leaves a directory fsck may delete (a volume directory
        without a row and without the marker may be someone's data, and is
        kept). A marker whose row stays (the transaction did not commit)
        changes nothing and goes with the next removal or fsck --repair."""
        for name in names:
            path = os.path.join(self.paths.volume_dir(name), REMOVING_MARKER)
            with open(path, "wb") as f:
                os.fsync(f.fileno())
            staging.fsync_dir(self.paths.volume_dir(name))

    def _delete_dirs(self, names: list[str]) -> None:
        # Every removal (rm, prune, an anonymous volume with its container)
        # ends here, just after its row went.
        for name in names:
            self._record("destroy", name)
            staging.discard(self.paths.volume_dir(name), self.paths.tmp)
