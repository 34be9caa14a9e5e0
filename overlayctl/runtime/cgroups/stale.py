"""The sweep `system reconcile` makes: remove the cgroups and freezers of
containers that are not running (their supervisor was killed before it
could), and leave alone whatever is in use or about to be.
"""

from __future__ import annotations

import os
import time

from overlayctl.paths import cgroup_parent_dir
from overlayctl.runtime.cgroups.cgroup import Cgroup, find
from overlayctl.runtime.cgroups.files import read_int, read_keyed
from overlayctl.runtime.cgroups.freezer import Freezer
from overlayctl.runtime.cgroups.layout import Layout, host_layout

STALE_GRACE = 60.0  # seconds an empty, never-joined cgroup is left to its creator


def remove_stale(known_running: set[str], layout: Layout | None = None, grace: float = STALE_GRACE) -> list[str]:
    """Remove the cgroups of containers not in `known_running`; their ids.

    Left alone, whatever the list says: a cgroup with processes in it (a
    container of another store, or one starting now) and an empty one
    nothing ever ran in that is younger than `grace` seconds (its container
    is about to join it).
    """
    layout = layout or host_layout()
    ids: set[str] = set()
    for parent in layout.parent_dirs():
        try:
            entries = os.scandir(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            ids.update(e.name for e in entries if e.is_dir(follow_symlinks=False))
    removed = []
    for container_id in sorted(ids - set(known_running)):
        cgroup = find(container_id, layout)
        if cgroup is None or cgroup.pids():
            continue
        if not _ever_joined(cgroup) and _age(cgroup) < grace:
            continue
        cgroup.remove()
        removed.append(container_id)
    # Freezers `pause` made (on a v1 host, in a tree of their own).
    if layout.freezer is not None:
        try:
            names = os.listdir(cgroup_parent_dir(layout.freezer, layout.parent))
        except (FileNotFoundError, NotADirectoryError):
            names = []
        for container_id in sorted(set(names) - set(known_running)):
            freezer = Freezer(container_id, layout)
            if freezer.exists() and not freezer.pids():
                freezer.remove()
                if container_id not in removed:
                    removed.append(container_id)
    return removed


def _ever_joined(cgroup: Cgroup) -> bool:
    """Whether anything ever ran in the cgroup (it has used CPU time)."""
    acct = cgroup.controllers.get("cpuacct")
    if acct is not None and read_int(os.path.join(acct, "cpuacct.usage")):
        return True
    if cgroup.unified is not None:
        return read_keyed(os.path.join(cgroup.unified, "cpu.stat")).get("usage_usec", 0) > 0
    return False


def _age(cgroup: Cgroup) -> float:
    """Seconds since the youngest of the cgroup's directories was made."""
    ages = []
    for d in cgroup.dirs:
        try:
            ages.append(time.time() - os.stat(d).st_ctime)
        except OSError:
            continue
    return min(ages) if ages else 0.0
