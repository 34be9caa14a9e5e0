"""The catalog: one SQLite database in WAL mode, the durable truth.

Reference counts are not stored: they are derived with queries from the
image_layers and containers tables, so they can never drift from the rows
they count.
"""

from __future__ import annotations

from overlayctl.errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any


def _import_sqlite() -> ModuleType:
    """SQLite's C module, without functools.

    The C module itself: sqlite3's Python package only adds the datetime
    adapters (which the catalog does not use) and costs `run` the import
    of datetime and collections.abc.

    The C module's initialisation imports functools for one name,
    lru_cache, which wraps each connection's statement cache; functools
    brings collections, operator, keyword, reprlib and types along, about
    2 ms of every `run`. ``lru_cache(maxsize)(f)`` is the C
    ``_functools._lru_cache_wrapper`` around ``f``, so while the module
    initialises it is given a functools holding just that, removed again
    at once: the cache is the same, and a later ``import functools`` loads
    the real module.
    """
    import sys

    if "functools" in sys.modules or "_sqlite3" in sys.modules:
        import _sqlite3

        return _sqlite3
    import _functools

    def lru_cache(maxsize: int | None = 128, typed: bool = False) -> Callable[[Callable[..., Any]], Any]:
        return lambda function: _functools._lru_cache_wrapper(function, maxsize, typed, _cache_info)

    stand_in = type(sys)("functools")
    stand_in.lru_cache = lru_cache  # type: ignore[attr-defined]
    sys.modules["functools"] = stand_in
    try:
        import _sqlite3
    except AttributeError:
        # A Python whose module wants more of functools than lru_cache.
        del sys.modules["functools"]
        import _sqlite3
    finally:
        if sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]
    return _sqlite3


def _cache_info(*info: int) -> tuple[int, ...]:
    # functools makes it a named tuple: hits, misses, maxsize, currsize.
    return info


try:
    _sqlite = _import_sqlite()
except ImportError:  # pragma: no cover
    import sqlite3 as _sqlite

