"""The directories of `RUN --mount=type=cache`: build cache that lives on
between builds, under <root>/buildcache-mounts/.

Each cache id has one directory, `<sha256 of the id>-0`, holding `data/`
(what the steps see at the mount's target), `id` (the id, for people) and
`lock`. sharing=private takes a further `-1`, `-2`... while the first is in
use, and they stay for later steps, as BuildKit's. Users hold a flock on
`lock` for as long as their step runs: shared steps a shared lock,
locked and private steps an exclusive one; prune removes only what it can
lock exclusively, so a cache in use is never pulled from under a step.
Which namespace or build a cache serves is the builder's business: here a
cache is its id.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os

from overlayctl.paths import Paths
from overlayctl.store.staging import remove_tree


class CacheMount:
    """One cache directory of the store: `path` holds data/, id and lock."""

    __slots__ = ("name", "path", "id")

    def __init__(self, name: str, path: str, cache_id: str) -> None:
        self.name = name
        self.path = path
        self.id = cache_id

    @property
    def data(self) -> str:
        return os.path.join(self.path, "data")


class CacheMountLease:
    """A cache directory held for one step; `data` is what it mounts.
    Closing it (or the process ending) lets others lock it again."""

    def __init__(self, mount: CacheMount, lock_fd: int, created: bool) -> None:
        self.mount = mount
        self.data = mount.data
        self.created = created  # made empty for this step
        self._fd: int | None = lock_fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CacheMountLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class CacheMounts:
    """The store's cache mount directories."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def acquire(self, cache_id: str, sharing: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> CacheMountLease:
        """Hold the cache `cache_id` for one step (blocking while a `locked`
        user, or any user of a `locked` request, has it), making it with
        mode, uid and gid the first time."""
        base = hashlib.sha256(cache_id.encode()).hexdigest()[:32]
        os.makedirs(self.paths.build_mounts, 0o700, exist_ok=True)
        number = 0
        while True:
            mount = CacheMount(f"{base}-{number}", self.paths.build_mount_dir(f"{base}-{number}"), cache_id)
            fd = _open_lock(mount, cache_id)
            try:
                if sharing == "private":
                    if not _try_lock(fd, fcntl.LOCK_EX):
                        os.close(fd)
                        number += 1
                        continue
                else:
                    fcntl.flock(fd, fcntl.LOCK_SH if sharing == "shared" else fcntl.LOCK_EX)
                if not os.path.isdir(mount.path):
                    # A prune removed it between open and lock: start again.
                    os.close(fd)
                    continue
                created = _make_data(mount.data, mode, uid, gid)
            except BaseException:
                os.close(fd)
                raise
            return CacheMountLease(mount, fd, created)

    def all(self) -> list[CacheMount]:
        """Every cache directory, sorted by name."""
        try:
            names = sorted(os.listdir(self.paths.build_mounts))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            path = self.paths.build_mount_dir(name)
            try:
                with open(os.path.join(path, "id"), encoding="utf-8", errors="replace") as f:
                    cache_id = f.read()
            except OSError:
                cache_id = ""
            found.append(CacheMount(name, path, cache_id))
        return found

    def in_use(self, mount: CacheMount) -> bool:
        """Whether a step holds this cache now."""
        try:
            fd = os.open(os.path.join(mount.path, "lock"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            return not _try_lock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)

    def remove(self, mount: CacheMount) -> bool:
        """Remove a cache directory unless a step holds it; whether it went."""
        try:
            fd = os.open(os.path.join(mount.path, "lock"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1  # half made by a process that died: nobody can hold it
        try:
            if fd >= 0 and not _try_lock(fd, fcntl.LOCK_EX):
                return False
            try:
                remove_tree(mount.path)
            except FileNotFoundError:
                pass
            return True
        finally:
            if fd >= 0:
                os.close(fd)


def _open_lock(mount: CacheMount, cache_id: str) -> int:
    try:
        os.mkdir(mount.path, 0o700)
    except FileExistsError:
        pass
    else:
        with open(os.path.join(mount.path, "id"), "w", encoding="utf-8") as f:
            f.write(cache_id)
    while True:
        try:
            return os.open(os.path.join(mount.path, "lock"), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            # A prune took the directory away meanwhile: make it again.
            os.makedirs(mount.path, 0o700, exist_ok=True)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _make_data(path: str, mode: int, uid: int, gid: int) -> bool:
    """Make the data directory unless it is there; whether it was made.
    mkdir is atomic: of two sharers starting together one makes it."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return False
    os.chown(path, uid, gid)
    os.chmod(path, mode)  # after chown, and not subject to the umask
    return True
