"""Lock files that their last holder removes: a container's network.lock,
an address's claim, a DNS responder's pid file and start lock. The kernel
drops an flock with its holder, however it dies, so a lock nobody holds
is never a lock anyone waits for.
"""

from __future__ import annotations

import os


def take_lock(path: str, block: bool) -> int | None:
    """Take a lock file (a container's network.lock, an address's claim);
    None if another process holds it and `block` is false. The last holder
    unlinks the file, so a lock taken on a file that is no longer there is
    dropped and taken again."""
    import fcntl

    directory = os.path.dirname(path)
    while True:
        os.makedirs(directory, 0o755, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the directory went between makedirs and open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def unlock_and_remove(path: str, fd: int) -> None:
    """Let go of a lock file taken by `take_lock`, and of its directory if that
    is now empty."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.close(fd)
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass


def lock_held(path: str) -> bool:
    """Whether some process holds the lock file `path`, asked without
    creating it: a shared lock that cannot be had, for an instant."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
