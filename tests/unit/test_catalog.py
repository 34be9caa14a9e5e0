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


def test_a_v5_catalog_gains_the_v6_column_and_keeps_its_rows(tmp_path):
    path = str(tmp_path / "catalog.db")
    old = sqlite3.connect(path)
    old.executescript(V5_LAYERS)
    old.close()
    conn = catalog.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == catalog.SCHEMA_VERSION == 6
        row = conn.execute("SELECT diff_id, content_index FROM layers").fetchone()
        assert tuple(row) == ("sha256:aa", "")
        columns = {r[1] for r in conn.execute("PRAGMA table_info(containers)")}
        assert {"oom_killed", "supervisor_pid", "restart_count", "manually_stopped"} <= columns
    finally:
        conn.close()
