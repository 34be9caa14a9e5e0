"""Where cgroups live: the trees this host mounts (v2, v1 or hybrid), read
from /proc/self/mountinfo once per process.

A container's directory in a tree is spelt once, by `paths.cgroup_dir`
(<tree>/overlayctl/<id>); the Cgroup, the Freezer and the stale sweep ask
it, and so does `paused_once`, which must stay cheap on every start and
so imports nothing of this package.
"""

from __future__ import annotations

from overlayctl.errors import InvalidArgumentError
from overlayctl.paths import CGROUP_PARENT, cgroup_parent_dir

# blkio (v1) and io (v2) limit nothing here: they count the bytes the
# container reads from and writes to devices, `stats`' BLOCK I/O as Docker's.
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "blkio")
V2_CONTROLLERS = ("memory", "pids", "cpu", "io")


def check_id(container_id: str) -> None:
    """Refuse a name that would leave the parent directory or hide in it."""
    if not container_id or container_id.startswith(".") or "/" in container_id or "\0" in container_id:
        raise InvalidArgumentError(f'"{container_id}" cannot name a cgroup')


class Layout:
    """The cgroup mounts of a host: `version` 2 (unified at `unified`), 1 (v1
    trees in `v1`, controller -> mount point, and on a hybrid host a
    controller-less cgroup2 mount at `unified`), or 0 (no cgroups).
    Containers go under `parent` in each tree."""

    __slots__ = ("version", "unified", "v1", "parent", "freezer")

    def __init__(
        self,
        version: int,
        unified: str | None = None,
        v1: dict[str, str] | None = None,
        parent: str = CGROUP_PARENT,
        freezer: str | None = None,
    ) -> None:
        self.version = version
        self.unified = unified
        self.v1 = v1 or {}
        self.parent = parent
        self.freezer = freezer  # the v1 freezer tree's mount point, if there is one

    def with_parent(self, parent: str) -> Layout:
        """The same trees, with containers under another parent (tests use
        a private one)."""
        return Layout(self.version, self.unified, dict(self.v1), parent, self.freezer)

    def parent_dirs(self) -> list[str]:
        """Every directory holding containers' cgroups (one per mounted tree)."""
        roots = list(dict.fromkeys(self.v1.values())) if self.version == 1 else []
        if self.unified is not None:
            roots.append(self.unified)
        return [cgroup_parent_dir(r, self.parent) for r in roots]

    def __repr__(self) -> str:
        return f"Layout(v{self.version}, unified={self.unified}, v1={self.v1}, parent={self.parent})"


def parse_mountinfo(text: str) -> Layout:
    """The cgroup layout described by /proc/self/mountinfo."""
    unified: list[str] = []
    v1: dict[str, str] = {}
    freezer = None
    for options, mountpoint, _ in cgroup_mounts(text):
        if not options:  # the cgroup2 tree
            unified.append(mountpoint)
            continue
        for controller in V1_CONTROLLERS:
            if controller in options and controller not in v1:
                v1[controller] = mountpoint
        if "freezer" in options and freezer is None:
            freezer = mountpoint
    # A second mount of the cgroup2 tree shows the same tree: prefer the usual places.
    unified.sort(key=lambda m: (m != "/sys/fs/cgroup", m != "/sys/fs/cgroup/unified"))
    top = unified[0] if unified else None
    if v1:
        return Layout(1, top, v1, freezer=freezer)
    return Layout(2, top, freezer=freezer) if top is not None else Layout(0, freezer=freezer)


def cgroup_mounts(mountinfo: str) -> list[tuple[frozenset[str], str, str]]:
    """(controllers, mount point, mount root) of each cgroup mount; the
    cgroup2 tree has no controllers in this sense."""
    mounts: list[tuple[frozenset[str], str, str]] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, super_fields = left.split(), right.split()
        if not sep or len(fields) < 5 or len(super_fields) < 3:
            continue
        if super_fields[0] == "cgroup2":
            mounts.append((frozenset(), _unescape(fields[4]), _unescape(fields[3])))
        elif super_fields[0] == "cgroup":
            mounts.append((frozenset(super_fields[2].split(",")), _unescape(fields[4]), _unescape(fields[3])))
    return mounts


def _unescape(field: str) -> str:
    """A mountinfo field as the path it names: mountinfo writes space, tab,
    newline and backslash as \\ooo octal."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


_host_layout: Layout | None = None


def host_layout() -> Layout:
    """This host's layout, probed once per process."""
    global _host_layout
    if _host_layout is None:
        with open("/proc/self/mountinfo") as f:
            _host_layout = parse_mountinfo(f.read())
    return _host_layout
