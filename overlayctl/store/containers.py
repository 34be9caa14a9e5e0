"""Containers: an image plus one writable layer (upper + work directories).

The catalog row holds the configuration and the last known state. A running
state is only believed while its processes are alive: a row that says
"running" for a container process and a supervisor that are both gone (the
supervisor was killed, or the host rebooted) is reported as exited, with an
unknown exit code. Processes are named by pid and /proc start time, so a
recycled pid is never mistaken for the container.
"""

from __future__ import annotations

import os

from overlayctl.container.model import ContainerConfig
from overlayctl.errors import ConflictError, InvalidArgumentError, NotFoundError
from overlayctl.paths import Paths
from overlayctl.store import events, staging
from overlayctl.store.catalog import transaction
from overlayctl.util import faults, jsonio
from overlayctl.util.humanize import now_rfc3339
from overlayctl.util.proc import process_start_time
from overlayctl.util.reference import validate_container_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

CREATED, RUNNING, RESTARTING, EXITED = "created", "running", "restarting", "exited"
# ContainerStore.list(shared_configs=True)'s memo: config text -> parsed config.
_SHARED_CONFIGS: dict[str, ContainerConfig] = {}
_SHARED_MAX = 4096
LOST = "its process ended while no supervisor was watching"


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
        "supervisor_pid",
        "supervisor_start",
        "restart_count",
        "manually_stopped",
    )

    def __init__(
        self,
        id: str,
        name: str,
        image_id: str,
        image_name: str,
        config: ContainerConfig,
        created: str,
        status: str,
        pid: int,
        pid_start: int,
        exit_code: int | None,
        started_at: str,
        finished_at: str,
        error: str,
        oom_killed: bool = False,
        supervisor_pid: int = 0,
        supervisor_start: int = 0,
        restart_count: int = 0,
        manually_stopped: bool = False,
    ) -> None:
        self.id = id
        self.name = name
        self.image_id = image_id
        self.image_name = image_name  # the reference the user gave
        self.config = config  # what it runs and how: the catalog's JSON, typed
        self.created = created
        self.status = status
        self.pid = pid
        self.pid_start = pid_start
        self.exit_code = exit_code
        self.started_at = started_at
        self.finished_at = finished_at
        self.error = error
        self.oom_killed = oom_killed
        self.supervisor_pid = supervisor_pid  # the process that reaps it and records its exit
        self.supervisor_start = supervisor_start
        self.restart_count = restart_count  # restarts by its restart policy since the last start
        self.manually_stopped = manually_stopped  # stop or kill ended it: the policy does not restart it

    def __repr__(self) -> str:
        return f"Container({self.short_id!r}, name={self.name!r}, status={self.status!r})"

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @classmethod
    def from_row(cls, row: sqlite3.Row, shared: dict[str, ContainerConfig] | None = None) -> Container:
        """The container of a catalog row. With `shared`, a memo of configs
        by their stored text: containers read with the same text share one
        config, which the caller then must not change."""
        text = row["config"]
        config = shared.get(text) if shared is not None else None
        if config is None:
            config = ContainerConfig.from_json(jsonio.loads(text))
            if shared is not None:
                if len(shared) >= _SHARED_MAX:
                    shared.clear()
                shared[text] = config
        return cls(
            row["id"],
            row["name"],
            row["image_id"],
            row["image_name"],
            config,
            row["created"],
            row["status"],
            row["pid"],
            row["pid_start"],
            row["exit_code"],
            row["started_at"],
            row["finished_at"],
            row["error"],
            bool(row["oom_killed"]),
            row["supervisor_pid"],
            row["supervisor_start"],
            row["restart_count"],
            bool(row["manually_stopped"]),
        )

    @property
    def is_active(self) -> bool:
        """Running, or waiting to be restarted by its supervisor."""
        return self.status in (RUNNING, RESTARTING)

    @property
    def is_lost(self) -> bool:
        """Recorded as running or restarting, with no living process behind
        the claim (while the supervisor lives it has the last word: it
        records the exit a moment after the container's process is gone)."""
        if self.status == RUNNING:
            return not self.process_alive() and not self.supervisor_alive()
        return self.status == RESTARTING and not self.supervisor_alive()

    def process_alive(self) -> bool:
        """Whether the container's PID 1 (as recorded) still exists."""
        return _alive(self.pid, self.pid_start)

    def supervisor_alive(self) -> bool:
        """Whether the recorded supervisor still exists."""
        return _alive(self.supervisor_pid, self.supervisor_start)


def _alive(pid: int, start: int) -> bool:
    # (A start time of 0 is a process that was gone when it was recorded.)
    return pid > 0 and start != 0 and process_start_time(pid) == start


