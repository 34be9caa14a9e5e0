"""Container life: create, start, run and remove, joining store and runtime.

The CLI calls these; they hold the sequencing (record, start, record the
exit, clean up) so that every front end behaves the same.

A container always has one supervisor: the process that forked its PID 1,
in the host's namespaces, which reaps it and records its end.

- In the foreground (`run`, `start -a`) it is the command itself
  (supervise.foreground). It keeps a log when the container outlives the
  run (not with --rm, whose log would be deleted at once: then the
  container writes straight to the user's terminal, which is what keeps
  `run --rm` fast), and it tells systemd (sdnotify) when the container runs
  and when it stops.
- Detached (`run -d`, `start`), a double-forked process in its own session
  starts the container, reports back, then execs the small monitor
  (supervise.monitor) that holds the container's output, its log and its
  attach socket; when the container ends, that process loads overlayctl
  again, in supervise.detached.after_exit, to record the end, release what
  the container held, and restart or remove it as its policies say.

What a start holds, the spec and the teardown are the container model's
(container/); this module only sequences them.
"""

from __future__ import annotations

import os

from overlayctl.container.model import Config, ContainerConfig, HostConfig
from overlayctl.errors import InvalidArgumentError
from overlayctl.runtime.spec import merge_env
from overlayctl.store import Store
from overlayctl.store.containers import Container
from overlayctl.store.images import Image

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from overlayctl.container.model import Device, NetworkingConfig


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
        entrypoint: str | list[str] | None = None,
        tty: bool = False,
        interactive: bool = False,
        auto_remove: bool = False,
        host: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.image = image
        self.command = command or []
        self.name = name
        self.env = env or []
        self.workdir = workdir
        self.hostname = hostname
        self.user = user
        self.entrypoint = entrypoint  # the CLI's one word; the Engine API's a list
        self.tty = tty
        self.interactive = interactive
        self.auto_remove = auto_remove
        self.labels = labels or {}  # over the image's labels
        # Isolation options as given (network, ip, cap_add, cap_drop,
        # privileged, read_only, security_opt, volume, mount, tmpfs, memory,
        # memory_swap, pids_limit, cpus, cpu_shares), and restart,
        # log_driver, log_opt, stop_signal, stop_timeout; checked by
        # _host_config and _stop_config; publish, publish_all, expose,
        # checked by _ports; health_* and no_healthcheck, by _healthcheck.
        self.host = host or {}


def mount_requests(volume: list[str], mount: list[str], tmpfs: list[str]) -> list[Any]:
    """The `-v`, `--mount` and `--tmpfs` strings as the mount requests
    CreateOptions.host takes under "mount_requests", in that order."""
    from overlayctl.volumes import options

    return (
        [options.parse_volume_option(v) for v in volume]
        + [options.parse_mount_option(m) for m in mount]
        + [options.parse_tmpfs_option(t) for t in tmpfs]
    )


def create(store: Store, opts: CreateOptions) -> Container:
    """Record a container with its (empty) upper directory; start nothing."""
    return _create(store, opts, image_for(store, opts))


def image_for(store: Store, opts: CreateOptions) -> Image:
    """The image to create from, as --pull and --platform say: never takes
    the stored one (and refuses a missing one), always pulls it first
    through `pull`'s path, and an explicit `--pull missing` pulls it when
    it is not stored. Without --pull, the stored one: unlike Docker, no
    command reaches a registry unless told to. Only this host's platform runs."""
    pull = opts.host.get("pull") or ""
    if pull not in ("", "missing", "always", "never"):
        raise InvalidArgumentError(
            f"invalid pull option: '{pull}': must be one of \"always\", \"missing\" or \"never\""
        )
    if opts.host.get("platform"):
        from overlayctl.oci.platform import check_platform, host_platform

        check_platform(str(opts.host["platform"]), "--platform", "run")
        image = _image_by_pull(store, opts, pull)
        # A stored image of another machine (pulled with `pull --platform`) is refused, as Docker does.
        wanted = host_platform()
        os_name, arch = image.config.get("os") or wanted.os, image.config.get("architecture") or wanted.arch
        if (os_name, arch) != (wanted.os, wanted.arch):
            raise InvalidArgumentError(
                f'image with reference {opts.image} was found but does not match the specified platform: '
                f"wanted {wanted}, actual: {os_name}/{arch}"
            )
        return image
    return _image_by_pull(store, opts, pull)


