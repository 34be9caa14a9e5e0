"""Resource limits for a container: `--memory`, `--memory-swap`,
`--pids-limit`, `--cpus` and `--cpu-shares`, through cgroups.

Three host layouts exist and all are handled:

- v2 (unified): one tree at /sys/fs/cgroup; the container's cgroup is
  /sys/fs/cgroup/overlayctl/<id>, with memory, pids and cpu enabled in the
  parent's cgroup.subtree_control.
- v1: one tree per controller; the container gets
  /sys/fs/cgroup/<controller>/overlayctl/<id> in the memory, pids, cpu and
  cpuacct trees (one directory when controllers share a mount, as
  "cpu,cpuacct" usually does).
- hybrid: v1 trees plus a cgroup2 mount without controllers
  (/sys/fs/cgroup/unified). The limits go to the v1 trees; the container
  also gets a directory in the cgroup2 tree, for its cgroup.kill.

PID 1 joins by writing "0" into every `Cgroup.procs_files` before it
unshares its cgroup namespace.

`pause` uses a `Freezer`: the v1 freezer tree where one is mounted
(/sys/fs/cgroup/freezer/overlayctl/<id>, freezer.state), else the cgroup2
tree's cgroup.freeze. It is made at the first pause, by moving the
container's processes into it, not at start: a process's first move into
a cgroup costs ~10 ms of kernel time here, and most containers are never
paused. `exec` joins the cgroups of the container's PID 1, whatever they
are, with `join_cgroups_of`. Parsing and the list of writes are pure (the
unit tests check them without root); `create`, `Cgroup.remove` and friends
touch the kernel. Kept cheap to import: `run` imports this on every start
with limits.
"""

from __future__ import annotations

import errno
import os
import time

from overlayctl.errors import InvalidArgumentError, KernelError

PARENT = "overlayctl"
MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum for --memory
CPU_PERIOD = 100_000  # µs; --cpus is a quota over this period, as Docker sets it
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262_144  # the kernel's range for cpu.shares
SIGKILL = 9  # (the signal module would cost an import of enum)
STALE_GRACE = 60.0  # seconds an empty, never-joined cgroup is left to its creator

_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
_V2_CONTROLLERS = ("memory", "pids", "cpu")
_NANO = 1_000_000_000


# --- Limits: what the user asked for, parsed and checked as Docker does ---


class Limits:
    """Resource limits of one container; None means not set."""

    __slots__ = ("memory", "memory_swap", "pids", "cpus", "cpu_shares")

    def __init__(
        self,
        memory: int | None = None,
        memory_swap: int | None = None,
        pids: int | None = None,
        cpus: float | None = None,
        cpu_shares: int | None = None,
    ) -> None:
        self.memory = memory  # bytes
        self.memory_swap = memory_swap  # bytes of memory+swap; -1: unlimited swap; None: memory*2
        self.pids = pids
        self.cpus = cpus
        self.cpu_shares = cpu_shares

    def any(self) -> bool:
        """Whether any limit applies (--memory-swap alone limits nothing)."""
        return any(v is not None for v in (self.memory, self.pids, self.cpus, self.cpu_shares))

    @property
    def effective_swap(self) -> int | None:
        """memory+swap as applied: Docker's default is twice --memory."""
        if self.memory_swap is not None:
            return self.memory_swap
        return self.memory * 2 if self.memory is not None else None

    @property
    def nano_cpus(self) -> int:
        return round(self.cpus * _NANO) if self.cpus is not None else 0

    def to_inspect(self) -> dict[str, int | None]:
        """The HostConfig fields `docker inspect` shows (0, or null for
        PidsLimit, when not set, as Docker shows them)."""
        return {
            "Memory": self.memory or 0,
            "MemorySwap": self.effective_swap or 0,
            "PidsLimit": self.pids,
            "NanoCpus": self.nano_cpus,
            "CpuShares": self.cpu_shares or 0,
        }

    @classmethod
    def from_inspect(cls, host_config: dict) -> Limits:
        """The limits recorded by to_inspect, read back."""
        nano = host_config.get("NanoCpus") or 0
        return cls(
            memory=host_config.get("Memory") or None,
            memory_swap=host_config.get("MemorySwap") or None,
            pids=host_config.get("PidsLimit") or None,
            cpus=nano / _NANO if nano else None,
            cpu_shares=host_config.get("CpuShares") or None,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Limits):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        set_ = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k) is not None)
        return f"Limits({set_})"