class ContainerStore:
    """Create, find, update and remove containers."""

    def __init__(self, paths: Paths, conn: sqlite3.Connection) -> None:
        self.paths = paths
        self.conn = conn

    def create(
        self,
        image_id: str,
        image_name: str,
        config: ContainerConfig,
        name: str | None = None,
        storage_size: int | None = None,
    ) -> Container:
        """Make the container's directory (with an empty upper/) and record it.

        The directory is made in staging and renamed into place before the
        catalog row exists, so a row always has its directory.

        With `storage_size` (bytes, --storage-opt size=; 0 or None: no
        limit, as Docker), the upper and work dirs get a project ID of their
        own, limited to that size, before they leave staging; a store whose
        filesystem cannot enforce it is refused first, with nothing made.
        """
        if storage_size:
            refuse_storage_size(self.paths.root, recorded_size(config) or str(storage_size))
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
            if storage_size:
                _limit_staged(self.paths, stage, storage_size)
            faults.point("container-staged")
            os.rename(stage, self.paths.container_dir(container_id))
        except BaseException:
            staging.remove_tree(stage)
            raise
        faults.point("container-placed")
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
                    (container_id, name, image_id, image_name, jsonio.dumps(config.to_json()), created, CREATED),
                )
        except BaseException:
            staging.discard(self.paths.container_dir(container_id), self.paths.tmp)
            raise
        faults.point("container-recorded")
        container = Container(
            container_id, name, image_id, image_name, config, created, CREATED, 0, 0, None, "", "", ""
        )
        self.record(container, "create")
        return container

    def record(self, container: Container | str, action: str, **attributes: str) -> None:
        """Append a container event (store.events) with Docker's attributes:
        the container's labels, image and name, then `attributes`."""
        # Only the labels of the stored document: start, die and destroy are
        # on every run's path, and reading the whole document back is not.
        if isinstance(container, str):
            row = self.conn.execute(
                "SELECT name, image_name, json_extract(config, '$.Config.Labels') FROM containers WHERE id = ?",
                (container,),
            ).fetchone()
            if row is None:
                return
            container_id, name, image = container, row[0], row[1]
            labels = jsonio.loads(row[2]) if row[2] else None
        else:
            container_id, name, image = container.id, container.name, container.image_name
            labels = container.config.config.labels or None
        events.record(
            self.paths,
            "container",
            action,
            container_id,
            events.container_attributes(name, image, labels, **attributes),
        )

    def _free_generated_name(self) -> str:
        from overlayctl.util.names import generate_name

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

    def list(self, all: bool = False, shared_configs: bool = False) -> list[Container]:
        """Containers, newest first (with `all`, stopped ones too). With
        `shared_configs`, for a long-lived reader that only reads (the
        Engine API's list, polled by every client): configs come from a
        memo of the ones read before, parsed once per stored text, and must
        not be changed."""
        rows = self.conn.execute("SELECT * FROM containers ORDER BY created DESC").fetchall()
        memo = _SHARED_CONFIGS if shared_configs else None
        containers = [self._reconciled(Container.from_row(row, memo)) for row in rows]
        return containers if all else [c for c in containers if c.is_active]

    # Reads of the rows as recorded: no reconciling write.

    def name_of(self, container_id: str) -> str | None:
        """The name of the container with this full ID."""
        row = self.conn.execute("SELECT name FROM containers WHERE id = ?", (container_id,)).fetchone()
        return None if row is None else str(row[0])

    def id_with_prefix(self, prefix: str) -> str | None:
        """The ID of a container whose ID starts with ``prefix`` (the first
        one, if several do)."""
        row = self.conn.execute(
            "SELECT id FROM containers WHERE id >= ? AND id < ? LIMIT 1", (prefix, prefix + "g")
        ).fetchone()
        return None if row is None else str(row[0])

    def ids(self) -> set[str]:
        """The ID of every container recorded."""
        return {row[0] for row in self.conn.execute("SELECT id FROM containers")}

    def ids_claimed_alive(self) -> set[str]:
        """IDs of the containers recorded as neither created nor exited: each
        row claims a living container (get or list checks the claim)."""
        rows = self.conn.execute("SELECT id FROM containers WHERE status NOT IN (?, ?)", (CREATED, EXITED))
        return {row[0] for row in rows}

    def image_ids_in_use(self) -> set[str]:
        """IDs of the images some container (running or not) is made from."""
        return {row[0] for row in self.conn.execute("SELECT DISTINCT image_id FROM containers")}

    def is_running(self, container_id: str) -> bool:
        """Whether the container is recorded as running and its PID 1 lives.
        Only reads, so it may be asked inside another store transaction."""
        row = self.conn.execute(
            "SELECT status, pid, pid_start FROM containers WHERE id = ?", (container_id,)
        ).fetchone()
        return row is not None and row["status"] == RUNNING and process_start_time(row["pid"]) == row["pid_start"]

    def _reconciled(self, container: Container) -> Container:
        # The catalog's "running" is a claim; the process table is the truth.
        if container.is_lost:
            self._mark_lost(container, container.exit_code if container.status == RESTARTING else None)
        return container

    def _mark_lost(self, container: Container, exit_code: int | None) -> None:
        # When the loss is noticed is the best finish time there is.
        finished = now_rfc3339()
        with transaction(self.conn):
            marked = self.conn.execute(
                "UPDATE containers SET status = ?, pid = 0, pid_start = 0, supervisor_pid = 0, supervisor_start = 0, "
                "exit_code = ?, finished_at = ?, error = ? WHERE id = ? AND status = ?",
                (EXITED, exit_code, finished, LOST, container.id, container.status),
            ).rowcount
        container.status, container.exit_code, container.error = EXITED, exit_code, LOST
        container.finished_at = finished
        if marked:  # (two commands may notice the loss at once: one event)
            self.record(container, "die", exitCode=str(-1 if exit_code is None else exit_code))
        container.pid = container.pid_start = container.supervisor_pid = container.supervisor_start = 0

    def set_running(self, container_id: str, pid: int, supervisor_pid: int | None = None) -> None:
        """Record the container's PID 1 and its supervisor (default: the caller)."""
        supervisor = os.getpid() if supervisor_pid is None else supervisor_pid
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE containers SET status = ?, pid = ?, pid_start = ?, supervisor_pid = ?, supervisor_start = ?, "
                "started_at = ?, finished_at = '', exit_code = NULL, error = '', oom_killed = 0 WHERE id = ?",
                (
                    RUNNING,
                    pid,
                    process_start_time(pid),
                    supervisor,
                    process_start_time(supervisor),
                    now_rfc3339(),
                    container_id,
                ),
            )
        self.record(container_id, "start")

    def set_exited(
        self, container_id: str, exit_code: int | None, error: str = "", oom_killed: bool = False, died: bool = True
    ) -> None:
        """Record the end. The supervisor is kept: it exits a moment later,
        and `rm`, `stop` and `wait` wait for that (nothing of the container
        is left when they return). `died`: whether this is news (a "die"
        event), not a restart that will not happen after all."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE containers SET status = ?, pid = 0, pid_start = 0, "
                "exit_code = ?, finished_at = ?, error = ?, oom_killed = ? WHERE id = ?",
                (EXITED, exit_code, now_rfc3339(), error, int(oom_killed), container_id),
            )
        if died:
            if oom_killed:
                self.record(container_id, "oom")
            self.record(container_id, "die", exitCode=str(-1 if exit_code is None else exit_code))

    def set_restarting(self, container_id: str, exit_code: int | None, restart_count: int, oom_killed: bool) -> None:
        """The container ended and the calling process, its supervisor, will
        start it again after a back-off: the exit is recorded, and the
        caller as the supervisor (it may have just taken over)."""
        supervisor = os.getpid()
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE containers SET status = ?, pid = 0, pid_start = 0, exit_code = ?, finished_at = ?, "
                "error = '', oom_killed = ?, restart_count = ?, supervisor_pid = ?, supervisor_start = ? WHERE id = ?",
                (
                    RESTARTING,
                    exit_code,
                    now_rfc3339(),
                    int(oom_killed),
                    restart_count,
                    supervisor,
                    process_start_time(supervisor),
                    container_id,
                ),
            )
        if oom_killed:
            self.record(container_id, "oom")
        self.record(container_id, "die", exitCode=str(-1 if exit_code is None else exit_code))

    def set_manually_stopped(self, container_id: str, stopped: bool = True) -> None:
        """`stop` and `kill` say so before they signal: the supervisor then
        does not restart the container, whatever its policy."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE containers SET manually_stopped = ? WHERE id = ?", (int(stopped), container_id)
            )

    def claim_start(self, container_id: str) -> Container:
        """Check a container can be started (refuse one that is running or
        restarting) and reset what a user's start resets: the restart count
        and the mark of a manual stop."""
        container = self.get(container_id)
        if container.status == RUNNING:
            raise ConflictError(f'container "{container.name}" is already running')
        if container.status == RESTARTING:
            raise ConflictError(
                f'container "{container.name}" is restarting (its restart policy); stop it first'
            )
        if container.restart_count or container.manually_stopped:
            with transaction(self.conn):
                self.conn.execute(
                    "UPDATE containers SET restart_count = 0, manually_stopped = 0 WHERE id = ?", (container.id,)
                )
            container.restart_count, container.manually_stopped = 0, False
        return container

    def rename(self, container: Container, new_name: str) -> None:
        """Give a container another name (which no other container may have)."""
        new_name = validate_container_name(new_name)
        if new_name == container.name:
            raise ConflictError(f'renaming container "{container.name}": the new name is the same as the old one')
        with transaction(self.conn):
            if self.conn.execute("SELECT 1 FROM containers WHERE name = ?", (new_name,)).fetchone():
                raise ConflictError(
                    f'container name "{new_name}" is already in use; remove that container or choose another name'
                )
            self.conn.execute("UPDATE containers SET name = ? WHERE id = ?", (new_name, container.id))
        old_name, container.name = container.name, new_name
        self.record(container, "rename", oldName="/" + old_name)

    def update_config(self, container_id: str, config: ContainerConfig) -> None:
        """Replace a container's config (volumes are added after the row exists)."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE containers SET config = ? WHERE id = ?", (jsonio.dumps(config.to_json()), container_id)
            )

    def remove(self, container: Container, force: bool = False) -> None:
        """Delete the catalog row, then the directories (upper dir and all).

        With `force`, a running container is killed first, and its
        supervisor is given the time to record the end and clean up."""
        if container.is_active and not force:
            raise ConflictError(
                f'container "{container.name}" is {container.status}; stop it first or use "overlayctl rm -f"'
            )
        if container.is_active:
            self.set_manually_stopped(container.id)
            _kill_and_wait(container.pid, container.pid_start)
        if container.supervisor_pid > 0 and container.supervisor_pid != os.getpid():
            # Waiting to restart, it needs the word at once; else it records
            # the end (or has) and cleans up first.
            at_once = container.status == RESTARTING
            _end_supervisor(container.supervisor_pid, container.supervisor_start, at_once=at_once)
        with transaction(self.conn):
            self.conn.execute("DELETE FROM containers WHERE id = ?", (container.id,))
        self.record(container, "destroy")
        faults.point("container-forgotten")
        staging.discard(self.paths.container_dir(container.id), self.paths.tmp)


def recorded_size(config: ContainerConfig) -> str | None:
    """The size limit of the container's writable layer as recorded
    (HostConfig.StorageOpt["size"], the text as given), or None."""
    size = (config.host.storage_opt or {}).get("size")
    return str(size) if size else None


def refuse_storage_size(root: str, size: str) -> None:
    """One line, before anything is made, when the store's filesystem
    cannot enforce a size limit: the option as given and why not."""
    from overlayctl.errors import StoreError
    from overlayctl.runtime import quota

    reason = quota.why_not(root)
    if reason is not None:
        raise StoreError(f"--storage-opt size={size}: {reason}")


def _limit_staged(paths: Paths, stage: str, size: int) -> None:
    """Give a staged container's upper and work dirs a project ID of their
    own and limit it to `size` bytes.

    Both dirs carry the ID: the kernel refuses (EXDEV) a rename between
    directories of two projects, and overlayfs copies a file up by making
    it in work/ and renaming it into upper/. The limit is set every time,
    before the directory leaves staging: an ID freed by a removed
    container keeps that container's limit in the quota file."""
    from overlayctl.runtime import quota
    from overlayctl.store import projects

    upper, work = os.path.join(stage, "upper"), os.path.join(stage, "work")
    os.mkdir(work, 0o700)
    project = projects.allocate(paths, [upper, work])
    faults.point("container-project")
    quota.set_limit(paths.root, project, size)


def _kill_and_wait(pid: int, pid_start: int, timeout: float = 10.0) -> None:
    """SIGKILL a container's PID 1 and wait until it is gone, so that its
    mount namespace (and the overlay on the upper dir) is torn down before
    the directories are deleted."""
    import time

    if not _alive(pid, pid_start):
        return  # (and pid 0 would be our own process group)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid, pid_start) and time.monotonic() < deadline:
        time.sleep(0.01)


def _end_supervisor(pid: int, pid_start: int, at_once: bool = False, timeout: float = 10.0) -> None:
    """Wait for a supervisor whose container was killed to finish its
    clean-up and exit; SIGTERM (it then stops restarting) and at last
    SIGKILL one that does not."""
    import time

    deadline = time.monotonic() + timeout
    signalled = False
    if at_once and _alive(pid, pid_start):
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            return
        signalled = True
    while _alive(pid, pid_start):
        now = time.monotonic()
        if now > deadline:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            return
        if not signalled and now > deadline - timeout / 2:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                return
            signalled = True
        time.sleep(0.01)
