"""A catalog that cannot be trusted, told as such.

The catalog is only checked when something already went wrong: its first
query failed (overlayctl.store.catalog.connect), a later one raised a
DatabaseError (cli.main), or it has no schema beside populated layers/ or
containers/. Then SQLite's quick_check says what is wrong, and the message
names the way back: the newest good backup and `overlayctl system restore`.
"""

from __future__ import annotations

import os

from overlayctl.errors import StoreError
from overlayctl.store.integrity import quick_check, read_only_filesystem

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


class CatalogDamagedError(StoreError):
    """The catalog cannot be read, or lost what the disk still holds."""


def way_back(root: str) -> str:
    """The newest good backup and the command that restores it."""
    from overlayctl.paths import DEFAULT_ROOT
    from overlayctl.store import backup

    command = "overlayctl system restore" if root == DEFAULT_ROOT else f"overlayctl --root {root} system restore"
    newest = backup.newest_good(root)
    if newest is None:
        return f"no good backup is kept in {backup.directory(root)}; `{command} FILE` restores one kept elsewhere"
    return f'restore the newest good backup with "{command}" ({newest})'


def damaged(path: str, detail: str | None = None) -> CatalogDamagedError:
    """The error for a catalog SQLite cannot read."""
    detail = detail or quick_check(path)
    return CatalogDamagedError(
        f"the catalog at {path} is damaged (SQLite: {detail}); {way_back(os.path.dirname(path))}"
    )


def stored_entries(root: str) -> tuple[int, int]:
    """How many entries layers/ and containers/ hold."""
    from overlayctl.paths import Paths

    paths = Paths(root, runroot="")  # only the store's own directories are read
    counts = []
    for directory in (paths.layers, paths.containers):
        try:
            counts.append(len(os.listdir(directory)))
        except FileNotFoundError:
            counts.append(0)
    return counts[0], counts[1]


def lost(path: str, state: str, layers: int, containers: int, doing: str) -> CatalogDamagedError:
    """The error for a catalog that knows nothing of what the disk holds."""
    back = way_back(os.path.dirname(path))
    return CatalogDamagedError(
        f"the catalog at {path} is {state} but layers/ holds {layers} layers and containers/ {containers} "
        f"containers; refusing to {doing} (nothing deleted). {back[0].upper()}{back[1:]}"
    )


def refuse_empty(path: str) -> None:
    """Raise when a catalog without a schema sits beside stored layers or
    containers: it was emptied or lost, and a new empty one would make every
    layer look like garbage."""
    layers, containers = stored_entries(os.path.dirname(path))
    if layers or containers:
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        raise lost(path, "empty" if size == 0 else "without tables", layers, containers, "use it")


def error_for(root: str, exc: BaseException) -> str | None:
    """The one line for a DatabaseError a command met after opening the
    catalog, or None when it is not about the catalog's state."""
    import sqlite3

    path = os.path.join(root, "catalog.db")
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    text = str(exc)
    if "readonly" in text or (isinstance(exc, sqlite3.OperationalError) and read_only_filesystem(path)):
        return f"the store at {root} is on a read-only filesystem"
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return None
    if os.path.lexists(path) and not os.path.isfile(path):
        return f"the catalog at {path} is not a regular file (SQLite: {text})"
    result = quick_check(path)
    if result != "ok":
        return damaged(path, result).message
    if "malformed" in text or "not a database" in text:
        return damaged(path, text).message
    return None  # (a constraint, say: not the catalog's state)
