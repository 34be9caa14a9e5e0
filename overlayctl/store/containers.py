"""Containers: an image plus one writable layer (upper + work directories).

The catalog row holds the configuration and the last known state. A running
state is only believed while its process is alive: a row that says
"running" for a pid that is gone (the supervisor was killed, or the host
rebooted) is reported as exited.
"""

from __future__ import annotations

import os

from overlayctl import jsonio
from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.paths import Paths
from overlayctl.reference import validate_container_name
from overlayctl.store import staging
from overlayctl.store.catalog import transaction
from overlayctl.units import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from typing import Any

CREATED, RUNNING, EXITED = "created", "running", "exited"


class Container:
    """A container as the catalog knows it."""

    __slots__ = (
        "id",
        "name",
        "image_id",
        "image_name",
        "config",
        "created",
        "status",
        "pid",
        "pid_start",
        "exit_code",
        "started_at",
        "finished_at",
        "error",
        "oom_killed",
    )

    def __init__(
        self,
        id: str,
        name: str,
        image_id: str,
        image_name: str,
        config: dict[str, Any],
        created: str,
        status: str,
        pid: int,
        pid_start: int,
        exit_code: int | None,
        started_at: str,
        finished_at: str,
        error: str,
        oom_killed: bool = False,
    ) -> None:
        self.id = id
        self.name = name
        self.image_id = image_id
        self.image_name = image_name  # the reference the user gave
        self.config = config
        self.created = created
        self.status = status
        self.pid = pid
        self.pid_start = pid_start
        self.exit_code = exit_code
        self.started_at = started_at
        self.finished_at = finished_at
        self.error = error
        self.oom_killed = oom_killed

    def __repr__(self) -> str:
        return f"Container({self.short_id!r}, name={self.name!r}, status={self.status!r})"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Container:
        return cls(
            row["id"],
            row["name"],
            row["image_id"],
            row["image_name"],
            jsonio.loads(row["config"]),
            row["created"],
            row["status"],
            row["pid"],
            row["pid_start"],
            row["exit_code"],
            row["started_at"],
            row["finished_at"],
            row["error"],
            bool(row["oom_killed"]),
        )


