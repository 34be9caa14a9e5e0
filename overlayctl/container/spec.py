"""A container's spec: what the runtime needs to start it, resolved from
the stored config and the image (network and cgroup are added by the start).
"""

from __future__ import annotations

import os

from overlayctl.errors import ConflictError
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
    """Whether a start makes a cgroup: for limits, or a device program, or
    for a container in a PID namespace it does not own (--pid), whose
    processes only a cgroup keeps together: it is what finds them for
    `pause` and `top`, and what kills those left when its first one ends."""
    if hc.limits is not None and hc.limits.any():
        return True
    if hc.pid_mode:
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
        from overlayctl.runtime.seccompcache import cached_program

        caps = capabilities if capabilities is not None else DEFAULT_CAPABILITIES
        done, seccomp = cached_program(profile, caps, store.paths.seccomp_cache)
        if not done:
            from overlayctl.runtime.seccomp import compile_profile

            seccomp = compile_profile(profile, caps, store.paths.seccomp_cache)
    spec = ContainerSpec(
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
    if hc.init or hc.ulimits or hc.shm_size or hc.group_add or hc.sysctls or hc.ipc_mode or hc.pid_mode:
        _process_spec(store, hc, spec)
    if hc.oom_score_adj:
        spec.oom_score_adj = hc.oom_score_adj
    return spec


def _process_spec(store: Store, hc: HostConfig, spec: ContainerSpec) -> None:
    """--init, --ulimit, --shm-size, --group-add, --sysctl, --ipc and --pid
    on the spec; a container joined through --ipc or --pid must run (and
    share its IPC namespace, as Docker asks)."""
    from overlayctl.runtime import runflags
    from overlayctl.runtime.spec import Mount

    if hc.init:
        # Bound read-only where Docker puts its docker-init, then run as
        # `docker-init -- CMD`: tini is PID 1 and the command its child.
        spec.mounts.append(Mount("bind", runflags.find_init(hc.init_path), runflags.INIT_TARGET, readonly=True))
        spec.argv = [runflags.INIT_TARGET, "--", *spec.argv]
    spec.rlimits = runflags.rlimits(hc.ulimits or [])
    spec.shm_size = hc.shm_size or 0
    spec.group_add = list(hc.group_add or [])
    spec.sysctls = list((hc.sysctls or {}).items())
    ipc = hc.ipc_mode or "private"
    if ipc.startswith("container:"):
        donor = _running_donor(store, ipc.partition(":")[2], "IPC")
        if (donor.config.host.ipc_mode or "private") not in ("shareable", "host"):
            raise ConflictError("non-shareable IPC (hint: use IpcMode:shareable for the donor container)")
        spec.ipc_join = (donor.pid, donor.pid_start)
    elif ipc == "host":
        spec.ipc = "host"
        # The host's /dev/shm, as Docker binds it (nodev like every bind).
        spec.mounts.append(Mount("bind", "/dev/shm", "/dev/shm"))
    elif ipc == "none":
        spec.ipc = "none"
    pid = hc.pid_mode or ""
    if pid == "host":
        spec.pid_host = True
    elif pid.startswith("container:"):
        donor = _running_donor(store, pid.partition(":")[2], "PID")
        spec.pid_join = (donor.pid, donor.pid_start)


def _running_donor(store: Store, name: str, what: str) -> Container:
    donor = store.containers.get(name)
    if not donor.process_alive():
        raise ConflictError(f"cannot join {what} of a non running container: {name}")
    return donor


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
    exec_spec = ExecSpec(
        argv=list(argv),
        env=merge_env(list(cfg.env or []), env or []),
        cwd=workdir or cfg.working_dir or "/",
        user=user if user is not None else cfg.user or "",
        capabilities=spec.capabilities,
        privileged=spec.privileged,
        seccomp=spec.seccomp,
        **how,
    )
    exec_spec.rlimits, exec_spec.group_add = spec.rlimits, spec.group_add
    return exec_spec
