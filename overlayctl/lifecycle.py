"""Container life: create, start, run and remove, joining store and runtime.

The CLI calls these; they hold the sequencing (record, start, record the
exit, clean up) so that every front end behaves the same.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError, OverlayctlError
from overlayctl.runtime.spec import ContainerSpec, merge_env
from overlayctl.store import Store
from overlayctl.store.containers import Container
from overlayctl.store.images import Image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class CreateOptions:
    """What `create` and `run` accept, as Docker names it."""

    def __init__(
        self,
        image: str,
        command: list[str] | None = None,
        name: str | None = None,
        env: list[str] | None = None,
        workdir: str | None = None,
        hostname: str | None = None,
        user: str | None = None,
        entrypoint: str | None = None,
        tty: bool = False,
        interactive: bool = False,
        auto_remove: bool = False,
        host: dict[str, Any] | None = None,
    ) -> None:
        self.image = image
        self.command = command or []
        self.name = name
        self.env = env or []
        self.workdir = workdir
        self.hostname = hostname
        self.user = user
        self.entrypoint = entrypoint
        self.tty = tty
        self.interactive = interactive
        self.auto_remove = auto_remove
        # Isolation options as given (network, ip, cap_add, cap_drop,
        # privileged, read_only, security_opt, volume, mount, tmpfs, memory,
        # memory_swap, pids_limit, cpus, cpu_shares); checked by _host_config.
        self.host = host or {}


def create(store: Store, opts: CreateOptions) -> Container:
    """Record a container with its (empty) upper directory; start nothing."""
    return _create(store, opts, store.images.resolve(opts.image))


def _create(store: Store, opts: CreateOptions, image: Image) -> Container:
    image_cfg = image.container_config
    entrypoint = _entrypoint(opts.entrypoint, image_cfg.get("Entrypoint"))
    cmd = list(opts.command) if opts.command else list(image_cfg.get("Cmd") or [])
    if opts.entrypoint is not None and not opts.command:
        cmd = []  # Docker: --entrypoint resets the image's CMD
    if not entrypoint and not cmd:
        raise InvalidArgumentError(
            f'no command specified: image "{opts.image}" has no CMD or ENTRYPOINT; give one after the image name'
        )
    for item in opts.env:
        if not item or item.startswith("="):
            raise InvalidArgumentError(f'invalid environment variable "{item}": use -e KEY=value')
    env = [e if "=" in e else f"{e}={os.environ.get(e, '')}" for e in opts.env]
    if opts.workdir is not None and not opts.workdir.startswith("/"):
        raise InvalidArgumentError(f'working directory "{opts.workdir}" is not an absolute path')
    user = opts.user if opts.user is not None else image_cfg.get("User", "") or ""
    if user:
        from overlayctl.runtime.users import check_user_syntax

        check_user_syntax(user)
    host_config = _host_config(opts, store)
    config: dict[str, Any] = {
        "Config": {
            "Hostname": opts.hostname or "",
            "User": user,
            "Env": merge_env(list(image_cfg.get("Env") or []), env),
            "Cmd": cmd,
            "Entrypoint": entrypoint or None,
            "WorkingDir": opts.workdir or image_cfg.get("WorkingDir") or "",
            "Tty": opts.tty,
            "OpenStdin": opts.interactive,
            "Image": opts.image,
        },
        "HostConfig": host_config,
    }
    requests = opts.host.get("mount_requests")
    if requests or image_cfg.get("Volumes"):
        container = store.containers.create(image.id, opts.image, config, opts.name)
        return _with_volumes(store, container, image, requests or [])
    return store.containers.create(image.id, opts.image, config, opts.name)


def _host_config(opts: CreateOptions, store: Store) -> dict[str, Any]:
    """HostConfig as Docker's inspect shows it, every option checked now:
    a bad value is refused before anything is created."""
    host = opts.host
    hc: dict[str, Any] = {"AutoRemove": opts.auto_remove, "NetworkMode": host.get("network") or "bridge"}
    if host.get("ip"):
        hc["IPAddress"] = host["ip"]
    if hc["NetworkMode"] not in ("none", "host") or host.get("ip"):
        from overlayctl.network import attach

        attach.check(store, hc["NetworkMode"], host.get("ip"))
    cap_add, cap_drop = list(host.get("cap_add") or []), list(host.get("cap_drop") or [])
    if cap_add or cap_drop:
        from overlayctl.runtime.capabilities import resolve_capabilities

        resolve_capabilities(cap_add, cap_drop)  # validates
        hc["CapAdd"], hc["CapDrop"] = cap_add, cap_drop
    if host.get("privileged"):
        hc["Privileged"] = True
    if host.get("read_only"):
        hc["ReadonlyRootfs"] = True
    security = []
    for item in host.get("security_opt") or []:
        key, sep, value = item.partition("=")
        if key == "seccomp" and sep and value:
            if value not in ("unconfined", "builtin"):
                # Read now, relative to where the user is, and refused now
                # if it is not a valid profile: not at some later start.
                value = os.path.abspath(value)
                from overlayctl.runtime.seccomp import compile_profile

                compile_profile(value, (), _seccomp_cache(store))
            security.append(f"seccomp={value}")
            continue
        if key in ("no-new-privileges", "no-new-privileges:true"):
            security.append(item)
            continue
        raise InvalidArgumentError(
            f'invalid --security-opt "{item}": use seccomp=unconfined or seccomp=PROFILE.json'
        )
    if security:
        hc["SecurityOpt"] = security
    limit_keys = ("memory", "memory_swap", "pids_limit", "cpus", "cpu_shares")
    if any(host.get(k) for k in limit_keys):
        from overlayctl.runtime.cgroups import parse_limits

        limits = parse_limits(*(host.get(k) for k in limit_keys))
        hc.update(limits.to_inspect())
        hc["Limits"] = {k: host.get(k) for k in limit_keys if host.get(k)}
    return hc


def _seccomp_cache(store: Store) -> str:
    # In the store, not the runroot: compiled filters survive a reboot (the
    # key covers the kernel and libseccomp).
    return os.path.join(store.paths.root, "cache", "seccomp")


def _with_volumes(store: Store, container: Container, image: Image, requests: list[Any]) -> Container:
    """Create volumes (named ones on first use, anonymous ones for the
    image's VOLUME entries), seed new ones from the image, record the use."""
    from overlayctl import volumes

    try:
        mounts = volumes.prepare(store, container.id, requests, image)
    except BaseException:
        store.containers.remove(container, force=True)
        raise
    container.config["HostConfig"]["Mounts"] = mounts
    store.containers.update_config(container.id, container.config)
    return container


def _entrypoint(override: str | None, image_entrypoint: list[str] | None) -> list[str]:
    if override is not None:
        return [override] if override else []
    return list(image_entrypoint or [])


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
        from overlayctl import volumes

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
            _seccomp_cache(store),
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
    )


