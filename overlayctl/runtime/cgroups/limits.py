"""Limits: what the user asked for (`--memory`, `--memory-swap`,
`--pids-limit`, `--cpus`, `--cpu-shares`), parsed and checked as Docker
does, and the kernel writes that apply them on v1 and v2.

Pure: nothing here touches the kernel (`cgroup.create` does the writes).
`create` and `run` import this on every start with limits.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.container.model import Resources

MIN_MEMORY = 6 * 1024 * 1024  # Docker's minimum for --memory
CPU_PERIOD = 100_000  # µs; --cpus is a quota over this period, as Docker sets it
MIN_CPU_SHARES, MAX_CPU_SHARES = 2, 262_144  # the kernel's range for cpu.shares

_NANO = 1_000_000_000


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

    def to_resources(self) -> Resources:
        """The limits as HostConfig records them and `docker inspect` shows
        them (0, or null for PidsLimit, when not set, as Docker shows them)."""
        from overlayctl.container.model import Resources

        return Resources(
            memory=self.memory or 0,
            memory_swap=self.effective_swap or 0,
            pids_limit=self.pids,
            nano_cpus=self.nano_cpus,
            cpu_shares=self.cpu_shares or 0,
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
    """The controllers `limits` need, in the order `create` checks them."""
    wanted = []
    if limits.memory is not None:
        wanted.append("memory")
    if limits.pids is not None:
        wanted.append("pids")
    if limits.cpus is not None or limits.cpu_shares is not None:
        wanted.append("cpu")
    return wanted


# What to tell a user whose host lacks the controller a limit needs.
MISSING_HINT = {
    "memory": "--memory needs the memory cgroup controller",
    "pids": "--pids-limit needs the pids cgroup controller",
    "cpu": "--cpus and --cpu-shares need the cpu cgroup controller",
}
