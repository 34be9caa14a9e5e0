"""systemd units: `overlayctl@.service` (one container per instance), the
boot-time `overlayctl-reconcile.service`, and the unit `overlayctl generate
systemd CONTAINER` prints for one container.

A unit is data first: a list of sections, each a list of (key, value)
lines, rendered by one function. The files in systemd/ are renderings of
`template_unit()` and `reconcile_unit()` (a unit test keeps them equal);
a generated unit is the template's service with the container put in, plus
the hardening that container's configuration allows.

Hardening follows one rule: a container under systemd must see exactly
what it sees when started from a root shell. The template cannot know its
container, so it only takes what no container can notice. A generated unit
knows its container's binds, capabilities and seccomp profile, and adds each
protection those leave untouched (`hardening`).
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError
from overlayctl.paths import DEFAULT_ROOT, DEFAULT_RUNROOT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from overlayctl.store.containers import Container

EXECUTABLE = "/usr/local/bin/overlayctl"  # the launcher scripts/setup.sh writes
STOP_TIMEOUT = 10  # seconds: `overlayctl stop`'s default, as `docker stop`'s
# What systemd allows a stop beyond the container's stop timeout (`overlayctl
# stop` then still waits for the kill and for the supervisor's record).
STOP_MARGIN = 60
RESTART_POLICIES = ("no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always")
# A container's own --restart, as the unit's Restart= (podman's choice: a
# container without one gets on-failure).
RESTART_FROM_CONTAINER = {
    "no": "on-failure",
    "on-failure": "on-failure",
    "always": "always",
    "unless-stopped": "always",
}
RECONCILE_UNIT = "overlayctl-reconcile.service"
# A death by HUP, INT, PIPE or TERM is clean for systemd; the supervisor
# reports a death by signal N as 128+N.
CLEAN_EXITS = (129, 130, 141, 143)

Line = tuple[str, str]  # ("Key", "value"); ("#", "text") is a comment
Section = tuple[str, list[Line]]


def render(sections: Sequence[Section], header: Sequence[str] = ()) -> str:
    """The unit file's text: header comments, then each [Section].

    Every line is checked once more for a line break: whatever a caller
    forgot to quote, a value can never start a line of its own."""
    out = [f"# {_one_line(text, 'comment')}".rstrip() for text in header]
    for name, lines in sections:
        if out:
            out.append("")
        out.append(f"[{name}]")
        for key, value in lines:
            value = _one_line(value, "comment" if key == "#" else f"{key}=")
            out.append(f"# {value}" if key == "#" else f"{key}={value}")
    return "\n".join(out) + "\n"


# --- what a unit can carry ---------------------------------------------------
#
# systemd reads a unit line by line, and a line ends at \n, at \r and at
# NUL (systemd 252 reads "Description=a\r[Service]\rExecStartPre=..." as three
# lines, and runs that ExecStartPre=). No quoting hides them from that
# reader, so they are refused wherever they come from. Past that, what a
# value may hold depends on how its setting is parsed:
#
# - Exec*= words are unquoted and C-unescaped (systemd.service(5)), so any
#   other byte can be written as \xNN: control characters, and the bytes of
#   a path that are not UTF-8 (os.fsencode's surrogate escapes), reach the
#   command's argv exactly.
# - Every other setting is taken as UTF-8 text with no C escapes (Description=
#   as it is, RequiresMountsFor= only unquoted): systemd ignores an
#   assignment that is not UTF-8 and a raw control byte is nothing anyone
#   means, so both are refused, as are the code points systemd counts as
#   invalid UTF-8 (the noncharacters).


def _line_break(value: str) -> str | None:
    for char, name in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL byte")):
        if char in value:
            return name
    return None


def _refuse(value: str, what: str, reason: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{what} {value!r} cannot be written into a systemd unit: it holds {reason}; choose one without it"
    )


def _one_line(value: str, what: str) -> str:
    reason = _line_break(value)
    if reason:
        raise _refuse(value, what, reason)
    return value


def _raw_char_refused(char: str) -> str | None:
    """Why `char` cannot stand unescaped in a unit, or None."""
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        return "a control character"
    if 0xD800 <= code < 0xE000:
        return "bytes that are not UTF-8"
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return "a Unicode noncharacter"
    return None


def exec_quote(arg: str, what: str = "command word") -> str:
    """One word of an Exec*= line: systemd splits on whitespace, unquotes
    C-style, expands $VAR and %-specifiers; this keeps `arg` literal, byte
    for byte. Line breaks and NUL are refused (see above)."""
    _one_line(arg, what)
    out = []
    quote = not arg
    for char in arg:
        if _raw_char_refused(char):
            try:
                data = char.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise _refuse(arg, what, "text that is neither UTF-8 nor escaped bytes") from None
            out.append("".join(f"\\x{byte:02x}" for byte in data))
            quote = True
        elif char in '\\"':
            out.append("\\" + char)
            quote = True
        else:
            out.append({"%": "%%", "$": "$$"}.get(char, char))
            quote = quote or char in " ';"
    word = "".join(out)
    return f'"{word}"' if quote else word


def _plain_text(value: str, what: str) -> str:
    """`value`, refused unless a setting other than Exec*= can hold it."""
    _one_line(value, what)
    reason = next(filter(None, map(_raw_char_refused, value)), None)
    if reason:
        raise _refuse(value, what, reason)
    return value


def _check_executable(path: str) -> None:
    """systemd takes an Exec*= program only as a normalized absolute path
    of UTF-8 text with no control character, quote or backslash: escaped or
    not, those fail the unit ("Executable name contains special
    characters"). A $ cannot be written either (below). A path that is not
    absolute would be looked up, and one starting with @ - : + ! would
    change how the command runs."""
    _plain_text(path, "executable")
    if not path.startswith("/") or path.endswith("/") or {"", ".", ".."} & set(path[1:].split("/")):
        raise InvalidArgumentError(f"executable {path!r} for a unit is not a normalized absolute path")
    if any(c in path for c in "\\\"'"):
        raise _refuse(path, "executable", "a quote or a backslash, which systemd refuses in a program's path")
    if "$" in path:
        # $$ would be a $ in the program's argv[0] but stay $$ in the path
        # systemd executes: no spelling gives both.
        raise _refuse(path, "executable", "a $, which systemd does not unescape in a program's path")


def unit_text(value: str, what: str = "value") -> str:
    """A free-text setting (Description=), read back as written: specifiers
    doubled; refused as above, and with a trailing backslash (systemd would
    join the next line to it)."""
    if _plain_text(value, what).endswith("\\"):
        raise _refuse(value, what, "a trailing backslash")
    return value.replace("%", "%%")


def global_args(root: str = DEFAULT_ROOT, runroot: str = DEFAULT_RUNROOT) -> list[str]:
    """--root/--runroot for a command line, only where they differ from
    the defaults (a unit must reach the store the container is in)."""
    args = []
    if root != DEFAULT_ROOT:
        args += ["--root", root]
    if runroot != DEFAULT_RUNROOT:
        args += ["--runroot", runroot]
    return args


def path_word(path: str, what: str = "path") -> str:
    """A path in a space-separated list such as RequiresMountsFor=: that
    list is unquoted ("" and backslash) but not C-unescaped."""
    path = _plain_text(path, what).replace("%", "%%")
    if any(c in path for c in " \t\"'\\"):
        return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return path


# --- the service -----------------------------------------------------------


def service_lines(
    target: str,
    executable: str = EXECUTABLE,
    args: Sequence[str] = (),
    stop_timeout: int | None = None,
    restart: str = "on-failure",
    stop_signal: int = 15,
    stop_waits: int | None = None,
) -> list[Line]:
    """What runs one container: shared by the template and generated units.

    `target` is the container's name or ID as it goes on a command line (in
    the template, the specifier %I, left unquoted). With `stop_timeout`
    None, `overlayctl stop` uses the container's own (--stop-timeout, else
    10 s), which `stop_waits` gives when it is known. `stop_signal` is the
    container's (--stop-signal or STOPSIGNAL).
    """
    _check_executable(executable)
    words = [exec_quote(word, "executable" if i == 0 else "option") for i, word in enumerate((executable, *args))]
    start = " ".join([*words, "start", "-a", target])
    stop = " ".join([*words, "stop", *([] if stop_timeout is None else ["-t", str(stop_timeout)]), target])
    waits = next((t for t in (stop_timeout, stop_waits) if t is not None), STOP_TIMEOUT)
    grace = waits + STOP_MARGIN
    clean = sorted(set(CLEAN_EXITS) | {128 + stop_signal})
    return [
        ("#", "The foreground supervisor is the main process: it says READY=1 once the"),
        ("#", "container's command runs, STATUS= as it goes and STOPPING=1 on the way out."),
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStart", start),
        ("#", "The container's stop signal, SIGKILL after its stop timeout; the supervisor"),
        ("#", "records the end and exits. Should that fail, SIGTERM goes to the supervisor"),
        ("#", "alone, which forwards it; past TimeoutStopSec all that is left is killed."),
        ("#", "`overlayctl stop` returns only once the supervisor has exited with the"),
        ("#", "container's code, so the SIGTERM that follows ExecStop finds nothing to end."),
        ("ExecStop", stop),
        ("KillMode", "mixed"),
        ("KillSignal", "SIGTERM"),
        ("TimeoutStopSec", str(grace)),
        ("#", "The unit's result is the container's exit code, 128+N for a death by signal"),
        ("#", "N: the deaths systemd counts as clean, and by the stop signal, are clean."),
        ("SuccessExitStatus", " ".join(map(str, clean))),
        ("Restart", restart),
        ("#", "126 and 127: the command cannot be executed, and a restart cannot help."),
        ("RestartPreventExitStatus", "126 127"),
    ]


# What no container can notice, so even the template has it.
INVISIBLE_HARDENING: list[Line] = [
    ("#", "The supervisor gets its own mount namespace, a slave of the host's: nothing"),
    ("#", "mounted on the way to the container can reach the host's mount table (the"),
    ("#", "container's PID 1 makes a private namespace of its own on top of it)."),
    ("PrivateMounts", "yes"),
]


def template_unit(executable: str = EXECUTABLE) -> str:
    """systemd/overlayctl@.service."""
    unit = [
        ("Description", "overlayctl container %I"),
        ("Wants", f"network-online.target {RECONCILE_UNIT}"),
        ("After", f"network-online.target {RECONCILE_UNIT}"),
        ("RequiresMountsFor", f"{DEFAULT_ROOT} {DEFAULT_RUNROOT}"),
    ]
    # %I: the instance unescaped, as systemd-escape made it (instance_unit);
    # systemd expands it inside one word, whatever it holds.
    service = service_lines("%I", executable) + INVISIBLE_HARDENING
    header = [
        "overlayctl@.service: run the container named by the instance in the foreground.",
        "",
        "  overlayctl create --name web IMAGE [COMMAND...]",
        "  systemctl enable --now overlayctl@web",
        "",
        "The instance is the name escaped by systemd-escape: my-app is my\\x2dapp,",
        '  systemctl enable --now "overlayctl@$(systemd-escape my-app)"',
        "",
        "Generated by overlayctl.systemd.units.template_unit(); edit that, not this file.",
        "No ProtectSystem=, ProtectHome=, PrivateTmp= or capability limits here: a",
        "container may bind any host path and hold any capability, and must see the",
        "same under systemd as from a shell. `overlayctl generate systemd NAME` writes",
        "a unit for one container with every protection its configuration allows.",
    ]
    return render([("Unit", unit), ("Service", service), ("Install", [("WantedBy", "multi-user.target")])], header)


# What systemd-escape leaves as it is (unit-name.c's VALID_CHARS less - and \).
_UNESCAPED = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:_.")
UNIT_NAME_MAX = 255


def instance_unit(name: str) -> str:
    """The unit of the template that runs container `name`:
    overlayctl@NAME.service, NAME escaped as `systemd-escape` escapes it
    (/ becomes -, a leading dot and every other byte \\xNN), which the
    template's %I undoes."""
    _one_line(name, "container name")
    try:
        data = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise _refuse(name, "container name", "text that is neither UTF-8 nor escaped bytes") from None
    escaped = "".join(
        "-" if byte == 0x2F else chr(byte) if chr(byte) in _UNESCAPED and (i or byte != 0x2E) else f"\\x{byte:02x}"
        for i, byte in enumerate(data)
    )
    unit = f"overlayctl@{escaped}.service"
    if not name or len(unit) > UNIT_NAME_MAX:
        raise InvalidArgumentError(f"container name {name!r} cannot name a unit: empty, or too long once escaped")
    return unit


