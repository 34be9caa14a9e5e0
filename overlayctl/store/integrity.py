"""A SQLite file checked without trusting it: a read-only URI and
SQLite's quick_check. The catalog's diagnosis (health), its backups and
their restore all ask this.
"""

from __future__ import annotations


def quick_check(path: str) -> str:
    """SQLite's quick_check of the database at ``path``: "ok" or what is wrong."""
    import sqlite3

    try:
        conn = sqlite3.connect(uri(path, "mode=ro"), uri=True, timeout=10.0)
    except sqlite3.Error as e:
        return str(e)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        return "; ".join(str(row[0]) for row in rows[:3]) or "no answer"
    except sqlite3.Error as e:
        return str(e)
    finally:
        conn.close()


def uri(path: str, query: str) -> str:
    """A SQLite file: URI for ``path`` with ``query`` (the characters a URI
    gives a meaning to escaped)."""
    escaped = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file:{escaped}?{query}"


def read_only_filesystem(path: str) -> bool:
    """Whether the filesystem holding path is mounted read-only."""
    import os

    try:
        return bool(os.statvfs(os.path.dirname(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False
