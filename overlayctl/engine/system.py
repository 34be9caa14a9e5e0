"""The store's own upkeep: `system fsck` (check and repair), the catalog's
backups and `system restore`, and `generate systemd`.

`system reconcile` is engine.reconcile's, `system df` engine.measure's,
`system prune` and `system gc` engine.prune's.
"""

from __future__ import annotations

from overlayctl.systemd.units import RESTART_POLICIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from overlayctl.store import Store
    from overlayctl.store.containers import Container
    from overlayctl.store.fsck import Finding

__all__ = [
    "RESTART_POLICIES",
    "check_store",
    "newest_backup",
    "repair_store",
    "restore_catalog",
    "systemd_unit",
    "system_info",
]


def check_store(store: Store, verify_content: bool = False) -> list[Finding]:
    """`system fsck`: every problem found, each with the repair it allows."""
    from overlayctl.store import fsck

    return fsck.check(store, verify_content)


def repair_store(store: Store, findings: list[Finding]) -> list[str]:
    """`system fsck --repair`: fix what findings allow, then reconcile;
    one line per thing the reconciliation changed."""
    from overlayctl.engine.reconcile import reconcile_store
    from overlayctl.store import fsck

    fsck.repair(store, findings)
    return reconcile_store(store)


def newest_backup(root: str) -> str | None:
    """The newest good backup of the catalog of the store at root, if any."""
    from overlayctl.store import backup

    return backup.newest_good(root)


def restore_catalog(root: str | None, runroot: str | None, source: str | None) -> tuple[str, list[str]]:
    """`system restore`: put a backup of the catalog in place (source, or the
    newest good one) without opening the store, whose catalog may be the
    damaged one. Returns the backup used and one line per thing it did; the
    caller then opens the store and reconciles it."""
    from overlayctl.paths import Paths
    from overlayctl.store.restore import restore
    from overlayctl.supervise.supervisor import require_root

    require_root()
    return restore(Paths.from_env(root, runroot), source)


def systemd_unit(
    store: Store,
    container: Container,
    use_name: bool,
    stop_timeout: int | None,
    restart: str | None,
    header: bool,
    write: bool,
) -> tuple[str, str | None]:
    """`generate systemd`: the unit that runs container in the foreground,
    and, with write, the path of container-NAME.service written with it in
    the current directory."""
    import os

    from overlayctl.systemd import units

    text = units.generate_unit(
        container,
        use_name=use_name,
        root=store.paths.root,
        runroot=store.paths.runroot,
        stop_timeout=stop_timeout,
        restart=restart,
        executable=_executable(),
        header=header,
    )
    if not write:
        return text, None
    path = os.path.abspath(units.unit_name(container, use_name))
    with open(path, "w") as f:
        f.write(text)
    return text, path


def notify_ready(status: str) -> bool:
    """Tell systemd (a Type=notify unit) that a service is ready."""
    from overlayctl.supervise import sdnotify

    return sdnotify.ready(status)


def _executable() -> str:
    """The overlayctl a unit should run: the one on PATH (setup.sh's
    launcher is /usr/local/bin/overlayctl), or that path when none is found."""
    import os
    import shutil

    from overlayctl.systemd.units import EXECUTABLE

    found = shutil.which("overlayctl")
    return os.path.abspath(found) if found else EXECUTABLE


def system_info(store: Store) -> dict[str, Any]:
    """`info`: the host and the store, under the field names of Docker's
    `docker info` (Containers, ContainersRunning, Images, Driver,
    DockerRootDir, KernelVersion, OperatingSystem, NCPU, MemTotal, ...)."""
    import os
    import platform
    import socket

    from overlayctl import __version__
    from overlayctl.engine.inspect import state_name

    containers = store.containers.list(all=True)
    states = [state_name(c) for c in containers]
    running = sum(1 for s in states if s in ("running", "restarting"))
    paused = states.count("paused")
    return {
        "Containers": len(containers),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": len(containers) - running - paused,
        "Images": len(store.images.list()),
        "Driver": "overlay",
        "DriverStatus": _driver_status(store),
        "DockerRootDir": store.paths.root,
        "KernelVersion": platform.release(),
        "OperatingSystem": _os_name(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _mem_total(),
        "Name": socket.gethostname(),
        "ServerVersion": __version__,
        "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
    }


def _driver_status(store: Store) -> list[list[str]]:
    """Docker's DriverStatus pairs: the store's filesystem, whether it
    enforces project quotas (what --storage-opt size= needs), and the
    default size limit of a container (storage.json's; "" when none)."""
    from overlayctl.runtime import quota
    from overlayctl.store.storageopts import read_config

    config = read_config(store.paths)
    return [
        ["Backing Filesystem", quota.filesystem_of(store.paths.root).fstype],
        ["Project Quotas", "true" if quota.enforced(store.paths.root) else "false"],
        ["Default Size Limit", config.size_text if config.size else ""],
    ]


def _os_name() -> str:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