def _store_sandbox(capabilities: str) -> list[Line]:
    """The sandbox of a oneshot that only maintains the store: it writes
    <root> and the runroot, holds ``capabilities``, and reaches no network."""
    return [
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", DEFAULT_ROOT),
        ("RuntimeDirectory", DEFAULT_RUNROOT.removeprefix("/run/")),
        ("RuntimeDirectoryMode", "0755"),
        ("RuntimeDirectoryPreserve", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", capabilities),
        ("RestrictNamespaces", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_NETLINK"),
        ("IPAddressDeny", "any"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("ProtectProc", "invisible"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallErrorNumber", "EPERM"),
    ]


def reconcile_unit(executable: str = EXECUTABLE) -> str:
    """systemd/overlayctl-reconcile.service: once per boot, before any
    overlayctl@ unit (they order themselves after it)."""
    unit = [
        ("Description", "overlayctl: mark containers left running by the last boot as exited"),
        ("#", "Nothing to do on a host that never stored anything."),
        ("ConditionPathExists", f"{DEFAULT_ROOT}/catalog.db"),
        ("RequiresMountsFor", f"{DEFAULT_ROOT} {DEFAULT_RUNROOT}"),
    ]
    service = [
        ("Type", "oneshot"),
        ("RemainAfterExit", "yes"),
        ("ExecStart", f"{exec_quote(executable)} system reconcile"),
        ("#", "It writes the store and the runroot, removes cgroups and veth devices,"),
        ("#", "and kills what is left in a stale cgroup; nothing else. After a reboot"),
        ("#", "the runroot is gone: systemd makes it (0755, as overlayctl does) and keeps it."),
        *_store_sandbox("CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_KILL CAP_NET_ADMIN"),
    ]
    header = [
        "overlayctl-reconcile.service: after a reboot (or whenever it is started), mark",
        "containers whose supervisor is gone as exited and free what they held.",
        "",
        "Generated by overlayctl.systemd.units.reconcile_unit(); edit that, not this file.",
    ]
    return render([("Unit", unit), ("Service", service), ("Install", [("WantedBy", "multi-user.target")])], header)


def boot_unit(executable: str = EXECUTABLE) -> str:
    """systemd/overlayctl-boot.service: once per boot, after the state is
    reconciled, start the containers whose restart policy asks for it
    (always; unless-stopped when not stopped by hand), as Docker's daemon
    does when it comes up. Their supervisors stay when the unit is done."""
    unit = [
        ("Description", "overlayctl: start containers with restart policy always or unless-stopped"),
        ("ConditionPathExists", f"{DEFAULT_ROOT}/catalog.db"),
        ("Wants", f"network-online.target {RECONCILE_UNIT}"),
        ("After", f"network-online.target {RECONCILE_UNIT}"),
        ("RequiresMountsFor", f"{DEFAULT_ROOT} {DEFAULT_RUNROOT}"),
    ]
    service = [
        ("Type", "oneshot"),
        ("RemainAfterExit", "yes"),
        ("ExecStart", f"{exec_quote(executable)} system reconcile --boot"),
        ("#", "The containers it starts are not this unit's to stop: only the main process"),
        ("#", "is signalled when the unit stops; shutdown ends the rest."),
        ("KillMode", "process"),
        ("#", "No sandbox: it starts containers, which may need anything a container may."),
    ]
    header = [
        "overlayctl-boot.service: at boot, start the containers that `--restart always`",
        "(or `unless-stopped`, when not stopped by hand) asks for.",
        "",
        "Generated by overlayctl.systemd.units.boot_unit(); edit that, not this file.",
    ]
    return render([("Unit", unit), ("Service", service), ("Install", [("WantedBy", "multi-user.target")])], header)


def gc_unit(executable: str = EXECUTABLE) -> str:
    """systemd/overlayctl-gc.service: `system gc`, started by the timer."""
    unit = [
        ("Description", "overlayctl: remove the store's garbage (system gc)"),
        ("ConditionPathExists", f"{DEFAULT_ROOT}/catalog.db"),
        ("After", RECONCILE_UNIT),
        ("RequiresMountsFor", f"{DEFAULT_ROOT} {DEFAULT_RUNROOT}"),
    ]
    service = [
        ("Type", "oneshot"),
        ("ExecStart", f"{exec_quote(executable)} system gc"),
        ("#", "Below everything else on the host: it only deletes."),
        ("Nice", "19"),
        ("IOSchedulingClass", "idle"),
        ("#", "It deletes under the store and reads /proc; nothing else."),
        *_store_sandbox("CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER"),
    ]
    header = [
        "overlayctl-gc.service: remove dangling images, layers no image uses, stale build",
        "cache rows and crash leftovers. Started daily by overlayctl-gc.timer.",
        "",
        "Generated by overlayctl.systemd.units.gc_unit(); edit that, not this file.",
    ]
    return render([("Unit", unit), ("Service", service)], header)


def gc_timer() -> str:
    """systemd/overlayctl-gc.timer: `system gc` once a day, spread out."""
    timer = [
        ("OnCalendar", "daily"),
        ("RandomizedDelaySec", "1h"),
        ("#", "A day missed while the host was off is made up at the next boot."),
        ("Persistent", "yes"),
    ]
    header = [
        "overlayctl-gc.timer: run overlayctl-gc.service daily (systemctl enable --now overlayctl-gc.timer).",
        "",
        "Generated by overlayctl.systemd.units.gc_timer(); edit that, not this file.",
    ]
    unit = [("Description", "overlayctl: daily system gc")]
    return render([("Unit", unit), ("Timer", timer), ("Install", [("WantedBy", "timers.target")])], header)


API_SOCKET_UNIT = "overlayctl-api.socket"
API_SERVICE_UNIT = "overlayctl-api.service"
# Seconds the API service stays after its last request: long enough that a
# docker-compose session or a CI job's burst of commands finds it warm,
# short enough that an idle host does not keep it (its cold start is a
# goal of its own, below 300 ms).
API_IDLE_SECONDS = 60


def api_socket_unit() -> str:
    """systemd/overlayctl-api.socket: the Engine API's socket, 0660 root:root,
    held by systemd, which starts overlayctl-api.service on a connection."""
    unit = [
        ("Description", "overlayctl: the Docker Engine API socket"),
        ("RequiresMountsFor", DEFAULT_RUNROOT),
    ]
    socket = [
        ("ListenStream", f"{DEFAULT_RUNROOT}/docker.sock"),
        ("#", "Whoever can connect is root on this host, as with Docker's socket. To let a"),
        ("#", "group in (as `system service --group` does), a drop-in: SocketGroup=docker."),
        ("SocketMode", "0660"),
        ("SocketUser", "root"),
        ("SocketGroup", "root"),
        ("#", "The runroot, as overlayctl makes it."),
        ("DirectoryMode", "0755"),
    ]
    header = [
        "overlayctl-api.socket: the Docker Engine API on /run/overlayctl/docker.sock,",
        "started on demand:",
        "",
        "  systemctl enable --now overlayctl-api.socket",
        "  DOCKER_HOST=unix:///run/overlayctl/docker.sock docker ps",
        "",
        "Generated by overlayctl.systemd.units.api_socket_unit(); edit that, not this file.",
    ]
    return render([("Unit", unit), ("Socket", socket), ("Install", [("WantedBy", "sockets.target")])], header)


def api_service_unit(executable: str = EXECUTABLE, idle_seconds: int = API_IDLE_SECONDS) -> str:
    """systemd/overlayctl-api.service: `system service` on the socket systemd
    passes (LISTEN_FDS), Type=notify, exiting when idle."""
    unit = [
        ("Description", "overlayctl: the Docker Engine API"),
        ("Requires", API_SOCKET_UNIT),
        ("Wants", RECONCILE_UNIT),
        ("After", f"{API_SOCKET_UNIT} {RECONCILE_UNIT}"),
        ("RequiresMountsFor", f"{DEFAULT_ROOT} {DEFAULT_RUNROOT}"),
    ]
    service = [
        ("#", "READY=1 once it serves the socket systemd passed."),
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStart", f"{exec_quote(executable)} system service --time {int(idle_seconds)}"),
        ("#", "Idle for that long, it exits 0; the socket stays with systemd, and the next"),
        ("#", "connection starts it again. It holds no state: nothing is lost either way."),
        ("#", "The containers it starts have supervisors of their own in this unit's"),
        ("#", "cgroup; they are not the unit's to stop (Docker's docker.service does the"),
        ("#", "same): only the main process is signalled when it exits or is stopped."),
        ("KillMode", "process"),
        ("#", "No sandbox: it starts containers, which may need anything a container may."),
    ]
    header = [
        "overlayctl-api.service: the Docker Engine API (`overlayctl system service`),",
        "started by overlayctl-api.socket on the first connection.",
        "",
        "Generated by overlayctl.systemd.units.api_service_unit(); edit that, not this file.",
    ]
    return render([("Unit", unit), ("Service", service)], header)


def unit_files() -> dict[str, str]:
    """The files of systemd/, by name."""
    return {
        "overlayctl@.service": template_unit(),
        RECONCILE_UNIT: reconcile_unit(),
        "overlayctl-boot.service": boot_unit(),
        "overlayctl-gc.service": gc_unit(),
        "overlayctl-gc.timer": gc_timer(),
        API_SOCKET_UNIT: api_socket_unit(),
        API_SERVICE_UNIT: api_service_unit(),
    }


# --- one container: what it needs of the host, and the unit for it ----------

# Capabilities neither overlayctl (the supervisor and the container's PID 1
# before it drops privileges) nor a container with Docker's default set
# uses. A generated unit removes from the bounding set those its container
# was not given with --cap-add.
UNUSED_CAPABILITIES = (
    "audit_control",
    "audit_read",
    "block_suspend",
    "bpf",
    "checkpoint_restore",
    "ipc_lock",
    "ipc_owner",
    "lease",
    "linux_immutable",
    "mac_admin",
    "mac_override",
    "net_broadcast",
    "perfmon",
    "sys_boot",
    "sys_module",
    "sys_nice",
    "sys_pacct",
    "sys_rawio",
    "sys_time",
    "sys_tty_config",
    "syslog",
    "wake_alarm",
)


class HostNeeds:
    """What one container needs of the host, read from its configuration:
    every host path it reaches (store, runroot, bind sources) and whether
    it writes there, its capabilities, privileged mode, whether it runs
    under the default seccomp profile, and whether it joins a bridge
    network (whose set-up writes the host's kernel tunables)."""

    __slots__ = ("paths", "capabilities", "privileged", "default_seccomp", "bridge")

    def __init__(
        self,
        paths: Sequence[tuple[str, bool]],
        capabilities: Iterable[str] = (),
        privileged: bool = False,
        default_seccomp: bool = True,
        bridge: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.capabilities = frozenset(capabilities)
        self.privileged = privileged
        self.default_seccomp = default_seccomp and not privileged
        self.bridge = bridge

    def __repr__(self) -> str:
        return (
            f"HostNeeds(paths={self.paths}, capabilities={sorted(self.capabilities)}, privileged={self.privileged}, "
            f"default_seccomp={self.default_seccomp}, bridge={self.bridge})"
        )

    def touches(self, *prefixes: str, writable_only: bool = False) -> bool:
        """Whether a path the container reaches is one of `prefixes`, lies
        under one, or holds one (a bind of / reaches /home too)."""
        paths = [path for path, writable in self.paths if writable or not writable_only]
        return any(_overlaps(path, prefix) for path in paths for prefix in prefixes)

    def may_have(self, *capabilities: str) -> bool:
        return self.privileged or any(c in self.capabilities for c in capabilities)


def _overlaps(path: str, prefix: str) -> bool:
    path, prefix = path.rstrip("/") or "/", prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix.startswith(path.rstrip("/") + "/")


def needs_of(container: Container, root: str, runroot: str) -> HostNeeds:
    """The HostNeeds of a stored container."""
    from overlayctl.runtime.capabilities import DEFAULT_CAPABILITIES, resolve_capabilities

    hc = container.config.host
    paths = [(root, True), (runroot, True)]
    for mount in hc.mounts or []:
        if mount.type == "bind" and mount.source:
            paths.append((mount.source, not mount.read_only))
    # A --device is a host node the supervisor binds in: /dev is reached.
    paths += [(device.path_on_host, True) for device in hc.devices or [] if device.path_on_host]
    if hc.init:
        # The init of --init is a host binary, bound in read-only.
        paths.append((hc.init_path or "/usr/bin/tini-static", False))
    if hc.ipc_mode == "host":
        paths.append(("/dev/shm", True))  # the host's /dev/shm is bound in
    if hc.sysctls:
        # PID 1 writes them through the /proc/sys it starts with (the
        # unit's), which ProtectKernelTunables would make read-only.
        paths.append(("/proc/sys", True))
    if hc.cap_add or hc.cap_drop:
        capabilities = resolve_capabilities(hc.cap_add or [], hc.cap_drop or [])
    else:
        capabilities = DEFAULT_CAPABILITIES
    profiles = [o.partition("=")[2] for o in hc.security_opt or [] if o.startswith("seccomp=")]
    default_seccomp = all(p == "builtin" for p in profiles)
    bridge = hc.network not in ("none", "host")
    return HostNeeds(paths, capabilities, bool(hc.privileged), default_seccomp, bridge)


# Syscall groups (systemd.exec(5)) whose every call needs a capability: a
# container without it gets EPERM from the kernel anyway, and gets the same
# EPERM from the unit's filter.
SYSCALL_GROUPS_BY_CAPABILITY = (
    ("@module", "sys_module"),
    ("@raw-io", "sys_rawio"),
    ("@reboot", "sys_boot"),
    ("@swap", "sys_admin"),
)


def hardening(needs: HostNeeds) -> list[Line]:
    """Every protection the container cannot notice, given what it needs.

    Never added, whatever the container: ProtectHostname (its seccomp filter
    refuses sethostname, which PID 1 calls), PrivateUsers, PrivateNetwork and
    most of RestrictNamespaces (a container is made of namespaces), and what
    a container's processes inherit and would feel: SystemCallArchitectures
    (32-bit binaries), MemoryDenyWriteExecute (JITs), RestrictSUIDSGID
    (package installs), LockPersonality (linux32), RestrictAddressFamilies,
    ProtectClock (it refuses even a read-only adjtimex), PrivateDevices (it
    takes CAP_MKNOD, in Docker's default set), ProcSubset=pid (overlayctl
    reads /proc/net/route and /proc/uptime), UMask (a non-root user in the
    container reads the /etc/hosts written for it), ProtectControlGroups
    (the supervisor removes the cgroups of limits and of `pause`).
    """
    lines = list(INVISIBLE_HARDENING)
    lines.append(("#", "What this container's binds, capabilities and seccomp profile leave alone"))
    lines.append(("#", "(see overlayctl.systemd.units.hardening):"))
    if not needs.privileged:
        lines.append(("NoNewPrivileges", "yes"))  # PID 1 sets no_new_privs itself
    if not needs.touches("/usr", "/boot", "/efi", "/etc", writable_only=True):
        lines.append(("ProtectSystem", "full"))
    if not needs.touches("/home", "/root", "/run/user"):
        lines.append(("ProtectHome", "yes"))
    elif not needs.touches("/home", "/root", "/run/user", writable_only=True):
        lines.append(("ProtectHome", "read-only"))
    if not needs.touches("/tmp", "/var/tmp"):
        lines.append(("PrivateTmp", "yes"))
    if not needs.touches("/proc"):
        lines.append(("ProtectProc", "invisible"))
    if not needs.privileged and not needs.bridge and not needs.touches("/proc", "/sys"):
        # The container mounts a /proc and a /sys of its own, and systemd
        # leaves /sys/fs/cgroup writable (limits, the freezer of `pause`).
        # A bridge network is set up through the host's /proc/sys: IPv6
        # off on a new bridge and on the host's end of each veth, and in
        # the container's own network namespace before eth0 arrives.
        lines.append(("ProtectKernelTunables", "yes"))
    if not needs.may_have("sys_module") and not needs.touches("/lib/modules", "/usr/lib/modules"):
        lines.append(("ProtectKernelModules", "yes"))
    if not needs.may_have("syslog") and not needs.touches("/dev/kmsg", "/proc/kmsg"):
        lines.append(("ProtectKernelLogs", "yes"))
    if not needs.privileged and not needs.touches("/dev"):
        # null, zero, full, random, urandom, tty and its own pts are all a
        # container's /dev holds; a node made with mknod stays unopenable,
        # as under Docker's devices cgroup.
        lines.append(("DevicePolicy", "closed"))
    if not needs.may_have("sys_nice"):
        lines.append(("RestrictRealtime", "yes"))
    if needs.default_seccomp and not needs.may_have("sys_admin"):
        # The default profile refuses user namespaces without CAP_SYS_ADMIN.
        lines.append(("RestrictNamespaces", "~user"))
    groups = [group for group, capability in SYSCALL_GROUPS_BY_CAPABILITY if not needs.may_have(capability)]
    if groups:
        lines.append(("SystemCallFilter", "~" + " ".join(groups)))
        lines.append(("SystemCallErrorNumber", "EPERM"))
    if not needs.privileged:
        unused = [c for c in UNUSED_CAPABILITIES if c not in needs.capabilities]
        if unused:
            lines.append(("CapabilityBoundingSet", "~" + " ".join("CAP_" + c.upper() for c in unused)))
    return lines


def unit_name(container: Container, use_name: bool = False) -> str:
    """container-<name or ID>.service, as podman names its generated units.
    `-f` writes the file under this name, so it must be a unit name and
    nothing else: no path, no character a unit name cannot hold."""
    unit = f"container-{container.name if use_name else container.id}.service"
    if len(unit) > UNIT_NAME_MAX or not set(unit) <= _UNESCAPED | {"-"}:
        raise InvalidArgumentError(
            f"{unit!r} is not a valid systemd unit name: name the container by its ID (leave out --name)"
        )
    return unit


def generate_unit(
    container: Container,
    use_name: bool = False,
    root: str = DEFAULT_ROOT,
    runroot: str = DEFAULT_RUNROOT,
    stop_timeout: int | None = None,
    restart: str | None = None,
    executable: str = EXECUTABLE,
    header: bool = True,
) -> str:
    """The unit `overlayctl generate systemd` prints for one container.

    The container is named by ID (or by name with `use_name`); the store it
    lives in (`root`, `runroot`) is passed on when not the default one.
    `stop_timeout` overrides the container's own; `restart` (Restart=)
    defaults to the container's --restart policy, else on-failure.
    """
    from overlayctl import __version__
    from overlayctl.container.signals import parse_signal

    hc = container.config.host
    cfg = container.config.config
    if hc.auto_remove:
        raise InvalidArgumentError(
            f'container "{container.name}" is removed when it exits (--rm): a unit could start it only once; '
            "create it without --rm"
        )
    if restart is None:
        restart = RESTART_FROM_CONTAINER.get(hc.restart_name, "on-failure")
    if restart not in RESTART_POLICIES:
        raise InvalidArgumentError(f'invalid restart policy "{restart}": use one of {", ".join(RESTART_POLICIES)}')
    name = unit_name(container, use_name)
    target = exec_quote(container.name, "container name") if use_name else exec_quote(container.id, "container ID")
    needs = needs_of(container, root, runroot)
    unit = [
        ("Description", "overlayctl container " + unit_text(container.name, "container name")),
        ("Wants", f"network-online.target {RECONCILE_UNIT}"),
        ("After", f"network-online.target {RECONCILE_UNIT}"),
        ("RequiresMountsFor", " ".join(path_word(p, "host path") for p in dict.fromkeys(p for p, _ in needs.paths))),
    ]
    signal = parse_signal(str(cfg.stop_signal)) if cfg.stop_signal else 15
    own = int(cfg.stop_timeout) if cfg.stop_timeout is not None else None
    args = global_args(root, runroot)
    service = service_lines(target, executable, args, stop_timeout, restart, signal, stop_waits=own)
    service += hardening(needs)
    lines = (
        [
            name,
            f"generated by overlayctl {__version__} for container {container.name} ({container.short_id})",
        ]
        if header
        else []
    )
    return render([("Unit", unit), ("Service", service), ("Install", [("WantedBy", "multi-user.target")])], lines)


if __name__ == "__main__":
    # python3 -m overlayctl.systemd.units DIR: write the unit files into DIR (systemd/).
    import os
    import sys

    for name, text in unit_files().items():
        with open(os.path.join(sys.argv[1], name), "w") as f:
            f.write(text)
