"""`system reconcile` (run at boot by overlayctl-reconcile.service, and
before `system fsck` and after `system restore`): make the catalog agree
with what is running after supervisors died or the host rebooted.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from overlayctl.store import Store


def reconcile_store(store: Store) -> list[str]:
    """What `system reconcile` does; one line per thing it changed."""
    from overlayctl.container.teardown import remove
    from overlayctl.network import leases
    from overlayctl.runtime.cgroups.stale import remove_stale
    from overlayctl.store import staging
    from overlayctl.store.containers import CREATED, EXITED

    # A row that is neither created nor exited claims a living container;
    # reading it back through the store checks the claim against /proc.
    claimed = store.containers.ids_claimed_alive()
    containers = store.containers.list(all=True)
    lost = [c for c in containers if c.id in claimed and c.status == EXITED]
    report = [f"exited: {c.name} ({c.short_id}): {c.error or 'its supervisor is gone'}" for c in lost]
    for container in lost:
        if container.config.host.auto_remove:
            remove(store, container, force=True, volumes=True)
            report.append(f"removed: {container.name} ({container.short_id}), started with --rm")
    leases.release_stale(store)
    from overlayctl.network.attach import restart_names

    report += [f"DNS responder started: network {name}" for name in restart_names(store)]
    running = {c.id for c in containers if c.status not in (CREATED, EXITED)}
    report += [f"cgroup removed: {cid[:12]}" for cid in remove_stale(running)]
    staging.sweep(store.paths.tmp)
    return report
