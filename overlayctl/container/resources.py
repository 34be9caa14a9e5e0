"""What a start holds until the container ends (its network plan, its
cgroup), taking it and giving it back, and the freezer `pause` leaves.
"""

from __future__ import annotations

import os

from overlayctl.container.spec import needs_cgroup
from overlayctl.errors import OverlayctlError
from overlayctl.paths import USUAL_CGROUP_TREES, cgroup_dir
from overlayctl.runtime.spec import ContainerSpec
from overlayctl.store import Store
from overlayctl.store.containers import Container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.container.model import HostConfig


class Held:
    """What a start holds until the container ends: its network plan and
    its cgroup."""

    __slots__ = ("plan", "cgroup")

    def __init__(self) -> None:
        self.plan: Any = None
        self.cgroup: Any = None


def acquire(store: Store, container: Container, spec: ContainerSpec, held: Held) -> None:
    """Prepare the network and the cgroup of a start (into `held`)."""
    hc = container.config.host
    if paused_once(container.id):
        from overlayctl.runtime.cgroups.freezer import Freezer

        Freezer(container.id).remove()  # left by a supervisor that was killed
    if spec.network not in ("none", "host") or hc.dns or hc.dns_search or hc.dns_options or hc.extra_hosts:
        from overlayctl.network import attach, leases

        leases.release_stale(store)
        held.plan = attach.prepare(store, container, spec.hostname)
        spec.mounts = held.plan.mounts + spec.mounts
    if needs_cgroup(hc):
        from overlayctl.runtime.cgroups.cgroup import create, find
        from overlayctl.runtime.cgroups.limits import parse_limits

        stale = find(container.id)
        if stale is not None:
            stale.remove()  # its last supervisor was killed before it could
        from overlayctl.container.model import LimitOptions

        limits = parse_limits(*(hc.limits if hc.limits is not None else LimitOptions()).given())
        held.cgroup = create(container.id, limits)
        if held.cgroup is not None:
            spec.cgroup_procs = held.cgroup.procs_files
            for warning in getattr(held.cgroup, "warnings", []):
                import sys

                sys.stderr.write(f"WARNING: {warning}\n")
        _restrict_devices(hc, held.cgroup)


def _restrict_devices(hc: HostConfig, cgroup: Any) -> None:
    """Attach the device program of --device permissions narrower than rw
    to the container's cgroup2 directory, before PID 1 joins it."""
    from overlayctl.runtime import devices

    rules = devices.rules_for(hc.devices or [])
    if not rules:
        return
    if cgroup is None or cgroup.unified is None:
        from overlayctl.errors import KernelError

        raise KernelError(
            "--device permissions narrower than rw need a cgroup2 directory for the container, "
            "and none could be made here; use rw"
        )
    devices.restrict(cgroup.unified, rules)


def release_held(store: Store, container: Container, held: Held) -> tuple[bool, str]:
    """After the container ended: its cgroup (was it OOM-killed?), a freezer
    made by `pause`, its network. Returns (oom_killed, error)."""
    oom, error = False, ""
    if held.cgroup is not None:
        oom = held.cgroup.oom_killed()
        try:
            held.cgroup.remove()
        except OverlayctlError as exc:
            error = exc.message
    if paused_once(container.id):
        from overlayctl.runtime.cgroups.freezer import Freezer

        try:
            Freezer(container.id).remove()
        except OverlayctlError as exc:
            error = error or exc.message
    if held.plan is not None:
        held.plan.release()
    return oom, error


def paused_once(container_id: str) -> bool:
    """Whether `pause` made a freezer for this container (cheap to ask:
    a stat on a cgroup tree; no cgroup module, no mountinfo read)."""
    return any(os.path.isdir(cgroup_dir(tree, container_id)) for tree in USUAL_CGROUP_TREES)


def frozen(container_id: str) -> bool:
    """Whether `pause` has the container's processes frozen (or freezing)."""
    if not paused_once(container_id):
        return False
    from overlayctl.runtime.cgroups.freezer import Freezer

    return Freezer(container_id).state() in ("FROZEN", "FREEZING")