def _image_by_pull(store: Store, opts: CreateOptions, pull: str) -> Image:
    """The stored image, or the pulled one (see image_for)."""
    if pull == "missing":
        from overlayctl.errors import NotFoundError

        try:
            return store.images.resolve(opts.image)
        except NotFoundError:
            pull = "always"
    if pull == "always":
        import sys

        from overlayctl.engine import registry
        from overlayctl.engine.progress import Progress

        progress = Progress("lines", sys.stderr)
        try:
            platform = opts.host.get("platform") or None
            return registry.pull(store, registry.remote_reference(opts.image), progress, platform)[0]
        finally:
            progress.close()
    return store.images.resolve(opts.image)


def _create(store: Store, opts: CreateOptions, image: Image) -> Container:
    from overlayctl.container.spec import remember_image

    remember_image(image)
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
    from overlayctl.store.storageopts import resolve

    # Resolved now, from --storage-opt or the store's default, so that a bad
    # storage.json is refused before anything is created.
    host_config.storage_opt, size_limit = resolve(store.paths, host_config.storage_opt)
    exposed = _ports(opts, image_cfg, host_config)
    stop_signal, stop_timeout = _stop_config(opts, image_cfg)
    healthcheck = _healthcheck(opts, image_cfg)
    config = ContainerConfig(
        Config(
            hostname=opts.hostname or "",
            user=user,
            env=merge_env(list(image_cfg.get("Env") or []), env),
            cmd=cmd,
            entrypoint=entrypoint or None,
            working_dir=opts.workdir or image_cfg.get("WorkingDir") or "",
            tty=opts.tty,
            open_stdin=opts.interactive,
            image=opts.image,
            stop_signal=stop_signal,
            stop_timeout=stop_timeout,
            exposed_ports=exposed,
            healthcheck=healthcheck,
            labels={**(image_cfg.get("Labels") or {}), **opts.labels},
        ),
        host_config,
        _networking_config(opts, store, host_config),
    )
    cidfile = opts.host.get("cidfile")
    if cidfile and os.path.lexists(cidfile):
        raise InvalidArgumentError(
            f"container ID file found, make sure the other container isn't running or delete {cidfile}"
        )
    requests = opts.host.get("mount_requests")
    container = store.containers.create(image.id, opts.image, config, opts.name, storage_size=size_limit)
    if requests or image_cfg.get("Volumes"):
        container = _with_volumes(store, container, image, requests or [])
    if cidfile:
        _write_cidfile(store, container, str(cidfile))
    if (host_config.port_bindings or host_config.publish_all_ports) and host_config.network in ("host", "none"):
        import sys

        # As Docker: kept in the configuration, published nowhere (said once the container exists).
        sys.stderr.write(f"WARNING: Published ports are discarded when using {host_config.network} network mode\n")
    return container


