"""The catalog's schema upgrades in place, keeping every row."""

from __future__ import annotations

import sqlite3

from overlayctl.store import catalog

V5_LAYERS = """
CREATE TABLE layers (
    diff_id TEXT PRIMARY KEY, dir TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    apparent INTEGER NOT NULL, inodes INTEGER NOT NULL, created TEXT NOT NULL
);
CREATE TABLE containers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, image_id TEXT NOT NULL, image_name TEXT NOT NULL,
    config TEXT NOT NULL, created TEXT NOT NULL, status TEXT NOT NULL
);
INSERT INTO layers VALUES ('sha256:aa', 'aa', 1, 1, 1, 'then');
PRAGMA user_version = 5;
"""


def test_a_v5_catalog_gains_the_later_columns_and_tables_and_keeps_its_rows(tmp_path):
    path = str(tmp_path / "catalog.db")
    old = sqlite3.connect(path)
    old.executescript(V5_LAYERS)
    old.close()
    conn = catalog.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == catalog.SCHEMA_VERSION == 8
        row = conn.execute("SELECT diff_id, content_index FROM layers").fetchone()
        assert tuple(row) == ("sha256:aa", "")
        columns = {r[1] for r in conn.execute("PRAGMA table_info(containers)")}
        assert {"oom_killed", "supervisor_pid", "restart_count", "manually_stopped"} <= columns
        assert "aliases" in {r[1] for r in conn.execute("PRAGMA table_info(leases)")}  # v7
        assert conn.execute("SELECT count(*) FROM ports").fetchone()[0] == 0  # v7
        assert conn.execute("SELECT count(*) FROM repo_digests").fetchone()[0] == 0  # v8
    finally:
        conn.close()


def test_a_v7_catalog_keeps_its_tags_in_the_familiar_form(tmp_path):
    path = str(tmp_path / "catalog.db")
    conn = catalog.connect(path)
    conn.execute("INSERT INTO images VALUES ('sha256:i1', '{}', 'then'), ('sha256:i2', '{}', 'then')")
    conn.executemany(
        "INSERT INTO tags VALUES (?, ?)",
        [
            ("docker.io/library/x:1", "sha256:i1"),
            ("docker.io/acme/y:2", "sha256:i1"),
            ("localhost/z:3", "sha256:i1"),
            ("docker.io/library/w:4", "sha256:i1"),
            ("w:4", "sha256:i2"),  # the familiar form wins over the old spelling
        ],
    )
    conn.execute("DROP TABLE repo_digests")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    conn = catalog.connect(path)
    try:
        assert dict(conn.execute("SELECT name, image_id FROM tags").fetchall()) == {
            "x:1": "sha256:i1",
            "acme/y:2": "sha256:i1",
            "localhost/z:3": "sha256:i1",
            "w:4": "sha256:i2",
        }
        assert conn.execute("SELECT count(*) FROM repo_digests").fetchone()[0] == 0
    finally:
        conn.close()


def test_an_upgrade_backs_the_old_catalog_up_first(tmp_path):
    path = str(tmp_path / "catalog.db")
    old = sqlite3.connect(path)
    old.executescript(V5_LAYERS)
    old.close()
    catalog.connect(path).close()
    backups = list((tmp_path / "backups").iterdir())
    assert [b.name.endswith("-schema5.db") for b in backups] == [True]
    kept = sqlite3.connect(backups[0])
    try:
        assert kept.execute("PRAGMA user_version").fetchone()[0] == 5
        assert kept.execute("SELECT diff_id FROM layers").fetchall() == [("sha256:aa",)]
    finally:
        kept.close()
    # A current catalog is not backed up again, nor is a new one.
    catalog.connect(path).close()
    catalog.connect(str(tmp_path / "new.db")).close()
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_an_empty_catalog_beside_stored_layers_is_refused(tmp_path):
    from overlayctl.errors import StoreError

    (tmp_path / "layers" / "0123456789abcdef").mkdir(parents=True)
    path = tmp_path / "catalog.db"
    path.write_bytes(b"")
    try:
        catalog.connect(str(path))
    except StoreError as e:
        assert "is empty but layers/ holds 1 layers and containers/ 0 containers" in e.message
    else:
        raise AssertionError("an empty catalog beside a layer was opened")
    assert path.read_bytes() == b""


def test_garbage_is_called_damaged(tmp_path):
    from overlayctl.errors import StoreError

    path = tmp_path / "catalog.db"
    path.write_bytes(b"\x01" * 8192)
    try:
        catalog.connect(str(path))
    except StoreError as e:
        assert e.message.startswith(f"the catalog at {path} is damaged (SQLite: file is not a database); ")
    else:
        raise AssertionError("garbage was opened as a catalog")
