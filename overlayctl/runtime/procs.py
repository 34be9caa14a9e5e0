"""The processes of a container, read from the host's /proc.

A container is its PID namespace: every process whose /proc/<pid>/ns/pid
is the one of the container's PID 1 belongs to it (the command, what it
forked, and what `exec` started); one that shares a PID namespace (--pid)
is its first process and that one's descendants. Pids are the host's. Used by `top`,
`pause` and `stop`; no cgroup is needed to find them.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


def pid_namespace(pid: int) -> str | None:
    """The PID namespace of a process ("pid:[4026532]"), None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def namespace_pids(pid: int) -> list[int]:
    """Every process in the PID namespace of `pid` (host pids, sorted);
    empty if `pid` is gone."""
    target = pid_namespace(pid)
    if target is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and pid_namespace(int(entry)) == target:
            found.append(int(entry))
    return sorted(found)


def container_pids(container_id: str, pid: int, pid_mode: str = "") -> list[int]:
    """The processes of a container whose first process is `pid`: its PID
    namespace (the default), or, for one that shares a namespace (--pid
    host or container:NAME, HostConfig.PidMode), its cgroup's (made for
    that), else that process and its descendants: never the host's or the
    other container's processes, which `pause` would freeze."""
    if not pid_mode:
        return namespace_pids(pid)
    from overlayctl.runtime.cgroups.cgroup import find

    cgroup = find(container_id)
    if cgroup is not None and os.path.exists(f"/proc/{pid}"):
        return cgroup.pids()
    return descendant_pids(pid)


def descendant_pids(pid: int) -> list[int]:
    """`pid` and every process below it (host pids, sorted); empty if it is gone."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    if not os.path.exists(f"/proc/{pid}"):
        return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return sorted(found)


class ProcessInfo:
    """What `top` shows of one process, as `ps -ef` does."""

    __slots__ = ("pid", "ppid", "uid", "start_ticks", "cpu_ticks", "tty", "cmd")

    def __init__(self, pid: int, ppid: int, uid: int, start_ticks: int, cpu_ticks: int, tty: int, cmd: str) -> None:
        self.pid = pid
        self.ppid = ppid
        self.uid = uid
        self.start_ticks = start_ticks
        self.cpu_ticks = cpu_ticks
        self.tty = tty
        self.cmd = cmd


def read_process(pid: int) -> ProcessInfo | None:
    """One process from /proc; None if it ended meanwhile."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
    fields = stat[stat.rindex(b")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state, ppid, pgrp, session, tty_nr, ...
    ppid, tty = int(fields[1]), int(fields[4])
    cpu = int(fields[11]) + int(fields[12])  # utime + stime
    start = int(fields[19])
    args = cmdline.rstrip(b"\0").split(b"\0") if cmdline else []
    cmd = " ".join(a.decode(errors="replace") for a in args) if args else f"[{comm}]"
    return ProcessInfo(pid, ppid, uid, start, cpu, tty, cmd)


def top_table(pids: Iterable[int]) -> tuple[list[str], list[list[str]]]:
    """`docker top`'s default table (ps -ef's columns) for these pids."""
    import time

    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    boot = time.time() - uptime
    users = _user_names()
    rows = []
    for pid in pids:
        info = read_process(pid)
        if info is None:
            continue
        started = boot + info.start_ticks / hz
        running_for = max(uptime - info.start_ticks / hz, 1e-9)
        cpu_seconds = info.cpu_ticks // hz
        rows.append(
            [
                users.get(info.uid, str(info.uid)),
                str(info.pid),
                str(info.ppid),
                str(int(100 * info.cpu_ticks / hz / running_for)),
                _stime(started),
                _tty_name(info.tty),
                f"{cpu_seconds // 3600:02d}:{cpu_seconds // 60 % 60:02d}:{cpu_seconds % 60:02d}",
                info.cmd,
            ]
        )
    return ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], rows


def _stime(when: float) -> str:
    import time

    local = time.localtime(when)
    if time.strftime("%Y%m%d", local) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M", local)
    return time.strftime("%b%d", local)


def _tty_name(tty_nr: int) -> str:
    if not tty_nr:
        return "?"
    major, minor = os.major(tty_nr), os.minor(tty_nr)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}"
    return f"{major}:{minor}"


def _user_names() -> dict[int, str]:
    """Host user names (ps shows the host's names for the host's uids)."""
    names = {}
    try:
        with open("/etc/passwd", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 2 and parts[2].isdigit():
                    names.setdefault(int(parts[2]), parts[0])
    except OSError:
        pass
    return names