def _write_cidfile(store: Store, container: Container, path: str) -> None:
    """--cidfile: the new ID in a file that must not exist yet (as Docker:
    a leftover one means another container may own it); if it cannot be
    written, the container is not kept."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(container.id)
    except OSError as exc:
        remove(store, container, force=True, volumes=True)
        if isinstance(exc, FileExistsError):
            raise InvalidArgumentError(
                f"container ID file found, make sure the other container isn't running or delete {path}"
            ) from None
        raise InvalidArgumentError(f"failed to create the container ID file {path}: {exc.strerror or exc}") from None


def _ports(opts: CreateOptions, image_cfg: dict[str, Any], hc: HostConfig) -> dict[str, Any] | None:
    """-p, -P and --expose, checked now: HostConfig.PortBindings and
    PublishAllPorts are set on `hc`; returns Config.ExposedPorts (the
    image's EXPOSE too), None when there is none."""
    publish = list(opts.host.get("publish") or [])
    expose = list(opts.host.get("expose") or [])
    if not (publish or expose or opts.host.get("publish_all") or image_cfg.get("ExposedPorts")):
        return None
    from overlayctl.network import portspec

    bindings = [b for value in publish for b in portspec.parse_publish(value)]
    exposed = portspec.exposed_ports(image_cfg.get("ExposedPorts"), expose, bindings)
    if bindings:
        hc.port_bindings = portspec.port_bindings(bindings)
    hc.publish_all_ports = bool(opts.host.get("publish_all"))
    return exposed or None


def _stop_config(opts: CreateOptions, image_cfg: dict[str, Any]) -> tuple[str | None, int | None]:
    """Config.StopSignal (--stop-signal, else the image's STOPSIGNAL) and
    Config.StopTimeout (--stop-timeout), checked now; None where not set."""
    signal, seconds = None, None
    text = opts.host.get("stop_signal") or image_cfg.get("StopSignal")
    if text:
        from overlayctl.container.signals import parse_signal

        parse_signal(str(text))
        signal = str(text)
    timeout = opts.host.get("stop_timeout")
    if timeout not in (None, ""):
        value = str(timeout).strip()
        if not value.lstrip("-").isdigit():
            raise InvalidArgumentError(f'invalid --stop-timeout "{timeout}": give whole seconds')
        seconds = int(value)
    return signal, seconds


def _healthcheck(opts: CreateOptions, image_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Config.Healthcheck: the --health-* options over the image's
    HEALTHCHECK, field by field (--no-healthcheck: {"Test": ["NONE"]})."""
    host = opts.host
    if not image_cfg.get("Healthcheck") and not any(key.startswith(("health_", "no_health")) for key in host):
        return None  # (and `run` does not import what it does not use)
    from overlayctl.container import health

    options = health.HealthOptions(
        cmd=host.get("health_cmd"),
        durations={
            "Interval": host.get("health_interval") or "",
            "Timeout": host.get("health_timeout") or "",
            "StartPeriod": host.get("health_start_period") or "",
            "StartInterval": host.get("health_start_interval") or "",
        },
        retries=host.get("health_retries"),
        disabled=bool(host.get("no_healthcheck")),
    )
    given = health.from_options(options)
    if host.get("health_test"):
        # The exec form ["CMD", ...], which no flag writes (the Engine API's).
        given = dict(given or {}, Test=list(host["health_test"]))
    return health.merged(given, image_cfg.get("Healthcheck"))


def _host_config(opts: CreateOptions, store: Store) -> HostConfig:
    """HostConfig as Docker's inspect shows it, every option checked now:
    a bad value is refused before anything is created."""
    host = opts.host
    hc = HostConfig(auto_remove=opts.auto_remove, network_mode=host.get("network") or "bridge")
    if host.get("restart"):
        from overlayctl.container.restart import parse_policy

        hc.restart_policy = parse_policy(host["restart"])
        if opts.auto_remove and hc.restart_name != "no":
            raise InvalidArgumentError("conflicting options: --restart and --rm")
    if host.get("log_driver") or host.get("log_opt"):
        from overlayctl.supervise.logs import parse_log_config

        hc.log_config = parse_log_config(host.get("log_driver"), list(host.get("log_opt") or []))
    if host.get("ip"):
        hc.ip_address = host["ip"]
    if hc.network_mode not in ("none", "host") or host.get("ip"):
        from overlayctl.network import attach

        attach.check(store, hc.network_mode, host.get("ip"))
    cap_add, cap_drop = list(host.get("cap_add") or []), list(host.get("cap_drop") or [])
    if cap_add or cap_drop:
        from overlayctl.runtime.capabilities import resolve_capabilities

        resolve_capabilities(cap_add, cap_drop)  # validates
        hc.cap_add, hc.cap_drop = cap_add, cap_drop
    hc.privileged = bool(host.get("privileged"))
    hc.readonly_rootfs = bool(host.get("read_only"))
    security = []
    for item in host.get("security_opt") or []:
        key, sep, value = item.partition("=")
        if key == "seccomp" and sep and value:
            if value not in ("unconfined", "builtin"):
                # Read now, relative to where the user is, and refused now
                # if it is not a valid profile: not at some later start.
                # The docker CLI sends the profile's content, not its name.
                value = _saved_profile(store, value) if value.lstrip().startswith("{") else os.path.abspath(value)
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
        hc.security_opt = security
    if host.get("device"):
        hc.devices = _devices(list(host["device"]))
    limit_keys = ("memory", "memory_swap", "pids_limit", "cpus", "cpu_shares")
    if any(host.get(k) for k in limit_keys):
        from overlayctl.container.model import LimitOptions
        from overlayctl.runtime.cgroups.limits import parse_limits

        hc.resources = parse_limits(*(host.get(k) for k in limit_keys)).to_resources()
        hc.limits = LimitOptions(*(host.get(k) or None for k in limit_keys))
    if host.get("storage_opt"):
        from overlayctl.store.storageopts import parse_storage_opts

        hc.storage_opt = parse_storage_opts(list(host["storage_opt"]))
    _dns_config(hc, host)
    if any(host.get(k) for k in _PROCESS_KEYS):
        _process_config(hc, host, store)
    return hc


def _saved_profile(store: Store, text: str) -> str:
    """A seccomp profile given as its JSON text, kept in the store by its
    sha256 (written beside and renamed into place): the file a container's
    SecurityOpt names, as for a profile given by its path."""
    import hashlib

    path = os.path.join(store.paths.seccomp_profiles, hashlib.sha256(text.encode()).hexdigest() + ".json")
    if not os.path.exists(path):
        os.makedirs(store.paths.seccomp_profiles, 0o700, exist_ok=True)
        partial = f"{path}.{os.getpid()}.partial"
        with open(partial, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(partial, path)
    return path


_PROCESS_KEYS = ("init", "init_path", "ulimit", "shm_size", "group_add", "sysctl", "ipc", "pid", "oom_score_adj")


def _process_config(hc: HostConfig, host: dict[str, Any], store: Store) -> None:
    """HostConfig.Init, Ulimits, ShmSize, GroupAdd, Sysctls, IpcMode,
    PidMode and OomScoreAdj, checked now (a container named by --ipc or
    --pid must exist; the start joins it)."""
    from overlayctl.runtime import runflags

    if host.get("init_path") and not host.get("init"):
        raise InvalidArgumentError("--init-path needs --init")
    if host.get("init"):
        runflags.find_init(host.get("init_path"))
        hc.init = True
        hc.init_path = host.get("init_path") or None
    if host.get("ulimit"):
        hc.ulimits = runflags.parse_ulimits(list(host["ulimit"]))
    if host.get("shm_size"):
        from overlayctl.util.sizes import parse_size

        size = parse_size(str(host["shm_size"]), "--shm-size")
        if size <= 0:
            raise InvalidArgumentError(f'invalid argument "{host["shm_size"]}" for "--shm-size" flag: must be > 0')
        hc.shm_size = size
    if host.get("group_add"):
        groups = [str(g) for g in host["group_add"]]
        for group in groups:
            if not group or ":" in group:
                raise InvalidArgumentError(f'invalid --group-add "{group}": give a group name or a GID')
        hc.group_add = groups
    hc.ipc_mode = runflags.check_ipc_mode(str(host.get("ipc") or ""))
    hc.pid_mode = runflags.check_pid_mode(str(host.get("pid") or ""))
    for mode in (hc.ipc_mode, hc.pid_mode):
        if mode.startswith("container:"):
            store.containers.get(mode.partition(":")[2])  # refused now if there is no such container
    if hc.shm_size and (hc.ipc_mode in ("host", "none") or hc.ipc_mode.startswith("container:")):
        raise InvalidArgumentError(f"--shm-size applies to a private /dev/shm, not with --ipc {hc.ipc_mode}")
    if host.get("sysctl"):
        hc.sysctls = runflags.parse_sysctls(list(host["sysctl"]), hc.network, hc.ipc_mode)
    if host.get("oom_score_adj"):
        hc.oom_score_adj = runflags.check_oom_score_adj(str(host["oom_score_adj"]))


def _networking_config(opts: CreateOptions, store: Store, hc: HostConfig) -> NetworkingConfig | None:
    """NetworkingConfig when --network-alias or --mac-address asks for more
    than the network and its --ip (checked now, with Docker's wording);
    None otherwise, so such a container's document is what it always was."""
    aliases, mac = list(opts.host.get("network_alias") or []), opts.host.get("mac_address")
    if not aliases and not mac:
        return None
    from overlayctl.container.model import NetworkingConfig
    from overlayctl.network import attach

    endpoint = attach.endpoint_request(hc.ip_address, aliases, mac)
    attach.check_endpoint(store, hc.network_mode, endpoint)
    return NetworkingConfig({hc.network_mode: endpoint})


def _dns_config(hc: HostConfig, host: dict[str, Any]) -> None:
    """HostConfig.Dns, DnsSearch, DnsOptions and ExtraHosts, checked now."""
    if not any(host.get(k) for k in ("dns", "dns_search", "dns_option", "add_host")):
        return
    from overlayctl.network import resolvopts

    if host.get("dns"):
        hc.dns = resolvopts.check_dns(list(host["dns"]))
    if host.get("dns_search"):
        hc.dns_search = resolvopts.check_dns_search(list(host["dns_search"]))
    if host.get("dns_option"):
        hc.dns_options = resolvopts.check_dns_options(list(host["dns_option"]))
    if host.get("add_host"):
        hc.extra_hosts = resolvopts.check_extra_hosts(list(host["add_host"]))


def _devices(values: list[str]) -> list[Device]:
    """HostConfig.Devices for --device values, each host node checked now;
    narrowed permissions need the cgroup2 tree their device program goes in."""
    from overlayctl.runtime.devices import host_node, parse_device

    devices = [parse_device(value) for value in values]
    for device in devices:
        host_node(device.host)
    narrowed = [d for d in devices if d.restricted]
    if narrowed:
        from overlayctl.runtime.cgroups.layout import host_layout

        if host_layout().unified is None:
            d = narrowed[0]
            raise InvalidArgumentError(
                f'--device {d.host}:{d.container}:{d.permissions}: permissions narrower than "rw" need a '
                "cgroup2 tree for their device program, and this host has none mounted; use rw"
            )
    return [d.to_config() for d in devices]


def _with_volumes(store: Store, container: Container, image: Image, requests: list[Any]) -> Container:
    """Create volumes (named ones on first use, anonymous ones for the
    image's VOLUME entries), seed new ones from the image, record the use."""
    from overlayctl.volumes import mounts as volumes

    try:
        mounts = volumes.prepare(store, container.id, requests, image)
    except BaseException:
        store.containers.remove(container, force=True)
        raise
    container.config.host.mounts = mounts
    store.containers.update_config(container.id, container.config)
    return container


def _entrypoint(override: str | list[str] | None, image_entrypoint: list[str] | None) -> list[str]:
    if isinstance(override, list):
        return list(override)
    if override is not None:
        return [override] if override else []
    return list(image_entrypoint or [])


def start_attached(
    store: Store, container: Container, on_started: Callable[[int], None] | None = None, attach_stdin: bool = True
) -> int:
    """Run a created or exited container in the foreground; return its exit code.

    The calling process is the supervisor. The exit is recorded however the
    start ends; an AutoRemove container is removed afterwards.
    """
    container = store.containers.claim_start(container.id)
    from overlayctl.supervise import foreground

    return foreground.run(store, container, store.images.get(container.image_id), on_started, attach_stdin)


def remove(store: Store, container: Container, force: bool = False, volumes: bool = False) -> None:
    """`rm`: the container, what it holds (lease, cgroup, freezer, attach
    socket), and with `volumes` its anonymous volumes (`rm -v`; --rm does
    the same, as Docker). The work is container.teardown's, which the
    supervisors call for --rm too."""
    from overlayctl.container import teardown

    teardown.remove(store, container, force, volumes)


def run(store: Store, opts: CreateOptions) -> int:
    """`docker run` in the foreground: create, then start attached.

    The image is resolved once and the new container is not read back:
    this is the start-up path every `run` pays for.
    """
    image = image_for(store, opts) if opts.host.get("pull") or opts.host.get("platform") else None
    if image is None:
        image = store.images.resolve(opts.image)
    from overlayctl.supervise import foreground

    return foreground.run(store, _create(store, opts, image), image)


# --- detached: the background supervisor --------------------------------------


def start_detached(store: Store, container: Container) -> None:
    """Start a container in the background and return once its command runs.

    A double-forked supervisor in its own session owns the container (as
    conmon does for podman); see overlayctl.supervise.detached.
    """
    from overlayctl.supervise import detached

    detached.start(store, store.containers.claim_start(container.id))
