"""The freezer of `pause` and `unpause`: the v1 freezer tree where one is
mounted (/sys/fs/cgroup/freezer/overlayctl/<id>, freezer.state), else the
cgroup2 tree's cgroup.freeze.

It is made at the first pause, by moving the container's processes into
it, not at start: a process's first move into a cgroup costs ~10 ms of
kernel time here, and most containers are never paused.
"""

from __future__ import annotations

import errno
import os
import time

from overlayctl.errors import KernelError
from overlayctl.paths import cgroup_dir
from overlayctl.runtime.cgroups.files import kernel_error, read_keyed
from overlayctl.runtime.cgroups.layout import Layout, check_id, host_layout

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
        check_id(container_id)
        layout = layout or host_layout()
        self.container_id = container_id
        if layout.freezer is not None:
            self.version, self.dir = 1, cgroup_dir(layout.freezer, container_id, layout.parent)
        elif layout.unified is not None:
            self.version, self.dir = 2, cgroup_dir(layout.unified, container_id, layout.parent)
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
        return "FROZEN" if read_keyed(os.path.join(self.dir, "cgroup.events")).get("frozen") == 1 else "FREEZING"

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
                raise kernel_error("create freezer cgroup", d, exc) from None
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
                    raise kernel_error(f"move process {pid} into the freezer", procs, exc) from None
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
            raise kernel_error(f"write {value} to {name}", path, exc) from None

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
                    raise kernel_error("remove freezer cgroup", self.dir, exc) from None
                time.sleep(0.005)