def start_attached(
    store: Store, container: Container, on_started: Callable[[int], None] | None = None, attach_stdin: bool = True
) -> int:
    """Run a created or exited container in the foreground; return its exit code.

    The calling process is the supervisor. The exit is recorded however the
    start ends; an AutoRemove container is removed afterwards.
    """
    container = store.containers.claim_start(container.id)
    return _start_attached(store, container, store.images.get(container.image_id), on_started, attach_stdin)


def _start_attached(
    store: Store,
    container: Container,
    image: Image,
    on_started: Callable[[int], None] | None = None,
    attach_stdin: bool = True,
) -> int:
    from overlayctl.runtime import supervisor

    spec = container_spec(store, container, image)
    if not os.path.isdir(spec.layout.workdir):
        os.mkdir(spec.layout.workdir, 0o700)
    hc = container.config.get("HostConfig", {})
    code: int | None = None
    error = ""
    plan = cgroup = None
    oom = False
    try:
        if spec.network not in ("none", "host"):
            from overlayctl.network import attach

            attach.release_stale(store)
            plan = attach.prepare(store, container, spec.network, hc.get("IPAddress"), spec.hostname)
            spec.mounts = plan.mounts + spec.mounts
        if hc.get("Limits"):
            from overlayctl.runtime import cgroups

            limits = cgroups.parse_limits(*(hc["Limits"].get(k) for k in _LIMIT_KEYS))
            cgroup = cgroups.create(container.id, limits)
            if cgroup is not None:
                spec.cgroup_procs = cgroup.procs_files
                for warning in getattr(cgroup, "warnings", []):
                    import sys

                    sys.stderr.write(f"WARNING: {warning}\n")

        def started(pid: int) -> None:
            store.containers.set_running(container.id, pid)
            if on_started is not None:
                on_started(pid)

        code = supervisor.run(
            spec,
            on_started=started,
            attach_stdin=attach_stdin,
            on_namespaces=plan.on_namespaces if plan is not None else None,
        )
        return code
    except OverlayctlError as exc:
        code, error = exc.exit_code, exc.message
        raise
    finally:
        if cgroup is not None:
            oom = cgroup.oom_killed()
            try:
                cgroup.remove()
            except OverlayctlError as exc:
                error = error or exc.message
        if plan is not None:
            plan.release()
        # Recorded however the start ends (an unknown code if it was cut short).
        store.containers.set_exited(container.id, code, error=error, oom_killed=oom)
        if hc.get("AutoRemove"):
            # Read back: if the start was cut short while the process lived,
            # the row says "running" and remove() kills and waits first.
            remove(store, store.containers.get(container.id), force=True, volumes=True)


