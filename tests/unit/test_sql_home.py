"""The store is the only package that speaks SQL: no statement, no use of
the catalog connection and no sqlite import anywhere else in overlayctl.

The scan reads every module of the package outside overlayctl/store/, so it
holds whatever the layout of the rest (files may move between packages).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import overlayctl

PACKAGE = Path(overlayctl.__file__).resolve().parent
STORE = PACKAGE / "store"

# A keyword and then more of a statement: "DELETE" alone, or followed by a
# path ("DELETE /volumes/{name}"), is the Engine API's HTTP method. (A bare
# "BEGIN" passed to execute is caught as an execute with a string.)
_SQL_START = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|BEGIN)\s+[^\s/]")
# Methods only a DB-API connection or cursor has.
_DB_ONLY = {"executemany", "executescript"}
# Receivers that name a connection or cursor: `execute` alone is also the
# mount plan's verb (runtime/mountplan.py), so it counts as SQL only on one
# of these, or with a statement (a string) as its first argument.
_DB_RECEIVER = re.compile(r"(^|\.)(conn|connection|cursor|cur|db|catalog)$")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if STORE not in p.parents)


def _is_text(node: ast.AST) -> bool:
    """A string literal, an f-string, or a sum or % of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _is_text(node.left) or _is_text(node.right)
    return False


def sql_outside_store(source: str) -> list[str]:
    """Each place in ``source`` (a module of overlayctl outside the store)
    that speaks SQL, as "line: what"."""
    found = []
    for node in ast.walk(ast.parse(source)):
        where = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            receiver = ast.unparse(node.func.value)
            if method in _DB_ONLY or (
                method == "execute"
                and (_DB_RECEIVER.search(receiver) or (node.args and _is_text(node.args[0])))
            ):
                found.append(f"{where}: {receiver}.{method}()")
        elif isinstance(node, ast.Attribute) and node.attr == "conn":
            found.append(f"{where}: {ast.unparse(node)} (the catalog connection)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_START.match(node.value):
            found.append(f"{where}: SQL statement {node.value.strip()[:60]!r}")
        elif isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name in ("sqlite3", "_sqlite3")]
        elif isinstance(node, ast.ImportFrom) and node.module in ("sqlite3", "_sqlite3"):
            found.append(f"{where}: from {node.module} import")
    return sorted(set(found), key=lambda f: int(f.split(":", 1)[0]))


def test_only_the_store_speaks_sql() -> None:
    offenders = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent)
        offenders += [f"{rel}:{f}" for f in sql_outside_store(path.read_text())]
    assert not offenders, "SQL outside overlayctl/store/ (add a store method named for what it means):\n" + "\n".join(
        offenders
    )


def test_the_scan_covers_the_package() -> None:
    # A scan that reads nothing passes for nothing.
    names = {p.relative_to(PACKAGE).as_posix() for p in _modules()}
    assert "errors.py" in names and len(names) > 50
    assert not any(name.startswith("store/") for name in names)


def test_the_scan_finds_each_kind() -> None:
    source = '''
import sqlite3
from _sqlite3 import connect

def f(store, conn, diff_id, marks):
    store.conn.execute("SELECT dir FROM layers WHERE diff_id = ?", (diff_id,))
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [])
    cursor.execute(query)
    other.execute(f"DELETE FROM build_cache WHERE owner IN ({marks})")
    sql = (
        "UPDATE containers SET name = ? "
        "WHERE id = ?"
    )
    return store.layers.find(diff_id)
'''
    found = sql_outside_store(source)
    assert [f.split(":", 1)[0] for f in found] == ["2", "3", "6", "6", "6", "7", "7", "8", "9", "9", "11"], found
    assert any("(the catalog connection)" in f for f in found)


def test_the_scan_lets_other_execute_verbs_be() -> None:
    source = """
def mount(plan, layout, root):
    plan.execute(root)
    OverlayMount(layout).execute(root)
    print("Selected", "UPDATE: none", "deleted: x")
    return [("DELETE", "/volumes/{name}", remove)], "DELETE /volumes/{name}: 204."
"""
    assert sql_outside_store(source) == []