def parse_limits(
    memory: str | None,
    memory_swap: str | None,
    pids: str | None,
    cpus: str | None,
    cpu_shares: str | None,
    host_cpus: int | None = None,
) -> Limits:
    """The options as typed, checked as `docker run` checks them.

    `host_cpus` defaults to the CPUs this process may run on.
    """
    from overlayctl.util.sizes import parse_size

    mem = parse_size(memory, "-m, --memory") if memory else None
    if memory_swap in (None, ""):
        swap = None
    elif memory_swap.strip() == "-1":
        swap = -1
    else:
        swap = parse_size(memory_swap, "--memory-swap")
    mem = mem or None  # 0: no limit, as Docker
    swap = swap or None
    if mem is not None and mem < MIN_MEMORY:
        raise InvalidArgumentError("Minimum memory limit allowed is 6MB")
    if mem is not None and swap is not None and 0 < swap < mem:
        raise InvalidArgumentError("Minimum memoryswap limit should be larger than memory limit, see usage")
    if mem is None and swap is not None and swap > 0:
        raise InvalidArgumentError("You should always set the Memory limit when using Memoryswap limit, see usage")
    limits = Limits(memory=mem, memory_swap=swap)
    if pids:
        n = _parse_int(pids, "--pids-limit")
        limits.pids = n if n > 0 else None  # 0 and -1 both mean unlimited, as Docker
    if cpus:
        nano = parse_nano_cpus(cpus)
        n_cpus = host_cpus if host_cpus is not None else len(os.sched_getaffinity(0))
        # The kernel refuses a quota under 1 ms per period: 0.01 CPUs.
        if nano < 0 or 0 < nano < _NANO // 100 or nano > n_cpus * _NANO:
            raise InvalidArgumentError(
                f"Range of CPUs is from 0.01 to {n_cpus}.00, as there are only {n_cpus} CPUs available"
            )
        limits.cpus = nano / _NANO if nano else None
    if cpu_shares:
        shares = _parse_int(cpu_shares, "--cpu-shares")
        # Docker clamps into the kernel's range rather than failing; 0 is the default (1024).
        limits.cpu_shares = min(max(shares, MIN_CPU_SHARES), MAX_CPU_SHARES) if shares else None
    return limits


def parse_nano_cpus(text: str) -> int:
    """--cpus as an exact count of billionths of a CPU: "1.5" -> 1_500_000_000."""
    value = text.strip()
    sign = -1 if value.startswith("-") else 1
    digits = value[1:] if value[:1] in ("-", "+") else value
    whole, _, frac = digits.partition(".")
    if not (whole or frac) or any(part and not part.isdigit() for part in (whole, frac)):
        raise _flag_error(text, "--cpus", f"failed to parse {text} as a rational number")
    if len(frac) > 9 and frac[9:].strip("0"):
        raise _flag_error(text, "--cpus", "value is too precise")
    return sign * (int(whole or "0") * _NANO + int((frac[:9] or "0").ljust(9, "0")))


def _parse_int(text: str, flag: str) -> int:
    value = text.strip()
    if not value.lstrip("+-").isdigit() or value.count("-") + value.count("+") > 1:
        raise _flag_error(text, flag, f'strconv.ParseInt: parsing "{text}": invalid syntax')
    return int(value)


def _flag_error(text: str, flag: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f'invalid argument "{text}" for "{flag}" flag: {why}')


