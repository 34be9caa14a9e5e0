"""Out of space: one clear line, whichever command ran into it.

A command that is about to write a known amount (an import, a load, a
pull) says so with expect(); when the filesystem then fills up (ENOSPC or
EDQUOT from the kernel, "database or disk is full" from SQLite), main()
replaces whatever error came of it by describe(): the filesystem, its
mount point, what is free, and what the command needed. Every command
writes through staging, so what it had written is gone by then.
"""

from __future__ import annotations

import errno
import os

_needed = 0


def expect(nbytes: int) -> None:
    """The command will write about ``nbytes`` more to the store."""
    global _needed
    _needed += max(0, nbytes)


def is_out_of_space(exc: BaseException | None) -> bool:
    """Whether ``exc``, or anything it was raised from, is a full filesystem."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "disk is full" in str(exc) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _mount_of(path: str) -> tuple[str, str]:
    """The mount point and filesystem type that hold ``path``."""
    real = os.path.realpath(path)
    best, fstype = "/", "?"
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            kind = fields[fields.index("-") + 1]
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, fstype = point, kind
    return best, fstype


def describe(root: str) -> str:
    """The one line for a command that ran out of space under ``root``."""
    from overlayctl.util.humanize import human_size

    path = root
    while not os.path.exists(path) and path not in ("", "/"):
        path = os.path.dirname(path)
    point, fstype = _mount_of(path)
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    size = st.f_blocks * st.f_frsize
    need = f"; this needs about {human_size(_needed)}" if _needed else ""
    return (
        f"no space left on {point} ({fstype}, which holds the store {root}): {human_size(free)} free of "
        f"{human_size(size)}{need}; nothing of it was kept: free some space (overlayctl system prune, "
        "system gc) and run it again"
    )
