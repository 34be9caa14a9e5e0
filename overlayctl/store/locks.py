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


class exclusive:  # noqa: N801 - used as a function: `with exclusive(path):`
    """Hold an exclusive flock on path; say so if another process makes us wait.

    A class rather than a contextlib.contextmanager: `run --storage-opt
    size=` takes this lock, and contextlib would bring functools and
    collections to the run path (about 1.4 ms of imports)."""

    __slots__ = ("path", "what", "fd")

    def __init__(self, path: str, what: str = "the store") -> None:
        self.path = path
        self.what = what
        self.fd = -1

    def __enter__(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            if e.errno != 30:  # EROFS
                raise
            # A store on a read-only filesystem: nothing changes in it, so a
            # reader needs no lock (and a writer fails at its first write).
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"overlayctl: waiting for another overlayctl process to release {self.what}", file=sys.stderr)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        self.fd = fd

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
