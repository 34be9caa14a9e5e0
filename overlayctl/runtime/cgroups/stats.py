"""What the kernel counts for a container's cgroup: usage now (memory, CPU
time, pids, for `stats`) and whether its OOM killer struck (for the exit
status `inspect` shows).

Best effort throughout: a counter this kernel or layout does not keep is
None (or, for the OOM kill, False), never an error.
"""

from __future__ import annotations

import os

from overlayctl.runtime.cgroups.files import read_int, read_keyed

# A cgroup is named here by what it is on disk: its version and the
# directory of each controller ("unified" for v2's one tree), so this module
# needs nothing of cgroup.Cgroup, which calls it.


def was_oom_killed(version: int, controllers: dict[str, str]) -> bool:
    """Whether the kernel's OOM killer killed a process of the cgroup."""
    memory = controllers.get("memory")
    if memory is None:
        return False
    if version == 2:
        return read_keyed(os.path.join(memory, "memory.events")).get("oom_kill", 0) > 0
    control = read_keyed(os.path.join(memory, "memory.oom_control"))
    if "oom_kill" in control:  # since Linux 4.13
        return control["oom_kill"] > 0
    # Older kernels: hitting the limit is the best hint there is.
    return (read_int(os.path.join(memory, "memory.failcnt")) or 0) > 0


def usage(version: int, controllers: dict[str, str], unified: str | None) -> dict[str, int | None]:
    """Usage now: memory_usage, memory_limit, cpu_usage_ns, pids_current,
    pids_limit; a value the kernel does not give is None."""
    memory, pids = controllers.get("memory"), controllers.get("pids")
    out: dict[str, int | None] = {}
    if version == 2:
        out["memory_usage"] = read_int(os.path.join(memory, "memory.current")) if memory else None
        out["memory_limit"] = read_int(os.path.join(memory, "memory.max")) if memory else None
        used = read_keyed(os.path.join(unified, "cpu.stat")).get("usage_usec") if unified else None
        out["cpu_usage_ns"] = used * 1000 if used is not None else None
    else:
        out["memory_usage"] = read_int(os.path.join(memory, "memory.usage_in_bytes")) if memory else None
        limit = read_int(os.path.join(memory, "memory.limit_in_bytes")) if memory else None
        # v1 says "no limit" with the largest page-aligned value.
        out["memory_limit"] = limit if limit is not None and limit < (1 << 62) else None
        acct = controllers.get("cpuacct")
        out["cpu_usage_ns"] = read_int(os.path.join(acct, "cpuacct.usage")) if acct else None
    out["pids_current"] = read_int(os.path.join(pids, "pids.current")) if pids else None
    out["pids_limit"] = read_int(os.path.join(pids, "pids.max")) if pids else None
    return out