def cpu_quota(cpus: float) -> int:
    """µs of CPU time per CPU_PERIOD, as Docker computes it from NanoCpus."""
    return round(cpus * _NANO) * CPU_PERIOD // _NANO


def shares_to_weight(shares: int) -> int:
    """cgroup v2 cpu.weight (1..10000) for v1 cpu.shares (2..262144), as runc converts."""
    return 1 + ((shares - 2) * 9999) // 262142


def limit_writes(limits: Limits, version: int, swap_accounting: bool = True) -> list[tuple[str, str, str]]:
    """The kernel writes that apply `limits`, in order: (controller, file, value).

    On v1 the memory limit goes first: memory.memsw.limit_in_bytes may never
    be below memory.limit_in_bytes, and a new cgroup starts unlimited.
    """
    writes: list[tuple[str, str, str]] = []
    swap = limits.effective_swap if swap_accounting else None
    if limits.memory is not None:
        if version == 2:
            writes.append(("memory", "memory.max", str(limits.memory)))
            if swap is not None:
                # v2 limits swap alone; Docker's value is memory+swap.
                writes.append(("memory", "memory.swap.max", "max" if swap < 0 else str(swap - limits.memory)))
        else:
            writes.append(("memory", "memory.limit_in_bytes", str(limits.memory)))
            if swap is not None:
                writes.append(("memory", "memory.memsw.limit_in_bytes", str(swap)))
    if limits.pids is not None:
        writes.append(("pids", "pids.max", str(limits.pids)))
    if limits.cpus is not None:
        quota = cpu_quota(limits.cpus)
        if version == 2:
            writes.append(("cpu", "cpu.max", f"{quota} {CPU_PERIOD}"))
        else:
            writes.append(("cpu", "cpu.cfs_period_us", str(CPU_PERIOD)))
            writes.append(("cpu", "cpu.cfs_quota_us", str(quota)))
    if limits.cpu_shares is not None:
        if version == 2:
            writes.append(("cpu", "cpu.weight", str(shares_to_weight(limits.cpu_shares))))
        else:
            writes.append(("cpu", "cpu.shares", str(limits.cpu_shares)))
    return writes


def required_controllers(limits: Limits) -> list[str]:
    wanted = []
    if limits.memory is not None:
        wanted.append("memory")
    if limits.pids is not None:
        wanted.append("pids")
    if limits.cpus is not None or limits.cpu_shares is not None:
        wanted.append("cpu")
    return wanted


_MISSING_HINT = {
    "memory": "--memory needs the memory cgroup controller",
    "pids": "--pids-limit needs the pids cgroup controller",
    "cpu": "--cpus and --cpu-shares need the cpu cgroup controller",
}


# --- Layout: where this host mounts its cgroup trees ---


