"""Container life: create, start, run and remove, joining store and runtime.

The CLI calls these; they hold the sequencing (record, start, record the
exit, clean up) so that every front end behaves the same.

A container always has one supervisor: the process that forked its PID 1,
in the host's namespaces, which reaps it and records its end.

- In the foreground (`run`, `start -a`) it is the command itself. It keeps
  a log when the container outlives the run (not with --rm, whose log would
  be deleted at once: then the container writes straight to the user's
  terminal, which is what keeps `run --rm` fast), and it tells systemd
  (sdnotify) when the container runs and when it stops.
- Detached (`run -d`, `start`), a double-forked process in its own session
  starts the container, reports back, then execs the small monitor
  (runtime.monitor) that holds the container's output, its log and its
  attach socket; when the container ends, that process loads overlayctl
  again here, in `after_exit`, to record the end, release what the
  container held, and restart or remove it as its policies say.
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
        # memory_swap, pids_limit, cpus, cpu_shares), and restart,
        # log_driver, log_opt, stop_signal, stop_timeout; checked by
        # _host_config and _stop_config.
        self.host = host or {}


def image_of(store: Store, container: Container) -> Image:
    """The container's image (an image ID names the same content for good,
    so one resolved earlier in this process is reused)."""
    return _images_seen.get(container.image_id) or store.images.get(container.image_id)


def create(store: Store, opts: CreateOptions) -> Container:
    """Record a container with its (empty) upper directory; start nothing."""
    return _create(store, opts, store.images.resolve(opts.image))


_images_seen: dict[str, Image] = {}  # by ID, in this process: `run -d` starts what it just created


def _create(store: Store, opts: CreateOptions, image: Image) -> Container:
    _images_seen[image.id] = image
    image_cfg = image.container_config
    entrypoint = _entrypoint(opts.entrypoint, image_cfg.get("Entrypoint"))
    cmd = list(opts.command) if opts.command else list(image_cfg.get("Cmd") or [])
    if opts.entrypoint is not None and not opts.command:
        cmd = []  # Docker: --entrypoint resets the image's CMD
    if not entrypoint and not cmd:
        raise InvalidArgumentError(
            f'no command specified: image "{opts.image}" has no CMD or ENTRYPOINT; give one after the image name'
        )
    from overlayctl.runtime.spec import resolve_env

    env = resolve_env(opts.env)
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
            **_stop_config(opts, image_cfg),
        },
        "HostConfig": host_config,
    }
    requests = opts.host.get("mount_requests")
    if requests or image_cfg.get("Volumes"):
        container = store.containers.create(image.id, opts.image, config, opts.name)
        return _with_volumes(store, container, image, requests or [])
    return store.containers.create(image.id, opts.image, config, opts.name)


def _stop_config(opts: CreateOptions, image_cfg: dict[str, Any]) -> dict[str, Any]:
    """Config.StopSignal (--stop-signal, else the image's STOPSIGNAL) and
    Config.StopTimeout (--stop-timeout), checked now."""
    out: dict[str, Any] = {}
    text = opts.host.get("stop_signal") or image_cfg.get("StopSignal")
    if text:
        from overlayctl.control import parse_signal

        parse_signal(str(text))
        out["StopSignal"] = str(text)
    timeout = opts.host.get("stop_timeout")
    if timeout not in (None, ""):
        value = str(timeout).strip()
        if not value.lstrip("-").isdigit():
            raise InvalidArgumentError(f'invalid --stop-timeout "{timeout}": give whole seconds')
        out["StopTimeout"] = int(value)
    return out


def _host_config(opts: CreateOptions, store: Store) -> dict[str, Any]:
    """HostConfig as Docker's inspect shows it, every option checked now:
    a bad value is refused before anything is created."""
    host = opts.host
    hc: dict[str, Any] = {"AutoRemove": opts.auto_remove, "NetworkMode": host.get("network") or "bridge"}
    hc["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    if host.get("restart"):
        from overlayctl.restart import parse_policy

        hc["RestartPolicy"] = parse_policy(host["restart"])
        if opts.auto_remove and hc["RestartPolicy"]["Name"] != "no":
            raise InvalidArgumentError("conflicting options: --restart and --rm")
    if host.get("log_driver") or host.get("log_opt"):
        from overlayctl.logs import parse_log_config

        hc["LogConfig"] = parse_log_config(host.get("log_driver"), list(host.get("log_opt") or []))
    else:
        hc["LogConfig"] = {"Type": "json-file", "Config": {}}
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
                import sys

                from overlayctl.runtime.seccomp import compile_profile

                warnings: list[str] = []
                compile_profile(value, (), store.paths.seccomp_cache, warnings)
                for warning in warnings:
                    # Once, here at create: the start compiles it quietly.
                    sys.stderr.write(f"WARNING: {warning}\n")
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
    if host.get("device"):
        hc["Devices"] = _devices(list(host["device"]))
    limit_keys = ("memory", "memory_swap", "pids_limit", "cpus", "cpu_shares")
    if any(host.get(k) for k in limit_keys):
        from overlayctl.runtime.cgroups import parse_limits

        limits = parse_limits(*(host.get(k) for k in limit_keys))
        hc.update(limits.to_inspect())
        hc["Limits"] = {k: host.get(k) for k in limit_keys if host.get(k)}
    return hc


def _devices(values: list[str]) -> list[dict[str, str]]:
    """HostConfig.Devices for --device values, each host node checked now;
    narrowed permissions need the cgroup2 tree their device program goes in."""
    from overlayctl.runtime.devices import host_node, parse_device

    devices = [parse_device(value) for value in values]
    for device in devices:
        host_node(device.host)
    narrowed = [d for d in devices if d.restricted]
    if narrowed:
        from overlayctl.runtime.cgroups import host_layout

        if host_layout().unified is None:
            d = narrowed[0]
            raise InvalidArgumentError(
                f'--device {d.host}:{d.container}:{d.permissions}: permissions narrower than "rw" need a '
                "cgroup2 tree for their device program, and this host has none mounted; use rw"
            )
    return [d.to_inspect() for d in devices]


def needs_cgroup(hc: dict[str, Any]) -> bool:
    """Whether a start makes a cgroup: for limits, or a device program."""
    if hc.get("Limits"):
        return True
    if hc.get("Devices"):
        from overlayctl.runtime.devices import needs_program

        return needs_program(hc)
    return False


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


def start_attached(
    store: Store, container: Container, on_started: Callable[[int], None] | None = None, attach_stdin: bool = True
) -> int:
    """Run a created or exited container in the foreground; return its exit code.

    The calling process is the supervisor. The exit is recorded however the
    start ends; an AutoRemove container is removed afterwards.
    """
    container = store.containers.claim_start(container.id)
    return _start_attached(store, container, store.images.get(container.image_id), on_started, attach_stdin)


def _keeps_log(container: Container) -> bool:
    """Whether a foreground run copies the output through the supervisor
    into a log: not for --rm (the log would go with the container a moment
    later; the container writes straight to the terminal) nor without a
    log driver."""
    hc = container.config.get("HostConfig", {})
    return not hc.get("AutoRemove") and (hc.get("LogConfig") or {}).get("Type", "json-file") != "none"


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
    notify = "NOTIFY_SOCKET" in os.environ  # under systemd (Type=notify)
    code: int | None = None
    error = ""
    held = Held()
    ran: list[int] = []  # the command was executed (a failed start is never restarted)
    output = _ForegroundOutput(store, container, spec.tty) if _keeps_log(container) else None
    try:
        acquire(store, container, spec, held)

        def started(pid: int) -> None:
            store.containers.set_running(container.id, pid)
            ran.append(pid)
            if on_started is not None:
                on_started(pid)
            if notify:
                from overlayctl import sdnotify

                sdnotify.ready(f"container {container.name} running (pid {pid})", os.getpid())

        def on_signal(signum: int) -> None:
            if notify and signum in (2, 15):  # SIGINT, SIGTERM: a stop begins
                from overlayctl import sdnotify

                sdnotify.stopping(f"stopping container {container.name}")

        code = supervisor.run(
            spec,
            on_started=started,
            attach_stdin=attach_stdin,
            on_namespaces=held.plan.on_namespaces if held.plan is not None else None,
            stdio=output.stdio if output is not None else None,
            relay=output.relay(spec, attach_stdin) if output is not None else None,
            on_signal=on_signal if notify else None,
        )
        return code
    except OverlayctlError as exc:
        code, error = exc.exit_code, exc.message
        raise
    finally:
        if output is not None:
            output.close()
        if notify:
            from overlayctl import sdnotify

            sdnotify.stopping(f"container {container.name} exited ({'unknown' if code is None else code})")
        oom, cleanup_error = release_held(store, container, held)
        error = error or cleanup_error
        # Recorded however the start ends (an unknown code if it was cut short).
        if not (ran and _hand_over_restart(store, container, code, oom, notify)):
            store.containers.set_exited(container.id, code, error=error, oom_killed=oom)
            if hc.get("AutoRemove"):
                # Read back: if the start was cut short while the process lived,
                # the row says "running" and remove() kills and waits first.
                remove(store, store.containers.get(container.id), force=True, volumes=True)


class _ForegroundOutput:
    """A foreground run that keeps a log: the container's stdout and stderr
    are pipes (without -t) that the supervisor copies to its own and to the
    log; with -t, the terminal relay copies to the log too."""

    def __init__(self, store: Store, container: Container, tty: bool) -> None:
        from overlayctl.logs import open_writer

        self.writer = open_writer(
            container.config["HostConfig"].get("LogConfig") or {},
            store.paths.container_log(container.id),
            {"id": container.id, "name": container.name, "image": container.image_name},
        )
        self.pipes: list[int] = []
        self.stdio: tuple[int | None, int | None, int | None] | None = None
        if not tty:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.pipes = [out_r, out_w, err_r, err_w]
            self.stdio = (None, out_w, err_w)

    def relay(self, spec: ContainerSpec, attach_stdin: bool) -> Callable[[int, int | None], None]:
        def copy(pid: int, master: int | None) -> None:
            if master is not None:
                from overlayctl.logs import Lines
                from overlayctl.runtime.console import relay

                lines = Lines()

                def log(data: bytes) -> None:
                    import time

                    for line in lines.feed(data):
                        self.writer.write("stdout", line, time.time_ns())

                try:
                    relay(master, pid, forward_stdin=spec.stdin and attach_stdin, on_output=log)
                finally:
                    rest = lines.flush()
                    if rest:
                        import time

                        self.writer.write("stdout", rest, time.time_ns())
                return
            from overlayctl.runtime.monitor import Pump

            out_r, out_w, err_r, err_w = self.pipes
            os.close(out_w)
            os.close(err_w)
            self.pipes = []  # the pump closes the read ends
            Pump(self.writer, [(out_r, "stdout"), (err_r, "stderr")], {"stdout": 1, "stderr": 2}).run()

        return copy

    def close(self) -> None:
        for fd in self.pipes:
            os.close(fd)
        self.pipes = []
        self.writer.close()


class Held:
    """What a start holds until the container ends: its network plan and
    its cgroup."""

    __slots__ = ("plan", "cgroup")

    def __init__(self) -> None:
        self.plan: Any = None
        self.cgroup: Any = None


def acquire(store: Store, container: Container, spec: ContainerSpec, held: Held) -> None:
    """Prepare the network and the cgroup of a start (into `held`)."""
    hc = container.config.get("HostConfig", {})
    if paused_once(container.id):
        from overlayctl.runtime import cgroups

        cgroups.Freezer(container.id).remove()  # left by a supervisor that was killed
    if spec.network not in ("none", "host"):
        from overlayctl.network import attach

        attach.release_stale(store)
        held.plan = attach.prepare(store, container, spec.network, hc.get("IPAddress"), spec.hostname)
        spec.mounts = held.plan.mounts + spec.mounts
    if needs_cgroup(hc):
        from overlayctl.runtime import cgroups

        stale = cgroups.find(container.id)
        if stale is not None:
            stale.remove()  # its last supervisor was killed before it could
        given = hc.get("Limits") or {}
        limits = cgroups.parse_limits(*(given.get(k) for k in _LIMIT_KEYS))
        held.cgroup = cgroups.create(container.id, limits)
        if held.cgroup is not None:
            spec.cgroup_procs = held.cgroup.procs_files
            for warning in getattr(held.cgroup, "warnings", []):
                import sys

                sys.stderr.write(f"WARNING: {warning}\n")
        _restrict_devices(hc, held.cgroup)


def _restrict_devices(hc: dict[str, Any], cgroup: Any) -> None:
    """Attach the device program of --device permissions narrower than rw
    to the container's cgroup2 directory, before PID 1 joins it."""
    from overlayctl.runtime import devices

    rules = devices.rules_for(hc.get("Devices") or [])
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
        from overlayctl.runtime import cgroups

        try:
            cgroups.Freezer(container.id).remove()
        except OverlayctlError as exc:
            error = error or exc.message
    if held.plan is not None:
        held.plan.release()
    return oom, error


def paused_once(container_id: str) -> bool:
    """Whether `pause` made a freezer for this container (cheap to ask:
    a stat on a cgroup tree, no mountinfo read)."""
    from overlayctl.runtime import cgroups

    return cgroups.has_cgroup_dir(container_id)


def _hand_over_restart(store: Store, container: Container, code: int | None, oom: bool, notify: bool) -> bool:
    """A foreground container whose restart policy wants it again: as with
    Docker, the run returns the exit code and the restarts go on in the
    background, in a detached supervisor. Not under systemd, whose
    Restart= decides there."""
    policy = container.config.get("HostConfig", {}).get("RestartPolicy")
    if notify or not policy or policy.get("Name") in (None, "no"):
        return False
    from overlayctl.restart import should_restart

    try:
        current = store.containers.get(container.id)
    except OverlayctlError:
        return False
    if not should_restart(policy, code, current.manually_stopped, current.restart_count):
        return False
    from overlayctl.detached import spawn_restarter

    return spawn_restarter(store, container.id, (code, oom, current.restart_count + 1, 0, 0.0)) == "ok"


_LIMIT_KEYS = ("memory", "memory_swap", "pids_limit", "cpus", "cpu_shares")


def remove(store: Store, container: Container, force: bool = False, volumes: bool = False) -> None:
    """`rm`: the container, what it holds (lease, cgroup, freezer, attach
    socket), and with `volumes` its anonymous volumes (`rm -v`; --rm does
    the same, as Docker)."""
    if force and container.is_active and paused_once(container.id):
        # A frozen process does not die of SIGKILL until it is thawed.
        from overlayctl.control import signal_container

        signal_container(container, 9)
        from overlayctl.runtime import cgroups

        cgroups.Freezer(container.id).thaw()
    store.containers.remove(container, force)
    hc = container.config.get("HostConfig", {})
    if hc.get("NetworkMode") not in (None, "none", "host"):
        from overlayctl.network import attach

        attach.release_stale(store)
    if needs_cgroup(hc):
        from overlayctl.runtime import cgroups

        stale = cgroups.find(container.id)
        if stale is not None:
            stale.remove()
    if paused_once(container.id):
        from overlayctl.runtime import cgroups

        cgroups.Freezer(container.id).remove()
    try:
        os.unlink(store.paths.attach_socket(container.id))
    except OSError:
        pass
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


# --- detached: the background supervisor --------------------------------------


def start_detached(store: Store, container: Container) -> None:
    """Start a container in the background and return once its command runs.

    A double-forked supervisor in its own session owns the container (as
    conmon does for podman); see overlayctl.detached.
    """
    from overlayctl import detached

    detached.start(store, store.containers.claim_start(container.id))
