"""The cgroups of another process, which `exec` joins: found from
/proc/<pid>/cgroup and the host's cgroup mounts, whatever made them (the
container's limits, `pause`'s freezer, systemd).
"""

from __future__ import annotations

import os

from overlayctl.runtime.cgroups.files import kernel_error
from overlayctl.runtime.cgroups.layout import cgroup_mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controllers ("" for cgroup2): path}."""
    out = {}
    for line in text.splitlines():
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        out[controllers] = path
    return out


def cgroup_dirs(cgroups: dict[str, str], mounts: list[tuple[frozenset[str], str, str]]) -> dict[str, str]:
    """The host directory of each of a process's cgroups, by hierarchy."""
    dirs = {}
    for controllers, path in cgroups.items():
        wanted = frozenset(controllers.split(",")) if controllers else frozenset()
        for options, mountpoint, root in mounts:
            if (not wanted and options) or (wanted and not wanted <= options):
                continue
            if path == root or root == "/" or path.startswith(root.rstrip("/") + "/"):
                relative = path[len(root) :] if root != "/" else path
                dirs[controllers] = mountpoint + relative if relative != "/" else mountpoint
                break
    return dirs


def join_cgroups_of(pid: int) -> None:
    """Move the caller into every cgroup of process `pid` that differs from
    its own (exec joins its container's cgroups: limits, freezer)."""
    with open("/proc/self/mountinfo") as f:
        mounts = cgroup_mounts(f.read())
    with open(f"/proc/{pid}/cgroup") as f:
        theirs = parse_proc_cgroup(f.read())
    with open("/proc/self/cgroup") as f:
        ours = parse_proc_cgroup(f.read())
    for controllers, directory in cgroup_dirs(theirs, mounts).items():
        if ours.get(controllers) == theirs[controllers]:
            continue
        procs = os.path.join(directory, "cgroup.procs")
        try:
            with open(procs, "w") as f:
                f.write("0")
        except OSError as exc:
            raise kernel_error("join the container's cgroup", procs, exc) from None
