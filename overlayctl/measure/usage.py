"""A container's size: the one definition that `ps -s`, `inspect -s`,
`system df` and `stats` all show (docs/measurement.md).

A container's size is the bytes its upper dir holds on disk, as
``du -s --block-size=1 UPPER`` counts them: the copy-on-write layer, not its
work dir, its logs or its configuration files.

Two ways to the same figure:

- a container whose upper dir has a project ID (a size limit on a store
  with project quotas) is read from the quota accounting, without a walk:
  the kernel charges the project with its upper dir and its work dir (both
  carry the ID), so the size is the project's bytes less the work dir's,
  and the work dir (two directories at rest) is the only tree walked;
- any other container, or one whose accounting cannot be read, is walked
  as du walks it (layer/du.py).
"""

from __future__ import annotations

import os

from overlayctl.errors import KernelError
from overlayctl.layer.du import disk_usage
from overlayctl.runtime import quota

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.containers import Container


def container_size(store: Store, container: Container) -> int:
    """The container's size in bytes (its upper dir, as du counts it)."""
    upper = store.paths.upper(container.id)
    charged = _from_quota(upper, store.paths.work(container.id))
    return charged if charged is not None else disk_usage(upper).bytes


def container_sizes(store: Store, containers: list[Container]) -> dict[str, int]:
    """container_size of each container, by container ID: one ioctl and one
    quotactl for each container with a project, a walk for the others."""
    return {c.id: container_size(store, c) for c in containers}


def _from_quota(upper: str, work: str) -> int | None:
    """The upper dir's bytes from its project's accounting; None when it
    has no project or the filesystem does not answer (then it is walked)."""
    try:
        project = quota.project_of(upper)
        if project == 0:
            return None
        charged = quota.usage(upper, project).bytes
    except (KernelError, OSError):
        # ENOTTY: a filesystem without project IDs (tmpfs, overlayfs);
        # quotactl refused: accounting off (ext4 mounted without prjquota,
        # where inodes keep their IDs), or a kernel without quotas.
        return None
    # A container never started has no work dir yet. Whatever is in the
    # work dir was charged to the project too (it inherited the ID).
    in_work = disk_usage(work).bytes if os.path.isdir(work) else 0
    return max(charged - in_work, 0)
