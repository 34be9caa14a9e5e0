"""Project IDs: which container's upper and work dirs the kernel charges to
which ID, and how a new container gets one of its own.

The kernel is the only record. An ID is in use exactly while some inode
carries it, so there is nothing to free at `rm`: the ID goes with the last
inode of the container's tree. A crash can therefore neither leak an ID
(nothing is written anywhere but on the inodes) nor hand one out twice (a
directory left in staging by a killed create still carries its ID, and
keeps it until the staging sweep or `fsck --repair` deletes it).

IDs are chosen from BASE up, well out of the way of hand-made
/etc/projects entries (xfs_quota users number theirs from 1), and from
0, which is "no project". The choice is made under a flock on
<root>/projects.lock and lasts until the ID is on the new directories:
from then on the kernel's accounting shows it to the next allocator.
"""

from __future__ import annotations

import os

from overlayctl.errors import KernelError, StoreError
from overlayctl.paths import Paths
from overlayctl.runtime import quota
from overlayctl.store.locks import exclusive

# The first project ID overlayctl gives (65536): above the small numbers
# administrators give by hand, and the same on every store, so that two
# stores on one filesystem meet in one range (where the kernel's
# accounting keeps them apart).
BASE = 0x10000
LAST = 0xFFFFFFFE  # project IDs are 32 bits; the all-ones ID is "invalid" to the kernel

# The directories of a container that carry its ID.
TAGGED = ("upper", "work")


def ids_on_disk(paths: Paths) -> dict[int, list[str]]:
    """Every project ID (other than 0) that a container directory of this
    store carries, placed or left in staging, with the directories that
    carry it (an upper dir and its work dir both name one ID)."""
    found: dict[int, list[str]] = {}
    for top in (paths.containers, paths.tmp):
        try:
            names = os.listdir(top)
        except FileNotFoundError:
            continue
        for name in names:
            for sub in TAGGED:
                path = os.path.join(top, name, sub)
                project = project_in(path)
                if project:
                    found.setdefault(project, []).append(path)
    return found


def project_in(path: str) -> int:
    """The project ID ``path`` carries; 0 where it is gone (a removal at
    work) or its filesystem has no project IDs."""
    try:
        return quota.project_of(path)
    except (OSError, KernelError):
        return 0


def allocate(paths: Paths, directories: list[str]) -> int:
    """Choose the lowest free project ID and give it to ``directories``
    (each marked to hand it on to what is made below it); the ID.

    Free means: no directory of this store carries it and the kernel
    charges nothing to it (another store, or another tool, on the same
    filesystem). Both are asked under the lock, which is held until the
    directories carry the ID."""
    with exclusive(paths.projects_lock, "the project IDs"):
        project = _lowest_free(paths)
        for directory in directories:
            quota.set_project(directory, project)
    return project


def retag(paths: Paths, trees: list[str]) -> int:
    """Give the directories ``trees`` and everything in them a free project
    ID of their own (fsck's repair of a container whose upper dir lost its
    ID or shares one); the ID. Directories and regular files move to it,
    their blocks with them; symlinks and device nodes (whiteouts), which
    cannot be opened to be tagged and hold no blocks, keep theirs."""
    with exclusive(paths.projects_lock, "the project IDs"):
        project = _lowest_free(paths)
        for tree in trees:
            if os.path.isdir(tree):
                _tag_tree(tree, project)
    return project


def _lowest_free(paths: Paths) -> int:
    taken = ids_on_disk(paths)
    project = BASE
    while project in taken or quota.usage(paths.root, project).inodes:
        project += 1
        if project > LAST:
            raise StoreError("no free project ID is left on the store's filesystem")
    return project


def _tag_tree(top: str, project: int) -> None:
    # Parents first: what is made meanwhile below a tagged directory inherits.
    quota.set_project(top, project)
    for entry in os.scandir(top):
        if entry.is_dir(follow_symlinks=False):
            _tag_tree(entry.path, project)
        elif entry.is_file(follow_symlinks=False):
            quota.set_project(entry.path, project)
