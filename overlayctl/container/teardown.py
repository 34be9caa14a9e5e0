"""Removing a container and all it holds: lease, cgroup, freezer, attach
socket, and its anonymous volumes if asked. Both `rm` (engine) and the
supervisors (--rm after the exit) call this.
"""

from __future__ import annotations

import os

from overlayctl.container.resources import paused_once
from overlayctl.container.spec import needs_cgroup
from overlayctl.store import Store
from overlayctl.store.containers import Container


def remove(store: Store, container: Container, force: bool = False, volumes: bool = False) -> None:
    """`rm`: the container, what it holds (lease, cgroup, freezer, attach
    socket), and with `volumes` its anonymous volumes (`rm -v`; --rm does
    the same, as Docker)."""
    if force and container.is_active and paused_once(container.id):
        # A frozen process does not die of SIGKILL until it is thawed.
        from overlayctl.container.signals import signal_container

        signal_container(container, 9)
        from overlayctl.runtime.cgroups.freezer import Freezer

        Freezer(container.id).thaw()
    store.containers.remove(container, force)
    hc = container.config.host
    if hc.network not in ("none", "host"):
        from overlayctl.network import leases

        leases.release_stale(store)
    if needs_cgroup(hc):
        from overlayctl.runtime.cgroups.cgroup import find

        stale = find(container.id)
        if stale is not None:
            stale.remove()
    if paused_once(container.id):
        from overlayctl.runtime.cgroups.freezer import Freezer

        Freezer(container.id).remove()
    try:
        os.unlink(store.paths.attach_socket(container.id))
    except OSError:
        pass
    if hc.mounts:
        from overlayctl.volumes import mounts as volume_ops

        volume_ops.release(store, container, remove_anonymous=volumes)