_LIMIT_KEYS = ("memory", "memory_swap", "pids_limit", "cpus", "cpu_shares")


def remove(store: Store, container: Container, force: bool = False, volumes: bool = False) -> None:
    """`rm`: the container, what it holds (lease, cgroup), and with `volumes`
    its anonymous volumes (`rm -v`; --rm does the same, as Docker)."""
    store.containers.remove(container, force)
    hc = container.config.get("HostConfig", {})
    if hc.get("NetworkMode") not in (None, "none", "host"):
        from overlayctl.network import attach

        attach.release_stale(store)
    if hc.get("Limits"):
        from overlayctl.runtime import cgroups

        stale = cgroups.find(container.id)
        if stale is not None:
            stale.remove()
    if hc.get("Mounts"):
        from overlayctl import volumes as volume_ops

        volume_ops.release(store, container, remove_anonymous=volumes)


def run(store: Store, opts: CreateOptions) -> int:
    """`docker run` in the foreground: create, then start attached.

    The image is resolved once and the new container is not read back:
    this is the start-up path every `run` pays for.
    """
    image = store.images.resolve(opts.image)
    return _start_attached(store, _create(store, opts, image), image)


def start_detached(store: Store, container: Container) -> None:
    """Start a container in the background and return once its command runs.

    A double-forked supervisor in its own session owns the container (as
    conmon does for podman); this process only waits for the word that the
    command was executed, or for the error that stopped it.
    """
    store.containers.claim_start(container.id)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _detached_supervisor(store, container.id, ready_w)
    os.close(ready_w)
    os.waitpid(pid, 0)
    with os.fdopen(ready_r, "rb") as ready:
        answer = ready.read().decode(errors="replace")
    if answer != "ok":
        code, _, message = answer.partition(" ")
        raise OverlayctlError(
            message or "the container's supervisor died before the container started",
            exit_code=int(code) if code.isdigit() else 125,
        )


def _detached_supervisor(store: Store, container_id: str, ready_w: int) -> None:
    """The background supervisor; never returns."""
    code = 0
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        # `-d -i`: stdin stays open (a pipe nobody writes to yet), as Docker
        # keeps it, so a shell waiting on it does not see EOF and exit.
        stdin_r, _stdin_w_kept_open = os.pipe()
        os.dup2(stdin_r, 0)
        # SQLite connections must not cross a fork: open the store anew.
        own = Store(store.paths)

        def ready(_pid: int) -> None:
            os.write(ready_w, b"ok")
            os.close(ready_w)

        start_attached(own, own.containers.get(container_id), on_started=ready, attach_stdin=False)
    except OverlayctlError as exc:
        code = exc.exit_code
        try:
            os.write(ready_w, f"{exc.exit_code} {exc.message}".encode())
        except OSError:
            pass  # already reported ready; the exit is in the catalog
    except BaseException:  # noqa: BLE001
        code = 125
    os._exit(code)
