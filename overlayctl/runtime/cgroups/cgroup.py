"""One container's cgroup: its directories in each tree, made with the
limits applied, joined by PID 1, found again after a crash, and removed
with whatever still runs in it.

PID 1 joins by writing "0" into every `Cgroup.procs_files` before it
unshares its cgroup namespace. Kept cheap to import: `run` imports this on
every start with limits.
"""

from __future__ import annotations

import errno
import os
import time

from overlayctl.errors import KernelError
from overlayctl.paths import cgroup_dir, cgroup_parent_dir
from overlayctl.runtime.cgroups.files import kernel_error, read_words, write_quietly
from overlayctl.runtime.cgroups.layout import V2_CONTROLLERS, Layout, check_id, host_layout
from overlayctl.runtime.cgroups.limits import MISSING_HINT, Limits, limit_writes, required_controllers
from overlayctl.runtime.cgroups.stats import block_io, usage, was_oom_killed

SIGKILL = 9  # (the signal module would cost an import of enum)


class Cgroup:
    """The cgroup directories of one container.

    `controllers` maps memory/pids/cpu/cpuacct to the directory that has
    its files (on v2 all share one); `unified` is the cgroup2 directory when
    the host has a cgroup2 tree; `dirs` lists every directory, created in
    this order and removed in reverse.
    """

    __slots__ = ("container_id", "version", "dirs", "controllers", "unified", "warnings")

    def __init__(self, container_id: str, layout: Layout) -> None:
        check_id(container_id)
        self.container_id = container_id
        self.version = layout.version
        self.controllers: dict[str, str] = {}
        self.unified: str | None = None
        self.warnings: list[str] = []  # for the user, as Docker prints "WARNING: ..."
        if layout.unified is not None:
            self.unified = cgroup_dir(layout.unified, container_id, layout.parent)
        if layout.version == 2 and self.unified is not None:
            self.controllers = {c: self.unified for c in V2_CONTROLLERS}
        elif layout.version == 1:
            self.controllers = {c: cgroup_dir(m, container_id, layout.parent) for c, m in layout.v1.items()}
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
                raise kernel_error(f"move process {pid or os.getpid()} into cgroup", procs, exc) from None

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
        return was_oom_killed(self.version, self.controllers)

    def stats(self) -> dict[str, int | None]:
        """Usage now, best effort: a value the kernel does not give is None."""
        return usage(self.version, self.controllers, self.unified)

    def block_io(self) -> list[tuple[int, int, str, int]] | None:
        """Bytes read from and written to each device (stats.block_io), or
        None when this cgroup has no such figure."""
        return block_io(self.version, self.controllers)

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
            write_quietly(os.path.join(self.controllers["pids"], "pids.max"), "0")
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
                write_quietly(kill_file, "1")
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
                    raise kernel_error("remove cgroup", path, exc) from None
                self._kill_all(deadline)
                time.sleep(0.002)

    def _discard(self) -> None:
        """Undo a half-made create(): best effort, the first error stands."""
        for d in reversed(self.dirs):
            try:
                os.rmdir(d)
            except OSError:
                pass


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
            raise KernelError(f"{MISSING_HINT[wanted[0]]}, and this host has no cgroup tree mounted")
        return None
    cgroup = Cgroup(container_id, layout)
    if layout.version == 2:
        listed = os.path.join(layout.unified or "", "cgroup.controllers")
        missing = [c for c in wanted if c not in read_words(listed)]
        where = f"{listed} does not list it (on a hybrid host it may be bound to a v1 tree)"
    else:
        missing = [c for c in wanted if c not in cgroup.controllers]
        where = "no cgroup v1 tree on this host has it (mount one, e.g. at /sys/fs/cgroup/<controller>)"
    if missing:
        raise KernelError(f"{MISSING_HINT[missing[0]]}, but {where}")
    try:
        if layout.version == 2:
            _enable_v2_controllers(layout, wanted)
        _make_dirs(layout, cgroup)
    except OSError as exc:
        if not wanted and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None  # no limits asked for: run without a cgroup of our own
        raise kernel_error("create cgroup", getattr(exc, "filename", None) or "", exc) from None
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
            raise kernel_error(f"set {name} to {value}", path, exc) from None


def _enable_v2_controllers(layout: Layout, wanted: list[str]) -> None:
    """Let the container's directory have memory, pids and cpu files: each
    controller must be enabled in the subtree_control of every ancestor."""
    assert layout.unified is not None
    root = layout.unified
    parent = cgroup_parent_dir(root, layout.parent)
    available = read_words(os.path.join(root, "cgroup.controllers"))
    useful = [c for c in V2_CONTROLLERS if c in available]
    for d in (root, parent):
        if d == parent:
            try:
                os.mkdir(parent, 0o755)
            except FileExistsError:
                pass
        control = os.path.join(d, "cgroup.subtree_control")
        enabled = read_words(control)
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
                    raise kernel_error(f"enable the {c} controller", control, exc) from None


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
