"""`run`'s flags for the container's process and its namespaces, read as
Docker reads them: --ulimit, --sysctl, --ipc, --pid, --oom-score-adj,
--shm-size and --init's binary. Pure checks, done at create so a bad value
is refused before anything exists; the start applies what they return
(runtime.init in PID 1, mountplan for /dev/shm, the supervisor's fork).

Imported only by a create or start that uses one of these flags: a plain
`run` does not pay for it.
"""

from __future__ import annotations

import os

from overlayctl.errors import InvalidArgumentError

# go-units' ulimit names and their RLIMIT_* numbers (Linux, every
# architecture overlayctl runs on). "as" is left out, as Docker leaves it.
ULIMITS = {
    "core": 4,
    "cpu": 0,
    "data": 2,
    "fsize": 1,
    "locks": 10,
    "memlock": 8,
    "msgqueue": 12,
    "nice": 13,
    "nofile": 7,
    "nproc": 6,
    "rss": 5,
    "rtprio": 14,
    "rttime": 15,
    "sigpending": 11,
    "stack": 3,
}

RLIM_INFINITY = (1 << 64) - 1

# Docker's allowed sysctls (docker/cli's opts.ValidateSysctl): those the
# kernel keeps per IPC namespace, by name, and every net.* (per network
# namespace) and fs.mqueue.* (per IPC namespace) one.
IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)

# Where overlayctl finds the init of --init: Debian's tini package, its
# static build first (a busybox-static image has no C library for the other).
INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/bin/tini")
INIT_TARGET = "/sbin/docker-init"  # where Docker puts it in the container


def _flag_error(value: str, flag: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f'invalid argument "{value}" for "{flag}" flag: {why}')


def _go_int(text: str) -> int | None:
    body = text[1:] if text[:1] in "+-" else text
    return int(text) if body.isdigit() else None


def parse_ulimit(text: str) -> dict[str, int | str]:
    """One --ulimit NAME=SOFT[:HARD] as HostConfig.Ulimits holds it:
    {"Name", "Hard", "Soft"}; -1 is unlimited; a lone value is both."""
    name, sep, values = text.partition("=")
    if not sep:
        raise _flag_error(text, "--ulimit", f"invalid ulimit argument: {text}")
    if name not in ULIMITS:
        raise _flag_error(text, "--ulimit", f"invalid ulimit type: {name}")
    parts = values.split(":")
    if len(parts) > 2:
        raise _flag_error(
            text, "--ulimit", f"too many limit value arguments - {values}, can only have up to two, `soft[:hard]`"
        )
    numbers = [_go_int(p) for p in parts]
    for part, number in zip(parts, numbers, strict=True):
        if number is None:
            raise _flag_error(text, "--ulimit", f'strconv.ParseInt: parsing "{part}": invalid syntax')
    soft = numbers[0]
    hard = numbers[1] if len(numbers) == 2 else soft
    assert soft is not None and hard is not None
    if hard != -1 and soft > hard:
        raise _flag_error(
            text, "--ulimit", f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )
    return {"Name": name, "Hard": hard, "Soft": soft}


def parse_ulimits(values: list[str]) -> list[dict[str, int | str]]:
    """Every --ulimit, one per name (a later one replaces an earlier one,
    as Docker's map of them does), in the order first given."""
    by_name: dict[str, dict[str, int | str]] = {}
    for value in values:
        limit = parse_ulimit(value)
        by_name[str(limit["Name"])] = limit
    return list(by_name.values())


def rlimits(ulimits: list[dict[str, int | str]]) -> list[tuple[str, int, int, int]]:
    """(name, RLIMIT_*, soft, hard) for setrlimit, from HostConfig.Ulimits."""

    def raw(value: int) -> int:
        return RLIM_INFINITY if value < 0 else value

    return [(str(u["Name"]), ULIMITS[str(u["Name"])], raw(int(u["Soft"])), raw(int(u["Hard"]))) for u in ulimits]


def parse_sysctls(values: list[str], network: str, ipc: str) -> dict[str, str]:
    """--sysctl KEY=VALUE items as HostConfig.Sysctls: only those the kernel
    keeps per namespace (Docker's list), and only in a namespace of the
    container's own: not net.* with --network host, nor the IPC ones with
    an IPC namespace the container shares."""
    sysctls: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise _flag_error(item, "--sysctl", f"sysctl '{item}' is not allowed")
        is_ipc = key in IPC_SYSCTLS or key.startswith("fs.mqueue.")
        if not (is_ipc or key.startswith("net.")):
            raise _flag_error(item, "--sysctl", f"sysctl '{item}' is not allowed")
        if key.startswith("net.") and (network == "host" or network.startswith("container:")):
            raise InvalidArgumentError(
                f"sysctl \"{key}\" not allowed in host network namespace; drop --network {network} or the sysctl"
            )
        if is_ipc and (ipc == "host" or ipc.startswith("container:")):
            raise InvalidArgumentError(
                f'sysctl "{key}" not allowed with --ipc {ipc}: it would change a shared IPC namespace'
            )
        sysctls[key] = value
    return sysctls


def sysctl_path(key: str) -> str:
    """The /proc/sys file of a sysctl ("net.ipv4.ip_forward"; a name with
    slashes is taken as it is, as sysctl(8) does)."""
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def check_ipc_mode(text: str) -> str:
    """--ipc as HostConfig.IpcMode: private, shareable, host, none or
    container:NAME ("" stays the default, private)."""
    if text in ("", "private", "shareable", "host", "none"):
        return text
    if text.startswith("container:") and text[len("container:") :]:
        return text
    raise InvalidArgumentError(
        f'invalid IPC mode: {text}; use private, shareable, host, none or container:NAME'
    )


def check_pid_mode(text: str) -> str:
    """--pid as HostConfig.PidMode: "" (private), host or container:NAME."""
    if text in ("", "host"):
        return text
    if text.startswith("container:") and text[len("container:") :]:
        return text
    if text == "private":
        return ""
    raise InvalidArgumentError(f"--pid: invalid PID mode: {text}; use host or container:NAME")


def check_oom_score_adj(text: str) -> int:
    """--oom-score-adj, in the kernel's range."""
    value = _go_int(text.strip())
    if value is None:
        raise _flag_error(text, "--oom-score-adj", f'strconv.ParseInt: parsing "{text}": invalid syntax')
    if not -1000 <= value <= 1000:
        raise InvalidArgumentError(f"invalid value {value}, range for oom score adj is [-1000, 1000]")
    return value


def find_init(path: str | None) -> str:
    """The host's binary for --init: `path` (--init-path) or Debian's tini,
    static build first. One line naming the package when there is none."""
    if path:
        if not os.path.isabs(path):
            raise InvalidArgumentError(f'--init-path "{path}" is not an absolute path')
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise InvalidArgumentError(f"--init-path {path}: not an executable file on this host")
        return path
    for candidate in INIT_CANDIDATES:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise InvalidArgumentError("--init needs tini, which is not installed: apt-get install tini")