SCHEMA_VERSION = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS layers (
    diff_id     TEXT PRIMARY KEY,          -- sha256 of the uncompressed layer tar
    dir         TEXT NOT NULL UNIQUE,      -- short id: layers/<dir>/diff
    size        INTEGER NOT NULL,          -- allocated bytes, measured at commit
    apparent    INTEGER NOT NULL,          -- apparent bytes (st_size)
    inodes      INTEGER NOT NULL,
    created     TEXT NOT NULL,
    content_index TEXT NOT NULL DEFAULT '' -- v6: sha256 of layers/<dir>/content ('' before v6)
);
CREATE TABLE IF NOT EXISTS images (
    id          TEXT PRIMARY KEY,          -- sha256 of the config JSON
    config      BLOB NOT NULL,             -- the OCI image config, exactly as hashed
    created     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,          -- 0 = the base layer
    diff_id     TEXT NOT NULL REFERENCES layers(diff_id),
    PRIMARY KEY (image_id, position)
);
CREATE INDEX IF NOT EXISTS image_layers_by_layer ON image_layers(diff_id);
CREATE TABLE IF NOT EXISTS tags (
    name        TEXT PRIMARY KEY,          -- repository:tag
    image_id    TEXT NOT NULL REFERENCES images(id)
);
CREATE INDEX IF NOT EXISTS tags_by_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS containers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    image_id    TEXT NOT NULL REFERENCES images(id),
    image_name  TEXT NOT NULL,             -- the reference the user gave
    config      TEXT NOT NULL,             -- JSON: Cmd, Env, WorkingDir, ...
    created     TEXT NOT NULL,
    status      TEXT NOT NULL,             -- created | running | exited
    pid         INTEGER NOT NULL DEFAULT 0,
    pid_start   INTEGER NOT NULL DEFAULT 0,-- /proc/<pid>/stat starttime: detects pid reuse
    exit_code   INTEGER,
    started_at  TEXT NOT NULL DEFAULT '',
    finished_at TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    oom_killed  INTEGER NOT NULL DEFAULT 0,
    supervisor_pid   INTEGER NOT NULL DEFAULT 0, -- v4: the process that owns the container
    supervisor_start INTEGER NOT NULL DEFAULT 0, -- its /proc start time
    restart_count    INTEGER NOT NULL DEFAULT 0, -- v4: restarts by the restart policy since the last start
    manually_stopped INTEGER NOT NULL DEFAULT 0  -- v4: stop/kill asked for the end: no restart
);
CREATE INDEX IF NOT EXISTS containers_by_image ON containers(image_id);
-- v2: the build cache. One row per build step of a successful build: the
-- image config after the step, found by the config before it and the step's
-- key. Its layers are all layers of the owner, so they need no reference of
-- their own. Removing the owner removes its rows.
CREATE TABLE IF NOT EXISTS build_cache (
    parent      TEXT NOT NULL,             -- image ID before the step ("" for scratch)
    key         TEXT NOT NULL,             -- sha256 of the step: instruction, args, sources
    result      TEXT NOT NULL,             -- image ID after the step
    config      BLOB NOT NULL,             -- that image config, exactly as hashed
    owner       TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (parent, key, owner)
);
CREATE INDEX IF NOT EXISTS build_cache_by_result ON build_cache(result);
CREATE INDEX IF NOT EXISTS build_cache_by_owner ON build_cache(owner);
-- v3: networks and their address leases.
CREATE TABLE IF NOT EXISTS networks (
    name        TEXT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,      -- 64 hex, as Docker's network IDs
    driver      TEXT NOT NULL,             -- bridge
    bridge      TEXT NOT NULL UNIQUE,      -- the host's bridge device
    subnet      TEXT NOT NULL,             -- e.g. 10.88.0.0/16
    gateway     TEXT NOT NULL,             -- the bridge's own address
    created     TEXT NOT NULL,
    options     TEXT NOT NULL DEFAULT '{}' -- JSON
);
CREATE TABLE IF NOT EXISTS leases (
    network     TEXT NOT NULL REFERENCES networks(name),
    address     TEXT NOT NULL,
    container   TEXT NOT NULL,             -- container ID
    mac         TEXT NOT NULL DEFAULT '',
    aliases     TEXT NOT NULL DEFAULT '[]', -- v7: JSON list of the names it answers to on this network
    PRIMARY KEY (network, address)
);
CREATE INDEX IF NOT EXISTS leases_by_container ON leases(container);
-- v7: the host ports a container publishes while it runs (-p, -P). One row
-- per host port. The primary key refuses a second holder in this store
-- (other stores and other programs are refused by a bind test and a claim
-- under /run, overlayctl.network.ports).
CREATE TABLE IF NOT EXISTS ports (
    container   TEXT NOT NULL,             -- container ID
    protocol    TEXT NOT NULL,             -- tcp | udp | sctp
    host_ip     TEXT NOT NULL,             -- '' for every address (0.0.0.0)
    host_port   INTEGER NOT NULL,
    container_port INTEGER NOT NULL,
    PRIMARY KEY (protocol, host_port, host_ip)
);
CREATE INDEX IF NOT EXISTS ports_by_container ON ports(container);
-- v3: named and anonymous volumes, and which containers use them.
CREATE TABLE IF NOT EXISTS volumes (
    name        TEXT PRIMARY KEY,
    driver      TEXT NOT NULL,             -- local
    anonymous   INTEGER NOT NULL DEFAULT 0,
    created     TEXT NOT NULL,
    labels      TEXT NOT NULL DEFAULT '{}' -- JSON
);
CREATE TABLE IF NOT EXISTS volume_users (
    volume      TEXT NOT NULL REFERENCES volumes(name),
    container   TEXT NOT NULL,             -- container ID
    target      TEXT NOT NULL,             -- mount point inside the container
    PRIMARY KEY (volume, container, target)
);
CREATE INDEX IF NOT EXISTS volume_users_by_container ON volume_users(container);
-- v5: the blobs a layer was received or sent as (blobs/sha256/<hex>): the
-- compressed tar of a pull or a load, kept so that saving or pushing the
-- image again gives the same bytes, and the tars made on the way out.
-- Removing the layer removes its rows and then their files.
CREATE TABLE IF NOT EXISTS layer_blobs (
    digest      TEXT PRIMARY KEY,          -- sha256 of the blob as stored
    diff_id     TEXT NOT NULL REFERENCES layers(diff_id) ON DELETE CASCADE,
    media_type  TEXT NOT NULL,             -- OCI or Docker layer media type
    size        INTEGER NOT NULL,
    original    INTEGER NOT NULL DEFAULT 0 -- 1: received as is (pull, load, import)
);
CREATE INDEX IF NOT EXISTS layer_blobs_by_layer ON layer_blobs(diff_id);
-- v5: the manifest an image was pulled or loaded with, byte for byte, so
-- that it is sent out again with the same digest.
CREATE TABLE IF NOT EXISTS image_manifests (
    image_id    TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    media_type  TEXT NOT NULL,
    manifest    BLOB NOT NULL
);
-- v8: an image's RepoDigests, as Docker shows them: repository@digest of
-- the manifest it was pulled or pushed with, one per repository and digest.
CREATE TABLE IF NOT EXISTS repo_digests (
    name        TEXT PRIMARY KEY,          -- repository@sha256:HEX (familiar form)
    image_id    TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS repo_digests_by_image ON repo_digests(image_id);
"""


# Columns added to existing tables after v1 (CREATE ... IF NOT EXISTS does
# not add them to a table that exists).
_ADDED_COLUMNS = (
    ("containers", "oom_killed", "INTEGER NOT NULL DEFAULT 0"),  # v3
    ("containers", "supervisor_pid", "INTEGER NOT NULL DEFAULT 0"),  # v4
    ("containers", "supervisor_start", "INTEGER NOT NULL DEFAULT 0"),  # v4
    ("containers", "restart_count", "INTEGER NOT NULL DEFAULT 0"),  # v4
    ("containers", "manually_stopped", "INTEGER NOT NULL DEFAULT 0"),  # v4
    ("layers", "content_index", "TEXT NOT NULL DEFAULT ''"),  # v6
    ("leases", "aliases", "TEXT NOT NULL DEFAULT '[]'"),  # v7
)


def connect(path: str) -> sqlite3.Connection:
    """Open the catalog, creating the schema on first use.

    WAL lets readers run beside one writer; synchronous=NORMAL keeps every
    commit atomic and ordered (a crash keeps the old or the new state) while
    fsyncing only at checkpoints. The connect timeout (SQLite's busy
    timeout) makes concurrent writers wait instead of failing.

    A catalog that cannot be read is diagnosed only when its first query
    fails (overlayctl.store.health), so the normal path pays for no check.
    """
    conn = _sqlite.connect(path, timeout=60.0, isolation_level=None)
    conn.row_factory = _sqlite.Row
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except _sqlite.DatabaseError as exc:
        conn.close()
        return open_failed(path, exc)
    if version != SCHEMA_VERSION:
        _upgrade(conn, path, version)
    conn.execute("PRAGMA synchronous = NORMAL")
    # `run` exits without closing (see cli._exit_now), so the WAL is not
    # checkpointed on close; every opener replays it into the wal-index.
    # Checkpointing at 128 pages instead of 1000 keeps that replay short.
    conn.execute("PRAGMA wal_autocheckpoint = 128")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _upgrade(conn: sqlite3.Connection, path: str, version: int) -> None:
    """Create the schema in a new catalog, or upgrade an older one (after
    backing it up: overlayctl.store.backup)."""
    from overlayctl.store import health

    if version == 0:
        # A catalog without a schema beside layers or containers is a lost
        # one, not a new store: creating an empty schema would hide that.
        health.refuse_empty(path)
    elif version < SCHEMA_VERSION:
        from overlayctl.store import backup

        # Outside the transaction: the backup API cannot read a database
        # its own connection holds the write lock of.
        backup.make(conn, path, f"schema{version}")
    conn.execute("PRAGMA journal_mode = WAL")
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {path} has catalog schema {version}, newer than this overlayctl "
                f"knows ({SCHEMA_VERSION}); upgrade overlayctl"
            )
        if version < SCHEMA_VERSION:
            # Every statement is CREATE ... IF NOT EXISTS: running them
            # all upgrades any older schema to this one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table, column, declaration in _ADDED_COLUMNS:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            if version < 8:
                _familiar_tags(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _familiar_tags(conn: sqlite3.Connection) -> None:
    """v8: tags are kept in Docker's familiar form (`x:1`, not
    `docker.io/library/x:1`), the form every lookup now asks for. A tag
    whose familiar form already exists yields to it."""
    from overlayctl.errors import InvalidArgumentError
    from overlayctl.util.reference import parse_reference

    for (name,) in conn.execute("SELECT name FROM tags").fetchall():
        try:
            familiar = str(parse_reference(name))
        except InvalidArgumentError:
            continue
        if familiar != name:
            conn.execute("UPDATE OR IGNORE tags SET name = ? WHERE name = ?", (familiar, name))
            conn.execute("DELETE FROM tags WHERE name = ?", (name,))


class transaction:  # noqa: N801 - used like a function: `with transaction(conn):`
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front so a
    read-then-write cannot be overtaken by another process. (A class, not
    contextlib: `run` does not pay for importing contextlib.)"""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def open_failed(path: str, exc: Exception) -> sqlite3.Connection:
    """The catalog's first query failed: open it read-only if that is why,
    else raise what is wrong with it."""
    import os
    import sqlite3

    from overlayctl.store.health import damaged
    from overlayctl.store.integrity import quick_check, read_only_filesystem

    if isinstance(exc, sqlite3.OperationalError) and read_only_filesystem(path):
        return open_read_only(path)
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        raise StoreError(f"the catalog at {path} stayed locked by another process: {exc}")
    if not os.path.isfile(path):
        raise StoreError(f"the catalog at {path} is not a regular file (SQLite: {exc})")
    raise damaged(path, quick_check(path) if "not a database" not in str(exc) else str(exc))


def open_read_only(path: str) -> sqlite3.Connection:
    """The catalog on a read-only filesystem.

    SQLite reads a WAL database there when its -shm file exists (it then
    keeps the wal-index in memory). Without one it cannot open it at all;
    when there is also no WAL to replay, immutable=1 reads the database
    file alone, which is then the whole truth.
    """
    import os
    import sqlite3

    from overlayctl.store.health import damaged
    from overlayctl.store.integrity import uri

    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise StoreError(
            f"the catalog at {path} is on a read-only filesystem with a write-ahead log that needs replaying "
            f"and no {os.path.basename(path)}-shm; mount it read-write once to replay it"
        )
    conn = sqlite3.connect(uri(path, "mode=ro&immutable=1"), uri=True, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as e:
        conn.close()
        raise damaged(path, str(e)) from None
    if version != SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"the catalog at {path} has schema {version}, not {SCHEMA_VERSION}, and is on a read-only "
            "filesystem where it cannot be upgraded"
        )
    return conn
