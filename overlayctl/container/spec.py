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

    from overlayctl.container.model import HostConfig
    from overlayctl.runtime.exec import ExecSpec

_images_seen: dict[str, Image] = {}  # by ID, in this process: `run -d` starts what it just created


def remember_image(image: Image) -> None:
    """Keep an image resolved in this process for image_of."""
    _images_seen[image.id] = image


def image_of(store: Store, container: Container) -> Image:
    """The container's image (an image ID names the same content for good,
    so one resolved earlier in this process is reused)."""
    return _images_seen.get(container.image_id) or store.images.get(container.image_id)


def needs_cgroup(hc: HostConfig) -> bool:
    """Whether a start makes a cgroup: for limits, or a device program."""
    if hc.limits is not None and hc.limits.any():
        return True
    if hc.devices:
        from overlayctl.runtime.devices import needs_program

        return needs_program(hc.devices)
    return False


def container_spec(store: Store, container: Container, image: Image) -> ContainerSpec:
    """Resolve everything the runtime needs to start this container
    (network and cgroup are added by the start itself)."""
    cfg = container.config.config
    hc = container.config.host
    env = list(cfg.env)
    user = cfg.user or ""
    if not user and not any(e.startswith("HOME=") for e in env):
        env.append("HOME=/root")
    privileged = bool(hc.privileged)
    capabilities = None
    if hc.cap_add or hc.cap_drop:
        from overlayctl.runtime.capabilities import resolve_capabilities

        capabilities = resolve_capabilities(hc.cap_add or [], hc.cap_drop or [])
    mounts = []
    if hc.mounts:
        from overlayctl.volumes import mounts as volumes

        mounts = volumes.mounts_for(store, container)
    seccomp = None
    if not privileged:
        profile = None
        for item in hc.security_opt or []:
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
        argv=cfg.argv,
        env=env,
        cwd=cfg.working_dir or "/",
        hostname=cfg.hostname or container.id[:12],
        tty=bool(cfg.tty),
        stdin=bool(cfg.open_stdin),
        overlay_api=os.environ.get("OVERLAYCTL_OVERLAY_API", "new"),
        network=hc.network,
        user=user,
        capabilities=capabilities,
        privileged=privileged,
        readonly_rootfs=bool(hc.readonly_rootfs),
        mounts=mounts,
        seccomp=seccomp,
        devices=[(d.path_on_host, d.path_in_container) for d in hc.devices or []],
    )


def exec_spec(
    container: Container,
    spec: ContainerSpec,
    argv: list[str],
    env: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    **how: Any,
) -> ExecSpec:
    """What `exec` (and a health check's probe) runs in the container: its
    environment with `env` over it, its working directory and user unless
    given, and PID 1's capabilities and seccomp filter. `how`: ExecSpec's
    tty, interactive, detach and output."""
    from overlayctl.runtime.exec import ExecSpec
    from overlayctl.runtime.spec import merge_env

    cfg = container.config.config
    return ExecSpec(
        argv=list(argv),
        env=merge_env(list(cfg.env or []), env or []),
        cwd=workdir or cfg.working_dir or "/",
        user=user if user is not None else cfg.user or "",
        capabilities=spec.capabilities,
        privileged=spec.privileged,
        seccomp=spec.seccomp,
        **how,
    )
