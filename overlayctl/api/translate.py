"""The body of POST /containers/create as the CLI's options.

The docker CLI turns `docker run` flags into Config, HostConfig and
NetworkingConfig; this module turns them back into the values overlayctl's
own flags give, the `CreateOptions` (and its `host` keys) that
`overlayctl create` makes (cli/common.py). So there is one translation and
one validator: the engine checks the options as it checks the CLI's, and a
value the CLI refuses is refused here with the same message.

Docker's zero values (empty strings, 0, false, null, [] and {}) mean "not
given", as they do to dockerd. A field overlayctl has no option for is
accepted at its zero value and refused otherwise: ignoring a limit or a
link the caller asked for would run a container other than the one asked for.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from overlayctl.errors import InvalidArgumentError

if TYPE_CHECKING:
    from overlayctl.engine.containers import CreateOptions

_HOST_CONFIG = "HostConfig"

# Fields overlayctl has no option for: accepted only at a zero value.
_UNSUPPORTED_CONFIG = ("Domainname", "NetworkDisabled", "OnBuild")
_UNSUPPORTED_HOST = (
    "VolumesFrom",
    "VolumeDriver",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "CpuCount",
    "CpuPercent",
    "DeviceCgroupRules",
    "DeviceRequests",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "OomKillDisable",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
    "UTSMode",
    "UsernsMode",
    "Cgroup",
    "MaskedPaths",
    "ReadonlyPaths",
    "Capabilities",
    "Annotations",
)
# Fields whose values name what overlayctl always does, and so are accepted.
_ALWAYS = {
    "CgroupnsMode": ("private",),
    "Isolation": ("default",),
    "Runtime": ("runc",),
    "MemorySwappiness": (-1,),
}


def _zero(value: Any) -> bool:
    return value is None or value in ("", 0, False) or value == [] or value == {}


def _check_unsupported(section: str, data: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if not _zero(data.get(key)):
            raise InvalidArgumentError(f"{section}.{key} is not supported by overlayctl (it has no such option)")
    if section == "HostConfig":
        for key, accepted in _ALWAYS.items():
            value = data.get(key)
            if not _zero(value) and value not in accepted:
                raise InvalidArgumentError(f"{section}.{key} {value!r} is not supported by overlayctl")


def _object(data: Any, what: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{what} must be a JSON object")
    return data


def _strings(value: Any, what: str) -> list[str]:
    """A list of strings (Docker's StrSlice also takes one string)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(f"{what} must be a list of strings")
    return list(value)


def _text(value: Any, what: str) -> str | None:
    """A string field; "" and null are None (not given)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a string")
    return value


def _int(value: Any, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InvalidArgumentError(f"{what} must be a whole number")
    return int(value)


def _duration(nanoseconds: Any, what: str) -> str:
    """Docker's durations are nanoseconds; the CLI's flags take Go durations."""
    n = _int(nanoseconds, what)
    return f"{n}ns" if n else ""


def _clean(path: str) -> str:
    """A container path as the mount parsers normalise it, to compare targets."""
    import posixpath

    return "/" + posixpath.normpath(path).lstrip("/") if path else ""


def _mount_text(mount: dict[str, Any]) -> str:
    """One HostConfig.Mounts entry as the --mount value that asks for it,
    each field quoted as CSV where it must be (the --mount parser reads CSV)."""
    fields = [f"type={mount.get('Type') or 'volume'}"]
    if mount.get("Source"):
        fields.append(f"source={mount['Source']}")
    if mount.get("Target"):
        fields.append(f"target={mount['Target']}")
    if mount.get("ReadOnly"):
        fields.append("readonly=true")
    bind = _object(mount.get("BindOptions"), "Mounts[].BindOptions")
    if bind.get("Propagation"):
        fields.append(f"bind-propagation={bind['Propagation']}")
    if bind.get("NonRecursive"):
        raise InvalidArgumentError("Mounts[].BindOptions.NonRecursive is not supported by overlayctl")
    volume = _object(mount.get("VolumeOptions"), "Mounts[].VolumeOptions")
    if volume.get("NoCopy"):
        fields.append("volume-nocopy=true")
    for key, value in _object(volume.get("Labels"), "VolumeOptions.Labels").items():
        fields.append(f"volume-label={key}={value}")
    driver = _object(volume.get("DriverConfig"), "VolumeOptions.DriverConfig")
    if driver.get("Name"):
        fields.append(f"volume-driver={driver['Name']}")
    if driver.get("Options"):
        raise InvalidArgumentError("Mounts[].VolumeOptions.DriverConfig.Options is not supported by overlayctl")
    tmpfs = _object(mount.get("TmpfsOptions"), "Mounts[].TmpfsOptions")
    if tmpfs.get("SizeBytes"):
        fields.append(f"tmpfs-size={_int(tmpfs['SizeBytes'], 'TmpfsOptions.SizeBytes')}")
    if tmpfs.get("Mode"):
        fields.append(f"tmpfs-mode={_int(tmpfs['Mode'], 'TmpfsOptions.Mode'):o}")
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def _publish_texts(bindings: dict[str, Any]) -> list[str]:
    """HostConfig.PortBindings as -p values: [IP:][HOSTPORT:]PORT/PROTO."""
    texts = []
    for key, hosts in bindings.items():
        port = key if "/" in key else key + "/tcp"
        for host in hosts or [{}]:
            host = _object(host, "PortBindings entry")
            ip, host_port = str(host.get("HostIp") or ""), str(host.get("HostPort") or "")
            if ":" in ip:
                ip = f"[{ip}]"
            if ip:
                texts.append(f"{ip}:{host_port}:{port}")
            elif host_port:
                texts.append(f"{host_port}:{port}")
            else:
                texts.append(port)
    return texts


def _restart_text(policy: dict[str, Any]) -> str | None:
    name = _text(policy.get("Name"), "RestartPolicy.Name") or ""
    count = _int(policy.get("MaximumRetryCount"), "RestartPolicy.MaximumRetryCount")
    if not name:
        return None
    return f"{name}:{count}" if count else name


def _cpus_text(nano: int) -> str:
    text = format(Decimal(nano) / Decimal(10**9), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _healthcheck(host: dict[str, Any], health: dict[str, Any]) -> None:
    """Config.Healthcheck as the --health-* options (and, for the exec
    form CMD that no flag writes, the test itself)."""
    test = _strings(health.get("Test"), "Healthcheck.Test")
    if test == ["NONE"]:
        host["no_healthcheck"] = True
        return
    if test and test[0] == "CMD-SHELL" and len(test) == 2:
        host["health_cmd"] = test[1]
    elif test and test[0] == "CMD" and len(test) > 1:
        host["health_test"] = test
    elif test:
        raise InvalidArgumentError(
            f'invalid Healthcheck.Test {test!r}: use ["CMD", ...], ["CMD-SHELL", COMMAND] or ["NONE"]'
        )
    for key, option in (
        ("Interval", "health_interval"),
        ("Timeout", "health_timeout"),
        ("StartPeriod", "health_start_period"),
        ("StartInterval", "health_start_interval"),
    ):
        text = _duration(health.get(key), f"Healthcheck.{key}")
        if text:
            host[option] = text
    if health.get("Retries"):
        host["health_retries"] = str(_int(health["Retries"], "Healthcheck.Retries"))


def _networking(host: dict[str, Any], networking: dict[str, Any], mode: str) -> str:
    """NetworkingConfig.EndpointsConfig: the one network the container
    starts on (more are connected afterwards, as dockerd 20.10 requires),
    with --ip, --network-alias and --mac-address. Returns the network."""
    endpoints = _object(networking.get("EndpointsConfig"), "NetworkingConfig.EndpointsConfig")
    if len(endpoints) > 1:
        names = ", ".join(endpoints)
        raise InvalidArgumentError(f"Container cannot be connected to network endpoints: {names}")
    if not endpoints:
        return mode
    name, endpoint = next(iter(endpoints.items()))
    endpoint = _object(endpoint, f"EndpointsConfig[{name!r}]")
    if mode in ("", "default"):
        mode = name
    elif name != mode and not (mode == "bridge" and name == "default"):
        raise InvalidArgumentError(f"EndpointsConfig names network {name!r} and NetworkMode {mode!r}: give the same")
    ipam = _object(endpoint.get("IPAMConfig"), "IPAMConfig")
    if ipam.get("IPv4Address"):
        host["ip"] = ipam["IPv4Address"]
    if ipam.get("IPv6Address"):
        raise InvalidArgumentError("IPAMConfig.IPv6Address is not supported by overlayctl")
    if endpoint.get("Aliases"):
        host["network_alias"] = _strings(endpoint["Aliases"], "Aliases")
    if endpoint.get("MacAddress"):
        host["mac_address"] = endpoint["MacAddress"]
    if endpoint.get("Links"):
        raise InvalidArgumentError("EndpointsConfig Links are not supported by overlayctl")
    return mode


def _links(value: Any, network: str) -> list[str]:
    """Legacy links (`--link NAME[:ALIAS]`, and what docker-compose sends
    for `run`), accepted on a user-defined network, where every container
    already reaches the others by name and network alias; the warning names
    the aliases that add nothing. On the default bridge, which has no names,
    they are refused."""
    links = _strings(value, "Links")
    if not links:
        return []
    if network in ("bridge", "default", "host", "none") or network.startswith("container:"):
        raise InvalidArgumentError(
            "HostConfig.Links are supported only on a user-defined network, whose containers reach each other "
            "by name (docker network create)"
        )
    extra = []
    for link in links:
        target, _, alias = link.partition(":")
        target, alias = target.lstrip("/"), alias.rsplit("/", 1)[-1]
        if not target:
            raise InvalidArgumentError(f"Links: {link!r} names no container")
        if alias and alias != target:
            extra.append(f"{alias} (for {target})")
    if not extra:
        return []
    return [
        f"Links: the linked containers are reached by their names and network aliases on {network}; "
        f"the link aliases {', '.join(extra)} are not added"
    ]


def create_options(body: Any, name: str | None, platform: str | None) -> tuple[CreateOptions, list[str]]:
    """The CreateOptions the body asks for, and the warnings dockerd would
    answer with. Shapes are checked here; values are the engine's to check."""
    from overlayctl.engine.containers import CreateOptions, mount_requests

    config = _object(body, "the request body")
    # The request's parts, not a stored document (which only the model reads).
    hc = _object(config.get(_HOST_CONFIG), _HOST_CONFIG)
    networking = _object(config.get("NetworkingConfig"), "NetworkingConfig")
    _check_unsupported("Config", config, _UNSUPPORTED_CONFIG)
    _check_unsupported("HostConfig", hc, _UNSUPPORTED_HOST)
    image = config.get("Image")
    if not image or not isinstance(image, str):
        raise InvalidArgumentError("Config.Image is required: the image to create the container from")

    host: dict[str, Any] = {}
    mode = _networking(host, networking, _text(hc.get("NetworkMode"), "NetworkMode") or "")
    if mode and mode != "default":
        host["network"] = mode
    if platform:
        host["platform"] = platform

    # Config
    entrypoint: str | list[str] | None = None
    if config.get("Entrypoint") is not None:
        given = _strings(config["Entrypoint"], "Entrypoint")
        # [""] is the CLI's --entrypoint "": no entrypoint, and not the image's CMD either.
        entrypoint = "" if given in ([], [""]) else given
        if given == []:
            entrypoint = None
    env = []
    for item in _strings(config.get("Env"), "Env"):
        # A bare KEY is the CLI's to resolve from its own environment; the
        # service's environment is not the caller's, so it is left out.
        if "=" in item or not item:
            env.append(item)
    exposed = _object(config.get("ExposedPorts"), "ExposedPorts")
    if exposed:
        host["expose"] = list(exposed)
    if config.get("StopSignal"):
        host["stop_signal"] = _text(config["StopSignal"], "StopSignal")
    if config.get("StopTimeout") is not None:
        host["stop_timeout"] = str(_int(config["StopTimeout"], "StopTimeout"))
    health = _object(config.get("Healthcheck"), "Healthcheck")
    if health:
        _healthcheck(host, health)
    if config.get("MacAddress"):
        host["mac_address"] = _text(config["MacAddress"], "MacAddress")
    labels = _object(config.get("Labels"), "Labels")

    # HostConfig
    for key, option in (
        ("CapAdd", "cap_add"),
        ("CapDrop", "cap_drop"),
        ("SecurityOpt", "security_opt"),
        ("Dns", "dns"),
        ("DnsSearch", "dns_search"),
        ("DnsOptions", "dns_option"),
        ("ExtraHosts", "add_host"),
        ("GroupAdd", "group_add"),
    ):
        values = _strings(hc.get(key), key)
        if values:
            host[option] = values
    for key, option in (
        ("Privileged", "privileged"),
        ("ReadonlyRootfs", "read_only"),
        ("PublishAllPorts", "publish_all"),
    ):
        if hc.get(key):
            host[option] = True
    if hc.get("Init"):
        host["init"] = True
    for key, option in (
        ("Memory", "memory"),
        ("MemorySwap", "memory_swap"),
        ("CpuShares", "cpu_shares"),
        ("PidsLimit", "pids_limit"),
        ("ShmSize", "shm_size"),
        ("OomScoreAdj", "oom_score_adj"),
    ):
        value = _int(hc.get(key), key)
        if value:
            host[option] = str(value)
    nano = _int(hc.get("NanoCpus"), "NanoCpus")
    if nano:
        host["cpus"] = _cpus_text(nano)
    for key, option in (("IpcMode", "ipc"), ("PidMode", "pid")):
        if hc.get(key):
            host[option] = _text(hc[key], key)
    restart = _restart_text(_object(hc.get("RestartPolicy"), "RestartPolicy"))
    if restart:
        host["restart"] = restart
    log = _object(hc.get("LogConfig"), "LogConfig")
    if log.get("Type"):
        host["log_driver"] = _text(log["Type"], "LogConfig.Type")
    log_opts = [f"{k}={v}" for k, v in _object(log.get("Config"), "LogConfig.Config").items()]
    if log_opts:
        host["log_opt"] = log_opts
    bindings = _object(hc.get("PortBindings"), "PortBindings")
    if bindings:
        host["publish"] = _publish_texts(bindings)
    devices = []
    for device in hc.get("Devices") or []:
        device = _object(device, "Devices entry")
        on_host = device.get("PathOnHost") or ""
        inside = device.get("PathInContainer") or on_host
        devices.append(f"{on_host}:{inside}:{device.get('CgroupPermissions') or 'rwm'}")
    if devices:
        host["device"] = devices
    ulimits = []
    for limit in hc.get("Ulimits") or []:
        limit = _object(limit, "Ulimits entry")
        ulimits.append(f"{limit.get('Name')}={_int(limit.get('Soft'), 'Soft')}:{_int(limit.get('Hard'), 'Hard')}")
    if ulimits:
        host["ulimit"] = ulimits
    sysctls = [f"{k}={v}" for k, v in _object(hc.get("Sysctls"), "Sysctls").items()]
    if sysctls:
        host["sysctl"] = sysctls
    # What the docker CLI makes of --storage-opt: checked as the CLI's are.
    storage_opt = [f"{k}={v}" for k, v in _object(hc.get("StorageOpt"), "StorageOpt").items()]
    if storage_opt:
        host["storage_opt"] = storage_opt

    # Mounts, in the CLI's order: -v (Binds are -v a:/b, Config.Volumes -v /path), --mount, --tmpfs.
    binds = _strings(hc.get("Binds"), "Binds")
    mount_list = [_object(m, "Mounts entry") for m in hc.get("Mounts") or []]
    mounts = [_mount_text(m) for m in mount_list]
    tmpfs = []
    for path, options in _object(hc.get("Tmpfs"), "Tmpfs").items():
        tmpfs.append(f"{path}:{options}" if options else path)
    # docker-py and docker-compose also name every bind's target in
    # Config.Volumes; as for dockerd, a target mounted otherwise is no
    # anonymous volume.
    taken = {_clean(b.split(":")[1]) for b in binds if b.count(":") >= 1}
    taken |= {_clean(str(m.get("Target") or "")) for m in mount_list}
    taken |= {_clean(path) for path in _object(hc.get("Tmpfs"), "Tmpfs")}
    anonymous = [v for v in _object(config.get("Volumes"), "Volumes") if _clean(v) not in taken]
    volumes = binds + anonymous
    if volumes or mounts or tmpfs:
        host["mount_requests"] = mount_requests(volumes, mounts, tmpfs)

    warnings = []
    network = host.get("network") or "bridge"
    warnings += _links(hc.get("Links"), network)
    if (bindings or hc.get("PublishAllPorts")) and network in ("host", "none"):
        warnings.append(f"Published ports are discarded when using {network} network mode")
    opts = CreateOptions(
        image=image,
        command=_strings(config.get("Cmd"), "Cmd"),
        name=name or None,
        env=env,
        workdir=_text(config.get("WorkingDir"), "WorkingDir"),
        hostname=_text(config.get("Hostname"), "Hostname"),
        user=_text(config.get("User"), "User"),
        entrypoint=entrypoint,  # type: ignore[arg-type]
        tty=bool(config.get("Tty")),
        interactive=bool(config.get("OpenStdin")),
        auto_remove=bool(hc.get("AutoRemove")),
        host=host,
        labels={str(k): str(v) for k, v in labels.items()},
    )
    return opts, warnings