def process_start_time(pid: int) -> int:
    """The kernel's start time of pid (clock ticks since boot), 0 if gone.

    Together with the pid it names one process for good: a recycled pid has
    a different start time.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    # comm (field 2) may contain spaces and parentheses: split after the last ")".
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


class ContainerStore:
    """Create, find, update and remove containers."""

    def __init__(self, paths: Paths, conn: sqlite3.Connection) -> None:
        self.paths = paths
        self.conn = conn

    def create(self, image_id: str, image_name: str, config: dict[str, Any], name: str | None = None) -> Container:
        """Make the container's directory (with an empty upper/) and record it.

        The directory is made in staging and renamed into place before the
        catalog row exists, so a row always has its directory.
        """
        container_id = os.urandom(32).hex()
        created = now_rfc3339()
        if name is not None:
            name = validate_container_name(name)
        stage = os.path.join(self.paths.tmp, f"container-{os.getpid()}-{container_id[:12]}")
        os.mkdir(stage, 0o710)
        try:
            # work/ is made at start: an idle created container costs only
            # its own directory and an empty upper/ (8 KiB on ext4).
            os.mkdir(os.path.join(stage, "upper"), 0o755)
            os.rename(stage, self.paths.container_dir(container_id))
        except BaseException:
            staging.remove_tree(stage)
            raise
        try:
            with transaction(self.conn):
                if name is None:
                    name = self._free_generated_name()
                elif self.conn.execute("SELECT 1 FROM containers WHERE name = ?", (name,)).fetchone():
                    raise ConflictError(
                        f'container name "{name}" is already in use; remove that container or choose another name'
                    )
                self.conn.execute(
                    "INSERT INTO containers (id, name, image_id, image_name, config, created, status) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (container_id, name, image_id, image_name, jsonio.dumps(config), created, CREATED),
                )
        except BaseException:
            staging.discard(self.paths.container_dir(container_id), self.paths.tmp)
            raise
        return Container(container_id, name, image_id, image_name, config, created, CREATED, 0, 0, None, "", "", "")

    def _free_generated_name(self) -> str:
        from overlayctl.names import generate_name

        for _ in range(100):
            name = generate_name()
            if not self.conn.execute("SELECT 1 FROM containers WHERE name = ?", (name,)).fetchone():
                return name
        raise ConflictError("could not find a free container name; give one with --name")

    def get(self, text: str) -> Container:
        """Find a container by name, full ID or unique ID prefix."""
        row = self.conn.execute(
            "SELECT * FROM containers WHERE id = ? OR name = ?", (text, text.lstrip("/"))
        ).fetchone()
        if row is None and text and len(text) <= 64:
            rows = self.conn.execute(
                "SELECT * FROM containers WHERE id >= ? AND id < ? LIMIT 2", (text, text + "g")
            ).fetchall()
            if len(rows) > 1:
                raise InvalidArgumentError(f'container ID prefix "{text}" is ambiguous; give more characters')
            row = rows[0] if rows else None
        if row is None:
            raise NotFoundError(f'container "{text}" not found; see "overlayctl ps -a"')
        return self._reconciled(Container.from_row(row))

    def list(self, all: bool = False) -> list[Container]:
        rows = self.conn.execute("SELECT * FROM containers ORDER BY created DESC").fetchall()
        containers = [self._reconciled(Container.from_row(row)) for row in rows]
        return containers if all else [c for c in containers if c.status == RUNNING]

    def _reconciled(self, container: Container) -> Container:
        # The catalog's "running" is a claim; the process table is the truth.
        if container.status == RUNNING and process_start_time(container.pid) != container.pid_start:
            self.set_exited(container.id, None, error="its process ended while no supervisor was watching")
            container.status, container.exit_code = EXITED, None
            container.error = "its process ended while no supervisor was watching"
        return container

    def set_running(self, container_id: str, pid: int) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE containers SET status = ?, pid = ?, pid_start = ?, started_at = ?, finished_at = '', "
                "exit_code = NULL, error = '' WHERE id = ?",
                (RUNNING, pid, process_start_time(pid), now_rfc3339(), container_id),
            )

    def set_exited(self, container_id: str, exit_code: int | None, error: str = "", oom_killed: bool = False) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE containers SET status = ?, pid = 0, pid_start = 0, exit_code = ?, finished_at = ?, error = ?, "
                "oom_killed = ? WHERE id = ?",
                (EXITED, exit_code, now_rfc3339(), error, int(oom_killed), container_id),
            )

    def claim_start(self, container_id: str) -> Container:
        """Check a container can be started; refuse one that is running."""
        container = self.get(container_id)
        if container.status == RUNNING:
            raise ConflictError(f'container "{container.name}" is already running')
        return container

    def update_config(self, container_id: str, config: dict[str, Any]) -> None:
        """Replace a container's config (volumes are added after the row exists)."""
        with transaction(self.conn):
            self.conn.execute("UPDATE containers SET config = ? WHERE id = ?", (jsonio.dumps(config), container_id))

    def remove(self, container: Container, force: bool = False) -> None:
        """Delete the catalog row, then the directories (upper dir and all)."""
        if container.status == RUNNING and not force:
            raise ConflictError(f'container "{container.name}" is running; stop it first or use "overlayctl rm -f"')
        if container.status == RUNNING:
            _kill_and_wait(container.pid, container.pid_start)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM containers WHERE id = ?", (container.id,))
        staging.discard(self.paths.container_dir(container.id), self.paths.tmp)


def _kill_and_wait(pid: int, pid_start: int, timeout: float = 10.0) -> None:
    """SIGKILL a container's PID 1 and wait until it is gone, so that its
    mount namespace (and the overlay on the upper dir) is torn down before
    the directories are deleted."""
    import time

    if process_start_time(pid) != pid_start:
        return
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while process_start_time(pid) == pid_start and time.monotonic() < deadline:
        time.sleep(0.01)
