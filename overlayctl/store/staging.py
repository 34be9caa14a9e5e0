"""Staging under <root>/tmp: build there, flush, then rename into place.

A staging entry is named after the process that owns it, so a later process
can tell a crashed leftover (its owner is gone) from work in progress.
"""

from __future__ import annotations

import os
import stat

from overlayctl.runtime.syscalls import syncfs
from overlayctl.util import faults


def new_staging_dir(tmp: str, kind: str) -> str:
    """Create an empty directory under tmp/ owned by this process."""
    path = os.path.join(tmp, f"{kind}-{os.getpid()}-{os.urandom(6).hex()}")
    os.mkdir(path, 0o700)
    return path


class staging:  # noqa: N801 - used like a function: `with staging(tmp, "layer") as path:`
    """A staging directory that is removed unless it was renamed away."""

    def __init__(self, tmp: str, kind: str) -> None:
        self.path = new_staging_dir(tmp, kind)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if os.path.lexists(self.path):
            remove_tree(self.path)


def flush(path: str) -> None:
    """Make everything written under path durable before it is renamed in."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make a rename inside path durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Delete a directory tree without following symlinks out of it.

    Works relative to directory fds, so a symlink planted inside a layer or
    an upper dir can never redirect the deletion to the host. (Our own walk:
    shutil costs `run --rm` ~4 ms to import.)
    """
    parent, name = os.path.split(path.rstrip("/"))
    parent_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        _remove_entry(parent_fd, name)
    finally:
        os.close(parent_fd)


def _remove_entry(dir_fd: int, name: str) -> None:
    st = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        for entry in os.scandir(fd):
            _remove_entry(fd, entry.name)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def discard(path: str, tmp: str) -> None:
    """Remove a committed directory: rename it into staging first so that it
    vanishes from its place in one step, then delete it at leisure."""
    if not os.path.lexists(path):
        return
    trash = os.path.join(tmp, f"trash-{os.getpid()}-{os.urandom(6).hex()}")
    os.rename(path, trash)
    faults.point("discard-moved")
    remove_tree(trash)


def discard_detached(path: str, tmp: str) -> None:
    """Like discard, but the deleting happens in a detached process.

    For a large tree nobody waits for (a duplicate of a stored layer): it
    leaves its place at once, by rename, and the caller does not pay for
    thousands of unlinks. If the deleting process dies, the trash entry's
    owner is gone and sweep removes it.
    """
    if not os.path.lexists(path):
        return
    trash = os.path.join(tmp, f"trash-{os.getpid()}-{os.urandom(6).hex()}")
    os.rename(path, trash)
    pid = os.fork()
    if pid != 0:
        os.waitpid(pid, 0)
        return
    try:
        os.setsid()
        if os.fork() == 0:
            # Hold none of the caller's pipes open: whoever reads our
            # output must see its end now, not when the deleting is done.
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 65536)
            try:
                import _prctl

                _prctl.set_proctitle("overlayctl: removing a duplicate layer")
            except (ImportError, OSError):
                pass
            # Named after the process that deletes it, so that sweep leaves
            # it alone for as long as the deleting goes on.
            mine = os.path.join(tmp, f"trash-{os.getpid()}-{os.urandom(6).hex()}")
            os.rename(trash, mine)
            remove_tree(mine)
    finally:
        os._exit(0)


def leftovers(tmp: str) -> list[tuple[str, int]]:
    """Staging entries whose owning process is gone (crash leftovers), with
    the pid that owned each."""
    found = []
    for name in sorted(os.listdir(tmp)):
        parts = name.split("-")
        if len(parts) >= 3 and parts[1].isdigit() and not _running(int(parts[1])):
            found.append((os.path.join(tmp, name), int(parts[1])))
    return found


def _running(pid: int) -> bool:
    # A killed process nobody has reaped yet (a zombie) still has its /proc
    # entry, but writes nothing any more.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def sweep(tmp: str) -> None:
    """Delete staging entries whose owning process is gone (a crash leftover)."""
    for path, _owner in leftovers(tmp):
        try:
            remove_tree(path)
        except FileNotFoundError:
            pass  # another sweep got there first
