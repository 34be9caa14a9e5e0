"""The container's stored configuration, typed: Docker's `Config` and
`HostConfig` as the catalog keeps them, with overlayctl's own keys
(`HostConfig.Limits`, `Mounts`, `IPAddress`, `InitPath`).

Like Docker's api/types, this is pure data at the bottom of the layers
(it imports nothing of overlayctl), so the store, the
network, the volumes and the runtime can all take typed arguments.

The catalog keeps each container's configuration as one JSON document, and
`inspect` shows most of it as it is, so reading and writing it back must
give the same document, byte for byte once printed:

- a key the document does not have stays absent (a container made by an
  older overlayctl lacks keys today's writes), and a key it has keeps its
  value, null included;
- keys this model does not know are kept as they are, in `extra`;
- the keys keep the order they were read in (inspect prints them in that
  order); a document made here has today's order.

A field written by every create (`always` below) is written by a document
made here even at its default; any other field only when it is set (not
its default). Plain classes with slots, not dataclasses: importing
dataclasses costs `run` ~15 ms.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Self


class _Field:
    """One JSON key of a record and the attribute that holds it."""

    __slots__ = ("attr", "key", "always", "record", "many", "inline", "keyed")

    def __init__(
        self,
        attr: str,
        key: str,
        always: bool = False,
        record: type[Record] | None = None,
        many: bool = False,
        inline: bool = False,
        keyed: bool = False,
    ) -> None:
        self.attr = attr
        self.key = key
        self.always = always  # written by a record made here even at its default
        self.record = record  # the value is this record (a list of them with many)
        self.many = many
        self.inline = inline  # the record's keys sit in this object itself, not under `key`
        self.keyed = keyed  # the value is an object whose every value is this record


class Record:
    """A JSON object read into attributes, that writes back the same object."""

    __slots__ = ("extra", "read_keys")
    FIELDS: tuple[_Field, ...] = ()

    def _init_record(self) -> None:
        self.extra: dict[str, Any] = {}  # keys this model does not know, kept
        self.read_keys: tuple[str, ...] | None = None  # the document's keys, in order; None if made here

    @classmethod
    def known_keys(cls) -> Iterator[str]:
        """Every JSON key the record's fields read (inline records' too)."""
        for field in cls.FIELDS:
            if field.inline and field.record is not None:
                yield from field.record.known_keys()
            else:
                yield field.key

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """The record of a JSON object (fields it lacks get their defaults)."""
        record = cls()
        for field in cls.FIELDS:
            if field.inline:
                assert field.record is not None
                own = {key: data[key] for key in field.record.known_keys() if key in data}
                if own:
                    setattr(record, field.attr, field.record.from_json(own))
                continue
            if field.key not in data:
                continue
            value = data[field.key]
            if field.record is not None and value is not None:
                if field.many:
                    value = [field.record.from_json(item) for item in value]
                elif field.keyed:
                    value = {name: field.record.from_json(item) for name, item in value.items()}
                else:
                    value = field.record.from_json(value)
            setattr(record, field.attr, _copy(value))
        known = set(cls.known_keys())
        record.extra = {key: value for key, value in data.items() if key not in known}
        record.read_keys = tuple(data)
        return record

    def to_json(self) -> dict[str, Any]:
        """The JSON object: what was read, with what changed since."""
        blank = type(self)()
        out: dict[str, Any] = {}
        read = self.read_keys
        for field in self.FIELDS:
            value = getattr(self, field.attr)
            if field.inline:
                if value is not None:
                    out.update(value.to_json())
                continue
            if read is not None:
                wanted = field.key in read or value != getattr(blank, field.attr)
            else:
                wanted = field.always or value != getattr(blank, field.attr)
            if wanted:
                out[field.key] = _encode(value)
        out.update(_copy(self.extra))
        if read is not None and list(out) != list(read):
            rank = {key: n for n, key in enumerate(read)}
            out = dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))
        return out

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self.extra == other.extra and all(getattr(self, f.attr) == getattr(other, f.attr) for f in self.FIELDS)

    def __repr__(self) -> str:
        blank = type(self)()
        shown = [
            f"{f.attr}={getattr(self, f.attr)!r}"
            for f in self.FIELDS
            if getattr(self, f.attr) != getattr(blank, f.attr)
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


def _copy(value: Any) -> Any:
    # Lists and objects are copied, so the record and a document made from
    # it never share one (inspect edits the document it is given).
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return _copy(value)


# --- HostConfig's parts -------------------------------------------------------


class RestartPolicy(Record):
    """HostConfig.RestartPolicy: --restart."""

    __slots__ = ("name", "maximum_retry_count")

    def __init__(self, name: str = "no", maximum_retry_count: int = 0) -> None:
        self._init_record()
        self.name = name  # no, on-failure, always, unless-stopped
        self.maximum_retry_count = maximum_retry_count  # on-failure:N; 0 is no limit


RestartPolicy.FIELDS = (
    _Field("name", "Name", always=True),
    _Field("maximum_retry_count", "MaximumRetryCount", always=True),
)


class LogConfig(Record):
    """HostConfig.LogConfig: --log-driver and --log-opt."""

    __slots__ = ("type", "config")

    def __init__(self, type: str = "json-file", config: dict[str, str] | None = None) -> None:
        self._init_record()
        self.type = type
        self.config: dict[str, str] = config if config is not None else {}  # the --log-opt KEY=VALUE pairs


LogConfig.FIELDS = (_Field("type", "Type", always=True), _Field("config", "Config", always=True))


class Device(Record):
    """One entry of HostConfig.Devices: --device."""

    __slots__ = ("path_on_host", "path_in_container", "cgroup_permissions")

    def __init__(self, path_on_host: str = "", path_in_container: str = "", cgroup_permissions: str = "") -> None:
        self._init_record()
        self.path_on_host = path_on_host
        self.path_in_container = path_in_container
        self.cgroup_permissions = cgroup_permissions  # some of "rwm"; "" reads as rwm

    @property
    def permissions(self) -> str:
        return self.cgroup_permissions or "rwm"


Device.FIELDS = (
    _Field("path_on_host", "PathOnHost", always=True),
    _Field("path_in_container", "PathInContainer", always=True),
    _Field("cgroup_permissions", "CgroupPermissions", always=True),
)


class Resources(Record):
    """The limits as applied, in HostConfig's own keys (Memory, MemorySwap,
    PidsLimit, NanoCpus, CpuShares): 0, or null for PidsLimit, when not set,
    as Docker shows them. Written together, when any limit is given."""

    __slots__ = ("memory", "memory_swap", "pids_limit", "nano_cpus", "cpu_shares")

    def __init__(
        self,
        memory: int = 0,
        memory_swap: int = 0,
        pids_limit: int | None = None,
        nano_cpus: int = 0,
        cpu_shares: int = 0,
    ) -> None:
        self._init_record()
        self.memory = memory  # bytes
        self.memory_swap = memory_swap  # bytes of memory+swap; -1: unlimited swap
        self.pids_limit = pids_limit
        self.nano_cpus = nano_cpus  # --cpus in billionths of a CPU
        self.cpu_shares = cpu_shares


Resources.FIELDS = (
    _Field("memory", "Memory", always=True),
    _Field("memory_swap", "MemorySwap", always=True),
    _Field("pids_limit", "PidsLimit", always=True),
    _Field("nano_cpus", "NanoCpus", always=True),
    _Field("cpu_shares", "CpuShares", always=True),
)


class LimitOptions(Record):
    """HostConfig.Limits (overlayctl's): the limit options as they were
    given, which a start parses again (inspect does not show them)."""

    __slots__ = ("memory", "memory_swap", "pids_limit", "cpus", "cpu_shares")

    def __init__(
        self,
        memory: str | None = None,
        memory_swap: str | None = None,
        pids_limit: str | None = None,
        cpus: str | None = None,
        cpu_shares: str | None = None,
    ) -> None:
        self._init_record()
        self.memory = memory
        self.memory_swap = memory_swap
        self.pids_limit = pids_limit
        self.cpus = cpus
        self.cpu_shares = cpu_shares

    def given(self) -> tuple[str | None, str | None, str | None, str | None, str | None]:
        """(memory, memory_swap, pids_limit, cpus, cpu_shares), as parse_limits takes them."""
        return (self.memory, self.memory_swap, self.pids_limit, self.cpus, self.cpu_shares)

    def any(self) -> bool:
        """Whether any option was given."""
        return any(self.given())


LimitOptions.FIELDS = tuple(_Field(name, name) for name in LimitOptions.__slots__)


class VolumeOptions(Record):
    """A volume mount's options."""

    __slots__ = ("no_copy", "labels")

    def __init__(self, no_copy: bool = False, labels: dict[str, str] | None = None) -> None:
        self._init_record()
        self.no_copy = no_copy  # do not seed the volume from the image
        self.labels: dict[str, str] | None = labels  # of a volume this mount creates


VolumeOptions.FIELDS = (_Field("no_copy", "NoCopy"), _Field("labels", "Labels"))


class BindOptions(Record):
    """A bind mount's options."""

    __slots__ = ("create_mountpoint",)

    def __init__(self, create_mountpoint: bool = False) -> None:
        self._init_record()
        self.create_mountpoint = create_mountpoint  # -v: a missing host directory is created


BindOptions.FIELDS = (_Field("create_mountpoint", "CreateMountpoint"),)


class TmpfsOptions(Record):
    """A tmpfs mount's options."""

    __slots__ = ("size_bytes", "mode", "options")

    def __init__(self, size_bytes: int | None = None, mode: int | None = None, options: str | None = None) -> None:
        self._init_record()
        self.size_bytes = size_bytes
        self.mode = mode  # permission bits of the tmpfs root
        self.options = options  # more mount data from --tmpfs (uid=, gid=, nr_inodes=, ...)


TmpfsOptions.FIELDS = (_Field("size_bytes", "SizeBytes"), _Field("mode", "Mode"), _Field("options", "Options"))


class Mount(Record):
    """One entry of HostConfig.Mounts: a volume, a bind or a tmpfs
    (-v, --mount, --tmpfs and the image's VOLUMEs)."""

    __slots__ = ("type", "source", "target", "read_only", "mode", "volume_options", "bind_options", "tmpfs_options")

    def __init__(
        self,
        type: str = "",
        source: str = "",
        target: str = "",
        read_only: bool = False,
        mode: str | None = None,
        volume_options: VolumeOptions | None = None,
        bind_options: BindOptions | None = None,
        tmpfs_options: TmpfsOptions | None = None,
    ) -> None:
        self._init_record()
        self.type = type  # volume, bind or tmpfs
        self.source = source  # a volume's name, a host path, or "" for tmpfs
        self.target = target
        self.read_only = read_only
        self.mode = mode  # -v's mode text as typed: inspect's Mode
        self.volume_options = volume_options
        self.bind_options = bind_options
        self.tmpfs_options = tmpfs_options


Mount.FIELDS = (
    _Field("type", "Type", always=True),
    _Field("source", "Source", always=True),
    _Field("target", "Target", always=True),
    _Field("read_only", "ReadOnly", always=True),
    _Field("mode", "Mode"),
    _Field("volume_options", "VolumeOptions", record=VolumeOptions),
    _Field("bind_options", "BindOptions", record=BindOptions),
    _Field("tmpfs_options", "TmpfsOptions", record=TmpfsOptions),
)


# --- the two documents --------------------------------------------------------


class Config(Record):
    """Config: what runs in the container (the image's config, overridden
    by the options of create)."""

    __slots__ = (
        "hostname",
        "user",
        "env",
        "cmd",
        "entrypoint",
        "working_dir",
        "tty",
        "open_stdin",
        "image",
        "stop_signal",
        "stop_timeout",
        "exposed_ports",
        "healthcheck",
        "labels",
    )

    def __init__(
        self,
        hostname: str = "",
        user: str = "",
        env: list[str] | None = None,
        cmd: list[str] | None = None,
        entrypoint: list[str] | None = None,
        working_dir: str = "",
        tty: bool = False,
        open_stdin: bool = False,
        image: str = "",
        stop_signal: str | None = None,
        stop_timeout: int | None = None,
        exposed_ports: dict[str, Any] | None = None,
        healthcheck: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self._init_record()
        self.hostname = hostname  # "": the short ID
        self.user = user
        self.env: list[str] = env if env is not None else []
        self.cmd: list[str] = cmd if cmd is not None else []
        self.entrypoint = entrypoint  # null when there is none, as Docker shows it
        self.working_dir = working_dir
        self.tty = tty
        self.open_stdin = open_stdin
        self.image = image  # the reference the user gave
        self.stop_signal = stop_signal  # --stop-signal or the image's STOPSIGNAL, as given
        self.stop_timeout = stop_timeout  # --stop-timeout, seconds
        self.exposed_ports = exposed_ports  # {"80/tcp": {}}: EXPOSE, --expose and -p
        # Docker's HealthConfig ({"Test": [...], "Interval": ns, ...}): the
        # image's HEALTHCHECK with the --health-* options over it, field by field.
        self.healthcheck = healthcheck
        # The image's labels with -l/--label-file over them, as Docker merges them.
        self.labels: dict[str, str] = labels if labels is not None else {}

    @property
    def argv(self) -> list[str]:
        """The command line: the entrypoint, then the command."""
        return list(self.entrypoint or []) + list(self.cmd or [])


Config.FIELDS = (
    _Field("hostname", "Hostname", always=True),
    _Field("user", "User", always=True),
    _Field("env", "Env", always=True),
    _Field("cmd", "Cmd", always=True),
    _Field("healthcheck", "Healthcheck"),
    _Field("entrypoint", "Entrypoint", always=True),
    _Field("working_dir", "WorkingDir", always=True),
    _Field("tty", "Tty", always=True),
    _Field("open_stdin", "OpenStdin", always=True),
    _Field("image", "Image", always=True),
    _Field("stop_signal", "StopSignal"),
    _Field("stop_timeout", "StopTimeout"),
    _Field("exposed_ports", "ExposedPorts"),
    # Only when set: documents made before labels existed stay as they were.
    _Field("labels", "Labels"),
)


class HostConfig(Record):
    """HostConfig: how the host runs the container (network, isolation,
    limits, mounts, logging, restarts)."""

    __slots__ = (
        "auto_remove",
        "network_mode",
        "restart_policy",
        "log_config",
        "ip_address",
        "cap_add",
        "cap_drop",
        "privileged",
        "readonly_rootfs",
        "security_opt",
        "devices",
        "resources",
        "limits",
        "mounts",
        "port_bindings",
        "publish_all_ports",
        "dns",
        "dns_search",
        "dns_options",
        "extra_hosts",
        "init",
        "init_path",
        "ulimits",
        "shm_size",
        "group_add",
        "sysctls",
        "ipc_mode",
        "pid_mode",
        "oom_score_adj",
        "storage_opt",
    )

    def __init__(
        self,
        auto_remove: bool = False,
        network_mode: str = "",
        restart_policy: RestartPolicy | None = None,
        log_config: LogConfig | None = None,
        ip_address: str | None = None,
        cap_add: list[str] | None = None,
        cap_drop: list[str] | None = None,
        privileged: bool = False,
        readonly_rootfs: bool = False,
        security_opt: list[str] | None = None,
        devices: list[Device] | None = None,
        resources: Resources | None = None,
        limits: LimitOptions | None = None,
        mounts: list[Mount] | None = None,
        port_bindings: dict[str, Any] | None = None,
        publish_all_ports: bool = False,
        dns: list[str] | None = None,
        dns_search: list[str] | None = None,
        dns_options: list[str] | None = None,
        extra_hosts: list[str] | None = None,
        init: bool | None = None,
        init_path: str | None = None,
        ulimits: list[dict[str, Any]] | None = None,
        shm_size: int = 0,
        group_add: list[str] | None = None,
        sysctls: dict[str, str] | None = None,
        ipc_mode: str = "",
        pid_mode: str = "",
        oom_score_adj: int = 0,
        storage_opt: dict[str, str] | None = None,
    ) -> None:
        self._init_record()
        self.auto_remove = auto_remove  # --rm
        self.network_mode = network_mode  # "": recorded before networks existed (none)
        # (null in a stored document reads as None; absent, as the default.)
        self.restart_policy: RestartPolicy | None = restart_policy if restart_policy is not None else RestartPolicy()
        self.log_config: LogConfig | None = log_config if log_config is not None else LogConfig()
        self.ip_address = ip_address  # --ip (overlayctl's key)
        self.cap_add = cap_add  # written with cap_drop, both lists, when either is given
        self.cap_drop = cap_drop
        self.privileged = privileged
        self.readonly_rootfs = readonly_rootfs
        self.security_opt = security_opt
        self.devices = devices
        self.resources = resources  # the limits as applied (Docker's keys)
        self.limits = limits  # the limit options as given (overlayctl's)
        self.mounts = mounts
        self.port_bindings = port_bindings  # -p: {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
        self.publish_all_ports = publish_all_ports  # -P
        self.dns = dns  # --dns: nameservers (on a user-defined network, the responder's upstreams)
        self.dns_search = dns_search  # --dns-search
        self.dns_options = dns_options  # --dns-option
        self.extra_hosts = extra_hosts  # --add-host, as given: "NAME:IP" or "NAME:host-gateway"
        self.init = init  # --init: tini as PID 1, the command its child
        self.init_path = init_path  # --init-path (overlayctl's key): the host's binary for --init
        self.ulimits = ulimits  # --ulimit: [{"Name": "nofile", "Hard": 2048, "Soft": 1024}]
        self.shm_size = shm_size  # --shm-size, bytes of /dev/shm (0: the 64 MiB default)
        self.group_add = group_add  # --group-add: names (resolved in the image) or ids
        self.sysctls = sysctls  # --sysctl: the namespaced ones only
        self.ipc_mode = ipc_mode  # --ipc: "" (private), private, shareable, host, none, container:NAME
        self.pid_mode = pid_mode  # --pid: "" (private), host, container:NAME
        self.oom_score_adj = oom_score_adj  # --oom-score-adj
        # --storage-opt as given, {"size": "10G"} (Docker's), or the store's
        # default size that the container got at create (store/storageopts.py).
        self.storage_opt = storage_opt

    @property
    def network(self) -> str:
        """The container's --network: "bridge", "host", "none" or a network
        name ("none" for a container recorded before networks existed)."""
        return self.network_mode or "none"

    @property
    def log_driver(self) -> str:
        """LogConfig.Type: json-file (the default), journald or none."""
        return (self.log_config.type if self.log_config is not None else "") or "json-file"

    @property
    def restart_name(self) -> str:
        """RestartPolicy.Name: no (the default), on-failure, always, unless-stopped."""
        return (self.restart_policy.name if self.restart_policy is not None else "") or "no"


HostConfig.FIELDS = (
    _Field("auto_remove", "AutoRemove", always=True),
    _Field("network_mode", "NetworkMode", always=True),
    _Field("restart_policy", "RestartPolicy", always=True, record=RestartPolicy),
    _Field("log_config", "LogConfig", always=True, record=LogConfig),
    _Field("ip_address", "IPAddress"),
    _Field("cap_add", "CapAdd"),
    _Field("cap_drop", "CapDrop"),
    _Field("privileged", "Privileged"),
    _Field("readonly_rootfs", "ReadonlyRootfs"),
    _Field("security_opt", "SecurityOpt"),
    _Field("devices", "Devices", record=Device, many=True),
    _Field("resources", "", record=Resources, inline=True),
    _Field("limits", "Limits", record=LimitOptions),
    _Field("mounts", "Mounts", record=Mount, many=True),
    _Field("port_bindings", "PortBindings"),
    _Field("publish_all_ports", "PublishAllPorts"),
    _Field("dns", "Dns"),
    _Field("dns_search", "DnsSearch"),
    _Field("dns_options", "DnsOptions"),
    _Field("extra_hosts", "ExtraHosts"),
    _Field("init", "Init"),
    _Field("init_path", "InitPath"),
    _Field("ulimits", "Ulimits"),
    _Field("shm_size", "ShmSize"),
    _Field("group_add", "GroupAdd"),
    _Field("sysctls", "Sysctls"),
    _Field("ipc_mode", "IpcMode"),
    _Field("pid_mode", "PidMode"),
    _Field("oom_score_adj", "OomScoreAdj"),
    _Field("storage_opt", "StorageOpt"),
)


class IPAMConfig(Record):
    """EndpointSettings.IPAMConfig: the address asked for on one network."""

    __slots__ = ("ipv4_address",)

    def __init__(self, ipv4_address: str = "") -> None:
        self._init_record()
        self.ipv4_address = ipv4_address  # --ip


IPAMConfig.FIELDS = (_Field("ipv4_address", "IPv4Address"),)


class EndpointConfig(Record):
    """One entry of NetworkingConfig.EndpointsConfig: what the container
    asked for on one network it is connected to (Docker's EndpointSettings,
    the part a user sets)."""

    __slots__ = ("ipam_config", "aliases", "mac_address")

    def __init__(
        self, ipam_config: IPAMConfig | None = None, aliases: list[str] | None = None, mac_address: str = ""
    ) -> None:
        self._init_record()
        self.ipam_config = ipam_config
        self.aliases = aliases  # --network-alias, --alias
        self.mac_address = mac_address  # --mac-address

    @property
    def ip(self) -> str | None:
        """The IPv4 address asked for, None when the network chooses."""
        return (self.ipam_config.ipv4_address if self.ipam_config is not None else "") or None


EndpointConfig.FIELDS = (
    _Field("ipam_config", "IPAMConfig", record=IPAMConfig),
    _Field("aliases", "Aliases"),
    _Field("mac_address", "MacAddress"),
)


class NetworkingConfig(Record):
    """NetworkingConfig: every network the container is connected to, by
    name, in the order its interfaces get (eth0 first). Written only once
    a container has more than its --network with --ip: an alias, a MAC, a
    second network, or a disconnect; without it the one network is
    HostConfig.NetworkMode with HostConfig.IPAddress."""

    __slots__ = ("endpoints",)

    def __init__(self, endpoints: dict[str, EndpointConfig] | None = None) -> None:
        self._init_record()
        self.endpoints: dict[str, EndpointConfig] = endpoints if endpoints is not None else {}


NetworkingConfig.FIELDS = (_Field("endpoints", "EndpointsConfig", always=True, record=EndpointConfig, keyed=True),)


class ContainerConfig(Record):
    """A container's stored configuration: {"Config": ..., "HostConfig": ...,
    and "NetworkingConfig" once it has one}."""

    __slots__ = ("config", "host", "networking")

    def __init__(
        self, config: Config | None = None, host: HostConfig | None = None, networking: NetworkingConfig | None = None
    ) -> None:
        self._init_record()
        self.config = config if config is not None else Config()
        self.host = host if host is not None else HostConfig()
        self.networking = networking

    def endpoints(self) -> dict[str, EndpointConfig]:
        """The networks the container is connected to (bridge networks and
        the default bridge by their names; host and none as they are), each
        with what it asked for there. The one way to read them."""
        if self.networking is not None:
            return self.networking.endpoints
        mode = self.host.network
        ip = self.host.ip_address
        return {mode: EndpointConfig(IPAMConfig(ip) if ip else None)}

    def set_endpoints(self, endpoints: dict[str, EndpointConfig]) -> None:
        """Record the networks the container is connected to (see endpoints)."""
        self.networking = NetworkingConfig(dict(endpoints))


ContainerConfig.FIELDS = (
    _Field("config", "Config", always=True, record=Config),
    _Field("host", "HostConfig", always=True, record=HostConfig),
    _Field("networking", "NetworkingConfig", record=NetworkingConfig),
)


# -- What inspect shows beside the stored configuration ----------------------
#
# The state and the network endpoint are not in the stored document: the
# state is the catalog's columns, the endpoint is the network's lease. They
# are typed too, so Docker's JSON for both is written in one place.

ZERO_TIME = "0001-01-01T00:00:00Z"  # Docker's time for "never"


class State:
    """`State` of `inspect CONTAINER`, from the catalog's columns."""

    __slots__ = (
        "status",
        "running",
        "paused",
        "restarting",
        "oom_killed",
        "pid",
        "exit_code",
        "error",
        "started_at",
        "finished_at",
        "supervisor_pid",
        "health",
    )

    def __init__(
        self,
        status: str,
        running: bool = False,
        paused: bool = False,
        restarting: bool = False,
        oom_killed: bool = False,
        pid: int = 0,
        exit_code: int = 0,
        error: str = "",
        started_at: str = "",
        finished_at: str = "",
        supervisor_pid: int = 0,
        health: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.running = running
        self.paused = paused
        self.restarting = restarting
        self.oom_killed = oom_killed
        self.pid = pid
        self.exit_code = exit_code
        self.error = error
        self.started_at = started_at  # "" when it never started
        self.finished_at = finished_at
        self.supervisor_pid = supervisor_pid
        self.health = health  # {"Status", "FailingStreak", "Log"}: only for a container with a check

    def to_json(self) -> dict[str, Any]:
        """Docker's State object (times never recorded are Docker's zero time)."""
        state = {
            "Status": self.status,
            "Running": self.running,
            "Paused": self.paused,
            "Restarting": self.restarting,
            "OOMKilled": self.oom_killed,
            "Dead": False,
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at or ZERO_TIME,
            "FinishedAt": self.finished_at or ZERO_TIME,
        }
        if self.health is not None:
            state["Health"] = self.health
        # Not Docker's: the process that owns the container (conmon's pid, in podman's words).
        state["SupervisorPid"] = self.supervisor_pid
        return state



class Endpoint:
    """A container's place on one network: what `NetworkSettings` shows.
    Empty addresses while it does not run, and for host and none."""

    __slots__ = (
        "network",
        "network_id",
        "endpoint_id",
        "ip_address",
        "prefix_len",
        "gateway",
        "mac_address",
        "fixed_ip",
        "sandbox_key",
        "ports",
        "aliases",
        "others",
        "ipv6_address",
        "ipv6_prefix_len",
        "ipv6_gateway",
    )

    def __init__(
        self,
        network: str,
        network_id: str = "",
        endpoint_id: str = "",
        ip_address: str = "",
        prefix_len: int = 0,
        gateway: str = "",
        mac_address: str = "",
        fixed_ip: str | None = None,
        sandbox_key: str = "",
        ports: dict[str, Any] | None = None,
        aliases: list[str] | None = None,
        others: list[Endpoint] | None = None,
        ipv6_address: str = "",
        ipv6_prefix_len: int = 0,
        ipv6_gateway: str = "",
    ) -> None:
        self.network = network  # the network's name, or host / none
        self.network_id = network_id
        self.endpoint_id = endpoint_id
        self.ip_address = ip_address
        self.prefix_len = prefix_len
        self.gateway = gateway
        self.mac_address = mac_address
        self.fixed_ip = fixed_ip  # --ip, asked for at create
        self.sandbox_key = sandbox_key  # the network namespace, while it runs
        # {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "443/tcp": None} while it runs
        self.ports: dict[str, Any] = ports if ports is not None else {}
        self.aliases = aliases  # --network-alias / --alias on this network
        # The container's other networks (eth1, ...): NetworkSettings lists
        # them after this one, whose addresses are also its top-level ones.
        self.others: list[Endpoint] = others if others is not None else []
        self.ipv6_address = ipv6_address  # on a network made with --ipv6
        self.ipv6_prefix_len = ipv6_prefix_len
        self.ipv6_gateway = ipv6_gateway

    def entry_json(self) -> dict[str, Any]:
        """This network's entry of NetworkSettings.Networks."""
        return {
            "IPAMConfig": {"IPv4Address": self.fixed_ip} if self.fixed_ip else None,
            "Links": None,
            "Aliases": list(self.aliases) if self.aliases else None,
            "MacAddress": self.mac_address,
            "DriverOpts": None,
            "NetworkID": self.network_id,
            "EndpointID": self.endpoint_id,
            "Gateway": self.gateway,
            "IPAddress": self.ip_address,
            "IPPrefixLen": self.prefix_len,
            "IPv6Gateway": self.ipv6_gateway,
            "GlobalIPv6Address": self.ipv6_address,
            "GlobalIPv6PrefixLen": self.ipv6_prefix_len,
            "DNSNames": None,
        }

    def to_json(self) -> dict[str, Any]:
        """Docker's NetworkSettings: this network's addresses at the top
        level (the primary's, as Docker shows them), then every network
        under Networks."""
        networks = {self.network: self.entry_json()} if self.network else {}  # "": on no network
        networks.update((other.network, other.entry_json()) for other in self.others)
        return {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": self.sandbox_key,
            "Ports": self.ports,
            "EndpointID": self.endpoint_id,
            "Gateway": self.gateway,
            "GlobalIPv6Address": self.ipv6_address,
            "GlobalIPv6PrefixLen": self.ipv6_prefix_len,
            "IPAddress": self.ip_address,
            "IPPrefixLen": self.prefix_len,
            "IPv6Gateway": self.ipv6_gateway,
            "MacAddress": self.mac_address,
            "Networks": networks,
        }
