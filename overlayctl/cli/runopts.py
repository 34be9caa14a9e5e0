"""The options of `create`, `run`, `build` and `system service`, defined once.

`run`, `build` and `system service` are parsed by hand from these tables
so that starting a container, a cached rebuild or the socket-activated API
service does not pay click's import (~25 ms, and ~60 ms for the whole
command tree the service would load); `create`, `run --help`, `build
--help` and `system service --help` get their click options generated from
the same tables, so the two cannot drift apart.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError


class Opt:
    """One option: its flags, where its value goes, and its help text."""

    __slots__ = ("flags", "dest", "kind", "help", "metavar")

    def __init__(self, flags: tuple[str, ...], dest: str, kind: str, help: str, metavar: str = "") -> None:
        self.flags = flags
        self.dest = dest
        self.kind = kind  # "flag", "value" or "multi"
        self.help = help
        self.metavar = metavar


GLOBAL_OPTIONS = (
    Opt(("--root",), "root", "value", "store directory (default /var/lib/overlayctl, env OVERLAYCTL_ROOT)", "DIR"),
    Opt(
        ("--runroot",),
        "runroot",
        "value",
        "runtime state directory (default /run/overlayctl, env OVERLAYCTL_RUNROOT)",
        "DIR",
    ),
    Opt(("--debug",), "debug", "flag", "show tracebacks of errors"),
)

CREATE_OPTIONS = (
    Opt(("--name",), "name", "value", "assign a name to the container", "NAME"),
    Opt(("-e", "--env"), "env", "multi", "set an environment variable (KEY=value, or KEY to copy it)", "KEY=VALUE"),
    Opt(("--env-file",), "env_file", "multi", "read environment variables from a file (KEY=VALUE lines)", "FILE"),
    Opt(("-l", "--label"), "label", "multi", "set a label on the container", "KEY=VALUE"),
    Opt(("--label-file",), "label_file", "multi", "read labels from a file (KEY=VALUE lines)", "FILE"),
    Opt(("-w", "--workdir"), "workdir", "value", "working directory inside the container", "DIR"),
    Opt(("-h", "--hostname"), "hostname", "value", "container host name", "NAME"),
    Opt(("-u", "--user"), "user", "value", "user to run as: NAME|UID[:GROUP|GID] (image's passwd)", "USER[:GROUP]"),
    Opt(("--entrypoint",), "entrypoint", "value", "override the image's ENTRYPOINT", "CMD"),
    Opt(("-t", "--tty"), "tty", "flag", "allocate a pseudo-terminal"),
    Opt(("-i", "--interactive"), "interactive", "flag", "keep stdin open"),
    Opt(("--rm",), "rm", "flag", "remove the container when it exits"),
    Opt(("--network", "--net"), "network", "value", "bridge (the default), none, host or a network name", "NETWORK"),
    Opt(("--ip",), "ip", "value", "IPv4 address on the network", "IP"),
    Opt(("-v", "--volume"), "volume", "multi", "NAME:/path[:ro], /host/path:/path[:ro] or /path", "VOLUME"),
    Opt(("--mount",), "mount", "multi", "type=volume|bind|tmpfs,source=..,target=..[,readonly]", "SPEC"),
    Opt(("--tmpfs",), "tmpfs", "multi", "mount a tmpfs at PATH (PATH[:options])", "PATH"),
    Opt(("--read-only",), "read_only", "flag", "mount the container's root read-only"),
    Opt(("--device",), "device", "multi", "give access to a host device (HOST[:CONTAINER[:rwm]])", "DEVICE"),
    Opt(("--cap-add",), "cap_add", "multi", "add a capability (or ALL)", "CAP"),
    Opt(("--cap-drop",), "cap_drop", "multi", "drop a capability (or ALL)", "CAP"),
    Opt(("--privileged",), "privileged", "flag", "every capability, no masked paths, no seccomp"),
    Opt(("--security-opt",), "security_opt", "multi", "seccomp=unconfined or seccomp=PROFILE.json", "OPT"),
    Opt(("-m", "--memory"), "memory", "value", "memory limit (e.g. 512m)", "BYTES"),
    Opt(("--memory-swap",), "memory_swap", "value", "memory plus swap limit (-1: unlimited swap)", "BYTES"),
    Opt(("--pids-limit",), "pids_limit", "value", "limit on the number of processes", "N"),
    Opt(("--cpus",), "cpus", "value", "number of CPUs (e.g. 1.5)", "N"),
    Opt(("--cpu-shares",), "cpu_shares", "value", "relative CPU weight", "N"),
    Opt(("--restart",), "restart", "value", "no, on-failure[:N], always or unless-stopped", "POLICY"),
    Opt(("--log-driver",), "log_driver", "value", "json-file (the default), journald or none", "DRIVER"),
    Opt(("--log-opt",), "log_opt", "multi", "log driver option: max-size=10m, max-file=3, tag=...", "KEY=VALUE"),
    Opt(("--stop-signal",), "stop_signal", "value", "signal that stops the container (default SIGTERM)", "SIGNAL"),
    Opt(("--stop-timeout",), "stop_timeout", "value", "seconds to wait for a stop before SIGKILL (default 10)", "N"),
    Opt(
        ("-p", "--publish"),
        "publish",
        "multi",
        "publish a container port on the host: [HOSTIP:][HOSTPORT:]PORT[/tcp|udp|sctp], ranges as 8000-8010:80-90",
        "PORTS",
    ),
    Opt(("-P", "--publish-all"), "publish_all", "flag", "publish every exposed port on a free host port"),
    Opt(("--expose",), "expose", "multi", "expose a port (or a range) without publishing it", "PORT[/PROTO]"),
    Opt(("--network-alias",), "network_alias", "multi", "another name on a user-defined network", "NAME"),
    Opt(("--mac-address",), "mac_address", "value", "MAC address of eth0 (e.g. 02:42:0a:00:00:09)", "MAC"),
    Opt(("--dns",), "dns", "multi", "set a nameserver (on a user-defined network: where other names go)", "IP"),
    Opt(("--dns-search",), "dns_search", "multi", "set a DNS search domain", "DOMAIN"),
    Opt(("--dns-option",), "dns_option", "multi", "set a resolv.conf option (e.g. ndots:2)", "OPT"),
    Opt(("--add-host",), "add_host", "multi", "add a line to /etc/hosts (NAME:IP or NAME:host-gateway)", "NAME:IP"),
    Opt(("--health-cmd",), "health_cmd", "value", "command to run to check health (run by /bin/sh -c)", "CMD"),
    Opt(("--health-interval",), "health_interval", "value", "time between checks (ms|s|m|h; default 30s)", "DURATION"),
    Opt(("--health-timeout",), "health_timeout", "value", "time a check may run (default 30s)", "DURATION"),
    Opt(("--health-retries",), "health_retries", "value", "failures in a row that make it unhealthy (default 3)", "N"),
    Opt(
        ("--health-start-period",),
        "health_start_period",
        "value",
        "time to start before failures count (default 0s)",
        "DURATION",
    ),
    Opt(
        ("--health-start-interval",),
        "health_start_interval",
        "value",
        "time between checks during the start period (default 5s)",
        "DURATION",
    ),
    Opt(("--no-healthcheck",), "no_healthcheck", "flag", "disable any HEALTHCHECK the image has"),
    Opt(("--init",), "init", "flag", "run an init (tini) as PID 1 that forwards signals and reaps zombies"),
    Opt(("--init-path",), "init_path", "value", "the host's init binary for --init (default: tini-static)", "PATH"),
    Opt(("--ulimit",), "ulimit", "multi", "a resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:2048", "NAME=LIMIT"),
    Opt(("--shm-size",), "shm_size", "value", "size of /dev/shm (default 64m)", "BYTES"),
    Opt(
        ("--storage-opt",),
        "storage_opt",
        "multi",
        "size=SIZE: limit the container's writable layer (needs project quotas; 0: no limit, over the store's default)",
        "KEY=VALUE",
    ),
    Opt(("--group-add",), "group_add", "multi", "an extra group (a name in the image, or a GID)", "GROUP"),
    Opt(("--sysctl",), "sysctl", "multi", "a namespaced sysctl: net.*, kernel.shm*/msg*/sem, fs.mqueue.*",
        "KEY=VALUE"),
    Opt(("--ipc",), "ipc", "value", "IPC namespace: private (default), shareable, host, none, container:NAME",
        "MODE"),
    Opt(("--pid",), "pid", "value", "PID namespace: host or container:NAME (default: its own)", "MODE"),
    Opt(("--oom-score-adj",), "oom_score_adj", "value", "the OOM killer's preference (-1000 to 1000)", "N"),
    Opt(("--cidfile",), "cidfile", "value", "write the container ID to FILE (which must not exist)", "FILE"),
    Opt(("--pull",), "pull", "value", "pull the image: missing (when not stored), always or never (the default)",
        "WHEN"),
    Opt(("--platform",), "platform", "value", "the image's platform: only this host's", "OS/ARCH"),
)

RUN_OPTIONS = CREATE_OPTIONS + (
    Opt(("-d", "--detach"), "detach", "flag", "run in the background and print the container ID"),
    Opt(
        ("--detach-keys",),
        "detach_keys",
        "value",
        "keys that detach from -it (default ctrl-p,ctrl-q, or detachKeys in Docker's config.json)",
        "KEYS",
    ),
)


BUILD_OPTIONS = (
    Opt(("-t", "--tag"), "tags", "multi", "name the image (repeatable)", "NAME[:TAG]"),
    Opt(("-f", "--file"), "dockerfile", "value", "the Dockerfile (default: CONTEXT/Dockerfile)", "PATH"),
    Opt(("--build-arg",), "build_args", "multi", "set a build-time ARG (KEY=VALUE, or KEY to copy it)", "KEY=VALUE"),
    Opt(("--no-cache",), "no_cache", "flag", "do not use the build cache"),
    Opt(("-q", "--quiet"), "quiet", "flag", "print only the image ID"),
    Opt(("--network",), "network", "value", "network for RUN: bridge (the default), host or none", "MODE"),
    Opt(("--timestamp",), "timestamp", "value", "clamp times to EPOCH (default: $SOURCE_DATE_EPOCH)", "EPOCH"),
    Opt(("--secret",), "secrets", "multi", "a secret for RUN --mount=type=secret (id=ID,src=PATH or id=ID,env=VAR)",
        "id=ID,src=PATH"),
    Opt(("--label",), "labels", "multi", "set a label on the image (repeatable)", "KEY=VALUE"),
    Opt(("--iidfile",), "iidfile", "value", "write the image ID to FILE", "FILE"),
    Opt(("--platform",), "platform", "value", "the platform to build for: only this host's", "OS/ARCH"),
    Opt(("--target",), "target", "value", "build this stage (and what it needs), not the last", "STAGE"),
    Opt(
        ("--build-context",),
        "build_contexts",
        "multi",
        "a named context for COPY --from / FROM: NAME=DIR or NAME=docker-image://IMAGE",
        "NAME=VALUE",
    ),
)


def parse(
    argv: list[str], table: tuple[Opt, ...], interspersed: bool = False, command: str = "run"
) -> tuple[dict[str, object], list[str]]:
    """Parse options up to the first positional argument (the image);
    everything after it is the container's command, untouched. With
    `interspersed` (build), options may also follow positional arguments.

    Short flags combine as in Docker (`-it`, `-itd`); values attach
    (`-eA=1`, `--name=x`) or follow.
    """
    if interspersed:
        head, dashes, tail = (argv[: argv.index("--")], True, argv[argv.index("--") + 1 :]) if "--" in argv else (
            argv,
            False,
            [],
        )
        values, rest = parse(head, table, command=command)
        positional: list[str] = []
        while rest:
            positional.append(rest[0])
            more, rest = parse(rest[1:], table, command=command)
            for opt in table:
                if opt.kind == "multi":
                    values[opt.dest] += more[opt.dest]  # type: ignore[operator]
                elif more[opt.dest] not in (None, False):
                    values[opt.dest] = more[opt.dest]
        return values, positional + (tail if dashes else [])
    by_flag = {flag: opt for opt in table for flag in opt.flags}
    values: dict[str, object] = {opt.dest: ([] if opt.kind == "multi" else None) for opt in table}
    for opt in table:
        if opt.kind == "flag":
            values[opt.dest] = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return values, argv[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            return values, argv[i:]
        if arg.startswith("--"):
            flag, eq, attached = arg.partition("=")
            opt = _lookup(by_flag, flag, command)
            value = attached if eq else None
            if opt.kind == "flag":
                if eq:
                    value_lower = attached.lower()
                    if value_lower not in ("true", "false", "1", "0"):
                        raise InvalidArgumentError(f'option {flag} takes no value (got "{attached}")')
                    values[opt.dest] = value_lower in ("true", "1")
                else:
                    values[opt.dest] = True
                i += 1
                continue
            if value is None:
                i += 1
                value = _next_value(argv, i, flag)
            _store(values, opt, value)
            i += 1
            continue
        # Short options: a cluster of flags, possibly ending in one taking a value.
        j = 1
        while j < len(arg):
            opt = _lookup(by_flag, "-" + arg[j], command)
            if opt.kind == "flag":
                values[opt.dest] = True
                j += 1
                continue
            rest = arg[j + 1 :]
            if rest:
                value = rest[1:] if rest.startswith("=") else rest
            else:
                i += 1
                value = _next_value(argv, i, "-" + arg[j])
            _store(values, opt, value)
            break
        i += 1
    return values, []


def _lookup(by_flag: dict[str, Opt], flag: str, command: str) -> Opt:
    try:
        return by_flag[flag]
    except KeyError:
        where = f"overlayctl {command} --help" if command else "overlayctl --help"
        raise InvalidArgumentError(f'unknown flag: {flag}; see "{where}"') from None


def _next_value(argv: list[str], i: int, flag: str) -> str:
    if i >= len(argv):
        raise InvalidArgumentError(f"flag needs an argument: {flag}")
    return argv[i]


def _store(values: dict[str, object], opt: Opt, value: str) -> None:
    if opt.kind == "multi":
        values[opt.dest].append(value)  # type: ignore[union-attr]
    else:
        values[opt.dest] = value


def click_options(table: tuple[Opt, ...]):  # type: ignore[no-untyped-def]
    """Decorate a click command with the table's options."""
    import click

    def decorate(func):  # type: ignore[no-untyped-def]
        for opt in reversed(table):
            if opt.kind == "flag":
                func = click.option(*opt.flags, opt.dest, is_flag=True, help=opt.help)(func)
            else:
                func = click.option(
                    *opt.flags, opt.dest, multiple=opt.kind == "multi", metavar=opt.metavar, help=opt.help
                )(func)
        return func

    return decorate

SERVICE_OPTIONS = (
    Opt(
        ("-t", "--time"),
        "idle_seconds",
        "value",
        "exit after this many seconds with no request (default 5; 0: never)",
        "SECONDS",
    ),
    Opt(("--group",), "group", "value", "the group that may use the socket (0660, root:GROUP)", "GROUP"),
)


def idle_seconds(value: object) -> float:
    """--time of `system service`: seconds, 5 when not given, never negative."""
    if value is None:
        return 5.0
    try:
        seconds = float(str(value))
    except ValueError:
        raise InvalidArgumentError(f'invalid value for --time: "{value}" is not a number of seconds') from None
    if not seconds >= 0:  # negative, or NaN
        raise InvalidArgumentError(f'invalid value for --time: "{value}": must be 0 or more')
    return seconds


_GLOBAL_WITH_VALUE = ("--root", "--runroot")


def first_command_index(args: list[str]) -> int:
    """Where the command starts, after the global options (--root, --runroot, --debug)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
        elif arg.startswith("--root=") or arg.startswith("--runroot=") or arg == "--debug":
            i += 1
        else:
            return i
    return i