# Where the trees are mounted on the hosts overlayctl knows (a v1 freezer,
# a hybrid host's controller-less cgroup2, a v2 host): enough to ask
# whether a container has a cgroup without reading mountinfo.
USUAL_TREES = ("/sys/fs/cgroup/freezer", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def container_dir(tree: str, container_id: str, parent: str = PARENT) -> str:
    """The directory of a container's cgroup (or freezer) in the cgroup tree
    mounted at `tree`: <tree>/overlayctl/<id>. The one place it is spelt."""
    return os.path.join(tree, parent, container_id)


def has_cgroup_dir(container_id: str) -> bool:
    """Whether any usual tree holds a directory for the container (a stat
    or three; no mountinfo)."""
    return any(os.path.isdir(container_dir(tree, container_id)) for tree in USUAL_TREES)


class Layout:
    """The cgroup mounts of a host: `version` 2 (unified at `unified`), 1 (v1
    trees in `v1`, controller -> mount point, and on a hybrid host a
    controller-less cgroup2 mount at `unified`), or 0 (no cgroups).
    Containers go under `parent` in each tree."""

    __slots__ = ("version", "unified", "v1", "parent", "freezer")

    def __init__(
        self,
        version: int,
        unified: str | None = None,
        v1: dict[str, str] | None = None,
        parent: str = PARENT,
        freezer: str | None = None,
    ) -> None:
        self.version = version
        self.unified = unified
        self.v1 = v1 or {}
        self.parent = parent
        self.freezer = freezer  # the v1 freezer tree's mount point, if there is one

    def with_parent(self, parent: str) -> Layout:
        return Layout(self.version, self.unified, dict(self.v1), parent, self.freezer)

    def parent_dirs(self) -> list[str]:
        """Every directory holding containers' cgroups (one per mounted tree)."""
        roots = list(dict.fromkeys(self.v1.values())) if self.version == 1 else []
        if self.unified is not None:
            roots.append(self.unified)
        return [os.path.join(r, self.parent) for r in roots]

    def __repr__(self) -> str:
        return f"Layout(v{self.version}, unified={self.unified}, v1={self.v1}, parent={self.parent})"


def parse_mountinfo(text: str) -> Layout:
    """The cgroup layout described by /proc/self/mountinfo."""
    unified: list[str] = []
    v1: dict[str, str] = {}
    freezer = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, super_fields = left.split(), right.split()
        if not sep or len(fields) < 5 or len(super_fields) < 3:
            continue
        fstype, mountpoint = super_fields[0], _unescape(fields[4])
        if fstype == "cgroup2":
            unified.append(mountpoint)
        elif fstype == "cgroup":
            options = super_fields[2].split(",")
            for controller in _V1_CONTROLLERS:
                if controller in options and controller not in v1:
                    v1[controller] = mountpoint
            if "freezer" in options and freezer is None:
                freezer = mountpoint
    # A second mount of the cgroup2 tree shows the same tree: prefer the usual places.
    unified.sort(key=lambda m: (m != "/sys/fs/cgroup", m != "/sys/fs/cgroup/unified"))
    top = unified[0] if unified else None
    if v1:
        return Layout(1, top, v1, freezer=freezer)
    return Layout(2, top, freezer=freezer) if top is not None else Layout(0, freezer=freezer)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


_host_layout: Layout | None = None


def host_layout() -> Layout:
    """This host's layout, probed once per process."""
    global _host_layout
    if _host_layout is None:
        with open("/proc/self/mountinfo") as f:
            _host_layout = parse_mountinfo(f.read())
    return _host_layout


# --- Cgroup: one container's cgroup directories ---


class Cgroup:
    """The cgroup directories of one container.

    `controllers` maps memory/pids/cpu/cpuacct to the directory that has
    its files (on v2 all share one); `unified` is the cgroup2 directory when
    the host has a cgroup2 tree; `dirs` lists every directory, created in
    this order and removed in reverse.
    """

    __slots__ = ("container_id", "version", "dirs", "controllers", "unified", "warnings")

    def __init__(self, container_id: str, layout: Layout) -> None:
        _check_id(container_id)
        self.container_id = container_id
        self.version = layout.version
        self.controllers: dict[str, str] = {}
        self.unified: str | None = None
        self.warnings: list[str] = []  # for the user, as Docker prints "WARNING: ..."
        if layout.unified is not None:
            self.unified = container_dir(layout.unified, container_id, layout.parent)
        if layout.version == 2 and self.unified is not None:
            self.controllers = {c: self.unified for c in _V2_CONTROLLERS}
        elif layout.version == 1:
            self.controllers = {c: container_dir(m, container_id, layout.parent) for c, m in layout.v1.items()}
        dirs = list(dict.fromkeys(self.controllers.values()))
        if self.unified is not None and self.unified not in dirs:
            dirs.append(self.unified)
        self.dirs = dirs

    @property
    def procs_files(self) -> list[str]:
        """The cgroup.procs files PID 1 writes "0" into, one per directory."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def __repr__(self) -> str:
        return f"Cgroup({self.container_id}, v{self.version}, {self.dirs})"

    def join(self, pid: int = 0) -> None:
        """Move a process (0: the caller) into every directory, as PID 1 does.

        The first move costs an RCU grace period (~10 ms here): the kernel's
        cgroup_threadgroup_rwsem is taken for writing, on v1 and v2 alike.
        """
        for procs in self.procs_files:
            try:
                with open(procs, "w") as f:
                    f.write(str(pid))
            except OSError as exc:
                raise _kernel_error(f"move process {pid or os.getpid()} into cgroup", procs, exc) from None

    def pids(self) -> list[int]:
        """The processes in the cgroup (as this process's PID namespace numbers them)."""
        found: set[int] = set()
        for procs in self.procs_files:
            try:
                with open(procs) as f:
                    found.update(int(p) for p in f.read().split())
            except FileNotFoundError:
                continue
        return sorted(found)

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        memory = self.controllers.get("memory")
        if memory is None:
            return False
        if self.version == 2:
            return _read_keyed(os.path.join(memory, "memory.events")).get("oom_kill", 0) > 0
        control = _read_keyed(os.path.join(memory, "memory.oom_control"))
        if "oom_kill" in control:  # since Linux 4.13
            return control["oom_kill"] > 0
        # Older kernels: hitting the limit is the best hint there is.
        return (_read_int(os.path.join(memory, "memory.failcnt")) or 0) > 0

    def stats(self) -> dict[str, int | None]:
        """Usage now, best effort: a value the kernel does not give is None."""
        memory, pids = self.controllers.get("memory"), self.controllers.get("pids")
        out: dict[str, int | None] = {}
        if self.version == 2:
            out["memory_usage"] = _read_int(os.path.join(memory, "memory.current")) if memory else None
            out["memory_limit"] = _read_int(os.path.join(memory, "memory.max")) if memory else None
            usage = _read_keyed(os.path.join(self.unified, "cpu.stat")).get("usage_usec") if self.unified else None
            out["cpu_usage_ns"] = usage * 1000 if usage is not None else None
        else:
            out["memory_usage"] = _read_int(os.path.join(memory, "memory.usage_in_bytes")) if memory else None
            limit = _read_int(os.path.join(memory, "memory.limit_in_bytes")) if memory else None
            # v1 says "no limit" with the largest page-aligned value.
            out["memory_limit"] = limit if limit is not None and limit < (1 << 62) else None
            acct = self.controllers.get("cpuacct")
            out["cpu_usage_ns"] = _read_int(os.path.join(acct, "cpuacct.usage")) if acct else None
        out["pids_current"] = _read_int(os.path.join(pids, "pids.current")) if pids else None
        out["pids_limit"] = _read_int(os.path.join(pids, "pids.max")) if pids else None
        return out

    def remove(self, timeout: float = 5.0) -> None:
        """Kill whatever is left in the cgroup and remove its directories.

        Idempotent: directories already gone are fine. Raises KernelError
        only if processes outlive `timeout` (e.g. stuck in the kernel).
        """
        deadline = time.monotonic() + timeout
        self._kill_all(deadline)
        for d in reversed(self.dirs):
            self._rmdir(d, deadline)

    def _kill_all(self, deadline: float) -> None:
        if not self.pids():
            return
        kill_file = os.path.join(self.unified, "cgroup.kill") if self.unified else ""
        can_kill_all = bool(kill_file) and os.path.exists(kill_file)
        if not can_kill_all and "pids" in self.controllers:
            # Without cgroup.kill (Linux < 5.14, or v1 only), stop forks
            # first so that killing one pid at a time can win against a fork bomb.
            _write_quietly(os.path.join(self.controllers["pids"], "pids.max"), "0")
        pause = 0.0005
        while True:
            pids = self.pids()
            if not pids:
                return
            if time.monotonic() > deadline:
                raise KernelError(
                    f"cannot remove the cgroup of container {self.container_id}: "
                    f"processes {', '.join(map(str, pids[:10]))} survive SIGKILL"
                )
            if can_kill_all:
                # Atomic: the kernel kills the whole cgroup, forks in flight included.
                _write_quietly(kill_file, "1")
            else:
                for pid in pids:
                    try:
                        os.kill(pid, SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _rmdir(self, path: str, deadline: float) -> None:
        while True:
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # A process that was just killed may still be leaving it.
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise _kernel_error("remove cgroup", path, exc) from None
                self._kill_all(deadline)
                time.sleep(0.002)

    def _discard(self) -> None:
        """Undo a half-made create(): best effort, the first error stands."""
        for d in reversed(self.dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass

    def _ever_joined(self) -> bool:
        """Whether anything ever ran in the cgroup (it has used CPU time)."""
        acct = self.controllers.get("cpuacct")
        if acct is not None and _read_int(os.path.join(acct, "cpuacct.usage")):
            return True
        if self.unified is not None:
            return _read_keyed(os.path.join(self.unified, "cpu.stat")).get("usage_usec", 0) > 0
        return False

    def _age(self) -> float:
        ages = []
        for d in self.dirs:
            try:
                ages.append(time.time() - os.stat(d).st_ctime)
            except OSError:
                continue
        return min(ages) if ages else 0.0


def _check_id(container_id: str) -> None:
    if not container_id or container_id.startswith(".") or "/" in container_id or "\0" in container_id:
        raise InvalidArgumentError(f'"{container_id}" cannot name a cgroup')


def create(container_id: str, limits: Limits, layout: Layout | None = None) -> Cgroup | None:
    """Make the container's cgroup with `limits` applied.

    Without limits a cgroup is still made where the host allows it (so that
    stats and kill-all work); None when it does not (no cgroup tree, or not
    writable) and nothing was asked for. A half-made cgroup is removed
    before the error is raised.
    """
    layout = layout or host_layout()
    wanted = required_controllers(limits)
    if layout.version == 0:
        if wanted:
            raise KernelError(f"{_MISSING_HINT[wanted[0]]}, and this host has no cgroup tree mounted")
        return None
    cgroup = Cgroup(container_id, layout)
    if layout.version == 2:
        listed = os.path.join(layout.unified or "", "cgroup.controllers")
        missing = [c for c in wanted if c not in _read_words(listed)]
        where = f"{listed} does not list it (on a hybrid host it may be bound to a v1 tree)"
    else:
        missing = [c for c in wanted if c not in cgroup.controllers]
        where = "no cgroup v1 tree on this host has it (mount one, e.g. at /sys/fs/cgroup/<controller>)"
    if missing:
        raise KernelError(f"{_MISSING_HINT[missing[0]]}, but {where}")
    try:
        if layout.version == 2:
            _enable_v2_controllers(layout, wanted)
        _make_dirs(layout, cgroup)
    except OSError as exc:
        if not wanted and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None  # no limits asked for: run without a cgroup of our own
        raise _kernel_error("create cgroup", getattr(exc, "filename", None) or "", exc) from None
    try:
        _apply(cgroup, limits)
    except BaseException:
        cgroup._discard()
        raise
    return cgroup


def _make_dirs(layout: Layout, cgroup: Cgroup) -> None:
    for parent in layout.parent_dirs():
        try:
            os.mkdir(parent, 0o755)
        except FileExistsError:
            pass
    made = []
    try:
        for d in cgroup.dirs:
            os.mkdir(d, 0o755)
            made.append(d)
    except BaseException:
        for d in reversed(made):
            try:
                os.rmdir(d)
            except OSError:
                pass
        raise


def _apply(cgroup: Cgroup, limits: Limits) -> None:
    memory = cgroup.controllers.get("memory")
    swap_file = "memory.swap.max" if cgroup.version == 2 else "memory.memsw.limit_in_bytes"
    swap_accounting = memory is not None and os.path.exists(os.path.join(memory, swap_file))
    if limits.memory is not None and not swap_accounting and limits.effective_swap != -1:
        # Docker's words: the limit stands, swap is simply not limited.
        cgroup.warnings.append(
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
            "Memory limited without swap."
        )
    for controller, name, value in limit_writes(limits, cgroup.version, swap_accounting):
        path = os.path.join(cgroup.controllers[controller], name)
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise _kernel_error(f"set {name} to {value}", path, exc) from None


def _enable_v2_controllers(layout: Layout, wanted: list[str]) -> None:
    """Let the container's directory have memory, pids and cpu files: each
    controller must be enabled in the subtree_control of every ancestor."""
    assert layout.unified is not None
    root = layout.unified
    parent = os.path.join(root, layout.parent)
    available = _read_words(os.path.join(root, "cgroup.controllers"))
    useful = [c for c in _V2_CONTROLLERS if c in available]
    for d in (root, parent):
        if d == parent:
            try:
                os.mkdir(parent, 0o755)
            except FileExistsError:
                pass
        control = os.path.join(d, "cgroup.subtree_control")
        enabled = _read_words(control)
        for c in useful:
            if c in enabled:
                continue
            try:
                with open(control, "w") as f:
                    f.write("+" + c)
            except OSError as exc:
                # Only a controller a limit needs must be there; e.g. cpu
                # cannot be enabled while a realtime task sits in a child.
                if c in wanted:
                    raise _kernel_error(f"enable the {c} controller", control, exc) from None


def find(container_id: str, layout: Layout | None = None) -> Cgroup | None:
    """The cgroup of a container, if any of its directories exists (e.g.
    its supervisor died before removing it)."""
    layout = layout or host_layout()
    if layout.version == 0:
        return None
    cgroup = Cgroup(container_id, layout)
    if not any(os.path.isdir(d) for d in cgroup.dirs):
        return None
    return cgroup


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
        if not cgroup._ever_joined() and cgroup._age() < grace:
            continue
        cgroup.remove()
        removed.append(container_id)
    # Freezers `pause` made (on a v1 host, in a tree of their own).
    if layout.freezer is not None:
        try:
            names = os.listdir(os.path.join(layout.freezer, layout.parent))
        except (FileNotFoundError, NotADirectoryError):
            names = []
        for container_id in sorted(set(names) - set(known_running)):
            freezer = Freezer(container_id, layout)
            if freezer.exists() and not freezer.pids():
                freezer.remove()
                if container_id not in removed:
                    removed.append(container_id)
    return removed


# --- Freezer: pause and unpause ---

FREEZE_TIMEOUT = 10.0


class Freezer:
    """The freezer of one container: a v1 freezer cgroup, or (without a v1
    freezer tree) a cgroup2 directory and its cgroup.freeze.

    Made by `adopt` at the first pause: the container's processes are
    moved in, then frozen; a process forked meanwhile by one not yet moved
    is found by the next scan (in a frozen v1 cgroup a process that
    arrives is frozen on arrival). Removed with the container.
    """

    __slots__ = ("container_id", "version", "dir")

    def __init__(self, container_id: str, layout: Layout | None = None) -> None:
        _check_id(container_id)
        layout = layout or host_layout()
        self.container_id = container_id
        if layout.freezer is not None:
            self.version, self.dir = 1, container_dir(layout.freezer, container_id, layout.parent)
        elif layout.unified is not None:
            self.version, self.dir = 2, container_dir(layout.unified, container_id, layout.parent)
        else:
            self.version, self.dir = 0, ""

    def __repr__(self) -> str:
        return f"Freezer({self.container_id}, v{self.version}, {self.dir})"

    def exists(self) -> bool:
        return bool(self.dir) and os.path.isdir(self.dir)

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.dir, "cgroup.procs")) as f:
                return sorted(int(p) for p in f.read().split())
        except OSError:
            return []

    def state(self) -> str:
        """FROZEN, FREEZING or THAWED ("" when there is no freezer)."""
        if not self.dir:
            return ""
        if self.version == 1:
            try:
                with open(os.path.join(self.dir, "freezer.state")) as f:
                    return f.read().strip()
            except OSError:
                return ""
        try:
            with open(os.path.join(self.dir, "cgroup.freeze")) as f:
                wanted = f.read().strip() == "1"
        except OSError:
            return ""
        if not wanted:
            return "THAWED"
        return "FROZEN" if _read_keyed(os.path.join(self.dir, "cgroup.events")).get("frozen") == 1 else "FREEZING"

    def adopt(self, find_pids) -> int:  # type: ignore[no-untyped-def]
        """Make the freezer if needed and move every process `find_pids()`
        returns into it, until a scan finds none outside; how many moved."""
        if not self.dir:
            raise KernelError("pause needs a freezer: this host has neither a v1 freezer tree nor cgroup2 mounted")
        parent = os.path.dirname(self.dir)
        for d in (parent, self.dir):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _kernel_error("create freezer cgroup", d, exc) from None
        moved = 0
        procs = os.path.join(self.dir, "cgroup.procs")
        for _ in range(100):
            inside = set(self.pids())
            outside = [p for p in find_pids() if p not in inside]
            if not outside:
                return moved
            for pid in outside:
                try:
                    with open(procs, "w") as f:
                        f.write(str(pid))
                    moved += 1
                except ProcessLookupError:
                    continue  # it ended meanwhile
                except OSError as exc:
                    if exc.errno == errno.ESRCH:
                        continue
                    raise _kernel_error(f"move process {pid} into the freezer", procs, exc) from None
        raise KernelError(f"cannot pause container {self.container_id}: its processes keep forking")

    def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        """Freeze, and wait until every process is frozen."""
        self._write_state("FROZEN" if self.version == 1 else "1")
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while self.state() != "FROZEN":
            if time.monotonic() > deadline:
                self.thaw()
                raise KernelError(f"cannot pause container {self.container_id}: the freezer did not settle")
            if self.version == 1:
                self._write_state("FROZEN")  # v1 retries the stragglers only when asked again
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def thaw(self) -> None:
        if self.exists():
            self._write_state("THAWED" if self.version == 1 else "0")

    def _write_state(self, value: str) -> None:
        name = "freezer.state" if self.version == 1 else "cgroup.freeze"
        path = os.path.join(self.dir, name)
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise _kernel_error(f"write {value} to {name}", path, exc) from None

    def remove(self, timeout: float = 5.0) -> None:
        """Thaw and remove the freezer once its processes are gone.
        Idempotent; KernelError if processes stay past `timeout`."""
        if not self.exists():
            return
        try:
            self.thaw()
        except KernelError:
            pass
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.dir)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise _kernel_error("remove freezer cgroup", self.dir, exc) from None
                time.sleep(0.005)


# --- the cgroups of another process (for exec) ---


def cgroup_mounts(mountinfo: str) -> list[tuple[frozenset[str], str, str]]:
    """(controllers, mount point, mount root) of each cgroup mount; the
    cgroup2 tree has no controllers in this sense."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, super_fields = left.split(), right.split()
        if not sep or len(fields) < 5 or len(super_fields) < 3:
            continue
        if super_fields[0] == "cgroup2":
            mounts.append((frozenset(), _unescape(fields[4]), _unescape(fields[3])))
        elif super_fields[0] == "cgroup":
            mounts.append((frozenset(super_fields[2].split(",")), _unescape(fields[4]), _unescape(fields[3])))
    return mounts


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
            raise _kernel_error("join the container's cgroup", procs, exc) from None


# --- small file helpers ---


def _read_words(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: str) -> dict[str, int]:
    """A "key value" per line file (memory.events, cpu.stat, memory.oom_control)."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if value.strip().lstrip("-").isdigit():
                    out[key] = int(value)
    except OSError:
        pass
    return out


def _write_quietly(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass


def _kernel_error(what: str, path: str, exc: OSError) -> KernelError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return KernelError(f"cannot {what}: {path}: {reason}")
