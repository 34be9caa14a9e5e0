"""File locks for the moments when directories change beside the catalog.

SQLite serialises catalog writes; a directory rename plus its catalog row is
two steps, so the layer store holds this lock across both. The lock is an
flock on a file: the kernel drops it when its holder dies, so a crash never
leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive(path: str, what: str = "the store") -> Iterator[None]:
    """Hold an exclusive flock on path; say so if another process makes us wait."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno != 30:  # EROFS
            raise
        # A store on a read-only filesystem: nothing changes in it, so a
        # reader needs no lock (and a writer fails at its first write).
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"overlayctl: waiting for another overlayctl process to release {what}", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
