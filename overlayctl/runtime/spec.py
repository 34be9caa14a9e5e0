"""ContainerSpec: everything the runtime needs to start one container,
resolved beforehand from the image config, the container config and the
store's directories. Plain data: it can be printed and tested without root.
(Plain classes, not dataclasses: importing dataclasses costs `run` ~15 ms.)
"""

from __future__ import annotations

import os

from overlayctl.runtime.overlay import OverlayLayout

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ContainerSpec:
    """What to mount and what to execute, as PID 1 of new namespaces."""

    def __init__(
        self,
        layout: OverlayLayout,
        store_root: str,
        mountpoint: str,
        argv: list[str],
        env: list[str] | None = None,
        cwd: str = "/",
        hostname: str = "",
        uid: int = 0,
        gid: int = 0,
        tty: bool = False,
        stdin: bool = False,
        overlay_api: str = "new",
        network: str = "none",
        user: str = "",
        capabilities: tuple[str, ...] | None = None,
        privileged: bool = False,
        readonly_rootfs: bool = False,
        mounts: list[Mount] | None = None,
        cgroup_procs: list[str] | None = None,
        seccomp: bytes | None = None,
        devices: list[tuple[str, str]] | None = None,
    ) -> None:
        self.layout = layout
        self.store_root = store_root  # the classic mount(2) fallback chdirs here
        self.mountpoint = mountpoint  # where the overlay is attached before pivot_root
        self.argv = argv
        self.env = env or []  # "KEY=value"
        self.cwd = cwd
        self.hostname = hostname
        self.uid = uid
        self.gid = gid
        self.tty = tty
        self.stdin = stdin
        self.overlay_api = overlay_api  # "new" (fsconfig lowerdir+) or "classic"
        self.network = network  # "none": own namespace with lo only; "host": the host's;
        # anything else: own namespace that the supervisor configures (see supervisor.run's on_namespaces)
        self.user = user  # USER as given (name or id, [:group]); resolved inside the root when set
        self.capabilities = capabilities  # names to keep; None: Docker's default set
        self.privileged = privileged  # every capability, no masked paths, /sys writable, no seccomp
        self.readonly_rootfs = readonly_rootfs
        self.mounts = mounts or []  # volumes, binds, tmpfs, generated /etc files: after the root is built
        self.cgroup_procs = cgroup_procs or []  # cgroup.procs files PID 1 joins before anything else
        self.seccomp = seccomp  # a compiled BPF filter (struct sock_filter array), loaded just before exec
        self.devices = devices or []  # --device (host node, container path): bound into the root
        # The process and its namespaces (runflags): set after construction,
        # by a start whose container asks for them.
        self.rlimits: list[tuple[str, int, int, int]] = []  # --ulimit: (name, RLIMIT_*, soft, hard), in PID 1
        self.shm_size = 0  # bytes of /dev/shm's tmpfs; 0: 64 MiB
        self.ipc = "private"  # "private": own namespace; "host": the host's; "none": own, no /dev/shm
        self.ipc_join: tuple[int, int] | None = None  # --ipc container: its PID 1 (pid, start time)
        self.pid_host = False  # --pid host: no PID namespace of its own
        self.pid_join: tuple[int, int] | None = None  # --pid container: its PID 1 (pid, start time)
        self.sysctls: list[tuple[str, str]] = []  # --sysctl, written in the container's namespaces
        self.oom_score_adj: int | None = None
        self.group_add: list[str] = []  # --group-add: names (looked up in the image) or GIDs

    def env_value(self, key: str) -> str | None:
        prefix = key + "="
        for item in reversed(self.env):
            if item.startswith(prefix):
                return item[len(prefix) :]
        return None


class Mount:
    """Something mounted into the container after its root is built.

    kind "bind": `source` is a host path (file or directory), attached at
    `target` inside the container; "tmpfs": a fresh tmpfs with `options`;
    "overlay": the directories of `layout` merged (lowers only: read-only;
    with an upper dir: writable, the writes kept there), for a build step's
    `--mount` of an image or of a directory whose writes are thrown away.
    Targets are resolved after pivot_root, inside the container's root, so a
    symlink in the image can never send a mount onto the host.
    """

    __slots__ = ("kind", "source", "target", "readonly", "options", "layout")

    def __init__(
        self,
        kind: str,
        source: str,
        target: str,
        readonly: bool = False,
        options: str = "",
        layout: OverlayLayout | None = None,
    ) -> None:
        self.kind = kind
        self.source = source
        self.target = target
        self.readonly = readonly
        self.options = options
        self.layout = layout

    def __repr__(self) -> str:
        ro = ",ro" if self.readonly else ""
        return f"Mount({self.kind} {self.source or ''} -> {self.target}{ro})"


def resolve_env(items: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """`-e` items (run, create and exec) as KEY=value: a bare KEY takes its
    value from `environ` (the caller's environment), empty if unset, as
    Docker does. An empty item or one without a KEY is refused."""
    source = os.environ if environ is None else environ
    resolved = []
    for item in items:
        if not item or item.startswith("="):
            from overlayctl.errors import InvalidArgumentError

            raise InvalidArgumentError(f'invalid environment variable "{item}": use -e KEY=value')
        resolved.append(item if "=" in item else f"{item}={source.get(item, '')}")
    return resolved


def merge_env(image_env: list[str], overrides: list[str]) -> list[str]:
    """The image's environment with -e values on top (later wins), PATH defaulted."""
    merged: dict[str, str] = {}
    for item in list(image_env) + list(overrides):
        key, _, value = item.partition("=")
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in merged.items()]
