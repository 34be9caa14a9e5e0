"""A container's spec: what the runtime needs to start it, resolved from
the stored config and the image (network and cgroup are added by the start).
"""

from __future__ import annotations

import os

from overlayctl.runtime.spec import ContainerSpec
from overlayctl.store import Store
from overlayctl.store.containers import Container
from overlayctl.store.images import Image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_images_seen: dict[str, Image] = {}  # by ID, in this process: `run -d` starts what it just created


def remember_image(image: Image) -> None:
    """Keep an image resolved in this process for image_of."""
    _images_seen[image.id] = image


def image_of(store: Store, container: Container) -> Image:
    """The container's image (an image ID names the same content for good,
    so one resolved earlier in this process is reused)."""
    return _images_seen.get(container.image_id) or store.images.get(container.image_id)


def needs_cgroup(hc: dict[str, Any]) -> bool:
    """Whether a start makes a cgroup: for limits, or a device program."""
    if hc.get("Limits"):
        return True
    if hc.get("Devices"):
        from overlayctl.runtime.devices import needs_program

        return needs_program(hc)
    return False


def container_spec(store: Store, container: Container, image: Image) -> ContainerSpec:
    """Resolve everything the runtime needs to start this container
    (network and cgroup are added by the start itself)."""
    cfg = container.config["Config"]
    hc = container.config.get("HostConfig", {})
    env = list(cfg["Env"])
    user = cfg.get("User") or ""
    if not user and not any(e.startswith("HOME=") for e in env):
        env.append("HOME=/root")
    privileged = bool(hc.get("Privileged"))
    capabilities = None
    if hc.get("CapAdd") or hc.get("CapDrop"):
        from overlayctl.runtime.capabilities import resolve_capabilities

        capabilities = resolve_capabilities(hc.get("CapAdd") or [], hc.get("CapDrop") or [])
    mounts = []
    if hc.get("Mounts"):
        from overlayctl.volumes import mounts as volumes

        mounts = volumes.mounts_for(store, container)
    seccomp = None
    if not privileged:
        profile = None
        for item in hc.get("SecurityOpt") or []:
            key, _, value = item.partition("=")
            if key == "seccomp":
                profile = value
        from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES
        from overlayctl.runtime.seccomp import compile_profile

        seccomp = compile_profile(
            profile,
            capabilities if capabilities is not None else DEFAULT_CAPABILITIES,
            store.paths.seccomp_cache,
        )
    return ContainerSpec(
        layout=store.overlay_layout(image, container),
        store_root=store.paths.root,
        mountpoint=store.paths.mountpoint,
        argv=list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or []),
        env=env,
        cwd=cfg.get("WorkingDir") or "/",
        hostname=cfg.get("Hostname") or container.id[:12],
        tty=bool(cfg.get("Tty")),
        stdin=bool(cfg.get("OpenStdin")),
        overlay_api=os.environ.get("OVERLAYCTL_OVERLAY_API", "new"),
        network=hc.get("NetworkMode") or "none",
        user=user,
        capabilities=capabilities,
        privileged=privileged,
        readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
        mounts=mounts,
        seccomp=seccomp,
        devices=[(d["PathOnHost"], d["PathInContainer"]) for d in hc.get("Devices") or []],
    )
