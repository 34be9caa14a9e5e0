"""What a container uses now: CPU, memory, network, block I/O, processes,
and the size of its upper dir, for `overlayctl stats`.

A reading (`Sample`) holds cumulative counters and levels taken at one
moment; the figures `docker stats` shows that are rates (CPU %, and our
upper dir's growth) come from two readings (`derive`). Where each figure
comes from:

- processes: the container's PID namespace (`runtime.procs`), host pids;
- CPU time: the container's cgroup (cpuacct.usage, or cpu.stat on v2)
  when it has one, else the processes' utime+stime plus those of the
  children they reaped, so a finished `dd` keeps its seconds;
- memory: the cgroup's usage less its inactive page cache (Docker's
  figure) when it has one, else the sum of the processes' RSS; the limit is
  the cgroup's, else the host's total memory;
- network: /proc/<PID 1>/net/dev, every interface but lo (that file shows
  the reader's network namespace);
- block I/O: the bytes the container's cgroup read from and wrote to
  devices (io.stat on v2, blkio.throttle.io_service_bytes_recursive on
  v1), Docker's figure: writing into the page cache counts when (and if)
  it is written back, and on v1 only what the container's own processes
  submit (direct I/O, fsync), as the kernel charges it. A container
  without a cgroup (none was needed: no limits) has no such figure
  (None); process I/O is then the only one;
- process I/O, always: the processes' read_bytes/write_bytes
  (/proc/<pid>/io, which also counts reaped children): bytes fetched from
  storage, and bytes of page cache they dirtied, each rewrite of a cached
  file counted again;
- upper: `layer.du.disk_usage` of the upper dir, `du -s --block-size=1`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psutil

from overlayctl.measure.usage import container_size
from overlayctl.runtime import procs
from overlayctl.runtime.cgroups.cgroup import Cgroup, find
from overlayctl.runtime.cgroups.stats import read_write_bytes
from overlayctl.store.containers import RUNNING

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store
    from overlayctl.store.containers import Container

_NANO = 1_000_000_000


@dataclass(frozen=True)
class Sample:
    """One reading of one container. Counters (cpu_ns, net_*, block_*,
    proc_*) are cumulative since the container started; the rest are levels
    now. block_read and block_write are None where the container has no
    cgroup figure (see the module's docstring)."""

    id: str
    name: str
    running: bool
    at: float  # time.monotonic() of the reading, in seconds
    cpu_ns: int = 0
    mem_usage: int = 0
    mem_limit: int = 0
    net_rx: int = 0
    net_tx: int = 0
    block_read: int | None = 0
    block_write: int | None = 0
    pids: int = 0
    upper_size: int = 0
    # The split of the processes' CPU time (cpu_ns may be the cgroup's),
    # and the cgroup's memory charge before the inactive page cache is taken
    # off with its memory.stat (0 and empty without a cgroup): the Engine
    # API's stats documents carry them, and docker's client does the subtraction.
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    mem_charged: int = 0
    memory_stat: dict[str, int] = field(default_factory=dict)
    # The cgroup's bytes per device, (major, minor, op, bytes), as the Engine
    # API's blkio_stats carries them; empty without a cgroup figure.
    block_devices: tuple[tuple[int, int, str, int], ...] = ()
    proc_read: int = 0
    proc_write: int = 0


@dataclass(frozen=True)
class Stats:
    """What `stats` shows for a container: its latest reading and the rates
    measured since the one before."""

    sample: Sample
    cpu_percent: float  # 100 per fully used CPU, as Docker
    mem_percent: float
    upper_rate: int  # bytes per second the upper dir grew (negative: shrank)


def sample(store: Store, container: Container) -> Sample:
    """Read the container's usage now. A container that is not running
    reads as zeros, except its upper dir, which exists all the same."""
    upper = container_size(store, container)
    if container.status != RUNNING or not container.process_alive():
        return Sample(container.id, container.name, False, time.monotonic(), upper_size=upper)
    pids = procs.container_pids(container.id, container.pid, container.config.host.pid_mode)
    at = time.monotonic()
    usage = process_usage(pids)
    cpu_ns, mem_usage, mem_limit = usage.cpu_ns, usage.rss, 0
    mem_charged, memory_stat = 0, {}
    devices = None
    cgroup = find(container.id)
    if cgroup is not None:
        devices = cgroup.block_io()
        kernel = cgroup.stats()
        if kernel.get("cpu_usage_ns") is not None:
            cpu_ns = kernel["cpu_usage_ns"] or 0
        if kernel.get("memory_usage") is not None:
            mem_charged = kernel["memory_usage"] or 0
            memory_stat = _memory_stat(cgroup)
            mem_usage = without_inactive_file(mem_charged, memory_stat, cgroup.version)
        mem_limit = kernel.get("memory_limit") or 0
    rx, tx = _net_io(container.pid)
    block_read, block_write = read_write_bytes(devices) if devices is not None else (None, None)
    return Sample(
        container.id,
        container.name,
        True,
        at,
        cpu_ns=cpu_ns,
        mem_usage=mem_usage,
        mem_limit=mem_limit or host_memory(),
        net_rx=rx,
        net_tx=tx,
        block_read=block_read,
        block_write=block_write,
        pids=len(usage.pids),
        upper_size=upper,
        cpu_user_ns=usage.user_ns,
        cpu_system_ns=usage.system_ns,
        mem_charged=mem_charged,
        memory_stat=memory_stat,
        block_devices=tuple(devices or ()),
        proc_read=usage.read_bytes,
        proc_write=usage.write_bytes,
    )


def derive(previous: Sample | None, current: Sample) -> Stats:
    """The figures to show for `current`, with rates since `previous`
    (zero without one, or when it was not running)."""
    cpu = upper_rate = 0.0
    if previous is not None and previous.running and current.running:
        cpu = cpu_percent(previous.cpu_ns, current.cpu_ns, current.at - previous.at)
    if previous is not None:
        upper_rate = rate(previous.upper_size, current.upper_size, current.at - previous.at)
    return Stats(
        current,
        cpu_percent=cpu,
        mem_percent=percent(current.mem_usage, current.mem_limit),
        upper_rate=round(upper_rate),
    )


def cpu_percent(cpu_ns_before: int, cpu_ns_after: int, seconds: float) -> float:
    """CPU time used over wall time, 100 per CPU kept busy.

    Docker divides by the host's CPU time over the interval and multiplies
    by the number of CPUs, which is the same thing. A process that ended
    unreaped takes its CPU time with it, so the sum can go down: that reads
    as 0, not as a negative load.
    """
    if seconds <= 0:
        return 0.0
    return max(cpu_ns_after - cpu_ns_before, 0) / (seconds * _NANO) * 100.0


def rate(before: int, after: int, seconds: float) -> float:
    """Change per second between two levels; 0 over no time."""
    return (after - before) / seconds if seconds > 0 else 0.0


def percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole > 0 else 0.0


def parse_net_dev(text: str) -> tuple[int, int]:
    """(received, transmitted) bytes of every interface but lo in a
    /proc/<pid>/net/dev table."""
    rx = tx = 0
    for line in text.splitlines()[2:]:  # two header lines
        name, sep, counters = line.partition(":")
        fields = counters.split()
        if not sep or name.strip() == "lo" or len(fields) < 9:
            continue
        # Eight receive columns (bytes first), then eight transmit ones.
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def parse_memory_stat(text: str) -> dict[str, int]:
    """A cgroup's memory.stat as {key: value}."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def without_inactive_file(usage: int, memory_stat: dict[str, int], version: int) -> int:
    """Docker's memory usage: the cgroup's charge less the page cache the
    kernel can drop first (total_inactive_file on v1, inactive_file on v2)."""
    inactive = memory_stat.get("total_inactive_file" if version == 1 else "inactive_file", 0)
    return usage - inactive if inactive < usage else usage


_host_memory: int | None = None


def host_memory() -> int:
    """The host's total memory: the limit of a container with none of its own."""
    global _host_memory
    if _host_memory is None:
        _host_memory = psutil.virtual_memory().total
    return _host_memory


@dataclass
class ProcessUsage:
    """What a set of processes used: CPU time, resident memory, block I/O."""

    pids: list[int]
    cpu_ns: int = 0
    user_ns: int = 0
    system_ns: int = 0
    rss: int = 0
    read_bytes: int = 0
    write_bytes: int = 0


def process_usage(pids: Sequence[int]) -> ProcessUsage:
    """Summed over `pids`, skipping any that ended meanwhile (`pids` then
    lists those that were read)."""
    usage = ProcessUsage(pids=[])
    for pid in pids:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                times = process.cpu_times()
                rss = process.memory_info().rss
                io = process.io_counters()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue  # it ended between the scan and now
        usage.pids.append(pid)
        user = round((times.user + times.children_user) * _NANO)
        system = round((times.system + times.children_system) * _NANO)
        usage.cpu_ns += user + system
        usage.user_ns += user
        usage.system_ns += system
        usage.rss += rss
        usage.read_bytes += io.read_bytes
        usage.write_bytes += io.write_bytes
    return usage


def _memory_stat(cgroup: Cgroup) -> dict[str, int]:
    """The cgroup's memory.stat; empty if it cannot be read."""
    memory = cgroup.controllers.get("memory")
    if memory is None:
        return {}
    try:
        with open(os.path.join(memory, "memory.stat")) as f:
            return parse_memory_stat(f.read())
    except OSError:
        return {}


def _net_io(pid: int) -> tuple[int, int]:
    """The container's network traffic as its PID 1 sees it; nothing for a
    container in the host's network namespace (--network host), whose
    counters are the host's, as Docker shows none."""
    try:
        if os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            return 0, 0
        with open(f"/proc/{pid}/net/dev") as f:
            return parse_net_dev(f.read())
    except OSError:
        return 0, 0
