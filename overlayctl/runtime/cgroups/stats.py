"""What the kernel counts for a container's cgroup: usage now (memory, CPU
time, pids, bytes read from and written to devices, for `stats`) and whether its OOM killer struck (for the exit
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


# The v1 files of bytes per device and operation, in the order read: the
# throttle policy's counts every bio the cgroup submits, whatever the I/O
# scheduler; the other is kept only by CFQ (older kernels).
_V1_BLOCK_FILES = ("blkio.throttle.io_service_bytes_recursive", "blkio.io_service_bytes_recursive")


def block_io(version: int, controllers: dict[str, str]) -> list[tuple[int, int, str, int]] | None:
    """Bytes the cgroup read from and wrote to each device, as Docker's
    io_service_bytes_recursive: (major, minor, op, bytes), op "read" or
    "write" on v2 (io.stat's rbytes and wbytes), "Read", "Write", "Sync",
    "Async", "Discard" or "Total" on v1. None when the cgroup has no such
    figure (no io or blkio directory, or the file is missing)."""
    if version == 2:
        directory = controllers.get("io")
        if directory is None:
            return None
        try:
            with open(os.path.join(directory, "io.stat")) as f:
                return parse_io_stat(f.read())
        except OSError:
            return None
    directory = controllers.get("blkio")
    if directory is None:
        return None
    found = None
    for name in _V1_BLOCK_FILES:
        try:
            with open(os.path.join(directory, name)) as f:
                entries = parse_blkio_bytes(f.read())
        except OSError:
            continue
        if entries:
            return entries
        found = entries  # the kernel keeps the file, with nothing counted yet
    return found


def parse_io_stat(text: str) -> list[tuple[int, int, str, int]]:
    """cgroup v2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 ...") as Docker's
    entries: a "read" (rbytes) and a "write" (wbytes) per device."""
    entries = []
    for line in text.splitlines():
        device, *pairs = line.split()
        major, sep, minor = device.partition(":")
        if not sep or not major.isdigit() or not minor.isdigit():
            continue
        values = dict(pair.partition("=")[::2] for pair in pairs)
        for key, op in (("rbytes", "read"), ("wbytes", "write")):
            if values.get(key, "").isdigit():
                entries.append((int(major), int(minor), op, int(values[key])))
    return entries


def parse_blkio_bytes(text: str) -> list[tuple[int, int, str, int]]:
    """A cgroup v1 blkio.*io_service_bytes* file ("8:0 Read 4096" per line,
    then "Total N" for all devices) as Docker's entries, the last line left out."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or not fields[2].isdigit():
            continue
        major, sep, minor = fields[0].partition(":")
        if sep and major.isdigit() and minor.isdigit():
            entries.append((int(major), int(minor), fields[1], int(fields[2])))
    return entries


def read_write_bytes(entries: list[tuple[int, int, str, int]]) -> tuple[int, int]:
    """(read, written) bytes over all devices, as Docker's client adds up
    BLOCK I/O: the entries whose op starts with r or w, either case."""
    read = written = 0
    for _, _, op, value in entries:
        if op[:1] in ("r", "R"):
            read += value
        elif op[:1] in ("w", "W"):
            written += value
    return read, written
